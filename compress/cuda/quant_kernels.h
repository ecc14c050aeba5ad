// CUDA kernels of the quantizer (quant.h), framework-free (STYLE.md §9):
// plain structs in, cudaError_t out, C++17 for nvcc. They write exactly the
// bytes QuantizeTensor writes without entropy coding (fp16 parameters, then
// packed codes) and decode them the way DequantizeTensor does, with the
// same float operations in the same order and no contraction into FMAs, so
// the CPU oracle and the GPU agree bit for bit.
#ifndef KVDEPOT_COMPRESS_CUDA_QUANT_KERNELS_H_
#define KVDEPOT_COMPRESS_CUDA_QUANT_KERNELS_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace kvd::compress::cuda {

enum : uint32_t { kModePerChannel = 0, kModePerToken = 1, kModeFp8 = 2 };

struct QuantKernelArgs {
  uint32_t mode = kModePerChannel;
  uint32_t bits = 4;  // 8, 4, 2 (8 for fp8)
  uint32_t group =
      32;              // tokens per group (per channel) or channels (per token)
  uint32_t heads = 0;  // tensors [heads][tokens][dim], any batch of heads
  uint32_t tokens = 0;
  uint32_t dim = 0;         // a multiple of 32, at most 1024
  size_t codes_offset = 0;  // where the packed codes start (after params)
};

// x: bf16 [heads][tokens][dim] on the device; out: codes_offset + packed
// code bytes. Sets *error_flag (device memory) to nonzero when an input is
// NaN, infinite or outside the fp16 range of the scales.
cudaError_t LaunchQuantize(const QuantKernelArgs& args, const uint16_t* x,
                           uint8_t* out, uint32_t* error_flag,
                           cudaStream_t stream);

// The inverse, into bf16 [heads][tokens][dim].
cudaError_t LaunchDequantize(const QuantKernelArgs& args, const uint8_t* in,
                             uint16_t* x, cudaStream_t stream);

}  // namespace kvd::compress::cuda

#endif  // KVDEPOT_COMPRESS_CUDA_QUANT_KERNELS_H_
