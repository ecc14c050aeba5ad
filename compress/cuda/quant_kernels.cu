#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <type_traits>

#include "compress/cuda/quant_kernels.h"

namespace kvd::compress::cuda {
namespace {

constexpr float kFp16Max = 65504.0f;
constexpr float kFp8Max = 448.0f;
constexpr unsigned kFullMask = 0xffffffffu;

__device__ uint16_t ToBf16(float f) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(f));
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

// 2^23: adding it to a float in [0, 2^22) leaves the integer part in the
// low mantissa bits, which is cheaper than the conversion instructions.
constexpr float kMagic = 8388608.0f;
constexpr uint32_t kMagicBits = 0x4b000000u;

// The CPU's round-half-up, clamp and truncation (quant.cc Code), as a whole
// float; the truncation is an add toward zero of 2^23.
__device__ float Code(float x, float min, float inv, float maxq) {
  float q = __fadd_rn(__fmul_rn(__fsub_rn(x, min), inv), 0.5f);
  q = q < 0.0f ? 0.0f : q;
  q = q > maxq ? maxq : q;
  return __fsub_rn(__fadd_rz(q, kMagic), kMagic);
}

__device__ float Dequant(uint32_t code, float scale, float min) {
  const float c = __fsub_rn(__uint_as_float(kMagicBits | code), kMagic);
  return __fadd_rn(__fmul_rn(c, scale), min);
}

__device__ float Half(uint16_t h) { return __half2float(__ushort_as_half(h)); }

// Every thread owns kVec adjacent elements of one row: one 16-byte load of
// bf16, and kVec codes of kBits bits packed into kBits bytes (code i at bit
// kBits*i, little-endian: the CPU's packing order).
constexpr uint32_t kVec = 8;
constexpr uint32_t kBlock = 256;

struct Vec {
  float v[kVec];
};

__device__ Vec Widen(const uint4 raw) {
  const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
  Vec out;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    out.v[2 * i] = __uint_as_float(w[i] << 16);
    out.v[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
  return out;
}

__device__ uint4 Load16(const void* p) { return *static_cast<const uint4*>(p); }

// The CPU's input check on the FMA pipe, which the quantizers leave idle:
// x * 0 is NaN for a NaN or infinite x and zero otherwise, so a sum of
// them is zero exactly when all inputs are finite; the extremes then give
// the fp16 range of the scales.
__device__ float Probe(const Vec& v, float acc) {
#pragma unroll
  for (int i = 0; i < kVec; ++i) acc = __fmaf_rn(v.v[i], 0.0f, acc);
  return acc;
}

__device__ bool Bad(float probe, float mn, float mx) {
  return !(probe == 0.0f) || mn < -kFp16Max || mx > kFp16Max;
}

__device__ Vec LoadHalf8(const uint16_t* p) {
  const uint4 raw = Load16(p);
  const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
  Vec out;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    out.v[2 * i] = Half(static_cast<uint16_t>(w[i]));
    out.v[2 * i + 1] = Half(static_cast<uint16_t>(w[i] >> 16));
  }
  return out;
}

__device__ void StoreBf16(const Vec& x, uint16_t* p) {
  uint32_t w[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    w[i] = ToBf16(x.v[2 * i]) | (uint32_t{ToBf16(x.v[2 * i + 1])} << 16);
  }
  *reinterpret_cast<uint4*>(p) = make_uint4(w[0], w[1], w[2], w[3]);
}

// kBytes (2, 4 or 8) little-endian bytes of v at p, in the widest accesses
// p's alignment allows: the codes follow the parameters, so their start is
// only 2-byte aligned in general. The branch is the same for the grid.
template <uint32_t kBytes>
__device__ void StoreBytes(uint8_t* p, uint64_t v) {
  const uint32_t align = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(p));
  if (kBytes == 8 && align % 8 == 0) {
    *reinterpret_cast<uint64_t*>(p) = v;
  } else if (kBytes >= 4 && align % 4 == 0) {
    for (uint32_t i = 0; i < kBytes; i += 4)
      *reinterpret_cast<uint32_t*>(p + i) = static_cast<uint32_t>(v >> 8 * i);
  } else {
    for (uint32_t i = 0; i < kBytes; i += 2)
      *reinterpret_cast<uint16_t*>(p + i) = static_cast<uint16_t>(v >> 8 * i);
  }
}

