#include "compress/token_reducer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>

#include "absl/strings/str_cat.h"
#include "compress/reduce/budget.h"
#include "compress/reduce/test_util.h"

namespace kvd::compress {
namespace {

using reduce::KeepCount;
using testing_util::Make;
using testing_util::MustMake;
using testing_util::Random;
using testing_util::RandomLayer;

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
                    Case{"streaming", "sinks=0", false, false},
                    Case{"keynorm", "window=4", false, false},
                    Case{"keynorm", "window=1000", false, false},
                    Case{"h2o", "recent=0.25", true, false},
                    Case{"h2o", "recent=1", true, false},
                    Case{"h2o", "recent=0", true, false},
                    Case{"snapkv", "window=8,kernel=3", true, false},
                    Case{"snapkv", "window=8,pool=avg", true, false},
                    Case{"snapkv", "window=1000,kernel=1", true, false},
                    Case{"kvmerger", "window=4,heavy=0.25", true, true},
                    Case{"kvmerger", "window=0,heavy=1", true, true},
                    Case{"kvmerger", "window=1000,heavy=0", true, true},
                    Case{"ems", "window=4,evict=0.5", true, true},
                    Case{"ems", "window=4,evict=0", true, true},
                    Case{"ems", "window=1000,evict=0", true, true},
                    Case{"ems", "window=1,evict=1", true, false}),
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

}  // namespace
}  // namespace kvd::compress
