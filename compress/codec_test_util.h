// Test tensors for codec unit tests: random, with the per-channel offsets
// and a few outlier channels that real keys have. Never for quality claims
// (DESIGN.md §5): those use real model tensors (bench/quality).
#ifndef KVDEPOT_COMPRESS_CODEC_TEST_UTIL_H_
#define KVDEPOT_COMPRESS_CODEC_TEST_UTIL_H_

#include <cmath>
#include <cstdint>
#include <random>

#include "compress/kv_tensor.h"

namespace kvd::compress {

inline HeadTensor RandomTensor(uint32_t heads, uint32_t tokens, uint32_t dim,
                               uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  HeadTensor t(heads, tokens, dim);
  for (uint32_t h = 0; h < heads; ++h) {
    std::vector<float> offset(dim), scale(dim);
    for (uint32_t c = 0; c < dim; ++c) {
      offset[c] = normal(rng);
      scale[c] = (c % 16 == 3) ? 8.0f : 0.5f + std::fabs(normal(rng));
    }
    for (uint32_t i = 0; i < tokens; ++i) {
      float* row = t.Row(h, i);
      for (uint32_t c = 0; c < dim; ++c)
        row[c] = offset[c] + scale[c] * normal(rng);
    }
  }
  return t;
}

inline LayerKV RandomLayer(uint32_t heads, uint32_t tokens, uint32_t dim,
                           uint64_t seed) {
  return LayerKV{RandomTensor(heads, tokens, dim, seed),
                 RandomTensor(heads, tokens, dim, seed + 1),
                 {}};
}

// Rounds every element to bf16, as a raw chunk stores it.
inline void RoundToBf16(HeadTensor& t) {
  for (float& x : t.data) x = Bf16ToFloat(FloatToBf16(x));
}

// ||a - b|| / ||a|| over all elements.
inline double RelativeError(const HeadTensor& a, const HeadTensor& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += double(a.data[i] - b.data[i]) * (a.data[i] - b.data[i]);
    den += double(a.data[i]) * a.data[i];
  }
  return std::sqrt(num / den);
}

}  // namespace kvd::compress

#endif  // KVDEPOT_COMPRESS_CODEC_TEST_UTIL_H_
