#include "transfer/layout/chunk_gather.h"

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "transfer/layout/internal/paged_test_util.h"

namespace kvd {
namespace {

using ::kvd::testing::Case;
using ::kvd::testing::Cases;
using ::kvd::testing::ElementAt;
using ::kvd::testing::FillRandom;
using ::kvd::testing::PagedGeometry;
using ::kvd::testing::TestPagedLayer;
using ::testing::HasSubstr;

// A distinct value per element coordinate, truncated to the element size.
uint32_t Tag(uint32_t t, int64_t b, int64_t s, int64_t h, int64_t d) {
  uint32_t x = static_cast<uint32_t>(t * 1000003 + b * 10007 + s * 101 +
                                     h * 7919 + d * 31 + 12345);
  x ^= x >> 13;
  x *= 0x5bd1e995u;
  return x ^ (x >> 15);
}

// Writes Tag() into every element of the view.
void FillTags(const PagedLayerView& v) {
  const uint32_t es = v.element_size();
  for (uint32_t t = 0; t < v.num_tensors; ++t)
    for (int64_t b = 0; b < v.num_blocks; ++b)
      for (int64_t s = 0; s < v.block_size; ++s)
        for (int64_t h = 0; h < v.kv_heads; ++h)
          for (int64_t d = 0; d < v.head_dim; ++d) {
            const uint32_t tag = Tag(t, b, s, h, d);
            std::memcpy(ElementAt(v, t, b, s, h, d), &tag, es);
          }
}

class GatherScatterTest : public ::testing::TestWithParam<Case> {};

TEST_P(GatherScatterTest, GatherMatchesTagsElementByElement) {
  const Case& c = GetParam();
  TestPagedLayer layer(c.g);
  auto view = layer.View(layer.bytes().data());
  ASSERT_TRUE(view.ok()) << view.status();
  FillTags(*view);
  const ChunkSlots slots{c.block_ids, c.offset, c.tokens};
  auto plan = PlanLayerCopy(*view, slots, c.heads);
  ASSERT_TRUE(plan.ok()) << plan.status();

  std::vector<uint8_t> canon(plan->layer_bytes, 0xA5);
  ASSERT_TRUE(
      GatherChunkLayer(*view, slots, c.heads, absl::MakeSpan(canon)).ok());
  const uint32_t es = view->element_size();
  std::vector<bool> written(canon.size(), false);
  for (uint32_t t = 0; t < view->num_tensors; ++t)
    for (uint32_t h = 0; h < plan->heads; ++h)
      for (uint32_t tok = 0; tok < c.tokens; ++tok) {
        const uint32_t pos = c.offset + tok;
        const int64_t block = c.block_ids[pos / c.g.block_size];
        const int64_t slot = pos % c.g.block_size;
        for (uint32_t d = 0; d < view->head_dim; ++d) {
          // K/V index t, chunk head, token, dim in [T][H][tokens][D] order.
          const uint64_t off =
              (((uint64_t{t} * plan->chunk_heads + plan->chunk_head_begin + h) *
                    c.tokens +
                tok) *
                   view->head_dim +
               d) *
              es;
          uint32_t want = Tag(t, block, slot, plan->paged_head_begin + h, d);
          uint32_t got = 0;
          std::memcpy(&got, canon.data() + off, es);
          if (es < 4) want &= (1u << (8 * es)) - 1;
          ASSERT_EQ(got, want)
              << "t=" << t << " h=" << h << " tok=" << tok << " d=" << d;
          for (uint32_t i = 0; i < es; ++i) written[off + i] = true;
        }
      }
  for (size_t i = 0; i < canon.size(); ++i) {
    if (!written[i]) {
      ASSERT_EQ(canon[i], 0xA5) << "byte " << i;
    }
  }
}

TEST_P(GatherScatterTest, ScatterOfGatherRestoresTouchedSlotsOnly) {
  const Case& c = GetParam();
  TestPagedLayer src_layer(c.g), dst_layer(c.g);
  FillRandom(src_layer.bytes(), 1);
  FillRandom(dst_layer.bytes(), 2);
  const std::vector<uint8_t> dst_before = dst_layer.bytes();
  auto src = src_layer.View(src_layer.bytes().data());
  auto dst = dst_layer.View(dst_layer.bytes().data());
  ASSERT_TRUE(src.ok() && dst.ok());
  const ChunkSlots slots{c.block_ids, c.offset, c.tokens};
  auto plan = PlanLayerCopy(*src, slots, c.heads);
  ASSERT_TRUE(plan.ok()) << plan.status();
  std::vector<uint8_t> canon(plan->layer_bytes);
  ASSERT_TRUE(
      GatherChunkLayer(*src, slots, c.heads, absl::MakeSpan(canon)).ok());
  ASSERT_TRUE(ScatterChunkLayer(canon, slots, c.heads, *dst).ok());

  // Expected: dst_before with every touched element taken from src.
  std::vector<uint8_t> want = dst_before;
  auto want_view = dst_layer.View(want.data());
  const uint32_t es = src->element_size();
  for (uint32_t t = 0; t < src->num_tensors; ++t)
    for (uint32_t h = 0; h < plan->heads; ++h)
      for (uint32_t tok = 0; tok < c.tokens; ++tok) {
        const uint32_t pos = c.offset + tok;
        const int64_t block = c.block_ids[pos / c.g.block_size];
        const int64_t slot = pos % c.g.block_size;
        const int64_t head = plan->paged_head_begin + h;
        for (uint32_t d = 0; d < src->head_dim; ++d) {
          std::memcpy(ElementAt(*want_view, t, block, slot, head, d),
                      ElementAt(*src, t, block, slot, head, d), es);
        }
      }
  EXPECT_EQ(dst_layer.bytes(), want);

  // And gathering again from dst gives the same canonical bytes.
  std::vector<uint8_t> again(plan->layer_bytes);
  ASSERT_TRUE(
      GatherChunkLayer(*dst, slots, c.heads, absl::MakeSpan(again)).ok());
  EXPECT_EQ(again, canon);
}

INSTANTIATE_TEST_SUITE_P(Geometries, GatherScatterTest,
                         ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return info.param.g.Name() + "_" +
                                  std::to_string(info.index);
                         });

TEST(ChunkGatherTest, SmallNhdLayoutByHand) {
  // K, V each [num_blocks=2][block_size=2][kv_heads=2][head_dim=2], u16
  // element value = 1000*tensor + 100*block + 10*slot + 2*head + d.
  std::vector<uint16_t> k(16), v(16);
  for (int b = 0; b < 2; ++b)
    for (int s = 0; s < 2; ++s)
      for (int h = 0; h < 2; ++h)
        for (int d = 0; d < 2; ++d) {
          const int i = ((b * 2 + s) * 2 + h) * 2 + d;
          k[i] = static_cast<uint16_t>(100 * b + 10 * s + 2 * h + d);
          v[i] = static_cast<uint16_t>(1000 + k[i]);
        }
  TensorDesc kd{k.data(), DType::kFp16, {2, 2, 2, 2}, {8, 4, 2, 1}};
  TensorDesc vd{v.data(), DType::kFp16, {2, 2, 2, 2}, {8, 4, 2, 1}};
  auto view = PagedViewFromSeparate(kd, vd, kDimsNHD);
  ASSERT_TRUE(view.ok()) << view.status();
  // Tokens: block 1 slot 1, then block 0 slots 0 and 1.
  const std::vector<int32_t> ids = {1, 0};
  std::vector<uint16_t> canon(2 * 2 * 3 * 2);
  ASSERT_TRUE(
      GatherChunkLayer(*view, {ids, 1, 3}, {},
                       absl::MakeSpan(reinterpret_cast<uint8_t*>(canon.data()),
                                      canon.size() * 2))
          .ok());
  const std::vector<uint16_t> want = {// K head 0: tokens (1,1), (0,0), (0,1)
                                      110, 111, 0, 1, 10, 11,
                                      // K head 1
                                      112, 113, 2, 3, 12, 13,
                                      // V head 0
                                      1110, 1111, 1000, 1001, 1010, 1011,
                                      // V head 1
                                      1112, 1113, 1002, 1003, 1012, 1013};
  EXPECT_EQ(canon, want);
}

TEST(ChunkGatherTest, TensorParallelRanksAssembleTheFullLayer) {
  // A 4-head cache, and two ranks each holding 2 of its heads.
  PagedGeometry full_g{.dims = "NHTD", .kv_heads = 4};
  PagedGeometry rank_g{.dims = "NHTD", .kv_heads = 2};
  TestPagedLayer full(full_g), r0(rank_g), r1(rank_g);
  FillRandom(full.bytes(), 7);
  auto fv = full.View(full.bytes().data());
  auto v0 = r0.View(r0.bytes().data());
  auto v1 = r1.View(r1.bytes().data());
  ASSERT_TRUE(fv.ok() && v0.ok() && v1.ok());
  const std::vector<int32_t> all_ids = {0, 1, 2, 3};
  const ChunkSlots all{all_ids, 0, 16};
  // Split the full cache into the ranks' caches through the chunk layout.
  std::vector<uint8_t> whole(2 * 4 * 16 * 8 * 2);
  ASSERT_TRUE(GatherChunkLayer(*fv, all, {}, absl::MakeSpan(whole)).ok());
  ASSERT_TRUE(
      ScatterChunkLayer(whole, all, {.chunk_begin = 0, .chunk_heads = 4}, *v0)
          .ok());
  ASSERT_TRUE(
      ScatterChunkLayer(whole, all, {.chunk_begin = 2, .chunk_heads = 4}, *v1)
          .ok());
  // Each rank gathers its heads into one shared layer buffer.
  const std::vector<int32_t> ids = {3, 1};
  const ChunkSlots slots{ids, 1, 7};
  std::vector<uint8_t> from_full(2 * 4 * 7 * 8 * 2);
  std::vector<uint8_t> from_ranks(from_full.size(), 0);
  ASSERT_TRUE(GatherChunkLayer(*fv, slots, {}, absl::MakeSpan(from_full)).ok());
  ASSERT_TRUE(GatherChunkLayer(*v0, slots, {.chunk_begin = 0, .chunk_heads = 4},
                               absl::MakeSpan(from_ranks))
                  .ok());
  ASSERT_TRUE(GatherChunkLayer(*v1, slots, {.chunk_begin = 2, .chunk_heads = 4},
                               absl::MakeSpan(from_ranks))
                  .ok());
  EXPECT_EQ(from_ranks, from_full);
}

class ChunkTest : public ::testing::Test {
 protected:
  static constexpr uint32_t kLayers = 3;
  void SetUp() override {
    spec_.model_id = "test/tiny";
    spec_.dtype = DType::kBf16;
    spec_.num_layers = kLayers;
    spec_.kv_heads = 2;
    spec_.head_dim = 8;
    spec_.chunk_tokens = 8;
    const PagedGeometry g{.dims = "NTHD"};
    for (uint32_t i = 0; i < kLayers; ++i) {
      layers_.emplace_back(g);
      FillRandom(layers_.back().bytes(), 100 + i);
    }
    for (auto& l : layers_) views_.push_back(*l.View(l.bytes().data()));
  }

