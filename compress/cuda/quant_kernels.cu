#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "compress/cuda/quant_kernels.h"

namespace kvd::compress::cuda {
namespace {

constexpr float kFp16Max = 65504.0f;
constexpr float kFp8Max = 448.0f;
constexpr unsigned kFullMask = 0xffffffffu;

__device__ float Bf16(uint16_t b) { return __uint_as_float(uint32_t{b} << 16); }

__device__ uint16_t ToBf16(float f) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(f));
}

__device__ bool NonFinite(float v) {
  return (__float_as_uint(v) & 0x7f800000u) == 0x7f800000u;
}

// min/scale as fp16 and the float values the codes use (quant.cc MakeAffine).
struct Affine {
  uint16_t min_h, scale_h;
  float min, inv;
};
__device__ Affine MakeAffine(float mn, float mx, float maxq) {
  Affine a;
  a.min_h = __half_as_ushort(__float2half_rn(mn));
  a.min = __half2float(__ushort_as_half(a.min_h));
  a.scale_h =
      __half_as_ushort(__float2half_rn(__fdiv_rn(__fsub_rn(mx, a.min), maxq)));
  const float scale = __half2float(__ushort_as_half(a.scale_h));
  a.inv = scale > 0.0f ? __fdiv_rn(1.0f, scale) : 0.0f;
  return a;
}

__device__ uint32_t Code(float x, float min, float inv, float maxq) {
  float q = __fadd_rn(__fmul_rn(__fsub_rn(x, min), inv), 0.5f);
  q = q < 0.0f ? 0.0f : q;
  q = q > maxq ? maxq : q;
  return static_cast<uint32_t>(static_cast<int>(q));
}

// Packs the codes of 8/bits adjacent lanes into one byte, written by the
// first of them (element index e = row * dim + lane, dim a multiple of 32).
__device__ void StoreCode(uint32_t code, uint32_t bits, size_t e,
                          uint8_t* codes) {
  if (bits == 8) {
    codes[e] = static_cast<uint8_t>(code);
    return;
  }
  const uint32_t per = 8 / bits;
  uint32_t packed = code << ((threadIdx.x % per) * bits);
  for (uint32_t off = 1; off < per; off <<= 1)
    packed |= __shfl_xor_sync(kFullMask, packed, off);
  if (threadIdx.x % per == 0) codes[e / per] = static_cast<uint8_t>(packed);
}

__device__ uint32_t LoadCode(const uint8_t* codes, uint32_t bits, size_t e) {
  if (bits == 8) return codes[e];
  const uint32_t per = 8 / bits;
  return (codes[e / per] >> ((e % per) * bits)) & ((1u << bits) - 1);
}

// One block per (head, token group), one thread per channel.
__global__ void QuantizePerChannel(QuantKernelArgs a, const uint16_t* x,
                                   uint8_t* out, uint32_t* error_flag) {
  const uint32_t groups = (a.tokens + a.group - 1) / a.group;
  const uint32_t h = blockIdx.x / groups, g = blockIdx.x % groups,
                 c = threadIdx.x;
  const uint32_t t0 = g * a.group, rows = min(a.group, a.tokens - t0);
  const size_t base = (size_t{h} * a.tokens + t0) * a.dim + c;
  const float maxq = static_cast<float>((1u << a.bits) - 1);
  float mn = Bf16(x[base]), mx = mn;
  bool bad = NonFinite(mn);
  for (uint32_t r = 1; r < rows; ++r) {
    const float v = Bf16(x[base + size_t{r} * a.dim]);
    bad |= NonFinite(v);
    mn = v < mn ? v : mn;
    mx = v > mx ? v : mx;
  }
  if (bad || mn < -kFp16Max || mx > kFp16Max) atomicOr(error_flag, 1u);
  const Affine af = MakeAffine(mn, mx, maxq);
  uint16_t* params =
      reinterpret_cast<uint16_t*>(out) + (size_t{h} * groups + g) * 2 * a.dim;
  params[c] = af.min_h;
  params[a.dim + c] = af.scale_h;
  uint8_t* codes = out + a.codes_offset;
  for (uint32_t r = 0; r < rows; ++r) {
    const size_t e = base + size_t{r} * a.dim;
    StoreCode(Code(Bf16(x[e]), af.min, af.inv, maxq), a.bits, e, codes);
  }
}

// One block per (head, token), one thread per channel; groups of a.group
// channels (a power of two <= 32) reduce with shuffles.
__global__ void QuantizePerToken(QuantKernelArgs a, const uint16_t* x,
                                 uint8_t* out, uint32_t* error_flag) {
  const size_t row = blockIdx.x;
  const uint32_t c = threadIdx.x;
  const size_t e = row * a.dim + c;
  const float maxq = static_cast<float>((1u << a.bits) - 1);
  const float v = Bf16(x[e]);
  if (NonFinite(v)) atomicOr(error_flag, 1u);
  float mn = v, mx = v;
  for (uint32_t off = a.group / 2; off > 0; off >>= 1) {
    mn = fminf(mn, __shfl_xor_sync(kFullMask, mn, off));
    mx = fmaxf(mx, __shfl_xor_sync(kFullMask, mx, off));
  }
  if (mn < -kFp16Max || mx > kFp16Max) atomicOr(error_flag, 1u);
  const Affine af = MakeAffine(mn, mx, maxq);
  if (c % a.group == 0) {
    uint16_t* params = reinterpret_cast<uint16_t*>(out) +
                       (row * (a.dim / a.group) + c / a.group) * 2;
    params[0] = af.min_h;
    params[1] = af.scale_h;
  }
  StoreCode(Code(v, af.min, af.inv, maxq), a.bits, e, out + a.codes_offset);
}

