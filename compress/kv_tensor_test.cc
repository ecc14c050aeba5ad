#include "compress/kv_tensor.h"

#include <gtest/gtest.h>

#include <cmath>

namespace kvd::compress {
namespace {

TEST(Conversions, Bf16RoundsToNearestEven) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(Bf16ToFloat(0x3f80), 1.0f);
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(-2.5f)), -2.5f);
  // 1 + 2^-8 is halfway between two bf16 values: rounds to even (1.0).
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(1.0f + std::ldexp(1.0f, -8))), 1.0f);
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(NAN))));
}

TEST(Conversions, Fp16RoundTripsRepresentableValues) {
  for (float f : {0.0f, 1.0f, -3.5f, 65504.0f, 0.000061035156f}) {
    EXPECT_EQ(Fp16ToFloat(FloatToFp16(f)), f) << f;
  }
}

TEST(Conversions, Fp8E4M3CoversEveryCode) {
  for (int b = 0; b < 256; ++b) {
    const float f = Fp8E4M3ToFloat(static_cast<uint8_t>(b));
    if (std::isnan(f)) continue;
    if (f == 0.0f) continue;  // +0 and -0
    EXPECT_EQ(FloatToFp8E4M3(f), b) << b;
  }
  EXPECT_EQ(Fp8E4M3ToFloat(FloatToFp8E4M3(1000.0f)), 448.0f);
  EXPECT_EQ(Fp8E4M3ToFloat(FloatToFp8E4M3(-1000.0f)), -448.0f);
  // Relative error of a normal value is at most 2^-4.
  for (float f = 0.02f; f < 400.0f; f *= 1.37f) {
    EXPECT_NEAR(Fp8E4M3ToFloat(FloatToFp8E4M3(f)), f, f / 16) << f;
  }
}

TEST(TokenMap, ValidateChecksOrderAndBounds) {
  TokenMap m{{1, 5}, {0, 2, 3}, {0, 1, 5}};
  EXPECT_TRUE(m.Validate(6).ok());
  EXPECT_FALSE(m.Validate(5).ok());
  TokenMap unordered{{5, 1}, {0, 1, 2}, {5, 1}};
  EXPECT_FALSE(unordered.Validate(6).ok());
  TokenMap empty_set{{1}, {0, 0}, {}};
  EXPECT_FALSE(empty_set.Validate(6).ok());
  // Found by codec_layer_fuzz: an inner offset past the members.
  TokenMap past_end{{1, 5}, {0, 9, 3}, {0, 1, 5}};
  EXPECT_EQ(past_end.Validate(6).code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace kvd::compress
