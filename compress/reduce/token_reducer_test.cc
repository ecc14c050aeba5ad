#include "compress/token_reducer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <set>

#include "absl/strings/str_cat.h"
#include "compress/codec_spec.h"
#include "compress/reduce/budget.h"

namespace kvd::compress {
namespace {

using reduce::KeepCount;

absl::StatusOr<std::unique_ptr<TokenReducer>> Make(absl::string_view text) {
  auto stages = ParseChainSpec(text);
  if (!stages.ok()) return stages.status();
  if (stages->size() != 1) return absl::InternalError("want one stage");
  return MakeTokenReducer((*stages)[0]);
}

std::unique_ptr<TokenReducer> MustMake(absl::string_view text) {
  auto r = Make(text);
  EXPECT_TRUE(r.ok()) << text << ": " << r.status();
  EXPECT_NE(r.ok() ? r->get() : nullptr, nullptr) << text;
  return r.ok() ? *std::move(r) : nullptr;
}

HeadTensor Random(uint32_t heads, uint32_t tokens, uint32_t dim,
                  std::mt19937& rng) {
  std::normal_distribution<float> dist;
  HeadTensor t(heads, tokens, dim);
  for (float& x : t.data) x = dist(rng);
  return t;
}

// Random keys; values [1, k_0, random...] per token, so a merged value shows
// whether its weights sum to 1 (v_0) and match the keys' weights (v_1).
LayerKV RandomLayer(uint32_t heads, uint32_t tokens, uint32_t dim,
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

// ---------------------------------------------------------------------------
// Contract suite: every reducer.

struct Case {
  const char* name;
  const char* extra;  // parameters after keep
  bool needs_queries;
  bool merges;
};

std::string SpecText(const Case& c, double keep) {
  return absl::StrCat(c.name, "(keep=", reduce::FormatDouble(keep),
                      *c.extra ? "," : "", c.extra, ")");
}

class ReducerContract : public testing::TestWithParam<Case> {};

struct Shape {
  uint32_t heads, tokens, dim, group, q_tokens;
};
constexpr Shape kShapes[] = {
    {3, 64, 16, 3, 64}, {3, 64, 16, 3, 10}, {2, 1, 8, 1, 1},
    {2, 2, 8, 2, 1},    {1, 37, 4, 4, 37},  {3, 200, 16, 3, 200},
};
constexpr double kKeeps[] = {0.01, 0.3, 0.5, 0.99, 1.0};

TEST_P(ReducerContract, KeepsExactlyTheBudgetWithValidMaps) {
  const Case& c = GetParam();
  std::mt19937 rng(1);
  for (const Shape& s : kShapes) {
    for (double keep : kKeeps) {
      SCOPED_TRACE(absl::StrCat(SpecText(c, keep), " T=", s.tokens,
                                " q_tokens=", s.q_tokens));
      auto r = MustMake(SpecText(c, keep));
      ASSERT_NE(r, nullptr);
      LayerKV kv = RandomLayer(s.heads, s.tokens, s.dim, rng);
      const LayerKV orig = kv;
      const HeadTensor q = Random(s.heads * s.group, s.q_tokens, s.dim, rng);
      ASSERT_TRUE(r->Reduce({&q}, kv).ok());
      const uint32_t n = KeepCount(keep, s.tokens);
      EXPECT_EQ(kv.k.heads, s.heads);
      EXPECT_EQ(kv.k.tokens, n);
      EXPECT_EQ(kv.k.dim, s.dim);
      EXPECT_EQ(kv.v.tokens, n);
      EXPECT_EQ(kv.v.dim, s.dim + 2);
      EXPECT_EQ(kv.k.size(), size_t{s.heads} * n * s.dim);
      ASSERT_EQ(kv.maps.size(), s.heads);
      for (uint32_t h = 0; h < s.heads; ++h) {
        const TokenMap& m = kv.maps[h];
        ASSERT_TRUE(m.Validate(s.tokens).ok()) << m.Validate(s.tokens);
        ASSERT_EQ(m.kept(), n);
        std::set<uint32_t> seen;
        for (size_t i = 0; i < n; ++i) {
          const uint32_t b = m.offsets[i], e = m.offsets[i + 1];
          // The representative is one of its members.
          EXPECT_TRUE(std::binary_search(m.members.begin() + b,
                                         m.members.begin() + e, m.position[i]));
          if (!c.merges) {
            EXPECT_EQ(e - b, 1u);
          }
          for (uint32_t j = b; j < e; ++j) {
            EXPECT_TRUE(seen.insert(m.members[j]).second)
                << "position " << m.members[j] << " stands in twice";
          }
        }
        if (n == s.tokens) {
          EXPECT_EQ(seen.size(), s.tokens);
        }
      }
    }
  }
}

TEST_P(ReducerContract, KeptRowsAreOriginalsOrConvexCombinations) {
  const Case& c = GetParam();
  std::mt19937 rng(2);
  for (double keep : {0.2, 0.5}) {
    auto r = MustMake(SpecText(c, keep));
    ASSERT_NE(r, nullptr);
    LayerKV kv = RandomLayer(3, 96, 8, rng);
    const LayerKV orig = kv;
    const HeadTensor q = Random(6, 96, 8, rng);
    ASSERT_TRUE(r->Reduce({&q}, kv).ok());
    size_t merged = 0;
    for (uint32_t h = 0; h < 3; ++h) {
      const TokenMap& m = kv.maps[h];
      for (uint32_t i = 0; i < m.kept(); ++i) {
        const uint32_t b = m.offsets[i], e = m.offsets[i + 1];
        const float* k = kv.k.Row(h, i);
        const float* v = kv.v.Row(h, i);
        if (e - b == 1) {
          const uint32_t p = m.members[b];
          ASSERT_EQ(p, m.position[i]);
          EXPECT_TRUE(std::equal(k, k + 8, orig.k.Row(h, p)));
          EXPECT_TRUE(std::equal(v, v + 10, orig.v.Row(h, p)));
          continue;
        }
        ++merged;
        EXPECT_NEAR(v[0], 1.0f, 1e-5);  // weights sum to 1
        EXPECT_NEAR(v[1], k[0], 1e-5);  // K and V share the weights
        for (uint32_t j = 0; j < 10; ++j) {
          float lo = HUGE_VALF, hi = -HUGE_VALF;
          for (uint32_t x = b; x < e; ++x) {
            lo = std::min(lo, orig.v.Row(h, m.members[x])[j]);
            hi = std::max(hi, orig.v.Row(h, m.members[x])[j]);
          }
          EXPECT_GE(v[j], lo - 1e-5f);
          EXPECT_LE(v[j], hi + 1e-5f);
        }
      }
    }
    if (c.merges) {
      EXPECT_GT(merged, 0u) << SpecText(c, keep);
    }
  }
}

TEST_P(ReducerContract, IsDeterministic) {
  const Case& c = GetParam();
  std::mt19937 rng(3);
  auto r = MustMake(SpecText(c, 0.3));
  ASSERT_NE(r, nullptr);
  LayerKV a = RandomLayer(3, 128, 16, rng);
  LayerKV b = a;
  const HeadTensor q = Random(9, 100, 16, rng);
  ASSERT_TRUE(r->Reduce({&q}, a).ok());
  ASSERT_TRUE(r->Reduce({&q}, b).ok());
  EXPECT_EQ(a.k.data, b.k.data);
  EXPECT_EQ(a.v.data, b.v.data);
  for (uint32_t h = 0; h < 3; ++h) {
    EXPECT_EQ(a.maps[h].position, b.maps[h].position);
    EXPECT_EQ(a.maps[h].offsets, b.maps[h].offsets);
    EXPECT_EQ(a.maps[h].members, b.maps[h].members);
  }
}

TEST_P(ReducerContract, SpecIsCanonicalAndRoundTrips) {
  const Case& c = GetParam();
  auto r = MustMake(SpecText(c, 0.3));
  ASSERT_NE(r, nullptr);
  const std::string spec = r->Spec();
  EXPECT_EQ(spec.rfind(absl::StrCat(c.name, "(keep=0.3"), 0), 0u) << spec;
  auto again = MustMake(spec);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->Spec(), spec);
  // Defaults are printed: the bare spec names every parameter too.
  auto bare = MustMake(absl::StrCat(c.name, "(keep=0.3)"));
  ASSERT_NE(bare, nullptr);
  const std::string bare_spec = bare->Spec();
  EXPECT_EQ(std::count(bare_spec.begin(), bare_spec.end(), '='),
            std::count(spec.begin(), spec.end(), '='));
}

TEST_P(ReducerContract, QueriesAreRequiredOnlyByScorers) {
  const Case& c = GetParam();
  std::mt19937 rng(4);
  auto r = MustMake(SpecText(c, 0.5));
  ASSERT_NE(r, nullptr);
  LayerKV kv = RandomLayer(3, 32, 8, rng);
  const absl::Status s = r->Reduce({}, kv);
  if (c.needs_queries) {
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
    EXPECT_NE(s.message().find(c.name), absl::string_view::npos) << s;
    EXPECT_FALSE(kv.Reduced());
  } else {
    EXPECT_TRUE(s.ok()) << s;
  }
}

TEST_P(ReducerContract, RejectsQueriesOfTheWrongShape) {
  const Case& c = GetParam();
  if (!c.needs_queries) GTEST_SKIP() << "ignores queries";
  std::mt19937 rng(5);
  auto r = MustMake(SpecText(c, 0.5));
  ASSERT_NE(r, nullptr);
  struct Bad {
    HeadTensor q;
    const char* field;
  };
  HeadTensor short_data = Random(3, 8, 8, rng);
  short_data.data.pop_back();
  HeadTensor nan = Random(3, 8, 8, rng);
  nan.data[5] = NAN;
  const Bad bad[] = {
      {Random(4, 8, 8, rng), "q_heads"},
      {Random(0, 8, 8, rng), "q_heads"},
      {Random(3, 8, 16, rng), "head_dim"},
      {Random(3, 33, 8, rng), "q_tokens"},
      {Random(3, 0, 8, rng), "q_tokens"},
      {short_data, "queries hold"},
      {nan, "not finite"},
  };
  for (const Bad& b : bad) {
    LayerKV kv = RandomLayer(3, 32, 8, rng);
    const absl::Status s = r->Reduce({&b.q}, kv);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find(b.field), absl::string_view::npos) << s;
    EXPECT_FALSE(kv.Reduced());
  }
}

TEST_P(ReducerContract, RejectsBadLayers) {
  const Case& c = GetParam();
  std::mt19937 rng(6);
  auto r = MustMake(SpecText(c, 0.5));
  ASSERT_NE(r, nullptr);
  const HeadTensor q = Random(3, 16, 8, rng);
  LayerKV kv = RandomLayer(3, 32, 8, rng);
  ASSERT_TRUE(r->Reduce({&q}, kv).ok());
  EXPECT_EQ(r->Reduce({&q}, kv).code(), absl::StatusCode::kFailedPrecondition);

  LayerKV mismatched = RandomLayer(3, 32, 8, rng);
  mismatched.v = Random(3, 31, 8, rng);
  EXPECT_EQ(r->Reduce({&q}, mismatched).code(),
            absl::StatusCode::kInvalidArgument);
  LayerKV empty;
  EXPECT_EQ(r->Reduce({&q}, empty).code(), absl::StatusCode::kInvalidArgument);
  LayerKV nan = RandomLayer(3, 32, 8, rng);
  nan.k.data[17] = INFINITY;
  EXPECT_EQ(r->Reduce({&q}, nan).code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(ReducerContract, RejectsBadParameters) {
  const Case& c = GetParam();
  for (const std::string& text :
       {absl::StrCat(c.name), absl::StrCat(c.name, "(keep=0)"),
        absl::StrCat(c.name, "(keep=1.5)"), absl::StrCat(c.name, "(keep=x)"),
        absl::StrCat(c.name, "(keep=0.5,bogus=1)"),
        absl::StrCat(c.name, "(keep=0.5,window=-1)")}) {
    auto r = Make(text);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_NE(r.status().message().find(c.name), absl::string_view::npos)
        << r.status();
  }
}

INSTANTIATE_TEST_SUITE_P(
    All, ReducerContract,
    testing::Values(Case{"streaming", "sinks=4", false, false},
                    Case{"keynorm", "window=4", false, false},
                    Case{"h2o", "recent=0.25", true, false},
                    Case{"snapkv", "window=8,kernel=3", true, false},
                    Case{"snapkv", "window=8,pool=avg", true, false},
                    Case{"kvmerger", "window=4,heavy=0.25", true, true},
                    Case{"ems", "window=4,evict=0.5", true, true},
                    Case{"ems", "window=4,evict=0", true, true}),
    [](const testing::TestParamInfo<Case>& info) {
      return absl::StrCat(info.param.name, info.index);
    });

// ---------------------------------------------------------------------------
// The factory.

TEST(MakeTokenReducer, OtherNamesAreNotReducers) {
  for (const char* name : {"quant", "zstd", "lowrank", "raw"}) {
    auto r = MakeTokenReducer(StageSpec{name, {{"k", "int4"}}});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(*r, nullptr) << name;
  }
}

TEST(Budget, RoundsHalvesUpAndKeepsAtLeastOne) {
  EXPECT_EQ(KeepCount(0.5, 5), 3u);
  EXPECT_EQ(KeepCount(0.3, 10), 3u);
  EXPECT_EQ(KeepCount(0.01, 10), 1u);
  EXPECT_EQ(KeepCount(1.0, 7), 7u);
  EXPECT_EQ(KeepCount(0.999999, 7), 7u);
  EXPECT_EQ(reduce::ShareOf(0.5, 3), 2u);
  EXPECT_EQ(reduce::ShareOf(0.0, 3), 0u);
}

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
