#!/usr/bin/env bash
# deploy/gpu-bundle.sh [OUT_DIR]: builds the GPU tests and codec_gpu_bench
# (CUDA on, Release) and copies them, stripped, into OUT_DIR (default .gpu)
# with every shared library they load beyond glibc, libstdc++, the CUDA
# driver and NCCL, plus OUT_DIR/run.sh, which runs them all on a machine
# with a GPU but none of our build dependencies (NCCL is taken from there).
# Keep OUT_DIR out of git (e.g. in .git/info/exclude).
#
# Environment: KVD_GPU_BUILD_DIR (default <repo>/build/gpu).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(realpath -m "${1:-$root/.gpu}")"
build="${KVD_GPU_BUILD_DIR:-$root/build/gpu}"
tests=(compress/cuda/quant_cuda_test transfer/layout/chunk_gather_cuda_test
       store/engine/memory/gpu_tier_test transfer/nccl/nccl_comm_test
       store/engine/store_engine_test)

if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DKVD_WITH_CUDA=ON
fi
cmake --build "$build" --target codec_gpu_bench "${tests[@]##*/}"

rm -rf "$out" && mkdir -p "$out/bin" "$out/lib"
bins=()
for t in "${tests[@]}" bench/codec_gpu_bench; do
  strip --strip-debug -o "$out/bin/${t##*/}" "$build/$t"
  bins+=("$build/$t")
done
ldd "${bins[@]}" | awk '/=>/ {print $3}' | sort -u |
  grep -Ev '/(libc|libm|libdl|libpthread|librt|libgcc_s|libstdc\+\+|libnccl|libcuda)\.so' |
  xargs -r -I{} cp -L {} "$out/lib/"

cat > "$out/run.sh" <<'RUN'
#!/usr/bin/env bash
# Runs every carried GPU test and the kernel benchmark; logs go to $OUT
# (or ./logs).
cd "$(dirname "$0")"
logs="${OUT:-$PWD/logs}" && mkdir -p "$logs"
nccl="$(dirname "$(find / -name libnccl.so.2 -not -path '/proc/*' 2>/dev/null | head -1)")"
export LD_LIBRARY_PATH="$PWD/lib:$nccl"
for t in bin/*_test; do
  timeout 300 "$t" > "$logs/${t#bin/}.log" 2>&1
  echo "${t#bin/} rc=$? $(grep -E '^\[  (PASSED|FAILED) ' "$logs/${t#bin/}.log" | tr '\n' ' ')"
done
bin/codec_gpu_bench | tee "$logs/codec_gpu.json"
RUN
chmod +x "$out/run.sh"
du -sh "$out"