template <uint32_t kBytes>
__device__ uint64_t LoadBytes(const uint8_t* p) {
  const uint32_t align = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(p));
  if (kBytes == 8 && align % 8 == 0)
    return *reinterpret_cast<const uint64_t*>(p);
  uint64_t v = 0;
  if (kBytes >= 4 && align % 4 == 0) {
    for (uint32_t i = 0; i < kBytes; i += 4)
      v |= uint64_t{*reinterpret_cast<const uint32_t*>(p + i)} << 8 * i;
  } else {
    for (uint32_t i = 0; i < kBytes; i += 2)
      v |= uint64_t{*reinterpret_cast<const uint16_t*>(p + i)} << 8 * i;
  }
  return v;
}

// kVec codes of kBits bits: 32 bits unless they are bytes.
template <uint32_t kBits>
using Packed = std::conditional_t<kBits == 8, uint64_t, uint32_t>;

// Packs kVec codes (whole floats below 2^kBits) 16 bits at a time with
// multiply-adds, exact in float, whose bits a 2^23 add exposes; byte
// permutes join the halves. This keeps the integer pipe, the quantizers'
// bottleneck, free.
template <uint32_t kBits>
__device__ Packed<kBits> Pack(const float (&code)[kVec]) {
  constexpr int kPerHalf = 16 / kBits, kHalves = kVec / kPerHalf;
  uint32_t half[kHalves];
#pragma unroll
  for (int h = 0; h < kHalves; ++h) {
    float acc = code[h * kPerHalf + kPerHalf - 1];
#pragma unroll
    for (int i = kPerHalf - 2; i >= 0; --i)
      acc = __fmaf_rn(acc, float{1u << kBits}, code[h * kPerHalf + i]);
    half[h] = __float_as_uint(__fadd_rn(acc, kMagic));
  }
  if constexpr (kHalves == 1) {
    return half[0] & 0xffffu;
  } else if constexpr (kHalves == 2) {
    return __byte_perm(half[0], half[1], 0x5410);
  } else {
    return __byte_perm(half[0], half[1], 0x5410) |
           uint64_t{__byte_perm(half[2], half[3], 0x5410)} << 32;
  }
}

template <uint32_t kBits>
__device__ uint32_t CodeAt(Packed<kBits> packed, int i) {
  return static_cast<uint32_t>(packed >> (kBits * i)) & ((1u << kBits) - 1);
}

// The packed codes of element e (a multiple of 8) of a quantized tensor.
template <uint32_t kBits, typename Byte>
__device__ Byte* CodesOf(Byte* q, const QuantKernelArgs& a, size_t e) {
  return q + a.codes_offset + e * kBits / 8;
}

// Threads per row rounded up to a power of two, so rows never share a
// shuffle segment (dim / kVec is 4..128).
__device__ __host__ uint32_t PaddedLanes(uint32_t dim) {
  uint32_t lanes = 1;
  while (lanes < dim / kVec) lanes <<= 1;
  return lanes;
}

// Per token: thread t owns elements [8t, 8t+8) of the flattened tensor; a
// group of kGroup channels (a power of two <= 32 dividing dim) lies within
// one thread (kGroup <= 8) or spans kGroup/8 adjacent lanes reduced with
// shuffles.
template <uint32_t kBits, uint32_t kGroup>
__global__ void QuantizePerToken(QuantKernelArgs a, const uint16_t* x,
                                 uint8_t* out, uint32_t* error_flag) {
  constexpr uint32_t kInThread = kGroup < kVec ? kGroup : kVec;
  constexpr uint32_t kGroups = kVec / kInThread, kLanes = kGroup / kInThread;
  constexpr float kMaxQ = (1u << kBits) - 1;
  const size_t t = size_t{blockIdx.x} * blockDim.x + threadIdx.x;
  const bool active = t < size_t{a.heads} * a.tokens * (a.dim / kVec);
  const size_t e = t * kVec;
  const Vec x8 = active ? Widen(Load16(x + e)) : Vec{};
  float mn[kGroups], mx[kGroups];
#pragma unroll
  for (uint32_t s = 0; s < kGroups; ++s) {
    mn[s] = mx[s] = x8.v[s * kInThread];
#pragma unroll
    for (uint32_t i = 1; i < kInThread; ++i) {
      mn[s] = fminf(mn[s], x8.v[s * kInThread + i]);
      mx[s] = fmaxf(mx[s], x8.v[s * kInThread + i]);
    }
  }
#pragma unroll
  for (uint32_t off = 1; off < kLanes; off <<= 1) {
    mn[0] = fminf(mn[0], __shfl_xor_sync(kFullMask, mn[0], off));
    mx[0] = fmaxf(mx[0], __shfl_xor_sync(kFullMask, mx[0], off));
  }
  if (!active) return;
  uint32_t* params = reinterpret_cast<uint32_t*>(out) + e / kGroup;
  const float probe = Probe(x8, 0.0f);
  float code[kVec];
#pragma unroll
  for (uint32_t s = 0; s < kGroups; ++s) {
    if (Bad(probe, mn[s], mx[s])) atomicOr(error_flag, 1u);
    const Affine af = MakeAffine(mn[s], mx[s], kMaxQ);
    if (kLanes == 1 || t % kLanes == 0)
      params[s] = af.min_h | (uint32_t{af.scale_h} << 16);
#pragma unroll
    for (uint32_t i = 0; i < kInThread; ++i) {
      code[s * kInThread + i] =
          Code(x8.v[s * kInThread + i], af.min, af.inv, kMaxQ);
    }
  }
  StoreBytes<kBits>(CodesOf<kBits>(out, a, e), Pack<kBits>(code));
}

