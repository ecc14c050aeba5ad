#!/usr/bin/env bash
# bench/run.sh NAME [ARGS...]: builds benchmark NAME (CMake target NAME_bench)
# and runs it with ARGS; its one JSON line is the last line printed.
# NAME=quality is the Python harness of bench/quality/: it sets up its venv
# (bench/quality/setup.sh), builds kvdepot-codec and runs run_quality.py.
#
# Environment: KVD_BENCH_BUILD_DIR (default <repo>/build-bench, Release),
# KVD_BENCH_JOBS (parallel build jobs, default: number of CPUs).
# Build output goes to stderr so stdout carries only the benchmark's output.
#
#   bench/run.sh store           # ~2-3 minutes
#   bench/run.sh store --quick   # ~30 seconds
#   bench/run.sh transfer        # ~40 seconds: data path vs ucx_perftest, Redis
#   bench/run.sh placement       # ~1-3 minutes: 10M keys on 1,000 nodes
#   bench/run.sh cluster         # ~1 minute: 3 nodes vs 1 (etcd, loopback)
#   bench/run.sh quality --quick # codec quality on a real model, ~1 minute
#                                # (+2 minutes and 5 GB for the venv, once)
#   bench/run.sh quality         # every method, 2048-token context, 20-45 min
#   bench/run.sh vllm-ttft       # vLLM TTFT: store hit vs recompute, ~5 min
#                                # (+3 minutes and 6 GB for the venv, once)
#   bench/run.sh clusterkv --quick  # ClusterKV vs eviction, 512 tokens, ~1 min
#   bench/run.sh clusterkv       # budgets 5/10/20%, 2048 tokens, ~15 min
#                                # (both use the quality venv)
set -euo pipefail

if [ $# -lt 1 ]; then
  echo "usage: $0 NAME [ARGS...]   (NAME: store, transfer, transfer_baselines, codec, codec_gpu, placement, cluster, quality, clusterkv, vllm-ttft)" >&2
  exit 2
fi
name="$1"
shift
case "$name" in
  vllm-ttft) ;;
  *[!a-z0-9_]*) echo "bad benchmark name: $name" >&2; exit 2 ;;
esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${KVD_BENCH_BUILD_DIR:-$root/build-bench}"
jobs="${KVD_BENCH_JOBS:-$(nproc)}"

if [ ! -f "$build/CMakeCache.txt" ]; then
  "$root/deploy/install-deps.sh" >&2
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >&2
fi

if [ "$name" = quality ]; then
  "$root/bench/quality/setup.sh"
  cmake --build "$build" --target kvdepot-codec -j "$jobs" >&2
  exec "${KVD_QUALITY_VENV:-$root/build/quality-venv}/bin/python" \
    "$root/bench/quality/run_quality.py" \
    --codec "$build/compress/kvdepot-codec" "$@"
fi

if [ "$name" = clusterkv ]; then
  "$root/bench/quality/setup.sh"
  venv="${KVD_QUALITY_VENV:-$root/build/quality-venv}"
  "$venv/bin/python" -m pip install --quiet --no-deps --no-build-isolation \
    --disable-pip-version-check "$root/engine_adapters" >&2
  cmake --build "$build" --target kvdepot-node -j "$jobs" >&2
  exec "$venv/bin/python" "$root/bench/quality/clusterkv.py" \
    --node-bin "$build/store/server/kvdepot-node" "$@"
fi

if [ "$name" = vllm-ttft ]; then
  venv="$root/build/vllm-venv"
  bash "$root/deploy/python-venv.sh" "$venv" "$root/engine_adapters/requirements-vllm.txt"
  "$venv/bin/python" -m pip install --quiet --no-deps --no-build-isolation \
    --disable-pip-version-check "$root/engine_adapters" >&2
  cmake --build "$build" --target kvdepot-node -j "$jobs" >&2
  exec "$venv/bin/python" "$root/bench/vllm_ttft.py" \
    --node-bin "$build/store/server/kvdepot-node" "$@"
fi

cmake --build "$build" --target "${name}_bench" -j "$jobs" >&2

exec "$build/bench/${name}_bench" "$@"
