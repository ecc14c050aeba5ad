// In-memory KV tensors the codecs work on (DESIGN.md §3.2, §3.3).
//
// A codec chain converts one layer of a chunk from the namespace dtype into
// float32 HeadTensors, runs its stages on them, and converts back at the end.
// Token-reducing stages leave fewer tokens per head and record, per head,
// which original positions every kept token stands for (TokenMap).
#ifndef KVDEPOT_COMPRESS_KV_TENSOR_H_
#define KVDEPOT_COMPRESS_KV_TENSOR_H_

#include <bit>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "core/model_spec.h"

namespace kvd::compress {

// [heads][tokens][dim], float32, row-major.
struct HeadTensor {
  uint32_t heads = 0;
  uint32_t tokens = 0;
  uint32_t dim = 0;
  std::vector<float> data;

  HeadTensor() = default;
  HeadTensor(uint32_t h, uint32_t t, uint32_t d)
      : heads(h), tokens(t), dim(d), data(size_t{h} * t * d) {}

  size_t size() const { return data.size(); }
  float* Row(uint32_t head, uint32_t token) {
    return data.data() + (size_t{head} * tokens + token) * dim;
  }
  const float* Row(uint32_t head, uint32_t token) const {
    return data.data() + (size_t{head} * tokens + token) * dim;
  }
};

// Which original positions each kept token of one head stands for. Kept
// tokens are in ascending order of `position`; token i stands for
// members[offsets[i] .. offsets[i+1]) (itself alone after plain eviction,
// a whole merged set after merging).
struct TokenMap {
  std::vector<uint32_t> position;  // [kept] representative position
  std::vector<uint32_t> offsets;   // [kept + 1]
  std::vector<uint32_t> members;   // [offsets.back()] ascending per token

  size_t kept() const { return position.size(); }
  // Checks ordering and bounds against `tokens` original positions.
  absl::Status Validate(uint32_t tokens) const;
};

// One layer's keys and values. `maps` is empty while every position is
// present in order; a token-reducing stage fills one TokenMap per KV head.
struct LayerKV {
  HeadTensor k;
  HeadTensor v;
  std::vector<TokenMap> maps;

  bool Reduced() const { return !maps.empty(); }
};

// Element conversions between the namespace dtype and float32. bf16 and fp16
// round to nearest even; fp8 is e4m3 (saturating at +-448, no infinities).
inline float Bf16ToFloat(uint16_t b) {
  return std::bit_cast<float>(static_cast<uint32_t>(b) << 16);
}
inline uint16_t FloatToBf16(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) {  // NaN stays NaN
    return static_cast<uint16_t>((u >> 16) | 0x40);
  }
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
float Fp16ToFloat(uint16_t h);
uint16_t FloatToFp16(float f);
float Fp8E4M3ToFloat(uint8_t b);
uint8_t FloatToFp8E4M3(float f);

// Converts `count` elements of `dtype` at `src` to float32 and back.
// REQUIRES: src/dst hold count elements.
void DTypeToFloat(DType dtype, const uint8_t* src, size_t count, float* dst);
void FloatToDType(DType dtype, const float* src, size_t count, uint8_t* dst);

}  // namespace kvd::compress

#endif  // KVDEPOT_COMPRESS_KV_TENSOR_H_
