#include "core/chunk_format.h"

#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvd {
namespace {

ModelSpec SmallSpec() {
  ModelSpec s;
  s.model_id = "test/tiny";
  s.num_layers = 3;
  s.kv_heads = 2;
  s.head_dim = 4;
  s.chunk_tokens = 8;
  return s;
}

// Layer i, tensor t, head h, token k, dim d holds a distinct u16 value.
std::vector<std::vector<uint8_t>> PatternLayers(const ModelSpec& s) {
  std::vector<std::vector<uint8_t>> layers;
  for (uint32_t i = 0; i < s.num_layers; ++i) {
    std::vector<uint8_t> l(s.LayerBytes(s.chunk_tokens));
    for (size_t b = 0; b < l.size(); ++b)
      l[b] = static_cast<uint8_t>(i * 31 + b * 7);
    layers.push_back(std::move(l));
  }
  return layers;
}

std::vector<uint8_t> Encode(const ModelSpec& s, const std::string& codec = "") {
  auto layers = PatternLayers(s);
  std::vector<absl::Span<const uint8_t>> spans(layers.begin(), layers.end());
  ChunkIdentity id;
  id.namespace_fp = s.Fingerprint();
  id.key =
      NextChunkKey(id.namespace_fp, std::vector<uint32_t>(s.chunk_tokens, 1));
  id.token_count = s.chunk_tokens;
  id.codec_chain = codec;
  auto obj = EncodeChunkObject(s, id, spans);
  EXPECT_TRUE(obj.ok()) << obj.status();
  return *obj;
}

TEST(ChunkFormatTest, RoundTrip) {
  ModelSpec s = SmallSpec();
  std::vector<uint8_t> obj = Encode(s);
  auto h = VerifyChunkObject(obj);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->num_layers, 3u);
  EXPECT_EQ(h->token_count, 8u);
  EXPECT_EQ(h->namespace_fp, s.Fingerprint());
  EXPECT_TRUE(h->parent.IsZero());
  EXPECT_EQ(h->ObjectSize(), obj.size());
  EXPECT_EQ(obj.size(), h->header_size + s.ChunkPayloadBytes());
  EXPECT_TRUE(h->IsRaw());
}

TEST(ChunkFormatTest, EveryFlippedByteIsDetected) {
  std::vector<uint8_t> obj = Encode(SmallSpec());
  for (size_t i = 0; i < obj.size(); ++i) {
    std::vector<uint8_t> bad = obj;
    bad[i] ^= 0x40;
    EXPECT_FALSE(VerifyChunkObject(bad).ok()) << "flip at byte " << i;
  }
}

