#include "compress/codec_spec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace kvd::compress {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

TEST(ParseChainSpec, ParsesStagesAndParameters) {
  auto stages = ParseChainSpec(
      " lowrank(rk=32, rv=48,window=32) | "
      "quant(k=int4/channel,v=int4/token,g=32)|zstd ");
  ASSERT_TRUE(stages.ok()) << stages.status();
  ASSERT_EQ(stages->size(), 3u);
  EXPECT_EQ((*stages)[0].name, "lowrank");
  EXPECT_THAT(
      (*stages)[0].params,
      ElementsAre(Pair("rk", "32"), Pair("rv", "48"), Pair("window", "32")));
  EXPECT_THAT((*stages)[1].params,
              ElementsAre(Pair("k", "int4/channel"), Pair("v", "int4/token"),
                          Pair("g", "32")));
  EXPECT_EQ((*stages)[2].name, "zstd");
  EXPECT_TRUE((*stages)[2].params.empty());
}

TEST(ParseChainSpec, EmptyIsTheRawChain) {
  auto stages = ParseChainSpec("  ");
  ASSERT_TRUE(stages.ok());
  EXPECT_TRUE(stages->empty());
}

TEST(ParseChainSpec, RejectsBadGrammarNamingTheOffset) {
  for (const char* bad :
       {"quant(", "quant(k)", "quant(k=)", "quant(k=1,)", "|zstd", "zstd|",
        "Quant", "quant(k=1)(", "quant(k=1,k=2)", "a|b|c|d|e|f|g|h|i",
        "quant(k=a b)"}) {
    auto stages = ParseChainSpec(bad);
    EXPECT_EQ(stages.status().code(), absl::StatusCode::kInvalidArgument)
        << bad;
    EXPECT_THAT(stages.status().message(), HasSubstr("at offset")) << bad;
  }
}

TEST(StageParams, TypedGettersCheckBoundsAndUnknownKeys) {
  auto stages = ParseChainSpec("quant(g=32,keep=0.25,k=int4,typo=1)");
  ASSERT_TRUE(stages.ok());
  StageParams p((*stages)[0]);
  EXPECT_EQ(*p.Int("g", 0, 1, 1024), 32);
  EXPECT_EQ(*p.Int("window", 7, 0, 10), 7);
  EXPECT_DOUBLE_EQ(*p.Double("keep", 1, 0, 1), 0.25);
  EXPECT_EQ(*p.Enum("k", "int8", {"int8", "int4"}), "int4");
  EXPECT_THAT(p.Finish().message(), HasSubstr("unknown parameter typo"));
  EXPECT_THAT(p.Int("g", 0, 64, 128).status().message(),
              HasSubstr("g=32 is outside [64, 128]"));
  EXPECT_THAT(p.Enum("k", "", {"int2"}).status().message(),
              HasSubstr("k=int4 is not one of int2"));
  EXPECT_FALSE(p.Int("keep", 0, 0, 1).ok());
}

}  // namespace
}  // namespace kvd::compress
