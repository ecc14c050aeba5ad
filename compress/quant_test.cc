#include "compress/quant.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "compress/codec_test_util.h"

namespace kvd::compress {
namespace {

using ::testing::HasSubstr;

struct Case {
  QuantFormat format;
  uint32_t group;
  uint32_t tokens;
};

class QuantTest : public ::testing::TestWithParam<Case> {};

// Round trip through QuantizeTensor / DequantizeTensor and check every
// element against the bound the format promises: half a step of its
// group's range, plus the fp16 rounding of the minimum and scale.
TEST_P(QuantTest, RoundTripWithinHalfAStep) {
  const Case c = GetParam();
  const HeadTensor x = RandomTensor(3, c.tokens, 64, 7);
  for (bool entropy : {false, true}) {
    ByteWriter w;
    ASSERT_TRUE(
        QuantizeTensor(c.format, c.group, entropy, x, c.tokens, w).ok());
    HeadTensor y(3, c.tokens, 64);
    ByteReader r(w.bytes());
    ASSERT_TRUE(
        DequantizeTensor(c.format, c.group, entropy, r, c.tokens, y).ok());
    EXPECT_EQ(r.remaining(), 0u);
    const float maxq = float((1u << c.format.bits) - 1);
    for (uint32_t h = 0; h < 3; ++h) {
      for (uint32_t t = 0; t < c.tokens; ++t) {
        for (uint32_t d = 0; d < 64; ++d) {
          const float v = x.Row(h, t)[d], got = y.Row(h, t)[d];
          float bound;
          if (c.format.mode == QuantMode::kFp8) {
            float amax = 0;
            for (uint32_t j = 0; j < 64; ++j)
              amax = std::max(amax, std::fabs(x.Row(h, t)[j]));
            bound = std::fabs(v) / 16 + amax / 448 * std::ldexp(1.0f, -9) +
                    amax * 1e-3f;
          } else {
            float mn = v, mx = v;
            if (c.format.mode == QuantMode::kPerChannel) {
              const uint32_t t0 = t / c.group * c.group;
              for (uint32_t j = t0; j < std::min(c.tokens, t0 + c.group); ++j) {
                mn = std::min(mn, x.Row(h, j)[d]);
                mx = std::max(mx, x.Row(h, j)[d]);
              }
            } else {
              const uint32_t g = std::min(c.group, 64u), c0 = d / g * g;
              for (uint32_t j = c0; j < std::min(64u, c0 + g); ++j) {
                mn = std::min(mn, x.Row(h, t)[j]);
                mx = std::max(mx, x.Row(h, t)[j]);
              }
            }
            bound = 0.5f * (mx - mn) / maxq +
                    (mx - mn + std::fabs(mn)) * std::ldexp(1.0f, -10) + 1e-6f;
          }
          ASSERT_LE(std::fabs(got - v), bound)
              << c.format.Name() << " g=" << c.group << " h=" << h << " t=" << t
              << " d=" << d << " entropy=" << entropy;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Formats, QuantTest,
    ::testing::Values(Case{{QuantMode::kPerChannel, 8}, 32, 256},
                      Case{{QuantMode::kPerChannel, 4}, 32, 256},
                      Case{{QuantMode::kPerChannel, 2}, 32, 256},
                      Case{{QuantMode::kPerChannel, 4}, 7, 100},
                      Case{{QuantMode::kPerToken, 8}, 32, 256},
                      Case{{QuantMode::kPerToken, 4}, 32, 256},
                      Case{{QuantMode::kPerToken, 2}, 16, 100},
                      Case{{QuantMode::kPerToken, 4}, 128, 33},
                      Case{{QuantMode::kFp8, 8}, 32, 256}));

TEST(Quant, PackedSizeIsCodesPlusFp16Params) {
  const HeadTensor x = RandomTensor(3, 256, 64, 1);
  ByteWriter w;
  ASSERT_TRUE(
      QuantizeTensor({QuantMode::kPerChannel, 4}, 32, false, x, 256, w).ok());
  // codes: 3*256*64 at 4 bits; params: (256/32) groups * 64 channels * 2 fp16.
  EXPECT_EQ(w.bytes().size(), 3u * 256 * 64 / 2 + 3u * 8 * 64 * 4);
}

TEST(Quant, RejectsNonFiniteAndOutOfRangeValues) {
  HeadTensor x = RandomTensor(1, 64, 64, 2);
  x.Row(0, 5)[3] = NAN;
  ByteWriter w;
  EXPECT_THAT(QuantizeTensor({QuantMode::kPerChannel, 4}, 32, false, x, 64, w)
                  .message(),
              HasSubstr("NaN or infinite"));
  x.Row(0, 5)[3] = 1e6f;
  EXPECT_THAT(
      QuantizeTensor({QuantMode::kPerToken, 4}, 32, false, x, 64, w).message(),
      HasSubstr("fp16 bound"));
}

TEST(Quant, TruncatedInputIsDataLoss) {
  const HeadTensor x = RandomTensor(2, 64, 64, 3);
  for (bool entropy : {false, true}) {
    ByteWriter w;
    ASSERT_TRUE(
        QuantizeTensor({QuantMode::kPerChannel, 2}, 32, entropy, x, 64, w)
            .ok());
    for (size_t cut :
         {size_t{0}, size_t{7}, w.bytes().size() / 2, w.bytes().size() - 1}) {
      HeadTensor y(2, 64, 64);
      ByteReader r(absl::MakeConstSpan(w.bytes()).first(cut));
      EXPECT_EQ(
          DequantizeTensor({QuantMode::kPerChannel, 2}, 32, entropy, r, 64, y)
              .code(),
          absl::StatusCode::kDataLoss)
          << cut;
    }
  }
}

TEST(Quant, ParseParamsNamesTheBadOne) {
  auto parse = [](const char* text) {
    auto stages = ParseChainSpec(text);
    return ParseQuantParams((*stages)[0]);
  };
  auto ok = parse("quant(k=int2/channel,v=fp8,g=64,window=16)");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->k.bits, 2u);
  EXPECT_EQ(ok->v.mode, QuantMode::kFp8);
  EXPECT_EQ(ok->group, 64u);
  EXPECT_EQ(ok->window, 16u);
  EXPECT_THAT(parse("quant(k=int3/channel)").status().message(),
              HasSubstr("int3/channel"));
  EXPECT_THAT(parse("quant(k=int4/row)").status().message(),
              HasSubstr("int4/row"));
  EXPECT_THAT(parse("quant(g=0)").status().message(), HasSubstr("g=0"));
  EXPECT_THAT(parse("quant(bits=4)").status().message(),
              HasSubstr("unknown parameter bits"));
}

}  // namespace
}  // namespace kvd::compress
