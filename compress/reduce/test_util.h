// Helpers shared by the token reducer tests: building reducers from spec
// text and random tensors (for contract tests only, never quality claims).
#ifndef KVDEPOT_COMPRESS_REDUCE_TEST_UTIL_H_
#define KVDEPOT_COMPRESS_REDUCE_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <memory>
#include <random>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "compress/codec_spec.h"
#include "compress/kv_tensor.h"
#include "compress/token_reducer.h"

namespace kvd::compress::testing_util {

// The reducer of a one-stage spec text, or its error.
inline absl::StatusOr<std::unique_ptr<TokenReducer>> Make(
    absl::string_view text) {
  auto stages = ParseChainSpec(text);
  if (!stages.ok()) return stages.status();
  if (stages->size() != 1) return absl::InternalError("want one stage");
  return MakeTokenReducer((*stages)[0]);
}

// The reducer of `text`; a test failure (and null) when it does not build.
inline std::unique_ptr<TokenReducer> MustMake(absl::string_view text) {
  auto r = Make(text);
  EXPECT_TRUE(r.ok()) << text << ": " << r.status();
  EXPECT_NE(r.ok() ? r->get() : nullptr, nullptr) << text;
  return r.ok() ? *std::move(r) : nullptr;
}

// [heads][tokens][dim] standard normal.
inline HeadTensor Random(uint32_t heads, uint32_t tokens, uint32_t dim,
                         std::mt19937& rng) {
  std::normal_distribution<float> dist;
  HeadTensor t(heads, tokens, dim);
  for (float& x : t.data) x = dist(rng);
  return t;
}

// Random keys; values [1, k_0, random...] per token, so a merged value shows
// whether its weights sum to 1 (v_0) and match the keys' weights (v_1).
inline LayerKV RandomLayer(uint32_t heads, uint32_t tokens, uint32_t dim,
                           std::mt19937& rng) {
  LayerKV kv;
  kv.k = Random(heads, tokens, dim, rng);
  kv.v = Random(heads, tokens, dim + 2, rng);
  for (uint32_t h = 0; h < heads; ++h) {
    for (uint32_t t = 0; t < tokens; ++t) {
      kv.v.Row(h, t)[0] = 1.0f;
      kv.v.Row(h, t)[1] = kv.k.Row(h, t)[0];
    }
  }
  return kv;
}

}  // namespace kvd::compress::testing_util

#endif  // KVDEPOT_COMPRESS_REDUCE_TEST_UTIL_H_
