#include "compress/reduce/attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "compress/reduce/test_util.h"

namespace kvd::compress::reduce {
namespace {

using testing_util::Random;

// The blocked Eigen attention against a plain double-precision loop.
std::vector<double> NaiveAttention(const HeadTensor& q, const HeadTensor& k,
                                   uint32_t kv_head, uint32_t first) {
  const uint32_t group = q.heads / k.heads, t = k.tokens, d = k.dim;
  std::vector<double> acc(t, 0.0);
  for (uint32_t g = 0; g < group; ++g) {
    const uint32_t qh = kv_head * group + g;
    for (uint32_t i = first; i < q.tokens; ++i) {
      const uint32_t visible = t - q.tokens + i + 1;
      std::vector<double> logit(visible);
      for (uint32_t j = 0; j < visible; ++j) {
        double dot = 0;
        for (uint32_t x = 0; x < d; ++x) {
          dot += double{q.Row(qh, i)[x]} * k.Row(kv_head, j)[x];
        }
        logit[j] = dot / std::sqrt(static_cast<double>(d));
      }
      const double max = *std::max_element(logit.begin(), logit.end());
      double z = 0;
      for (double& l : logit) z += (l = std::exp(l - max));
      for (uint32_t j = 0; j < visible; ++j) acc[j] += logit[j] / z / group;
    }
  }
  return acc;
}

TEST(Attention, MatchesAPlainCausalSoftmax) {
  std::mt19937 rng(9);
  const HeadTensor k = Random(2, 300, 16, rng);
  for (uint32_t q_tokens : {1u, 100u, 290u, 300u}) {
    const HeadTensor q = Random(6, q_tokens, 16, rng);
    for (uint32_t first : {0u, q_tokens - 1, q_tokens / 2}) {
      for (uint32_t h = 0; h < 2; ++h) {
        const std::vector<double> got =
            reduce::AccumulatedAttention(q, k, h, first);
        const std::vector<double> want = NaiveAttention(q, k, h, first);
        ASSERT_EQ(got.size(), want.size());
        double total = 0;
        for (size_t j = 0; j < got.size(); ++j) {
          EXPECT_NEAR(got[j], want[j], 1e-4 * (1 + want[j])) << j;
          total += got[j];
        }
        // Each query's probabilities sum to 1; the group is averaged.
        EXPECT_NEAR(total, q_tokens - first, 1e-3 * q_tokens);
      }
    }
  }
}

}  // namespace
}  // namespace kvd::compress::reduce
