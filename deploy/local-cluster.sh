#!/usr/bin/env bash
# A kvdepot cluster on this machine, on loopback: one etcd (Debian's
# etcd-server) and N kvdepot-node processes in cluster mode, each with its
# own SSD directory.
#
#   deploy/local-cluster.sh start [N]   build, start etcd and N nodes (default 3)
#   deploy/local-cluster.sh status      kvdepotctl cluster status
#   deploy/local-cluster.sh stop        stop the nodes (each leaves the
#                                       membership at once), then etcd
#
# Node i listens on 127.0.0.1:$((KVD_PORT_BASE + i)) (control) and
# 127.0.0.1:$((KVD_METRICS_BASE + i)) (/metrics); etcd on 127.0.0.1:KVD_ETCD_PORT.
# Clients join with cluster "local" and etcd 127.0.0.1:KVD_ETCD_PORT, e.g.
#   kvdepotctl cluster --etcd 127.0.0.1:23790 --cluster local status
# Environment: KVD_CLUSTER_DIR (default /tmp/kvdepot-cluster: data, logs,
# pids), KVD_ETCD_PORT (23790), KVD_PORT_BASE (7410), KVD_METRICS_BASE (9410),
# KVD_UCX_TLS (UCX_TLS of the nodes; default UCX's own choice),
# KVD_BUILD_DIR (build/release), KVD_JOBS.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR="${KVD_CLUSTER_DIR:-/tmp/kvdepot-cluster}"
ETCD_PORT="${KVD_ETCD_PORT:-23790}"
PORT_BASE="${KVD_PORT_BASE:-7410}"
METRICS_BASE="${KVD_METRICS_BASE:-9410}"
BUILD="${KVD_BUILD_DIR:-build/release}"
CTL=("$BUILD/store/cli/kvdepotctl" cluster --etcd "127.0.0.1:$ETCD_PORT" --cluster local)

# Waits up to 30 s for `cmd` to succeed.
wait_for() {
  for _ in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}

# Sends SIGTERM to the process in pid file $1 and waits for it to exit.
stop_pid() {
  local file="$1" pid
  [ -f "$file" ] || return 0
  pid="$(cat "$file")"
  if kill -TERM "$pid" 2>/dev/null; then
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "pid $pid did not stop in 30 s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$file"
}

start() {
  local n="${1:-3}"
  if [ -f "$DIR/etcd.pid" ] && kill -0 "$(cat "$DIR/etcd.pid")" 2>/dev/null; then
    echo "a local cluster is already running in $DIR (stop it first)" >&2
    exit 1
  fi
  bash deploy/install-deps.sh
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$BUILD" -j "${KVD_JOBS:-$(nproc)}" --target kvdepot-node kvdepotctl
  mkdir -p "$DIR"

  local peer=$((ETCD_PORT + 1))
  etcd --name local --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$peer" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "local=http://127.0.0.1:$peer" \
    --logger zap --log-outputs stderr >"$DIR/etcd.log" 2>&1 &
  echo $! >"$DIR/etcd.pid"
  if ! wait_for etcdctl --endpoints "127.0.0.1:$ETCD_PORT" endpoint health; then
    echo "etcd did not come up; see $DIR/etcd.log" >&2
    exit 1
  fi
  echo "etcd serving on 127.0.0.1:$ETCD_PORT"

  for i in $(seq 0 $((n - 1))); do
    mkdir -p "$DIR/node$i"
    rm -f "$DIR/node$i.port"
    "$BUILD/store/server/kvdepot-node" --config deploy/kvdepot-node.example.yaml \
      --set "node.id=local-$i" --set cluster.name=local \
      --set "cluster.etcd=127.0.0.1:$ETCD_PORT" \
      --set "transfer.ucx_tls=${KVD_UCX_TLS:-}" \
      --set "metrics.listen=127.0.0.1:$((METRICS_BASE + i))" \
      --set host.capacity=512MiB --set ssd.capacity=4GiB \
      --listen "127.0.0.1:$((PORT_BASE + i))" --data-dir "$DIR/node$i" \
      --port-file "$DIR/node$i.port" >"$DIR/node$i.log" 2>&1 &
    echo $! >"$DIR/node$i.pid"
  done
  for i in $(seq 0 $((n - 1))); do
    if ! wait_for test -s "$DIR/node$i.port"; then
      echo "node local-$i did not start; see $DIR/node$i.log" >&2
      exit 1
    fi
  done
  # Registration is asynchronous: wait until every node is in etcd.
  if ! wait_for test "$(etcdctl --endpoints "127.0.0.1:$ETCD_PORT" get \
      --prefix --keys-only /kvdepot/local/nodes/ | grep -c .)" -eq "$n"; then
    echo "not every node registered in etcd" >&2
    exit 1
  fi
  echo "$n nodes registered in cluster \"local\""
}

stop() {
  for pid_file in "$DIR"/node*.pid; do
    [ -e "$pid_file" ] && stop_pid "$pid_file"
  done
  stop_pid "$DIR/etcd.pid"
  echo "local cluster stopped"
}

case "${1:-}" in
  start) start "${2:-3}" ;;
  status) "${CTL[@]}" status ;;
  stop) stop ;;
  *)
    echo "usage: $0 start [N] | status | stop" >&2
    exit 2
    ;;
esac
