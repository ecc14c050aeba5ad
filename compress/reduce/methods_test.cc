// Per-method behaviour of the token reducers on small hand-built inputs
// (the contract every reducer meets is in token_reducer_test.cc).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>

#include "compress/reduce/test_util.h"
#include "compress/token_reducer.h"

namespace kvd::compress {
namespace {

using testing_util::MustMake;
using testing_util::Random;
using testing_util::RandomLayer;

// ---------------------------------------------------------------------------
// Per-method behaviour on hand-built inputs.

std::vector<uint32_t> Kept(const LayerKV& kv, uint32_t head) {
  return kv.maps[head].position;
}

// Keys of token i are (i + 1) * e_{i mod dim}: adjacent keys are orthogonal.
LayerKV OrthogonalLayer(uint32_t heads, uint32_t tokens, uint32_t dim) {
  LayerKV kv{HeadTensor(heads, tokens, dim), HeadTensor(heads, tokens, dim)};
  for (uint32_t h = 0; h < heads; ++h) {
    for (uint32_t t = 0; t < tokens; ++t) {
      kv.k.Row(h, t)[t % dim] = static_cast<float>(t + 1);
      for (uint32_t j = 0; j < dim; ++j) kv.v.Row(h, t)[j] = 100.0f * t + j;
    }
  }
  return kv;
}

TEST(Streaming, KeepsSinksAndTheMostRecent) {
  LayerKV kv = OrthogonalLayer(2, 20, 4);
  ASSERT_TRUE(MustMake("streaming(keep=0.5)")->Reduce({}, kv).ok());
  const std::vector<uint32_t> want = {0, 1, 2, 3, 14, 15, 16, 17, 18, 19};
  EXPECT_EQ(Kept(kv, 0), want);
  EXPECT_EQ(Kept(kv, 1), want);
  // More sinks than the budget: the first n tokens.
  LayerKV small = OrthogonalLayer(1, 20, 4);
  ASSERT_TRUE(MustMake("streaming(keep=0.1,sinks=4)")->Reduce({}, small).ok());
  EXPECT_EQ(Kept(small, 0), (std::vector<uint32_t>{0, 1}));
}

TEST(KeyNorm, KeepsTheSmallestKeysPerHead) {
  // Head 0: norms are t + 1 (ascending); head 1: norms 8 - t (descending).
  LayerKV kv = OrthogonalLayer(2, 8, 4);
  for (uint32_t t = 0; t < 8; ++t) {
    std::fill_n(kv.k.Row(1, t), 4, 0.0f);
    kv.k.Row(1, t)[0] = static_cast<float>(8 - t);
  }
  ASSERT_TRUE(MustMake("keynorm(keep=0.5)")->Reduce({}, kv).ok());
  EXPECT_EQ(Kept(kv, 0), (std::vector<uint32_t>{0, 1, 2, 3}));
  EXPECT_EQ(Kept(kv, 1), (std::vector<uint32_t>{4, 5, 6, 7}));

  LayerKV win = OrthogonalLayer(1, 8, 4);
  ASSERT_TRUE(MustMake("keynorm(keep=0.5,window=2)")->Reduce({}, win).ok());
  EXPECT_EQ(Kept(win, 0), (std::vector<uint32_t>{0, 1, 6, 7}));
}

TEST(H2o, KeepsTheTokenThatGetsAllTheAttention) {
  // Every query points along e_1; only token 9's key does (and strongly).
  LayerKV kv = OrthogonalLayer(2, 24, 4);
  for (uint32_t h = 0; h < 2; ++h) {
    for (uint32_t t = 0; t < 24; ++t) kv.k.Row(h, t)[1] = 0.0f;
    kv.k.Row(h, 9)[1] = 10.0f;
  }
  HeadTensor q(4, 24, 4);
  for (uint32_t g = 0; g < 4; ++g) {
    for (uint32_t i = 0; i < 24; ++i) q.Row(g, i)[1] = 5.0f;
  }
  ASSERT_TRUE(MustMake("h2o(keep=0.125,recent=0.34)")->Reduce({&q}, kv).ok());
  // n = 3: one recent token (23), two heavy hitters, 9 the heaviest.
  for (uint32_t h = 0; h < 2; ++h) {
    const std::vector<uint32_t> kept = Kept(kv, h);
    ASSERT_EQ(kept.size(), 3u);
    EXPECT_TRUE(std::count(kept.begin(), kept.end(), 9u)) << h;
    EXPECT_EQ(kept.back(), 23u);
  }
}

TEST(SnapKv, KeepsWhatTheWindowAttendsToWithItsNeighbours) {
  // Early queries look at token 2 (e_0), the last 4 at token 10 (e_1).
  const uint32_t t = 32;
  LayerKV kv{HeadTensor(1, t, 4), HeadTensor(1, t, 4)};
  kv.k.Row(0, 2)[0] = 10.0f;
  kv.k.Row(0, 10)[1] = 10.0f;
  HeadTensor q(2, t, 4);
  for (uint32_t g = 0; g < 2; ++g) {
    for (uint32_t i = 0; i < t; ++i) q.Row(g, i)[i < t - 4 ? 0 : 1] = 5.0f;
  }
  LayerKV snap = kv;
  ASSERT_TRUE(
      MustMake("snapkv(keep=0.25,window=4,kernel=3)")->Reduce({&q}, snap).ok());
  // n = 8: the window 28..31 and 9, 10, 11 (max-pooled) plus one more.
  const std::vector<uint32_t> kept = Kept(snap, 0);
  ASSERT_EQ(kept.size(), 8u);
  for (uint32_t p : {9u, 10u, 11u, 28u, 29u, 30u, 31u}) {
    EXPECT_TRUE(std::count(kept.begin(), kept.end(), p)) << p;
  }
  EXPECT_FALSE(std::count(kept.begin(), kept.end(), 2u));
  // H2O on the same queries keeps token 2, which most queries look at.
  LayerKV h2o = kv;
  ASSERT_TRUE(MustMake("h2o(keep=0.25)")->Reduce({&q}, h2o).ok());
  const std::vector<uint32_t> heavy = Kept(h2o, 0);
  EXPECT_TRUE(std::count(heavy.begin(), heavy.end(), 2u));
}

TEST(KvMerger, MergesARunOfIdenticalKeysAndLeavesDissimilarOnesAlone) {
  const uint32_t t = 16;
  LayerKV kv = OrthogonalLayer(1, t, 4);
  for (uint32_t i = 4; i <= 9; ++i) {
    std::copy_n(std::vector<float>{1, 1, 0, 0}.data(), 4, kv.k.Row(0, i));
  }
  std::mt19937 rng(7);
  const HeadTensor q = Random(1, t, 4, rng);
  // n = 11: exactly the 5 joins inside 4..9 have cos 1; every other adjacent
  // pair is orthogonal.
  ASSERT_TRUE(MustMake("kvmerger(keep=0.6875,window=2,heavy=0)")
                  ->Reduce({&q}, kv)
                  .ok());
  const TokenMap& m = kv.maps[0];
  ASSERT_EQ(m.kept(), 11u);
  for (uint32_t i = 0; i < 11; ++i) {
    const uint32_t size = m.offsets[i + 1] - m.offsets[i];
    if (i < 4) {
      EXPECT_EQ(m.position[i], i);
      EXPECT_EQ(size, 1u);
    } else if (i == 4) {
      EXPECT_EQ(std::vector<uint32_t>(m.members.begin() + m.offsets[4],
                                      m.members.begin() + m.offsets[5]),
                (std::vector<uint32_t>{4, 5, 6, 7, 8, 9}));
      EXPECT_GE(m.position[4], 4u);
      EXPECT_LE(m.position[4], 9u);
      // Identical keys: uniform weights, so v is the members' mean.
      EXPECT_EQ(kv.k.Row(0, 4)[0], 1.0f);
      EXPECT_EQ(kv.k.Row(0, 4)[1], 1.0f);
      EXPECT_NEAR(kv.v.Row(0, 4)[0], 100.0f * 6.5f, 1e-3);
    } else {
      EXPECT_EQ(m.position[i], i + 5);
      EXPECT_EQ(size, 1u);
    }
  }
}

TEST(KvMerger, PivotWeighsMostAndFarMembersLittle) {
  // Tokens 0..2 have nearly parallel keys; queries attend to token 1 most.
  const uint32_t t = 6;
  LayerKV kv = OrthogonalLayer(1, t, 4);
  const float keys[3][4] = {{1, 0.1f, 0, 0}, {1.5f, 0, 0, 0}, {1, 0, 0.3f, 0}};
  for (uint32_t i = 0; i < 3; ++i) std::copy_n(keys[i], 4, kv.k.Row(0, i));
  HeadTensor q(1, t, 4);
  for (uint32_t i = 0; i < t; ++i) {
    q.Row(0, i)[0] = 6.0f;  // logits (scaled by 1/2): 3, 4.5, 2.1, 0, 15, 0
    q.Row(0, i)[2] = -6.0f;
  }
  ASSERT_TRUE(
      MustMake("kvmerger(keep=0.67,window=0,heavy=0)")->Reduce({&q}, kv).ok());
  const TokenMap& m = kv.maps[0];
  ASSERT_EQ(m.kept(), 4u);
  EXPECT_EQ(m.position[0], 1u);  // the pivot: most attention
  EXPECT_EQ(m.offsets[1], 3u);   // members 0, 1, 2
  // g_i = exp(-d_i^2 / mean(d)^2), d_0^2 = 0.26, d_2^2 = 0.34, g_1 = 1.
  const double mean = (std::sqrt(0.26) + std::sqrt(0.34)) / 2;
  const double g0 = std::exp(-0.26 / (mean * mean));
  const double g2 = std::exp(-0.34 / (mean * mean));
  const double z = g0 + 1 + g2;
  EXPECT_NEAR(kv.k.Row(0, 0)[0], (g0 + 1.5 + g2) / z, 1e-5);
  EXPECT_NEAR(kv.k.Row(0, 0)[1], 0.1 * g0 / z, 1e-5);
  EXPECT_NEAR(kv.k.Row(0, 0)[2], 0.3 * g2 / z, 1e-5);
  EXPECT_NEAR(kv.v.Row(0, 0)[0], (0 * g0 + 100 * 1 + 200 * g2) / z, 1e-3);
}

TEST(Ems, MergesANearDuplicateIntoItsCenter) {
  // Every key is on its own axis, but token 5's nearly equals token 15's
  // (always a center: the window); the queries point away from them, so
  // token 5 scores lowest and is not a center.
  const uint32_t t = 16;
  LayerKV kv = OrthogonalLayer(1, t, t);
  std::fill_n(kv.k.Row(0, 5), t, 0.0f);
  kv.k.Row(0, 5)[15] = 16.0f;
  kv.k.Row(0, 5)[0] = 0.01f;
  HeadTensor q(1, t, t);
  for (uint32_t i = 0; i < t; ++i) q.Row(0, i)[15] = -0.5f;
  LayerKV merged = kv;
  ASSERT_TRUE(
      MustMake("ems(keep=0.5,window=2,evict=0)")->Reduce({&q}, merged).ok());
  const TokenMap& m = merged.maps[0];
  ASSERT_EQ(m.kept(), 8u);
  EXPECT_EQ(m.position[7], 15u);
  const std::vector<uint32_t> last(m.members.begin() + m.offsets[7],
                                   m.members.end());
  EXPECT_EQ(last, (std::vector<uint32_t>{5, 15}));
  EXPECT_NEAR(merged.k.Row(0, 7)[15], 16.0f, 1e-4);  // a convex mix of both
  EXPECT_GT(merged.k.Row(0, 7)[0], 0.0f);
  EXPECT_LT(merged.k.Row(0, 7)[0], 0.01f);
  // evict=1: the same centers, every other token dropped.
  LayerKV evicted = kv;
  ASSERT_TRUE(
      MustMake("ems(keep=0.5,window=2,evict=1)")->Reduce({&q}, evicted).ok());
  EXPECT_EQ(evicted.maps[0].position, m.position);
  EXPECT_EQ(evicted.maps[0].members, m.position);
}

// ---------------------------------------------------------------------------
// Timing of a whole model's reduce (30 layers, 3 KV heads, 9 query heads,
// d = 64, T = q_tokens = 2048); run with --gtest_also_run_disabled_tests.

TEST(Timing, DISABLED_FullModelReduce) {
  constexpr uint32_t kLayers = 30, kHeads = 3, kGroup = 3, kDim = 64,
                     kTokens = 2048;
  std::mt19937 rng(8);
  const LayerKV layer = RandomLayer(kHeads, kTokens, kDim, rng);
  HeadTensor q = Random(kHeads * kGroup, kTokens, kDim, rng);
  for (const char* spec :
       {"streaming(keep=0.5)", "keynorm(keep=0.5)", "h2o(keep=0.5)",
        "snapkv(keep=0.5)", "kvmerger(keep=0.5)", "ems(keep=0.5)"}) {
    auto r = MustMake(spec);
    ASSERT_NE(r, nullptr);
    double seconds = 0;
    for (uint32_t l = 0; l < kLayers; ++l) {
      LayerKV kv = layer;
      const auto start = std::chrono::steady_clock::now();
      ASSERT_TRUE(r->Reduce({&q}, kv).ok());
      seconds += std::chrono::duration<double>(
                     std::chrono::steady_clock::now() - start)
                     .count();
    }
    std::printf("%-40s %8.3f s for %u layers\n", r->Spec().c_str(), seconds,
                kLayers);
  }
}

}  // namespace
}  // namespace kvd::compress
