#!/usr/bin/env bash
# deploy/k8s/validate.sh: offline checks of the Kubernetes manifests here
# (what validate.py checks is listed at its top). Needs PyPI only, once: the
# venv gets the pinned packages of requirements.txt, among them
# kubernetes-validate, which bundles the Kubernetes JSON schemas, so the
# checks themselves use no network.
#
#   deploy/k8s/validate.sh              check; prints one summary line
#   deploy/k8s/validate.sh --self-test  check that broken copies are rejected
#   ... --node-bin PATH                 the kvdepot-node that checks the node
#                                       config (default: $KVD_NODE_BIN)
#
# The node config (the ConfigMap's node.yaml with the StatefulSet's --set
# flags) is checked by the node itself, `kvdepot-node --check-config`: set
# KVD_NODE_BIN to a built one (e.g. build/release/store/server/kvdepot-node).
# Without it that check is skipped, with one line on stderr, and the rest
# still runs.
#
# Environment: KVD_NODE_BIN, KVD_K8S_VENV (default <repo>/build/k8s-venv),
# KVD_PYTHON (default python3), KVD_K8S_VERSION (schemas of this Kubernetes
# version, default 1.32). Idempotent: the venv is rebuilt only when
# requirements.txt or the Python changed. Exit status 0 valid, 1 invalid,
# 2 setup failed.
set -euo pipefail

usage() { echo "usage: $0 [--self-test] [--node-bin PATH]" >&2; exit 2; }
self_test=0
node_bin="${KVD_NODE_BIN:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --self-test) self_test=1 ;;
    --node-bin) [ $# -ge 2 ] || usage; node_bin="$2"; shift ;;
    --node-bin=*) node_bin="${1#--node-bin=}" ;;
    *) usage ;;
  esac
  shift
done
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${KVD_K8S_VENV:-$root/build/k8s-venv}"
bash "$root/deploy/python-venv.sh" "$venv" "$here/requirements.txt" || exit 2

args=(--node-bin "$node_bin")
[ "$self_test" = 1 ] && args+=(--self-test)
[ -n "${KVD_K8S_VERSION:-}" ] && args+=(--k8s-version "$KVD_K8S_VERSION")
# -I: ignore PYTHON* variables and the user's site-packages; -B: no .pyc here.
exec "$venv/bin/python" -I -B "$here/validate.py" --dir "$here" "${args[@]}"
