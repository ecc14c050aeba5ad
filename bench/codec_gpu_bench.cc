// codec_gpu_bench: the quantizer's CUDA kernels against a device-to-device
// copy of the same bf16 bytes in the same run (STYLE.md §13). Bandwidth
// counts bytes read plus bytes written: a copy moves 2x its size; quantize
// reads the bf16 tensor and writes codes and scales; dequantize the reverse.
// The target is >= 60% of the copy's bandwidth. Without a CUDA
// device it prints a JSON line saying so and exits 0.
//
// Flags: --quick (fewer iterations).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

#include "compress/cuda/quant_cuda.h"
#include "core/cuda_status.h"
#include "nlohmann/json.hpp"

namespace kvd::compress {
namespace {

// SmolLM2-135M: 30 layers x (K, V) x 3 KV heads, 64 chunks of 256 tokens.
constexpr uint32_t kHeads = 30 * 2 * 3 * 64, kTokens = 256, kDim = 64;

void Check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::cerr << what << ": " << cudaGetErrorString(e) << "\n";
    std::exit(1);
  }
}

template <typename F>
double Seconds(int iters, F&& f) {
  cudaEvent_t start, stop;
  Check(cudaEventCreate(&start), "event");
  Check(cudaEventCreate(&stop), "event");
  f();  // warm-up
  Check(cudaEventRecord(start), "record");
  for (int i = 0; i < iters; ++i) f();
  Check(cudaEventRecord(stop), "record");
  Check(cudaEventSynchronize(stop), "sync");
  float ms = 0;
  Check(cudaEventElapsedTime(&ms, start, stop), "elapsed");
  return ms / 1e3 / iters;
}

int Main(int argc, char** argv) {
  const bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  nlohmann::ordered_json j;
  j["bench"] = "codec_gpu";
  if (CudaDeviceCount() == 0) {
    j["params"] = nlohmann::ordered_json::object();
    j["metrics"] = {{"skipped", "no CUDA device"}};
    std::cout << j.dump() << std::endl;
    return 0;
  }
  const int iters = quick ? 5 : 20;
  const size_t elems = size_t{kHeads} * kTokens * kDim, bytes = elems * 2;
  void *x, *copy, *q;
  Check(cudaMalloc(&x, bytes), "malloc");
  Check(cudaMalloc(&copy, bytes), "malloc");
  Check(cudaMemset(x, 0x3c, bytes), "memset");  // bf16 0x3c3c ~ 0.0115
  const double copy_s = Seconds(iters, [&] {
    Check(cudaMemcpyAsync(copy, x, bytes, cudaMemcpyDeviceToDevice), "copy");
  });
  const double copy_gbps = 2.0 * bytes / copy_s / 1e9;
  nlohmann::ordered_json formats = nlohmann::ordered_json::object();
  GpuQuantizer quantizer;
  double headline_ratio = 0, worst_ratio = 1e9;
  for (const QuantFormat f : {QuantFormat{QuantMode::kPerChannel, 4},
                              QuantFormat{QuantMode::kPerToken, 4},
                              QuantFormat{QuantMode::kPerChannel, 2},
                              QuantFormat{QuantMode::kPerToken, 8},
                              QuantFormat{QuantMode::kFp8, 8}}) {
    const size_t qbytes = QuantizedTensorBytes(f, 32, kHeads, kTokens, kDim);
    Check(cudaMalloc(&q, qbytes), "malloc");
    const double enc_s = Seconds(iters, [&] {
      const absl::Status s =
          quantizer.Quantize(f, 32, x, kHeads, kTokens, kDim, q, nullptr);
      if (!s.ok()) {
        std::cerr << s << "\n";
        std::exit(1);
      }
    });
    const double dec_s = Seconds(iters, [&] {
      if (!DequantizeToBf16OnGpu(f, 32, q, kHeads, kTokens, kDim, copy, nullptr)
               .ok())
        std::exit(1);
    });
    const double enc_gbps = (bytes + qbytes) / enc_s / 1e9,
                 dec_gbps = (bytes + qbytes) / dec_s / 1e9;
    formats[f.Name()] = {{"quantize_gbps", enc_gbps},
                         {"dequantize_gbps", dec_gbps},
                         {"quantize_vs_copy", enc_gbps / copy_gbps},
                         {"dequantize_vs_copy", dec_gbps / copy_gbps}};
    if (f.mode == QuantMode::kPerChannel && f.bits == 4)
      headline_ratio = enc_gbps / copy_gbps;
    worst_ratio =
        std::min({worst_ratio, enc_gbps / copy_gbps, dec_gbps / copy_gbps});
    Check(cudaFree(q), "free");
  }
  cudaDeviceProp prop{};
  Check(cudaGetDeviceProperties(&prop, 0), "props");
  j["params"] = {{"device", prop.name}, {"heads", kHeads},
                 {"tokens", kTokens},   {"head_dim", kDim},
                 {"group", 32},         {"bf16_bytes", bytes},
                 {"iters", iters}};
  j["metrics"] = {{"formats", formats}};
  j["baseline"] = {{"d2d_copy_gbps", copy_gbps}};
  j["ratio"] = {{"quant_int4_channel_vs_copy", headline_ratio},
                {"worst_kernel_vs_copy", worst_ratio}};
  std::cout << j.dump() << std::endl;
  return 0;
}

}  // namespace
}  // namespace kvd::compress

int main(int argc, char** argv) { return kvd::compress::Main(argc, argv); }