  ChunkIdentity Id() const {
    ChunkIdentity id;
    id.namespace_fp = spec_.Fingerprint();
    id.key = NextChunkKey(id.namespace_fp, std::vector<uint32_t>(8, 1));
    id.token_count = 8;
    return id;
  }

  // GatherChunkObject into a buffer of the size a raw object of `spec` has.
  absl::StatusOr<std::vector<uint8_t>> Gather(const ModelSpec& spec,
                                              const ChunkIdentity& id) const {
    std::vector<uint8_t> object(ChunkHeaderSize(0, spec.num_layers) +
                                spec.num_layers * spec.LayerBytes(8));
    KVD_RETURN_IF_ERROR(
        GatherChunkObject(spec, id, views_, slots_, absl::MakeSpan(object)));
    return object;
  }

  ModelSpec spec_;
  std::vector<TestPagedLayer> layers_;
  std::vector<PagedLayerView> views_;
  const std::vector<int32_t> ids_ = {1, 3, 0};
  const ChunkSlots slots_{ids_, 2, 8};
};

TEST_F(ChunkTest, PayloadIsLayersBackToBack) {
  const uint64_t layer_bytes = spec_.LayerBytes(8);
  std::vector<uint8_t> payload(kLayers * layer_bytes);
  ASSERT_TRUE(GatherChunk(views_, slots_, {}, absl::MakeSpan(payload)).ok());
  for (uint32_t i = 0; i < kLayers; ++i) {
    std::vector<uint8_t> one(layer_bytes);
    ASSERT_TRUE(
        GatherChunkLayer(views_[i], slots_, {}, absl::MakeSpan(one)).ok());
    EXPECT_TRUE(
        std::equal(one.begin(), one.end(), payload.begin() + i * layer_bytes))
        << "layer " << i;
  }
  // Scatter into fresh caches and gather back.
  std::vector<TestPagedLayer> fresh;
  std::vector<PagedLayerView> fresh_views;
  for (uint32_t i = 0; i < kLayers; ++i)
    fresh.emplace_back(layers_[0].geometry());
  for (auto& l : fresh) fresh_views.push_back(*l.View(l.bytes().data()));
  ASSERT_TRUE(ScatterChunk(payload, slots_, {}, fresh_views).ok());
  std::vector<uint8_t> again(payload.size());
  ASSERT_TRUE(GatherChunk(fresh_views, slots_, {}, absl::MakeSpan(again)).ok());
  EXPECT_EQ(again, payload);
}

TEST_F(ChunkTest, ObjectRoundTripThroughChunkFormat) {
  auto object = Gather(spec_, Id());
  ASSERT_TRUE(object.ok()) << object.status();
  auto header = VerifyChunkObject(*object);
  ASSERT_TRUE(header.ok()) << header.status();
  std::vector<uint8_t> payload(kLayers * spec_.LayerBytes(8));
  ASSERT_TRUE(GatherChunk(views_, slots_, {}, absl::MakeSpan(payload)).ok());
  EXPECT_TRUE(std::equal(payload.begin(), payload.end(),
                         object->begin() + header->header_size));

  // Scatter layers 1..2 into a cache whose block table differs.
  std::vector<TestPagedLayer> fresh;
  std::vector<PagedLayerView> fresh_views;
  for (int i = 0; i < 2; ++i) fresh.emplace_back(layers_[0].geometry());
  for (auto& l : fresh) fresh_views.push_back(*l.View(l.bytes().data()));
  const std::vector<int32_t> other_ids = {2, 0};
  const ChunkSlots other{other_ids, 0, 8};
  ASSERT_TRUE(
      ScatterChunkObject(*header, *object, 1, other, {}, fresh_views).ok());
  for (int i = 0; i < 2; ++i) {
    std::vector<uint8_t> a(spec_.LayerBytes(8)), b(spec_.LayerBytes(8));
    ASSERT_TRUE(
        GatherChunkLayer(views_[i + 1], slots_, {}, absl::MakeSpan(a)).ok());
    ASSERT_TRUE(
        GatherChunkLayer(fresh_views[i], other, {}, absl::MakeSpan(b)).ok());
    EXPECT_EQ(a, b) << "layer " << i + 1;
  }

  // A rank holding only head 1 reads it straight from the object.
  PagedGeometry one_head = layers_[0].geometry();
  one_head.kv_heads = 1;
  TestPagedLayer rank(one_head);
  auto rank_view = rank.View(rank.bytes().data());
  ASSERT_TRUE(rank_view.ok());
  const std::vector<PagedLayerView> rank_views = {*rank_view};
  ASSERT_TRUE(ScatterChunkObject(*header, *object, 0, other, {.chunk_begin = 1},
                                 rank_views)
                  .ok());
  std::vector<uint8_t> head1(2 * 8 * 8 * 2);
  ASSERT_TRUE(
      GatherChunkLayer(*rank_view, other, {}, absl::MakeSpan(head1)).ok());
  std::vector<uint8_t> full(spec_.LayerBytes(8));
  ASSERT_TRUE(
      GatherChunkLayer(views_[0], slots_, {}, absl::MakeSpan(full)).ok());
  const size_t tensor = 2 * 8 * 8 * 2, head = 8 * 8 * 2;
  EXPECT_TRUE(std::equal(head1.begin(), head1.begin() + head,
                         full.begin() + head));  // K head 1
  EXPECT_TRUE(std::equal(head1.begin() + head, head1.end(),
                         full.begin() + tensor + head));  // V head 1
}

TEST_F(ChunkTest, ObjectErrors) {
  ChunkIdentity id = Id();
  id.codec_chain = "zstd";
  EXPECT_THAT(Gather(spec_, id).status().message(),
              HasSubstr("a gathered chunk is raw"));
  id = Id();
  id.token_count = 7;
  EXPECT_THAT(Gather(spec_, id).status().message(),
              HasSubstr("token_count=7 differs from slots.tokens=8"));
  ModelSpec wrong = spec_;
  wrong.head_dim = 16;
  EXPECT_THAT(Gather(wrong, Id()).status().message(),
              HasSubstr("head_dim=8) does not match the chunk"));
  wrong = spec_;
  wrong.kv_heads = 4;
  EXPECT_THAT(Gather(wrong, Id()).status().message(),
              HasSubstr("layers[0] kv_heads=2 differs from spec.kv_heads=4"));
  wrong = spec_;
  wrong.num_layers = 2;
  EXPECT_THAT(Gather(wrong, Id()).status().message(),
              HasSubstr("layers has 3 entries, spec.num_layers=2"));
  std::vector<uint8_t> short_object(100);
  EXPECT_THAT(GatherChunkObject(spec_, Id(), views_, slots_,
                                absl::MakeSpan(short_object))
                  .message(),
              HasSubstr("object has 100 bytes, a raw chunk of 8 tokens takes"));

  auto object = Gather(spec_, Id());
  ASSERT_TRUE(object.ok()) << object.status();
  auto header = VerifyChunkObject(*object);
  ASSERT_TRUE(header.ok());
  const std::vector<uint8_t> before = layers_[0].bytes();
  auto expect = [&](const absl::Status& s, absl::StatusCode code,
                    const std::string& text) {
    EXPECT_EQ(s.code(), code) << s;
    EXPECT_THAT(s.message(), HasSubstr(text));
    EXPECT_EQ(layers_[0].bytes(), before) << "an error must write nothing";
  };
  const auto inv = absl::StatusCode::kInvalidArgument;
  ChunkHeader coded = *header;
  coded.codec_chain = "zstd";
  expect(ScatterChunkObject(coded, *object, 0, slots_, {}, views_), inv,
         "decode it before scattering");
  expect(ScatterChunkObject(*header, *object, 1, slots_, {}, views_), inv,
         "layers [1, 4) is empty or exceeds the chunk's num_layers=3");
  expect(ScatterChunkObject(*header, *object, 0, slots_, {}, {}), inv,
         "is empty");
  const std::vector<int32_t> short_ids = {1, 3};
  expect(ScatterChunkObject(*header, *object, 0, {short_ids, 0, 7}, {}, views_),
         inv, "slots.tokens=7 differs from the chunk's token_count=8");
  expect(ScatterChunkObject(*header, *object, 0, slots_, {.chunk_heads = 4},
                            views_),
         inv, "heads.chunk_heads=4 differs from the chunk's kv_heads=2");
  ChunkHeader other_dtype = *header;
  other_dtype.dtype = DType::kFp16;
  expect(ScatterChunkObject(other_dtype, *object, 0, slots_, {}, views_), inv,
         "does not match the chunk (dtype=fp16");
  ChunkHeader latent = *header;
  latent.layout = KvLayout::kLatent;
  expect(ScatterChunkObject(latent, *object, 0, slots_, {}, views_), inv,
         "tensors=1");
  ChunkHeader more_heads = *header;
  more_heads.kv_heads = 3;
  expect(ScatterChunkObject(more_heads, *object, 0, slots_, {}, views_), inv,
         "chunk layer 0 has 512 bytes, the view expects 768");
  const std::vector<uint8_t> truncated(object->begin(), object->end() - 1);
  expect(ScatterChunkObject(*header, truncated, 0, slots_, {}, views_),
         absl::StatusCode::kOutOfRange, "chunk layer 2 at [");
  ChunkHeader few_extents = *header;
  few_extents.layers.pop_back();
  expect(ScatterChunkObject(few_extents, *object, 0, slots_, {}, views_), inv,
         "header has 2 layer extents for num_layers=3");
}

TEST_F(ChunkTest, SizeAndConsistencyErrorsWriteNothing) {
  const uint64_t layer_bytes = spec_.LayerBytes(8);
  std::vector<uint8_t> layer(layer_bytes + 1, 0x11);
  const std::vector<uint8_t> layer_before = layer;
  auto s = GatherChunkLayer(views_[0], slots_, {}, absl::MakeSpan(layer));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(),
              HasSubstr("layer has 513 bytes, expected 512 = 2 tensors x "
                        "chunk_heads=2 x tokens=8 x head_dim=8 x 2 bytes"));
  EXPECT_EQ(layer, layer_before);
  const std::vector<uint8_t> cache_before = layers_[0].bytes();
  s = ScatterChunkLayer(layer, slots_, {}, views_[0]);
  EXPECT_THAT(s.message(), HasSubstr("layer has 513 bytes"));
  const std::vector<int32_t> bad_ids = {1, 3, 9};
  s = ScatterChunkLayer(absl::MakeSpan(layer).subspan(0, layer_bytes),
                        {bad_ids, 2, 8}, {}, views_[0]);
  EXPECT_THAT(s.message(), HasSubstr("block_ids[2]=9 is outside"));
  EXPECT_EQ(layers_[0].bytes(), cache_before);

  std::vector<uint8_t> payload(kLayers * layer_bytes);
  s = GatherChunk({}, slots_, {}, absl::MakeSpan(payload));
  EXPECT_THAT(s.message(), HasSubstr("layers is empty"));
  s = GatherChunk(views_, slots_, {},
                  absl::MakeSpan(payload).subspan(0, payload.size() - 2));
  EXPECT_THAT(s.message(),
              HasSubstr("payload has 1534 bytes, expected 1536 = 3 layers x "
                        "512 bytes"));
  std::vector<PagedLayerView> mixed = views_;
  mixed[2].dtype = DType::kFp16;
  s = ScatterChunk(payload, slots_, {}, mixed);
  EXPECT_THAT(s.message(), HasSubstr("layers[2] (dtype=fp16"));
  mixed = views_;
  mixed[1].block_size = 0;
  s = ScatterChunk(payload, slots_, {}, mixed);
  EXPECT_THAT(s.message(), HasSubstr("layers[1]: block_size=0"));
  EXPECT_EQ(layers_[0].bytes(), cache_before);
}

}  // namespace
}  // namespace kvd
