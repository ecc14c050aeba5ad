#!/usr/bin/env bash
# The main job on one machine, no other service needed: builds kvdepot, starts
# a standalone kvdepot-node, checks it with kvdepotctl, replays a shared-prefix
# serving workload through the store engine (hit rate, bytes per tier,
# throughput), prints the node's stats and stops it cleanly.
#
# Environment: KVD_DATA_DIR (default /tmp/kvdepot-standalone), KVD_PORT
# (default 7400), KVD_REQUESTS (default 300 replayed requests).
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-deps.sh
BUILD=build/release
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j "${KVD_JOBS:-$(nproc)}" --target kvdepot-node kvdepotctl kvdepot-replay

DATA="${KVD_DATA_DIR:-/tmp/kvdepot-standalone}"
PORT="${KVD_PORT:-7400}"
CONFIG=deploy/kvdepot-node.example.yaml
rm -rf "$DATA" && mkdir -p "$DATA/node" "$DATA/replay"

"$BUILD/store/server/kvdepot-node" --standalone --config "$CONFIG" \
  --listen "127.0.0.1:$PORT" --data-dir "$DATA/node" --port-file "$DATA/port" &
NODE_PID=$!
trap 'kill -TERM $NODE_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$DATA/port" ] && break; sleep 0.1; done
CTL=("$BUILD/store/cli/kvdepotctl" --node "127.0.0.1:$PORT")

echo "== kvdepotctl status"
"${CTL[@]}" status

echo "== workload replay (SmolLM2-135M geometry)"
"$BUILD/bench/kvdepot-replay" --config "$CONFIG" --set "ssd.dir=$DATA/replay/ssd" \
  --requests "${KVD_REQUESTS:-300}"

echo "== kvdepotctl stats"
"${CTL[@]}" stats

kill -TERM "$NODE_PID"
wait "$NODE_PID"
trap - EXIT
echo "== node stopped cleanly"