template <uint32_t kBits>
__global__ void DequantizePerToken(QuantKernelArgs a, const uint8_t* in,
                                   uint16_t* x) {
  const size_t t = size_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (t >= size_t{a.heads} * a.tokens * (a.dim / kVec)) return;
  const size_t e = t * kVec;
  const uint32_t* params = reinterpret_cast<const uint32_t*>(in);
  const uint32_t log2g = __ffs(static_cast<int>(a.group)) - 1;
  const Packed<kBits> packed =
      static_cast<Packed<kBits>>(LoadBytes<kBits>(CodesOf<kBits>(in, a, e)));
  Vec out;
  float mn = 0.0f, scale = 0.0f;
#pragma unroll
  for (int i = 0; i < kVec; ++i) {
    if ((i & (a.group - 1)) == 0) {
      const uint32_t p = params[(e + i) >> log2g];
      mn = Half(static_cast<uint16_t>(p));
      scale = Half(static_cast<uint16_t>(p >> 16));
    }
    out.v[i] = Dequant(CodeAt<kBits>(packed, i), scale, mn);
  }
  StoreBf16(out, x + e);
}

// fp8 e4m3 with one fp16 scale per row, amax / 448. A row is dim/8 lanes of
// a power-of-two segment; rows over 32 lanes meet in shared memory.
struct RowLane {
  size_t row, e;  // e: the thread's first element
  uint32_t lanes, j;
  bool active;
};

__device__ RowLane RowLaneOf(const QuantKernelArgs& a) {
  RowLane r;
  r.lanes = PaddedLanes(a.dim);
  const uint32_t log2 = __ffs(static_cast<int>(r.lanes)) - 1;
  r.row = size_t{blockIdx.x} * (kBlock >> log2) + (threadIdx.x >> log2);
  r.j = threadIdx.x & (r.lanes - 1);
  r.active = r.row < size_t{a.heads} * a.tokens && r.j < a.dim / kVec;
  r.e = r.row * a.dim + r.j * kVec;
  return r;
}

__global__ void QuantizeFp8(QuantKernelArgs a, const uint16_t* x, uint8_t* out,
                            uint32_t* error_flag) {
  __shared__ float warp_max[kBlock / 32];
  const RowLane rl = RowLaneOf(a);
  const uint32_t lanes = rl.lanes, j = rl.j;
  const bool active = rl.active;
  const size_t row = rl.row, e = rl.e;
  const Vec x8 = active ? Widen(Load16(x + e)) : Vec{};
  float amax = 0.0f;
#pragma unroll
  for (int i = 0; i < kVec; ++i) amax = fmaxf(amax, fabsf(x8.v[i]));
  for (uint32_t off = 1; off < min(lanes, 32u); off <<= 1)
    amax = fmaxf(amax, __shfl_xor_sync(kFullMask, amax, off));
  if (lanes > 32) {
    if (threadIdx.x % 32 == 0) warp_max[threadIdx.x / 32] = amax;
    __syncthreads();
    const uint32_t first = threadIdx.x / lanes * (lanes / 32);
    for (uint32_t w = 0; w < lanes / 32; ++w)
      amax = fmaxf(amax, warp_max[first + w]);
  }
  if (!active) return;
  if (Bad(Probe(x8, 0.0f), -amax, amax)) atomicOr(error_flag, 1u);
  const uint16_t scale_h =
      __half_as_ushort(__float2half_rn(__fdiv_rn(amax, kFp8Max)));
  const float scale = Half(scale_h);
  const float inv = scale > 0.0f ? __fdiv_rn(1.0f, scale) : 0.0f;
  if (j == 0) reinterpret_cast<uint16_t*>(out)[row] = scale_h;
  uint64_t packed = 0;
#pragma unroll
  for (int i = 0; i < kVec; i += 2) {
    const float2 pair =
        make_float2(__fmul_rn(x8.v[i], inv), __fmul_rn(x8.v[i + 1], inv));
    packed |=
        uint64_t{__nv_cvt_float2_to_fp8x2(pair, __NV_SATFINITE, __NV_E4M3)}
        << (8 * i);
  }
  StoreBytes<kVec>(out + a.codes_offset + e, packed);
}

