#!/usr/bin/env bash
# Runs every kvdepot test on a fresh machine: installs the Debian
# dependencies, checks formatting, then builds and tests twice:
#   build/release  gcc, RelWithDebInfo, warnings as errors: unit, integration,
#                  crash, node and cluster tests (real etcd and node
#                  processes); the deployment files checked offline
#                  (deploy/k8s/validate.sh, deploy/systemd/verify.sh); the
#                  Python package (pip install ./engine_adapters into a venv
#                  with vLLM's CPU build from PyPI; its pytest tests against
#                  a real node and inside real vLLM; the SGLang backend's
#                  contract test with sglang from PyPI); then
#                  the compression quality harness
#                  on the real model (bench/quality: its pytest checks and a
#                  --quick run) and the ClusterKV evaluation (--quick), in a
#                  venv from PyPI (bench/quality/setup.sh)
#   build/asan     clang, ASan + UBSan, with the libFuzzer targets, which run
#                  for KVD_FUZZ_SECONDS each under CTest
# Set KVD_SKIP_ASAN=1 to run only the first build, KVD_SKIP_QUALITY=1 to skip
# the quality harness and the ClusterKV evaluation (faster local iteration).
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-deps.sh
JOBS="${KVD_JOBS:-$(nproc)}"
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/kvdepot-ccache}"

echo "== clang-format check"
git ls-files '*.h' '*.cc' '*.cu' '*.cuh' | xargs clang-format --dry-run --Werror

echo "== release build (gcc)"
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVD_WERROR=ON >/dev/null
cmake --build build/release -j "$JOBS"
echo "== release tests"
(cd build/release && ctest --output-on-failure -j "$JOBS" --timeout 600)

echo "== deployment files (offline): Kubernetes manifests, systemd units"
KVD_NODE_BIN="$PWD/build/release/store/server/kvdepot-node" bash deploy/k8s/validate.sh
KVD_NODE_BIN="$PWD/build/release/store/server/kvdepot-node" bash deploy/k8s/validate.sh --self-test
bash deploy/systemd/verify.sh

echo "== Python package (engine_adapters): pip install, its tests on a real node and inside real vLLM"
bash deploy/python-venv.sh build/vllm-venv engine_adapters/requirements-vllm.txt
build/vllm-venv/bin/python -m pip install --quiet --no-deps --no-build-isolation \
  --disable-pip-version-check ./engine_adapters
KVD_NODE_BIN="$PWD/build/release/store/server/kvdepot-node" \
  build/vllm-venv/bin/python -m pytest -q -p no:cacheprovider engine_adapters/tests \
  --ignore=engine_adapters/tests/sglang
echo "== SGLang backend: contract test against SGLang's HiCacheStorage (sglang from PyPI)"
sglang_packages=build/sglang-packages
if ! cmp -s engine_adapters/requirements-sglang.txt "$sglang_packages/.requirements"; then
  rm -rf "$sglang_packages"
  build/vllm-venv/bin/python -m pip install --quiet --no-deps --disable-pip-version-check \
    --target "$sglang_packages" -r engine_adapters/requirements-sglang.txt
  cp engine_adapters/requirements-sglang.txt "$sglang_packages/.requirements"
fi
KVD_NODE_BIN="$PWD/build/release/store/server/kvdepot-node" KVD_REQUIRE_SGLANG=1 \
  PYTHONPATH="$PWD/$sglang_packages" TORCH_EXTENSIONS_DIR="$PWD/build/torch-extensions" \
  build/vllm-venv/bin/python -m pytest -q -p no:cacheprovider engine_adapters/tests/sglang

if [ "${KVD_SKIP_QUALITY:-0}" != "1" ]; then
  echo "== compression quality harness (SmolLM2-135M, short text)"
  bash bench/quality/setup.sh
  export KVD_CODEC="$PWD/build/release/compress/kvdepot-codec"
  build/quality-venv/bin/python -m pytest -q -p no:cacheprovider bench/quality
  build/quality-venv/bin/python bench/quality/run_quality.py --quick --codec "$KVD_CODEC"
  echo "== ClusterKV evaluation (SmolLM2-135M, short text)"
  build/quality-venv/bin/python -m pip install --quiet --no-deps --no-build-isolation \
    --disable-pip-version-check ./engine_adapters
  build/quality-venv/bin/python bench/quality/clusterkv.py --quick \
    --node-bin "$PWD/build/release/store/server/kvdepot-node"
fi

if [ "${KVD_SKIP_ASAN:-0}" != "1" ]; then
  echo "== ASan+UBSan build (clang) with fuzzers"
  CC=clang CXX=clang++ cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=Debug \
    -DKVD_SANITIZE=address,undefined -DKVD_BUILD_FUZZERS=ON -DKVD_WITH_CUDA=OFF -DKVD_WERROR=ON \
    -DKVD_FUZZ_SECONDS="${KVD_FUZZ_SECONDS:-30}" >/dev/null
  cmake --build build/asan -j "$JOBS"
  echo "== ASan+UBSan tests and fuzz targets"
  # The Debian libraries we link are not instrumented, so container-overflow
  # annotations would be one-sided; everything else is on.
  export ASAN_OPTIONS="detect_container_overflow=0:detect_leaks=1:abort_on_error=1"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  (cd build/asan && ctest --output-on-failure -j "$JOBS" --timeout 900)
fi
