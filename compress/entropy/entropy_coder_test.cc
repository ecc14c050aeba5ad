#include "compress/entropy/entropy_coder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace kvd::compress {
namespace {

using ::testing::HasSubstr;

// Symbols of a Gaussian with standard deviation `sigma` (in bins) centered
// in the alphabet, clamped to it: the shape of quantized K/V channels.
std::vector<uint8_t> Gaussian(size_t n, uint32_t alphabet, double sigma,
                              std::mt19937& rng) {
  std::normal_distribution<double> d(alphabet / 2.0, sigma);
  std::vector<uint8_t> v(n);
  for (uint8_t& x : v) {
    x = static_cast<uint8_t>(
        std::clamp<double>(std::floor(d(rng)), 0, alphabet - 1));
  }
  return v;
}

std::vector<uint8_t> Uniform(size_t n, uint32_t alphabet, std::mt19937& rng) {
  std::vector<uint8_t> v(n);
  for (uint8_t& x : v) x = static_cast<uint8_t>(rng() % alphabet);
  return v;
}

// Sum over streams of stream_len * (empirical entropy of the stream), bits.
double EntropyBits(const std::vector<uint8_t>& symbols, uint32_t streams) {
  const size_t len = symbols.size() / streams;
  double bits = 0;
  for (uint32_t s = 0; s < streams; ++s) {
    std::vector<double> c(256);
    for (size_t i = 0; i < len; ++i) ++c[symbols[s * len + i]];
    for (double x : c) {
      if (x > 0) bits -= x * std::log2(x / len);
    }
  }
  return bits;
}

// Encodes, decodes, checks the symbols come back; returns the encoded size.
size_t RoundTrip(const std::vector<uint8_t>& symbols, uint32_t streams,
                 uint32_t alphabet) {
  auto encoded = EntropyEncode(symbols, streams, alphabet);
  EXPECT_TRUE(encoded.ok()) << encoded.status();
  if (!encoded.ok()) return 0;
  std::vector<uint8_t> out(symbols.size(), 0xee);
  const absl::Status status =
      EntropyDecode(*encoded, streams, alphabet, absl::MakeSpan(out));
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_TRUE(out == symbols)
      << "streams=" << streams << " alphabet=" << alphabet;
  return encoded->size();
}

class EntropyAlphabetTest : public ::testing::TestWithParam<uint32_t> {};

TEST_P(EntropyAlphabetTest, RoundTripsEveryShape) {
  const uint32_t a = GetParam();
  std::mt19937 rng(a);
  for (size_t len :
       {size_t{1}, size_t{2}, size_t{17}, size_t{768}, size_t{5000}}) {
    for (uint32_t streams : {1u, 3u, 40u}) {
      SCOPED_TRACE(testing::Message()
                   << "len=" << len << " streams=" << streams);
      RoundTrip(Uniform(len * streams, a, rng), streams, a);
      RoundTrip(Gaussian(len * streams, a, a / 8.0 + 0.3, rng), streams, a);
      RoundTrip(std::vector<uint8_t>(len * streams, a - 1), streams, a);
      // Streams of different kinds side by side: const, uniform, skewed.
      std::vector<uint8_t> mixed;
      for (uint32_t s = 0; s < streams; ++s) {
        std::vector<uint8_t> one = s % 3 == 0 ? std::vector<uint8_t>(len, s % a)
                                   : s % 3 == 1
                                       ? Uniform(len, a, rng)
                                       : Gaussian(len, a, 0.5 + s % 5, rng);
        mixed.insert(mixed.end(), one.begin(), one.end());
      }
      RoundTrip(mixed, streams, a);
    }
  }
}

TEST_P(EntropyAlphabetTest, ExtremeSkewRoundTrips) {
  // One symbol nearly always, each other symbol once: frequencies at 1.
  const uint32_t a = GetParam();
  for (size_t len : {size_t{a}, size_t{768}, size_t{100000}}) {
    std::vector<uint8_t> v(len, 0);
    for (uint32_t s = 0; s < a && s < len; ++s)
      v[len - 1 - s] = static_cast<uint8_t>(s);
    RoundTrip(v, 1, a);
  }
}

INSTANTIATE_TEST_SUITE_P(Alphabets, EntropyAlphabetTest,
                         ::testing::Values(2u, 3u, 4u, 16u, 17u, 256u));

TEST(EntropyCoder, EmptyStreams) {
  for (uint32_t streams : {1u, 5u, 100000u}) {
    auto encoded = EntropyEncode({}, streams, 16);
    ASSERT_TRUE(encoded.ok()) << encoded.status();
    EXPECT_LE(encoded->size(), 10u);
    EXPECT_TRUE(EntropyDecode(*encoded, streams, 16, {}).ok());
  }
}

TEST(EntropyCoder, ManyShortStreams) {
  std::mt19937 rng(7);
  RoundTrip(Gaussian(4096 * 64, 16, 2.0, rng), 4096, 16);
  RoundTrip(Uniform(20000, 16, rng), 20000, 16);  // one symbol each
}

TEST(EntropyCoder, ConstStreamsCostBitsNotBytes) {
  std::vector<uint8_t> v;
  for (uint32_t s = 0; s < 1000; ++s) v.insert(v.end(), 768, s % 16);
  // 2-bit mode + 4-bit symbol per stream, plus the header.
  EXPECT_LE(RoundTrip(v, 1000, 16), 1000 * 6 / 8 + 16);
}

TEST(EntropyCoder, SkewedStreamsNearEntropy) {
  // 256 channels of 768 tokens of 4-bit symbols, each with its own spread.
  // Beyond the empirical entropy a stream pays its table (~50-90 bits at
  // M = 2^6..2^8), ~28 bits of rANS final state, its size field (~9) and
  // mode (2), and a little for the table's precision: measured 92.6 bits per
  // stream, 4.2% of the entropy.
  std::mt19937 rng(1);
  std::vector<uint8_t> v;
  for (int s = 0; s < 256; ++s) {
    auto one = Gaussian(768, 16, 0.8 + (s % 16) * 0.15, rng);
    v.insert(v.end(), one.begin(), one.end());
  }
  const double entropy = EntropyBits(v, 256);
  const double bits = 8.0 * RoundTrip(v, 256, 16);
  EXPECT_LT(bits, entropy + 256 * 120.0) << "entropy " << entropy;
  EXPECT_LT(bits, entropy * 1.05);

  // One long stream: the table is amortized and rANS itself is within
  // 0.1% (measured 0.055%).
  auto one = Gaussian(1 << 20, 16, 1.5, rng);
  EXPECT_LT(8.0 * RoundTrip(one, 1, 16), EntropyBits(one, 1) * 1.001 + 100);
}

TEST(EntropyCoder, SimilarStreamsShareATable) {
  // Streams of one law: the shared table is paid once, so a stream pays only
  // its final state, size and mode (measured 46 bits; own tables cost ~90
  // above).
  std::mt19937 rng(3);
  const auto v = Gaussian(512 * 768, 16, 2.0, rng);
  EXPECT_LT(8.0 * RoundTrip(v, 512, 16), EntropyBits(v, 512) + 512 * 55.0);
}

TEST(EntropyCoder, UniformStreamsFallBackToPacking) {
  std::mt19937 rng(5);
  for (uint32_t a : {2u, 4u, 16u, 256u}) {
    const auto v = Uniform(64 * 768, a, rng);
    const size_t packed = 64 * 768 * std::bit_width(a - 1) / 8;
    EXPECT_LE(RoundTrip(v, 64, a), packed + 64 * 2 + 64) << a;
  }
}

TEST(EntropyCoder, RejectsBadArguments) {
  const std::vector<uint8_t> v = {0, 1, 2, 3, 4, 5};
  EXPECT_EQ(EntropyEncode(v, 0, 16).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EntropyEncode(v, 4, 16).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EntropyEncode(v, 1, 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EntropyEncode(v, 1, 257).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto bad = EntropyEncode(v, 2, 5);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("symbols[5]=5"));

  auto encoded = EntropyEncode(v, 2, 16);
  ASSERT_TRUE(encoded.ok());
  std::vector<uint8_t> out(6);
  EXPECT_EQ(EntropyDecode(*encoded, 4, 16, absl::MakeSpan(out)).code(),
            absl::StatusCode::kInvalidArgument);
  // Arguments that are fine by themselves but not what was encoded.
  EXPECT_EQ(EntropyDecode(*encoded, 3, 16, absl::MakeSpan(out)).code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(EntropyDecode(*encoded, 2, 17, absl::MakeSpan(out)).code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(EntropyDecode(*encoded, 2, 16, absl::MakeSpan(out).first(4)).code(),
            absl::StatusCode::kDataLoss);
}

// Encodings of each stream mode, for the corruption tests.
std::vector<std::vector<uint8_t>> Samples() {
  std::mt19937 rng(11);
  std::vector<std::vector<uint8_t>> inputs;
  inputs.push_back(Gaussian(4 * 300, 16, 1.5, rng));   // own or shared
  std::vector<uint8_t> mixed = Uniform(300, 16, rng);  // raw
  mixed.insert(mixed.end(), 300, 3);                   // const
  for (int i = 0; i < 2; ++i) {
    auto g = Gaussian(300, 16, 1.0 + i, rng);
    mixed.insert(mixed.end(), g.begin(), g.end());
  }
  inputs.push_back(mixed);
  std::vector<std::vector<uint8_t>> out;
  for (const auto& in : inputs) out.push_back(*EntropyEncode(in, 4, 16));
  return out;
}

bool IsCorruptionCode(const absl::Status& s) {
  return s.code() == absl::StatusCode::kDataLoss ||
         s.code() == absl::StatusCode::kInvalidArgument;
}

TEST(EntropyCoder, TruncatedOrExtendedInputIsDataLoss) {
  std::vector<uint8_t> out(1200);
  for (const auto& enc : Samples()) {
    for (size_t n = 0; n < enc.size(); ++n) {
      const absl::Status s = EntropyDecode(absl::MakeConstSpan(enc).first(n), 4,
                                           16, absl::MakeSpan(out));
      EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << n << " " << s;
    }
    std::vector<uint8_t> longer = enc;
    longer.push_back(0);
    EXPECT_EQ(EntropyDecode(longer, 4, 16, absl::MakeSpan(out)).code(),
              absl::StatusCode::kDataLoss);
  }
}

TEST(EntropyCoder, FlippedBitsAreDetectedOrHarmless) {
  // Every single-bit flip decodes without a crash; a flip may go unnoticed
  // only where it leaves a valid encoding (a raw code, an unused size bit),
  // so most must be caught.
  std::vector<uint8_t> out(1200);
  for (const auto& enc : Samples()) {
    size_t caught = 0;
    for (size_t bit = 0; bit < enc.size() * 8; ++bit) {
      std::vector<uint8_t> bad = enc;
      bad[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
      const absl::Status s = EntropyDecode(bad, 4, 16, absl::MakeSpan(out));
      if (!s.ok()) {
        EXPECT_TRUE(IsCorruptionCode(s)) << s;
        ++caught;
      }
    }
    EXPECT_GT(caught, enc.size() * 8 / 2);
  }
}

constexpr uint32_t kVersion = 2;  // the format's, entropy_coder.cc

// Builds side info by hand, for tables the encoder never writes.
class Bits {
 public:
  Bits& Put(uint64_t v, int n) {
    for (int i = 0; i < n; ++i, ++pos_) {
      if (pos_ % 8 == 0) bytes_.push_back(0);
      bytes_.back() |= static_cast<uint8_t>((v >> i & 1) << (pos_ % 8));
    }
    return *this;
  }
  // Header for one stream of `len` 16-ary symbols, no shared table.
  static Bits Header(uint32_t len) {
    Bits b;
    b.Put(kVersion, 8).Put(15, 8).Put(1, 6).Put(1, 1);
    b.Put(std::bit_width(len), 6).Put(len, std::bit_width(len)).Put(0, 1);
    return b;
  }
  std::vector<uint8_t> bytes_;
  size_t pos_ = 0;
};

TEST(EntropyCoder, RandomBytesNeverCrash) {
  std::mt19937 rng(13);
  std::vector<uint8_t> out(64);
  for (int i = 0; i < 20000; ++i) {
    // Half get a valid header (4 streams of 16 symbols, alphabet 16) so the
    // random bits reach the tables and payloads.
    Bits b;
    if (i % 2 == 0)
      b.Put(kVersion, 8).Put(15, 8).Put(3, 6).Put(4, 3).Put(5, 6).Put(16, 5);
    for (int n = rng() % 64; n > 0; --n) b.Put(rng(), 8);
    const absl::Status s = EntropyDecode(b.bytes_, 4, 16, absl::MakeSpan(out));
    if (!s.ok()) {
      EXPECT_TRUE(IsCorruptionCode(s)) << s;
    }
  }
}

absl::Status DecodeOne(std::vector<uint8_t> bytes, uint32_t len) {
  std::vector<uint8_t> out(len);
  return EntropyDecode(bytes, 1, 16, absl::MakeSpan(out));
}

TEST(EntropyCoder, BadTablesAreDataLoss) {
  // Own table, scale 4 (M = 16), symbols 0..2, k = 4: 9 + 9 > 16.
  Bits over = Bits::Header(8);
  over.Put(2, 2).Put(4, 4).Put(0, 4).Put(2, 4).Put(4, 4);
  over.Put(0, 1).Put(9, 4).Put(0, 1).Put(9, 4);
  absl::Status s = DecodeOne(over.bytes_, 8);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("frequencies reach"));

  Bits scale = Bits::Header(8);  // scale 13 > 12
  scale.Put(2, 2).Put(13, 4).Put(0, 4).Put(2, 4).Put(4, 4);
  s = DecodeOne(scale.bytes_, 8);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("bad header"));

  Bits range = Bits::Header(8);  // lo > hi
  range.Put(2, 2).Put(4, 4).Put(3, 4).Put(2, 4).Put(4, 4);
  EXPECT_EQ(DecodeOne(range.bytes_, 8).code(), absl::StatusCode::kDataLoss);

  Bits shared = Bits::Header(8);  // shared mode, no shared table sent
  shared.Put(3, 2);
  s = DecodeOne(shared.bytes_, 8);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("none sent"));

  Bits raw = Bits::Header(2);  // raw codes: 15 is fine, alphabet 16 has no 16
  raw.Put(1, 2).Put(0, 6);     // pad the side info to its byte
  raw.Put(15, 4).Put(15, 4);
  EXPECT_TRUE(DecodeOne(raw.bytes_, 2).ok());
}

TEST(EntropyCoder, RawCodeOutsideAlphabetIsDataLoss) {
  // Alphabet 10 packs 4-bit codes; 12 is not a symbol.
  std::vector<uint8_t> v = {9, 0, 9, 0};
  auto encoded = EntropyEncode(v, 1, 10);
  ASSERT_TRUE(encoded.ok());
  std::vector<uint8_t> bad = *encoded;
  bad.back() = 0xcc;
  std::vector<uint8_t> out(4);
  const absl::Status s = EntropyDecode(bad, 1, 10, absl::MakeSpan(out));
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_THAT(s.message(), HasSubstr("raw code 12"));
}

}  // namespace
}  // namespace kvd::compress