__global__ void DequantizeFp8(QuantKernelArgs a, const uint8_t* in,
                              uint16_t* x) {
  const RowLane rl = RowLaneOf(a);
  if (!rl.active) return;
  const size_t e = rl.e;
  const float scale = Half(reinterpret_cast<const uint16_t*>(in)[rl.row]);
  const uint64_t packed = LoadBytes<kVec>(in + a.codes_offset + e);
  Vec out;
#pragma unroll
  for (int i = 0; i < kVec; ++i) {
    const __half_raw h = __nv_cvt_fp8_to_halfraw(
        static_cast<__nv_fp8_storage_t>(packed >> (8 * i)), __NV_E4M3);
    out.v[i] = __fmul_rn(__half2float(__half(h)), scale);
  }
  StoreBf16(out, x + e);
}

// Per channel: one block per (head, group of g tokens), of PerChannelThreads
// threads. Thread (slot, j) owns channels [8j, 8j+8) of rows slot, slot +
// slots, ...; it keeps the first kCachedRows of them in registers for the
// coding pass. Slots meet in shared memory.
constexpr int kCachedRows = 4;

struct Tile {
  uint32_t rows, lanes, slots, slot, j;
  bool lane_active;
  size_t first;  // element index of (row 0, channel 8j)
};

__device__ Tile TileOf(const QuantKernelArgs& a) {
  const uint32_t groups = (a.tokens + a.group - 1) / a.group;
  const uint32_t h = blockIdx.x / groups, t0 = blockIdx.x % groups * a.group;
  Tile t;
  t.rows = min(a.group, a.tokens - t0);
  t.lanes = PaddedLanes(a.dim);
  t.slots = blockDim.x / t.lanes;
  t.slot = threadIdx.x / t.lanes;
  t.j = threadIdx.x % t.lanes;
  t.lane_active = t.j < a.dim / kVec;
  t.first = (size_t{h} * a.tokens + t0) * a.dim + t.j * kVec;
  return t;
}

