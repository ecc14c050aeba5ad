#include "transfer/nccl/nccl_id.h"

#include <random>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvd {
namespace {

using ::testing::HasSubstr;

NcclId RandomId(uint64_t seed) {
  std::mt19937_64 rng(seed);
  NcclId id;
  for (auto& b : id.bytes) b = static_cast<uint8_t>(rng());
  return id;
}

void ExpectError(absl::string_view text, absl::StatusCode code,
                 const std::string& message) {
  const auto parsed = ParseNcclId(text);
  EXPECT_EQ(parsed.status().code(), code) << parsed.status();
  EXPECT_THAT(parsed.status().message(), HasSubstr(message));
}

TEST(NcclIdTest, RoundTrip) {
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const NcclId id = RandomId(seed);
    const std::string text = SerializeNcclId(id);
    EXPECT_EQ(text.size(), kNcclIdTextSize);
    EXPECT_EQ(text.size(), 6u + 256 + 1 + 16);
    EXPECT_TRUE(text.starts_with("nccl1:"));
    auto parsed = ParseNcclId(text);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, id);
  }
}

TEST(NcclIdTest, KnownBytes) {
  NcclId id;
  id.bytes[0] = 0xab;
  id.bytes[127] = 0x01;
  const std::string text = SerializeNcclId(id);
  EXPECT_EQ(text.substr(0, 10), "nccl1:ab00");
  EXPECT_EQ(text.substr(6 + 254, 3), "01:");
}

TEST(NcclIdTest, FramingErrors) {
  const std::string good = SerializeNcclId(RandomId(1));
  const auto inv = absl::StatusCode::kInvalidArgument;
  ExpectError("", inv, "does not start with \"nccl1:\"");
  ExpectError("nccl2:" + good.substr(6), inv, "does not start with");
  ExpectError("NCCL1:" + good.substr(6), inv, "does not start with");
  ExpectError(good.substr(0, good.size() - 1), inv,
              "has 278 characters, expected 279");
  ExpectError(good + "0", inv, "has 280 characters, expected 279");
  std::string bad = good;
  bad[262] = '-';
  ExpectError(bad, inv, "no ':' at offset 262");
}

TEST(NcclIdTest, CharacterErrorsNameTheOffset) {
  const std::string good = SerializeNcclId(RandomId(2));
  const auto inv = absl::StatusCode::kInvalidArgument;
  std::string bad = good;
  bad[6] = 'A';
  ExpectError(bad, inv, "has 'A' at offset 6, expected a lowercase hex digit");
  bad = good;
  bad[100] = 'g';
  ExpectError(bad, inv, "'g' at offset 100");
  bad = good;
  bad[50] = '\0';
  ExpectError(bad, inv, "byte 0x0 at offset 50");
  bad = good;
  bad[270] = 'z';
  ExpectError(bad, inv, "'z' at offset 270");
}

TEST(NcclIdTest, EveryChangedDigitIsDataLoss) {
  const std::string good = SerializeNcclId(RandomId(3));
  for (size_t i = 6; i < good.size(); ++i) {
    if (i == 262) continue;  // the separator
    std::string bad = good;
    bad[i] = bad[i] == '7' ? '8' : '7';
    const auto parsed = ParseNcclId(bad);
    ASSERT_EQ(parsed.status().code(), absl::StatusCode::kDataLoss)
        << "offset " << i << ": " << parsed.status();
    EXPECT_THAT(parsed.status().message(),
                HasSubstr("does not match its bytes"));
  }
}

TEST(NcclIdTest, AllZeroIdIsRejected) {
  const NcclId zero;
  EXPECT_TRUE(zero.IsZero());
  EXPECT_FALSE(RandomId(4).IsZero());
  ExpectError(SerializeNcclId(zero), absl::StatusCode::kInvalidArgument,
              "all zero");
}

}  // namespace
}  // namespace kvd
