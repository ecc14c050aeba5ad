// The quantizer on the GPU (STYLE.md §9 host layer): validates shapes and
// returns Status around the kernels of quant_kernels.h. Output bytes are
// exactly QuantizeTensor's without entropy coding (quant.h), so a chunk
// quantized on the engine's GPU decodes on any node's CPU and back.
// Built only with KVD_WITH_CUDA.
#ifndef KVDEPOT_COMPRESS_CUDA_QUANT_CUDA_H_
#define KVDEPOT_COMPRESS_CUDA_QUANT_CUDA_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "compress/quant.h"

namespace kvd::compress {

// Quantizes bf16 [heads][tokens][dim] device tensors into
// QuantizedTensorBytes(f, group, heads, tokens, dim) bytes of device memory.
// It owns the device word the kernels flag bad input in and a pinned host
// copy of it, allocated on first use and reused, so a call costs the
// kernel, one 4-byte copy and one stream wait. One caller at a time (keep
// one per stream). Buffers must be 16-byte aligned (cudaMalloc's are).
class GpuQuantizer {
 public:
  GpuQuantizer() = default;
  ~GpuQuantizer();
  GpuQuantizer(const GpuQuantizer&) = delete;
  GpuQuantizer& operator=(const GpuQuantizer&) = delete;

  // Runs on `stream` and waits for it (the input check needs the result).
  // kInvalidArgument for shapes the kernels do not take (dim not a multiple
  // of 32 or over 1024; per-token group not a power of two <= 32), for
  // misaligned buffers and for NaN, infinite or out-of-fp16-range input.
  absl::Status Quantize(const QuantFormat& f, uint32_t group, const void* x_dev,
                        uint32_t heads, uint32_t tokens, uint32_t dim,
                        void* out_dev, cudaStream_t stream);

 private:
  uint32_t* flag_dev_ = nullptr;
  uint32_t* flag_host_ = nullptr;  // pinned
};

// The inverse into bf16 [heads][tokens][dim]; asynchronous on `stream`.
absl::Status DequantizeToBf16OnGpu(const QuantFormat& f, uint32_t group,
                                   const void* in_dev, uint32_t heads,
                                   uint32_t tokens, uint32_t dim, void* x_dev,
                                   cudaStream_t stream);

}  // namespace kvd::compress

#endif  // KVDEPOT_COMPRESS_CUDA_QUANT_CUDA_H_