template <uint32_t kBits>
__global__ void QuantizePerChannel(QuantKernelArgs a, const uint16_t* x,
                                   uint8_t* out, uint32_t* error_flag) {
  extern __shared__ float4 smem[];  // PerChannelSharedBytes
  const Tile t = TileOf(a);
  float4* s_min = smem;  // [slot][lane][8]: channel c of slot s at s*lanes*8+c
  float4* s_max = s_min + blockDim.x * 2;
  float* s_code_min = reinterpret_cast<float*>(s_max + blockDim.x * 2);
  float* s_code_inv = s_code_min + a.dim;
  constexpr float kMaxQ = (1u << kBits) - 1;
  uint4 cached[kCachedRows];
  float mn[kVec], mx[kVec];
#pragma unroll
  for (int i = 0; i < kVec; ++i) {
    mn[i] = INFINITY;
    mx[i] = -INFINITY;
  }
  float probe = 0.0f;
  auto accumulate = [&](const uint4 raw) {
    const Vec v = Widen(raw);
    probe = Probe(v, probe);
#pragma unroll
    for (int i = 0; i < kVec; ++i) {
      mn[i] = fminf(mn[i], v.v[i]);
      mx[i] = fmaxf(mx[i], v.v[i]);
    }
  };
  if (t.lane_active) {
#pragma unroll
    for (int k = 0; k < kCachedRows; ++k) {
      const uint32_t r = t.slot + k * t.slots;
      if (r < t.rows) {
        cached[k] = Load16(x + t.first + size_t{r} * a.dim);
        accumulate(cached[k]);
      }
    }
    for (uint32_t r = t.slot + kCachedRows * t.slots; r < t.rows; r += t.slots)
      accumulate(Load16(x + t.first + size_t{r} * a.dim));
  }
  if (!(probe == 0.0f)) atomicOr(error_flag, 1u);
  s_min[2 * threadIdx.x] = make_float4(mn[0], mn[1], mn[2], mn[3]);
  s_min[2 * threadIdx.x + 1] = make_float4(mn[4], mn[5], mn[6], mn[7]);
  s_max[2 * threadIdx.x] = make_float4(mx[0], mx[1], mx[2], mx[3]);
  s_max[2 * threadIdx.x + 1] = make_float4(mx[4], mx[5], mx[6], mx[7]);
  __syncthreads();

  uint16_t* params =
      reinterpret_cast<uint16_t*>(out) + size_t{blockIdx.x} * 2 * a.dim;
  for (uint32_t c = threadIdx.x; c < a.dim; c += blockDim.x) {
    float cmin = INFINITY, cmax = -INFINITY;
    for (uint32_t at = c; at < blockDim.x * kVec; at += t.lanes * kVec) {
      cmin = fminf(cmin, reinterpret_cast<const float*>(s_min)[at]);
      cmax = fmaxf(cmax, reinterpret_cast<const float*>(s_max)[at]);
    }
    if (Bad(0.0f, cmin, cmax)) atomicOr(error_flag, 1u);
    const Affine af = MakeAffine(cmin, cmax, kMaxQ);
    params[c] = af.min_h;
    params[a.dim + c] = af.scale_h;
    s_code_min[c] = af.min;
    s_code_inv[c] = af.inv;
  }
  __syncthreads();
  if (!t.lane_active) return;

  float cmin[kVec], cinv[kVec];
#pragma unroll
  for (int i = 0; i < kVec; ++i) {
    cmin[i] = s_code_min[t.j * kVec + i];
    cinv[i] = s_code_inv[t.j * kVec + i];
  }
  auto store = [&](const uint4 raw, uint32_t r) {
    const Vec v = Widen(raw);
    float code[kVec];
#pragma unroll
    for (int i = 0; i < kVec; ++i)
      code[i] = Code(v.v[i], cmin[i], cinv[i], kMaxQ);
    StoreBytes<kBits>(CodesOf<kBits>(out, a, t.first + size_t{r} * a.dim),
                      Pack<kBits>(code));
  };
#pragma unroll
  for (int k = 0; k < kCachedRows; ++k) {
    const uint32_t r = t.slot + k * t.slots;
    if (r < t.rows) store(cached[k], r);
  }
  for (uint32_t r = t.slot + kCachedRows * t.slots; r < t.rows; r += t.slots)
    store(Load16(x + t.first + size_t{r} * a.dim), r);
}

template <uint32_t kBits>
__global__ void DequantizePerChannel(QuantKernelArgs a, const uint8_t* in,
                                     uint16_t* x) {
  const Tile t = TileOf(a);
  if (!t.lane_active) return;
  const uint16_t* params =
      reinterpret_cast<const uint16_t*>(in) + size_t{blockIdx.x} * 2 * a.dim;
  const Vec mins = LoadHalf8(params + t.j * kVec);
  const Vec scales = LoadHalf8(params + a.dim + t.j * kVec);
  for (uint32_t r = t.slot; r < t.rows; r += t.slots) {
    const size_t e = t.first + size_t{r} * a.dim;
    const Packed<kBits> packed =
        static_cast<Packed<kBits>>(LoadBytes<kBits>(CodesOf<kBits>(in, a, e)));
    Vec out;
#pragma unroll
    for (int i = 0; i < kVec; ++i)
      out.v[i] = Dequant(CodeAt<kBits>(packed, i), scales.v[i], mins.v[i]);
    StoreBf16(out, x + e);
  }
}

// Enough slots that a thread caches all its rows, in whole warps, at most
// kBlock threads.
uint32_t PerChannelThreads(const QuantKernelArgs& a) {
  const uint32_t lanes = PaddedLanes(a.dim), rows = std::min(a.group, a.tokens);
  uint32_t slots = 1;
  while (slots * kCachedRows < rows && slots * lanes < kBlock) slots <<= 1;
  while (slots * lanes < 32) slots <<= 1;
  return slots * lanes;
}

