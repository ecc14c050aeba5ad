#include "compress/cuda/quant_cuda.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "compress/cuda/quant_kernels.h"
#include "core/cuda_status.h"
#include "core/status.h"

namespace kvd::compress {
namespace {

absl::StatusOr<cuda::QuantKernelArgs> KernelArgs(const QuantFormat& f,
                                                 uint32_t group, uint32_t heads,
                                                 uint32_t tokens,
                                                 uint32_t dim) {
  if (dim == 0 || dim % 32 != 0 || dim > 1024) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GPU quant: head_dim=", dim, " is not a multiple of 32 in [32, 1024]"));
  }
  if (uint64_t{heads} * tokens > (1u << 31) - 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("GPU quant: heads*tokens=", uint64_t{heads} * tokens,
                     " exceeds 2^31-1"));
  }
  cuda::QuantKernelArgs a;
  a.bits = f.bits;
  a.heads = heads;
  a.tokens = tokens;
  a.dim = dim;
  a.group = group;
  switch (f.mode) {
    case QuantMode::kPerChannel:
      a.mode = cuda::kModePerChannel;
      if (group == 0) return absl::InvalidArgumentError("GPU quant: g=0");
      break;
    case QuantMode::kPerToken:
      a.mode = cuda::kModePerToken;
      a.group = std::min(group, dim);
      if (a.group > 32 || (a.group & (a.group - 1)) != 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "GPU quant: per-token g=", group,
            " is not a power of two <= 32 (use the CPU quantizer)"));
      }
      break;
    case QuantMode::kFp8:
      a.mode = cuda::kModeFp8;
      break;
  }
  a.codes_offset = QuantParamBytes(f, group, heads, tokens, dim);
  return a;
}

// The kernels move bf16 and the parameters in 16-byte accesses.
absl::Status CheckAligned(const void* x_dev, const void* q_dev) {
  for (const void* p : {x_dev, q_dev}) {
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "GPU quant: buffer at ", absl::Hex(reinterpret_cast<uintptr_t>(p)),
          " is not 16-byte aligned"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

GpuQuantizer::~GpuQuantizer() {
  // Errors here cannot be reported and leave nothing to undo.
  if (flag_dev_ != nullptr) (void)cudaFree(flag_dev_);
  if (flag_host_ != nullptr) (void)cudaFreeHost(flag_host_);
}

absl::Status GpuQuantizer::Quantize(const QuantFormat& f, uint32_t group,
                                    const void* x_dev, uint32_t heads,
                                    uint32_t tokens, uint32_t dim,
                                    void* out_dev, cudaStream_t stream) {
  KVD_ASSIGN_OR_RETURN(cuda::QuantKernelArgs a,
                       KernelArgs(f, group, heads, tokens, dim));
  KVD_RETURN_IF_ERROR(CheckAligned(x_dev, out_dev));
  if (flag_dev_ == nullptr) {
    void* dev = nullptr;
    KVD_RETURN_IF_ERROR(CudaToStatus(cudaMalloc(&dev, sizeof(uint32_t)),
                                     "cudaMalloc(quant error flag)"));
    flag_dev_ = static_cast<uint32_t*>(dev);
  }
  if (flag_host_ == nullptr) {
    void* host = nullptr;
    KVD_RETURN_IF_ERROR(CudaToStatus(cudaMallocHost(&host, sizeof(uint32_t)),
                                     "cudaMallocHost(quant error flag)"));
    flag_host_ = static_cast<uint32_t*>(host);
  }
  KVD_RETURN_IF_ERROR(
      CudaToStatus(cudaMemsetAsync(flag_dev_, 0, sizeof(uint32_t), stream),
                   "cudaMemsetAsync(quant error flag)"));
  KVD_RETURN_IF_ERROR(CudaToStatus(
      cuda::LaunchQuantize(a, static_cast<const uint16_t*>(x_dev),
                           static_cast<uint8_t*>(out_dev), flag_dev_, stream),
      "quantize kernel"));
  KVD_RETURN_IF_ERROR(
      CudaToStatus(cudaMemcpyAsync(flag_host_, flag_dev_, sizeof(uint32_t),
                                   cudaMemcpyDeviceToHost, stream),
                   "cudaMemcpyAsync(quant error flag)"));
  KVD_RETURN_IF_ERROR(CudaToStatus(cudaStreamSynchronize(stream),
                                   "cudaStreamSynchronize(quantize)"));
  if (*flag_host_ != 0) {
    return absl::InvalidArgumentError(
        "GPU quant: input holds a NaN, infinite or beyond-fp16 value");
  }
  return absl::OkStatus();
}

absl::Status DequantizeToBf16OnGpu(const QuantFormat& f, uint32_t group,
                                   const void* in_dev, uint32_t heads,
                                   uint32_t tokens, uint32_t dim, void* x_dev,
                                   cudaStream_t stream) {
  KVD_ASSIGN_OR_RETURN(cuda::QuantKernelArgs a,
                       KernelArgs(f, group, heads, tokens, dim));
  KVD_RETURN_IF_ERROR(CheckAligned(x_dev, in_dev));
  return CudaToStatus(
      cuda::LaunchDequantize(a, static_cast<const uint8_t*>(in_dev),
                             static_cast<uint16_t*>(x_dev), stream),
      "dequantize kernel");
}

}  // namespace kvd::compress