TEST(ChunkFormatTest, TruncatedAndWrongVersion) {
  std::vector<uint8_t> obj = Encode(SmallSpec());
  for (size_t n : {size_t{0}, size_t{10}, size_t{131}, obj.size() - 1}) {
    auto h = VerifyChunkObject(absl::MakeConstSpan(obj).subspan(0, n));
    EXPECT_EQ(h.status().code(), absl::StatusCode::kDataLoss)
        << n << ": " << h.status();
  }
  EXPECT_EQ(DecodeChunkHeader(absl::MakeConstSpan(obj).subspan(0, 140))
                .status()
                .code(),
            absl::StatusCode::kOutOfRange);
  std::vector<uint8_t> v2 = obj;
  v2[4] = 2;
  EXPECT_EQ(VerifyChunkObject(v2).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ChunkFormatTest, EncodeRejectsBadInput) {
  ModelSpec s = SmallSpec();
  auto layers = PatternLayers(s);
  layers[1].pop_back();
  std::vector<absl::Span<const uint8_t>> spans(layers.begin(), layers.end());
  ChunkIdentity id;
  id.token_count = s.chunk_tokens;
  auto obj = EncodeChunkObject(s, id, spans);
  EXPECT_EQ(obj.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(obj.status().message().find("layer 1"), std::string::npos)
      << obj.status();
  spans.pop_back();
  EXPECT_FALSE(EncodeChunkObject(s, id, spans).ok());
}

TEST(ChunkFormatTest, LayerRangeIsOneContiguousRange) {
  ModelSpec s = SmallSpec();
  auto h = VerifyChunkObject(Encode(s));
  ASSERT_TRUE(h.ok());
  ChunkSelection sel;
  sel.layer_begin = 1;
  sel.layer_end = 3;
  auto ranges = SelectByteRanges(*h, sel);
  ASSERT_TRUE(ranges.ok());
  ASSERT_EQ(ranges->size(), 1u);
  EXPECT_EQ((*ranges)[0],
            (ByteRange{h->layers[1].offset, 2 * s.LayerBytes(8)}));
}

TEST(ChunkFormatTest, HeaderComesFirstAndMergesWithLayerZero) {
  ModelSpec s = SmallSpec();
  auto h = VerifyChunkObject(Encode(s));
  ASSERT_TRUE(h.ok());
  ChunkSelection first{.layer_end = 2, .with_header = true};
  auto ranges = SelectByteRanges(*h, first);
  ASSERT_TRUE(ranges.ok());
  ASSERT_EQ(ranges->size(), 1u);
  EXPECT_EQ((*ranges)[0], (ByteRange{0, h->layers[2].offset}));

  ChunkSelection later{.layer_begin = 2, .layer_end = 3, .with_header = true};
  ranges = SelectByteRanges(*h, later);
  ASSERT_TRUE(ranges.ok());
  ASSERT_EQ(ranges->size(), 2u);
  EXPECT_EQ((*ranges)[0], (ByteRange{0, h->header_size}));
  EXPECT_EQ((*ranges)[1], (ByteRange{h->layers[2].offset, s.LayerBytes(8)}));
}

TEST(ChunkFormatTest, ExplicitRangesAreCheckedAndMerged) {
  ModelSpec s = SmallSpec();
  auto h = VerifyChunkObject(Encode(s));
  ASSERT_TRUE(h.ok());
  ChunkSelection sel{.ranges = {{200, 8}, {208, 8}, {100, 4}}};
  auto ranges = SelectByteRanges(*h, sel);
  ASSERT_TRUE(ranges.ok()) << ranges.status();
  EXPECT_THAT(*ranges,
              ::testing::ElementsAre(ByteRange{200, 16}, ByteRange{100, 4}));
  sel.ranges = {{h->ObjectSize() - 4, 8}};
  EXPECT_EQ(SelectByteRanges(*h, sel).status().code(),
            absl::StatusCode::kInvalidArgument);
  sel.ranges = {{0, 0}};
  EXPECT_EQ(SelectByteRanges(*h, sel).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ChunkFormatTest, HeadSliceSelectsEachTensorsHeads) {
  ModelSpec s = SmallSpec();
  std::vector<uint8_t> obj = Encode(s);
  auto h = VerifyChunkObject(obj);
  ASSERT_TRUE(h.ok());
  ChunkSelection sel;
  sel.layer_begin = 2;
  sel.layer_end = 3;
  sel.head_begin = 1;
  sel.head_end = 2;
  auto ranges = SelectByteRanges(*h, sel);
  ASSERT_TRUE(ranges.ok());
  const uint64_t head_bytes = 8 * 4 * 2;  // tokens * dim * bf16
  ASSERT_EQ(ranges->size(), 2u);          // K head 1, V head 1
  EXPECT_EQ((*ranges)[0],
            (ByteRange{h->layers[2].offset + head_bytes, head_bytes}));
  EXPECT_EQ((*ranges)[1],
            (ByteRange{h->layers[2].offset + 3 * head_bytes, head_bytes}));
}

TEST(ChunkFormatTest, SelectionErrors) {
  ModelSpec s = SmallSpec();
  auto raw = VerifyChunkObject(Encode(s));
  ASSERT_TRUE(raw.ok());
  ChunkSelection empty;
  empty.layer_begin = 5;
  EXPECT_EQ(SelectByteRanges(*raw, empty).status().code(),
            absl::StatusCode::kInvalidArgument);

  auto layers = PatternLayers(s);
  std::vector<absl::Span<const uint8_t>> spans(layers.begin(), layers.end());
  spans[0] = spans[0].subspan(0, 10);  // coded layers have any size
  ChunkIdentity id;
  id.token_count = 8;
  id.codec_chain = "zstd";
  auto coded_obj = EncodeChunkObject(s, id, spans);
  ASSERT_TRUE(coded_obj.ok()) << coded_obj.status();
  auto coded = VerifyChunkObject(*coded_obj);
  ASSERT_TRUE(coded.ok()) << coded.status();
  EXPECT_EQ(coded->codec_chain, "zstd");
  ChunkSelection heads;
  heads.head_end = 1;
  EXPECT_EQ(SelectByteRanges(*coded, heads).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvd

namespace kvd {
namespace {

TEST(ChunkFormatTest, CopyVerifiedObjectCopiesAndDetects) {
  ModelSpec s = SmallSpec();
  s.num_layers = 2;
  s.chunk_tokens = 300;  // layers of 76800 bytes: several copy blocks each
  s.kv_heads = 2;
  s.head_dim = 64;
  std::vector<uint8_t> obj = Encode(s);
  auto h = DecodeChunkHeader(obj);
  ASSERT_TRUE(h.ok()) << h.status();
  std::vector<uint8_t> dst(obj.size());
  ASSERT_TRUE(CopyVerifiedObject(*h, obj.data(), dst.data()).ok());
  EXPECT_EQ(dst, obj);
  obj[h->layers[1].offset + 40000] ^= 1;
  absl::Status st = CopyVerifiedObject(*h, obj.data(), dst.data());
  EXPECT_TRUE(absl::IsDataLoss(st)) << st;
  EXPECT_NE(st.message().find("layer 1"), std::string::npos) << st;
}

}  // namespace
}  // namespace kvd
