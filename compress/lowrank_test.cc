#include "compress/lowrank.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>

#include "compress/codec_chain.h"
#include "compress/codec_test_util.h"

namespace kvd::compress {
namespace {

using ::testing::HasSubstr;

// Rank-2 data plus a little noise: x = mean + a*u + b*w + e.
HeadTensor RankTwo(uint32_t heads, uint32_t tokens, uint32_t dim,
                   uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> n(0.0f, 1.0f);
  HeadTensor t(heads, tokens, dim);
  // The subspace first, for every head, so it depends on the seed only.
  std::vector<std::vector<float>> mean(heads), u(heads), w(heads);
  for (uint32_t h = 0; h < heads; ++h) {
    for (uint32_t c = 0; c < dim; ++c) {
      mean[h].push_back(3 * n(rng));
      u[h].push_back(n(rng));
      w[h].push_back(n(rng));
    }
  }
  for (uint32_t h = 0; h < heads; ++h) {
    for (uint32_t i = 0; i < tokens; ++i) {
      const float a = 4 * n(rng), b = 2 * n(rng);
      for (uint32_t c = 0; c < dim; ++c) {
        t.Row(h, i)[c] =
            mean[h][c] + a * u[h][c] + b * w[h][c] + 1e-3f * n(rng);
      }
    }
  }
  return t;
}

std::vector<LayerKV> Calibration(uint32_t layers, uint64_t seed) {
  std::vector<LayerKV> cal;
  for (uint32_t l = 0; l < layers; ++l) {
    cal.push_back({RankTwo(3, 512, 64, seed + l),
                   RankTwo(3, 512, 64, seed + 100 + l),
                   {}});
  }
  return cal;
}

CodecContext Context(std::shared_ptr<const LowRankBases> bases) {
  return CodecContext{DType::kBf16, 2, 3, 64, std::move(bases)};
}

TEST(LowRankBases, FitFindsTheSubspace) {
  auto bases = LowRankBases::Fit(Calibration(2, 1));
  ASSERT_TRUE(bases.ok()) << bases.status();
  EXPECT_GT((*bases)->ExplainedVariance(1, 2, 0, 2), 0.9999);
  EXPECT_LT((*bases)->ExplainedVariance(1, 2, 0, 1), 0.99);
}

TEST(LowRankBases, SerializeParseRoundTripAndCorruption) {
  auto bases = *LowRankBases::Fit(Calibration(2, 2));
  std::vector<uint8_t> bytes = bases->Serialize();
  auto parsed = LowRankBases::Parse(bytes);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ((*parsed)->fingerprint(), bases->fingerprint());
  EXPECT_EQ((*parsed)->Components(1, 1, 1)[5], bases->Components(1, 1, 1)[5]);
  bytes[100] ^= 1;
  EXPECT_EQ(LowRankBases::Parse(bytes).status().code(),
            absl::StatusCode::kDataLoss);
  bytes[100] ^= 1;
  bytes.pop_back();
  EXPECT_EQ(LowRankBases::Parse(bytes).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(LowRankBases::Parse({}).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(LowRankStage, ReconstructsRankTwoDataAndKeepsTheWindow) {
  auto bases = *LowRankBases::Fit(Calibration(2, 3));
  auto chain =
      CodecChain::Create("lowrank(rk=2,rv=2,window=16)", Context(bases));
  ASSERT_TRUE(chain.ok()) << chain.status();
  LayerKV kv{RankTwo(3, 128, 64, 4), RankTwo(3, 128, 64, 104), {}};
  RoundToBf16(kv.k);
  RoundToBf16(kv.v);
  auto enc = (*chain)->EncodeLayerKV(1, kv);
  ASSERT_TRUE(enc.ok()) << enc.status();
  auto dec = (*chain)->DecodeLayerKV(1, 128, *enc);
  ASSERT_TRUE(dec.ok()) << dec.status();
  EXPECT_LT(RelativeError(kv.k, dec->k), 0.01);
  EXPECT_LT(RelativeError(kv.v, dec->v), 0.01);
  for (uint32_t t = 112; t < 128; ++t) {  // the window is kept exactly
    EXPECT_EQ(dec->k.Row(2, t)[9], kv.k.Row(2, t)[9]);
  }
}

TEST(LowRankStage, RefusedWithoutMatchingBases) {
  auto none = CodecChain::Create("lowrank(rk=8)", Context(nullptr));
  EXPECT_EQ(none.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(none.status().message(), HasSubstr("needs projection bases"));
  auto bases =
      *LowRankBases::Fit(Calibration(3, 5));  // 3 layers, namespace has 2
  EXPECT_EQ(CodecChain::Create("lowrank", Context(bases)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  auto two = *LowRankBases::Fit(Calibration(2, 5));
  EXPECT_EQ(CodecChain::Create("lowrank(bases=0123456789abcdef)", Context(two))
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
  auto chain = *CodecChain::Create("lowrank(rk=8)", Context(two));
  // The canonical text names the bases, and a chain built from it accepts them.
  EXPECT_THAT(chain->spec(), HasSubstr("bases="));
  EXPECT_TRUE(CodecChain::Create(chain->spec(), Context(two)).ok());
  EXPECT_FALSE(CodecChain::Create("lowrank(rk=65)", Context(two)).ok());
}

}  // namespace
}  // namespace kvd::compress
