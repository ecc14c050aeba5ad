#include "store/engine/ssd/segment_format.h"

#include <cstring>
#include <vector>

#include "core/chunk_format.h"
#include "gtest/gtest.h"
#include "store/engine/ssd/aligned_buffer.h"

namespace kvd {
namespace {

ChunkKey Key(uint8_t b) {
  ChunkKey k;
  k.bytes.fill(b);
  return k;
}

// Appends one record for `payload` to `segment`.
void Append(std::vector<uint8_t>& segment, const ChunkKey& key,
            std::string_view codec, const std::vector<uint8_t>& payload) {
  const uint64_t at = segment.size();
  segment.resize(at + RecordSize(codec.size(), payload.size()), 0);
  ASSERT_TRUE(EncodeRecordHeader(key, Key(0xEE), codec, payload.size(),
                                 Checksum64(payload),
                                 absl::MakeSpan(segment).subspan(at))
                  .ok());
  std::memcpy(segment.data() + at + RecordHeaderLen(codec.size()),
              payload.data(), payload.size());
}

std::vector<uint8_t> Payload(size_t n, uint8_t seed) {
  std::vector<uint8_t> p(n);
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(i * 7 + seed);
  return p;
}

TEST(SegmentFormat, RoundTripAndWalk) {
  std::vector<uint8_t> seg;
  Append(seg, Key(1), "", Payload(10, 1));
  Append(seg, Key(2), "quant(k=int4)|zstd", Payload(5000, 2));
  Append(seg, Key(3), "x", Payload(4096 - 105, 3));  // exactly one block
  EXPECT_EQ(seg.size(), 4096u + 3 * 4096u);
  seg.resize(seg.size() + 8192, 0);  // unwritten tail

  SegmentReader reader(seg);
  std::vector<uint8_t> keys;
  while (true) {
    auto next = reader.Next();
    ASSERT_TRUE(next.ok()) << next.status();
    if (!next->has_value()) break;
    keys.push_back((*next)->header.key.bytes[0]);
    EXPECT_EQ((*next)->header.parent, Key(0xEE));
    EXPECT_EQ(reader.offset() % 4096, 0u);
  }
  EXPECT_EQ(keys, (std::vector<uint8_t>{1, 2, 3}));

  auto view = DecodeRecord(absl::MakeConstSpan(seg).subspan(4096));
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->header.codec, "quant(k=int4)|zstd");
  EXPECT_EQ(std::vector<uint8_t>(view->payload.begin(), view->payload.end()),
            Payload(5000, 2));
}

TEST(SegmentFormat, FlippedPayloadByteIsDataLoss) {
  std::vector<uint8_t> seg;
  Append(seg, Key(1), "", Payload(100, 1));
  seg[RecordHeaderLen(0) + 50] ^= 1;
  auto view = DecodeRecord(seg);
  EXPECT_TRUE(absl::IsDataLoss(view.status())) << view.status();
  EXPECT_NE(view.status().message().find("payload checksum"),
            std::string::npos);
  SegmentReader reader(seg);
  auto next = reader.Next();
  EXPECT_TRUE(absl::IsDataLoss(next.status()));
  EXPECT_NE(next.status().message().find("segment offset=0"),
            std::string::npos);
}

TEST(SegmentFormat, FlippedHeaderByteIsDataLoss) {
  for (size_t i : {0u, 5u, 9u, 40u, 70u, 100u}) {
    std::vector<uint8_t> seg;
    Append(seg, Key(1), "abcd", Payload(100, 1));
    seg[i] ^= 0x40;
    auto h = DecodeRecordHeader(seg);
    EXPECT_TRUE(absl::IsDataLoss(h.status())) << i << " " << h.status();
  }
}

TEST(SegmentFormat, WrongVersionIsInvalidArgument) {
  std::vector<uint8_t> seg;
  Append(seg, Key(1), "", Payload(100, 1));
  const uint16_t v = 9;
  std::memcpy(seg.data() + 4, &v, 2);
  const uint64_t sum =
      Checksum64(absl::MakeConstSpan(seg.data(), kRecordFixedBytes));
  std::memcpy(seg.data() + kRecordFixedBytes, &sum, 8);  // re-seal the header
  auto h = DecodeRecordHeader(seg);
  EXPECT_TRUE(absl::IsInvalidArgument(h.status())) << h.status();
  EXPECT_NE(h.status().message().find("version=9"), std::string::npos);
}

TEST(SegmentFormat, TruncatedIsDataLoss) {
  std::vector<uint8_t> seg;
  Append(seg, Key(1), "", Payload(10000, 1));
  for (size_t n : {0ul, 10ul, 103ul, 4096ul, seg.size() - 1}) {
    auto view = DecodeRecord(absl::MakeConstSpan(seg).first(n));
    EXPECT_TRUE(absl::IsDataLoss(view.status())) << n << " " << view.status();
  }
  // The walker stops cleanly only at an all-zero block.
  SegmentReader reader(absl::MakeConstSpan(seg).first(8192));
  EXPECT_TRUE(absl::IsDataLoss(reader.Next().status()));
  EXPECT_TRUE(
      absl::IsDataLoss(reader.Next().status()));  // stays at the bad record
}

TEST(SegmentFormat, NonZeroPaddingIsDataLoss) {
  std::vector<uint8_t> seg;
  Append(seg, Key(1), "", Payload(10, 1));
  seg[4000] = 1;
  EXPECT_TRUE(absl::IsDataLoss(DecodeRecord(seg).status()));
}

TEST(SegmentFormat, EncodeBounds) {
  std::vector<uint8_t> buf(4096);
  std::string long_codec(kMaxRecordCodecBytes + 1, 'c');
  EXPECT_TRUE(absl::IsInvalidArgument(EncodeRecordHeader(
      Key(1), Key(0), long_codec, 1, 0, absl::MakeSpan(buf))));
  EXPECT_TRUE(absl::IsInvalidArgument(EncodeRecordHeader(
      Key(1), Key(0), "", 1, 0, absl::MakeSpan(buf).first(50))));
  EXPECT_TRUE(absl::IsInvalidArgument(EncodeRecordHeader(
      Key(1), Key(0), "", kMaxRecordPayloadBytes + 1, 0, absl::MakeSpan(buf))));
}

TEST(SegmentFormat, FileNames) {
  EXPECT_EQ(SegmentFileName(42), "seg-0000000042.kvd");
  EXPECT_EQ(ParseSegmentFileName("seg-0000000042.kvd"), 42u);
  EXPECT_EQ(ParseSegmentFileName("seg-7.kvd"), 7u);
  EXPECT_FALSE(ParseSegmentFileName("seg-0.kvd").has_value());
  EXPECT_FALSE(ParseSegmentFileName("seg-.kvd").has_value());
  EXPECT_FALSE(ParseSegmentFileName("seg-+1.kvd").has_value());
  EXPECT_FALSE(ParseSegmentFileName("seg-99999999999.kvd").has_value());
  EXPECT_FALSE(ParseSegmentFileName("seg-4294967296.kvd").has_value());
  EXPECT_FALSE(ParseSegmentFileName("index").has_value());
}

}  // namespace
}  // namespace kvd