// Each thread's minima and maxima, then each channel's code minimum and
// inverse scale.
size_t PerChannelSharedBytes(const QuantKernelArgs& a, uint32_t threads) {
  return (2 * size_t{threads} * kVec + 2 * size_t{a.dim}) * sizeof(float);
}

unsigned Blocks(size_t threads) {
  return static_cast<unsigned>((threads + kBlock - 1) / kBlock);
}

// The per-token kernel compiled for the args' group, a power of two <= 32.
template <uint32_t kBits, uint32_t kGroup = 32>
void LaunchPerToken(const QuantKernelArgs& a, const uint16_t* x, uint8_t* out,
                    uint32_t* error_flag, cudaStream_t stream) {
  if (a.group == kGroup) {
    QuantizePerToken<kBits, kGroup>
        <<<Blocks(size_t{a.heads} * a.tokens * a.dim / kVec), kBlock, 0,
           stream>>>(a, x, out, error_flag);
  } else if constexpr (kGroup > 1) {
    LaunchPerToken<kBits, kGroup / 2>(a, x, out, error_flag, stream);
  }
}

template <uint32_t kBits>
void LaunchIntQuantize(const QuantKernelArgs& a, const uint16_t* x,
                       uint8_t* out, uint32_t* error_flag,
                       cudaStream_t stream) {
  if (a.mode == kModePerChannel) {
    const uint32_t threads = PerChannelThreads(a);
    QuantizePerChannel<kBits>
        <<<a.heads*((a.tokens + a.group - 1) / a.group), threads,
           PerChannelSharedBytes(a, threads), stream>>>(a, x, out, error_flag);
  } else {
    LaunchPerToken<kBits>(a, x, out, error_flag, stream);
  }
}

template <uint32_t kBits>
void LaunchIntDequantize(const QuantKernelArgs& a, const uint8_t* in,
                         uint16_t* x, cudaStream_t stream) {
  const size_t rows = size_t{a.heads} * a.tokens;
  if (a.mode == kModePerChannel) {
    DequantizePerChannel<kBits><<<a.heads*((a.tokens + a.group - 1) / a.group),
                                  PerChannelThreads(a), 0, stream>>>(a, in, x);
  } else {
    DequantizePerToken<kBits>
        <<<Blocks(rows * a.dim / kVec), kBlock, 0, stream>>>(a, in, x);
  }
}

}  // namespace

cudaError_t LaunchQuantize(const QuantKernelArgs& a, const uint16_t* x,
                           uint8_t* out, uint32_t* error_flag,
                           cudaStream_t stream) {
  const size_t rows = size_t{a.heads} * a.tokens;
  if (rows == 0) return cudaSuccess;
  if (a.mode == kModeFp8) {
    const uint32_t per_block = kBlock / PaddedLanes(a.dim);
    QuantizeFp8<<<static_cast<unsigned>((rows + per_block - 1) / per_block),
                  kBlock, 0, stream>>>(a, x, out, error_flag);
  } else if (a.bits == 8) {
    LaunchIntQuantize<8>(a, x, out, error_flag, stream);
  } else if (a.bits == 4) {
    LaunchIntQuantize<4>(a, x, out, error_flag, stream);
  } else {
    LaunchIntQuantize<2>(a, x, out, error_flag, stream);
  }
  return cudaGetLastError();
}

cudaError_t LaunchDequantize(const QuantKernelArgs& a, const uint8_t* in,
                             uint16_t* x, cudaStream_t stream) {
  const size_t rows = size_t{a.heads} * a.tokens;
  if (rows == 0) return cudaSuccess;
  if (a.mode == kModeFp8) {
    const uint32_t per_block = kBlock / PaddedLanes(a.dim);
    DequantizeFp8<<<static_cast<unsigned>((rows + per_block - 1) / per_block),
                    kBlock, 0, stream>>>(a, in, x);
  } else if (a.bits == 8) {
    LaunchIntDequantize<8>(a, in, x, stream);
  } else if (a.bits == 4) {
    LaunchIntDequantize<4>(a, in, x, stream);
  } else {
    LaunchIntDequantize<2>(a, in, x, stream);
  }
  return cudaGetLastError();
}

}  // namespace kvd::compress::cuda