// One block per (head, token): e4m3 with one fp16 scale, amax / 448.
__global__ void QuantizeFp8(QuantKernelArgs a, const uint16_t* x, uint8_t* out,
                            uint32_t* error_flag) {
  __shared__ float warp_max[32];
  const size_t row = blockIdx.x;
  const uint32_t c = threadIdx.x;
  const float v = Bf16(x[row * a.dim + c]);
  if (NonFinite(v)) atomicOr(error_flag, 1u);
  float amax = fabsf(v);
  for (uint32_t off = 16; off > 0; off >>= 1)
    amax = fmaxf(amax, __shfl_xor_sync(kFullMask, amax, off));
  if (c % 32 == 0) warp_max[c / 32] = amax;
  __syncthreads();
  amax = 0.0f;
  for (uint32_t w = 0; w < blockDim.x / 32; ++w)
    amax = fmaxf(amax, warp_max[w]);
  if (amax > kFp16Max) atomicOr(error_flag, 1u);
  const uint16_t scale_h =
      __half_as_ushort(__float2half_rn(__fdiv_rn(amax, kFp8Max)));
  const float scale = __half2float(__ushort_as_half(scale_h));
  const float inv = scale > 0.0f ? __fdiv_rn(1.0f, scale) : 0.0f;
  if (c == 0) reinterpret_cast<uint16_t*>(out)[row] = scale_h;
  out[a.codes_offset + row * a.dim + c] =
      __nv_cvt_float_to_fp8(__fmul_rn(v, inv), __NV_SATFINITE, __NV_E4M3);
}

__global__ void DequantizePerChannel(QuantKernelArgs a, const uint8_t* in,
                                     uint16_t* x) {
  const uint32_t groups = (a.tokens + a.group - 1) / a.group;
  const uint32_t h = blockIdx.x / groups, g = blockIdx.x % groups,
                 c = threadIdx.x;
  const uint32_t t0 = g * a.group, rows = min(a.group, a.tokens - t0);
  const uint16_t* params = reinterpret_cast<const uint16_t*>(in) +
                           (size_t{h} * groups + g) * 2 * a.dim;
  const float mn = __half2float(__ushort_as_half(params[c]));
  const float scale = __half2float(__ushort_as_half(params[a.dim + c]));
  const uint8_t* codes = in + a.codes_offset;
  for (uint32_t r = 0; r < rows; ++r) {
    const size_t e = (size_t{h} * a.tokens + t0 + r) * a.dim + c;
    x[e] = ToBf16(__fadd_rn(
        __fmul_rn(static_cast<float>(LoadCode(codes, a.bits, e)), scale), mn));
  }
}

__global__ void DequantizePerToken(QuantKernelArgs a, const uint8_t* in,
                                   uint16_t* x) {
  const size_t row = blockIdx.x;
  const uint32_t c = threadIdx.x;
  const size_t e = row * a.dim + c;
  const uint16_t* p = reinterpret_cast<const uint16_t*>(in) +
                      (row * (a.dim / a.group) + c / a.group) * 2;
  const float mn = __half2float(__ushort_as_half(p[0]));
  const float scale = __half2float(__ushort_as_half(p[1]));
  x[e] = ToBf16(__fadd_rn(
      __fmul_rn(static_cast<float>(LoadCode(in + a.codes_offset, a.bits, e)),
                scale),
      mn));
}

__global__ void DequantizeFp8(QuantKernelArgs a, const uint8_t* in,
                              uint16_t* x) {
  const size_t row = blockIdx.x;
  const size_t e = row * a.dim + threadIdx.x;
  const float scale = __half2float(
      __ushort_as_half(reinterpret_cast<const uint16_t*>(in)[row]));
  const __half_raw h =
      __nv_cvt_fp8_to_halfraw(in[a.codes_offset + e], __NV_E4M3);
  x[e] = ToBf16(__fmul_rn(__half2float(__half(h)), scale));
}

}  // namespace

cudaError_t LaunchQuantize(const QuantKernelArgs& a, const uint16_t* x,
                           uint8_t* out, uint32_t* error_flag,
                           cudaStream_t stream) {
  const size_t rows = size_t{a.heads} * a.tokens;
  if (rows == 0) return cudaSuccess;
  switch (a.mode) {
    case kModePerChannel:
      QuantizePerChannel<<<a.heads*((a.tokens + a.group - 1) / a.group), a.dim,
                           0, stream>>>(a, x, out, error_flag);
      break;
    case kModePerToken:
      QuantizePerToken<<<static_cast<unsigned>(rows), a.dim, 0, stream>>>(
          a, x, out, error_flag);
      break;
    default:
      QuantizeFp8<<<static_cast<unsigned>(rows), a.dim, 0, stream>>>(
          a, x, out, error_flag);
  }
  return cudaGetLastError();
}

cudaError_t LaunchDequantize(const QuantKernelArgs& a, const uint8_t* in,
                             uint16_t* x, cudaStream_t stream) {
  const size_t rows = size_t{a.heads} * a.tokens;
  if (rows == 0) return cudaSuccess;
  switch (a.mode) {
    case kModePerChannel:
      DequantizePerChannel<<<a.heads*((a.tokens + a.group - 1) / a.group),
                             a.dim, 0, stream>>>(a, in, x);
      break;
    case kModePerToken:
      DequantizePerToken<<<static_cast<unsigned>(rows), a.dim, 0, stream>>>(
          a, in, x);
      break;
    default:
      DequantizeFp8<<<static_cast<unsigned>(rows), a.dim, 0, stream>>>(a, in,
                                                                       x);
  }
  return cudaGetLastError();
}

}  // namespace kvd::compress::cuda
