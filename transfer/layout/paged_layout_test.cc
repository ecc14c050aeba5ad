#include "transfer/layout/paged_layout.h"

#include <cstdint>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvd {
namespace {

using ::testing::HasSubstr;

// A fake, suitably aligned address: nothing here dereferences it.
void* Addr(uintptr_t a) { return reinterpret_cast<void*>(a); }

TensorDesc Desc(uintptr_t addr, std::vector<int64_t> shape,
                std::vector<int64_t> strides, DType dtype = DType::kBf16) {
  TensorDesc d;
  d.data = Addr(addr);
  d.dtype = dtype;
  d.shape = std::move(shape);
  d.strides = std::move(strides);
  return d;
}

void ExpectInvalid(const absl::Status& s, const std::string& text) {
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr(text));
}

TEST(PagedLayoutTest, VllmNhdSeparate) {
  // K, V each [num_blocks=10][block_size=16][kv_heads=4][head_dim=64].
  TensorDesc k = Desc(0x10000, {10, 16, 4, 64}, {4096, 256, 64, 1});
  TensorDesc v = Desc(0x90000, {10, 16, 4, 64}, {4096, 256, 64, 1});
  auto view = PagedViewFromSeparate(k, v, kDimsNHD);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->num_tensors, 2u);
  EXPECT_EQ(view->num_blocks, 10);
  EXPECT_EQ(view->block_size, 16u);
  EXPECT_EQ(view->kv_heads, 4u);
  EXPECT_EQ(view->head_dim, 64u);
  EXPECT_EQ(view->element_size(), 2u);
  EXPECT_EQ(view->base[0], Addr(0x10000));
  EXPECT_EQ(view->base[1], Addr(0x90000));
  EXPECT_EQ(view->strides[0].block, 4096);
  EXPECT_EQ(view->strides[0].token, 256);
  EXPECT_EQ(view->strides[0].head, 64);
  EXPECT_EQ(view->strides[0].dim, 1);
}

TEST(PagedLayoutTest, HndSeparateWithDifferentStrides) {
  TensorDesc k = Desc(0x10000, {10, 4, 16, 64}, {4096, 1024, 64, 1});
  // V padded: every block 5000 elements apart.
  TensorDesc v = Desc(0x90000, {10, 4, 16, 64}, {5000, 1024, 64, 1});
  auto view = PagedViewFromSeparate(k, v, kDimsHND);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->strides[0].head, 1024);
  EXPECT_EQ(view->strides[0].token, 64);
  EXPECT_EQ(view->strides[1].block, 5000);
}

TEST(PagedLayoutTest, StackedOuterAndBlockStacked) {
  // [2][num_blocks=8][16][2][32]: V starts 8*1024 elements after K.
  TensorDesc kv = Desc(0x1000, {2, 8, 16, 2, 32}, {8192, 1024, 64, 32, 1});
  auto outer = PagedViewFromStacked(kv, kDimsStackedNHD);
  ASSERT_TRUE(outer.ok()) << outer.status();
  EXPECT_EQ(outer->base[0], Addr(0x1000));
  EXPECT_EQ(outer->base[1], Addr(0x1000 + 8192 * 2));
  EXPECT_EQ(outer->strides[1].block, 1024);

  // [num_blocks=8][2][16][2][32]: K and V interleave block by block.
  TensorDesc nb = Desc(0x1000, {8, 2, 16, 2, 32}, {2048, 1024, 64, 32, 1});
  auto inner = PagedViewFromStacked(nb, kDimsBlockStackedNHD);
  ASSERT_TRUE(inner.ok()) << inner.status();
  EXPECT_EQ(inner->base[1], Addr(0x1000 + 1024 * 2));
  EXPECT_EQ(inner->strides[0].block, 2048);
  EXPECT_EQ(inner->num_blocks, 8);
}

TEST(PagedLayoutTest, Latent) {
  TensorDesc c = Desc(0x2000, {6, 16, 576}, {9216, 576, 1});
  auto view = PagedViewFromLatent(c, kDimsLatent);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->num_tensors, 1u);
  EXPECT_EQ(view->kv_heads, 1u);
  EXPECT_EQ(view->head_dim, 576u);
  // With an explicit H of size 1.
  TensorDesc c4 = Desc(0x2000, {6, 16, 1, 576}, {9216, 576, 576, 1});
  EXPECT_TRUE(PagedViewFromLatent(c4, "NTHD").ok());
  TensorDesc bad = Desc(0x2000, {6, 16, 2, 576}, {18432, 1152, 576, 1});
  ExpectInvalid(PagedViewFromLatent(bad, "NTHD").status(),
                "shape[2] (H)=2 must be 1");
  ExpectInvalid(PagedViewFromLatent(c4, "SNTD").status(), "must not have 'S'");
}

TEST(PagedLayoutTest, SizeOneDimsMayHaveAnyStride) {
  // torch reports arbitrary strides for size-1 dims.
  TensorDesc k = Desc(0x1000, {1, 16, 1, 64}, {0, 64, 0, 1});
  EXPECT_TRUE(PagedViewFromSeparate(k, k, kDimsNHD).ok());
}

TEST(PagedLayoutTest, DimsErrors) {
  TensorDesc k = Desc(0x1000, {10, 16, 4, 64}, {4096, 256, 64, 1});
  ExpectInvalid(PagedViewFromSeparate(k, k, "NTH").status(),
                "names 3 dimensions but shape has 4");
  ExpectInvalid(PagedViewFromSeparate(k, k, "NTHX").status(),
                "unknown letter 'X' at 3");
  ExpectInvalid(PagedViewFromSeparate(k, k, "NTTD").status(), "repeats 'T'");
  TensorDesc kv = Desc(0x1000, {2, 10, 16, 4, 64}, {40960, 4096, 256, 64, 1});
  ExpectInvalid(PagedViewFromSeparate(kv, kv, kDimsStackedNHD).status(),
                "needs 'H' and no 'S'");
  ExpectInvalid(PagedViewFromStacked(k, kDimsNHD).status(),
                "needs both 'S' and 'H'");
  TensorDesc no_t = Desc(0x1000, {10, 4, 64}, {256, 64, 1});
  ExpectInvalid(PagedViewFromSeparate(no_t, no_t, "NHD").status(), "lacks 'T'");
  TensorDesc short_strides = k;
  short_strides.strides.pop_back();
  ExpectInvalid(PagedViewFromSeparate(short_strides, k, kDimsNHD).status(),
                "K: dims \"NTHD\" names 4 dimensions but shape has 4 and "
                "strides 3");
}

TEST(PagedLayoutTest, ShapeAndStrideErrors) {
  TensorDesc k = Desc(0x1000, {10, 0, 4, 64}, {4096, 256, 64, 1});
  ExpectInvalid(PagedViewFromSeparate(k, k, kDimsNHD).status(),
                "shape[1] (T)=0 must be positive");
  k = Desc(0x1000, {10, 16, 4, 64}, {4096, -256, 64, 1});
  ExpectInvalid(PagedViewFromSeparate(k, k, kDimsNHD).status(),
                "strides[1] (T)=-256 is negative");
  k = Desc(0x1000, {10, 16, 4, 64}, {4096, 256, 64, 1});
  TensorDesc v = Desc(0x1000, {10, 16, 8, 64}, {8192, 512, 64, 1});
  ExpectInvalid(PagedViewFromSeparate(k, v, kDimsNHD).status(),
                "V shape[2] (H)=8 differs from K shape[2]=4");
  v = k;
  v.dtype = DType::kFp16;
  ExpectInvalid(PagedViewFromSeparate(k, v, kDimsNHD).status(),
                "V dtype=fp16 differs from K dtype=bf16");
  TensorDesc bad_dtype = k;
  bad_dtype.dtype = static_cast<DType>(77);
  ExpectInvalid(PagedViewFromSeparate(bad_dtype, k, kDimsNHD).status(),
                "dtype=77 is not a known DType");
  TensorDesc huge =
      Desc(0x1000, {10, 16, int64_t{1} << 33, 64}, {4096, 256, 64, 1});
  ExpectInvalid(PagedViewFromSeparate(huge, huge, kDimsNHD).status(),
                "shape[2] (H)=8589934592 exceeds 4294967295");
}

TEST(PagedLayoutTest, OverlappingStridesAreRejected) {
  // Heads 32 elements apart but head_dim 64: heads overlap.
  TensorDesc k = Desc(0x1000, {10, 16, 4, 64}, {4096, 256, 32, 1});
  ExpectInvalid(PagedViewFromSeparate(k, k, kDimsNHD).status(),
                "K strides overlap: dim H stride=32 <= 63");
  // A zero stride on a dimension of size > 1 aliases.
  k = Desc(0x1000, {10, 16, 4, 64}, {0, 256, 64, 1});
  ExpectInvalid(PagedViewFromSeparate(k, k, kDimsNHD).status(),
                "stride of dim N=0 but its size=10 > 1");
  // Stacked with a stack stride inside K.
  TensorDesc kv = Desc(0x1000, {2, 8, 16, 2, 32}, {100, 1024, 64, 32, 1});
  ExpectInvalid(PagedViewFromStacked(kv, kDimsStackedNHD).status(),
                "stacked KV strides overlap");
  kv = Desc(0x1000, {2, 8, 16, 2, 32}, {3, 1024, 64, 32, 1});
  ExpectInvalid(PagedViewFromStacked(kv, kDimsStackedNHD).status(), "overlap");
  kv = Desc(0x1000, {3, 8, 16, 2, 32}, {8192, 1024, 64, 32, 1});
  ExpectInvalid(PagedViewFromStacked(kv, kDimsStackedNHD).status(),
                "shape[0] (S)=3 must be 2");
}

TEST(PagedLayoutTest, ValidateViewFields) {
  PagedLayerView v;
  v.dtype = DType::kFp16;
  v.num_tensors = 2;
  v.base[0] = Addr(0x1000);
  v.base[1] = Addr(0x100000);
  v.strides[0] =
      v.strides[1] = {.block = 512, .token = 32, .head = 8, .dim = 1};
  v.num_blocks = 4;
  v.block_size = 16;
  v.kv_heads = 4;
  v.head_dim = 8;
  ASSERT_TRUE(ValidatePagedLayerView(v).ok());

  PagedLayerView b = v;
  b.num_tensors = 3;
  ExpectInvalid(ValidatePagedLayerView(b), "num_tensors=3 must be 1");
  b = v;
  b.num_blocks = 0;
  ExpectInvalid(ValidatePagedLayerView(b), "num_blocks=0 must be positive");
  b = v;
  b.block_size = 0;
  ExpectInvalid(ValidatePagedLayerView(b), "block_size=0");
  b = v;
  b.kv_heads = 0;
  ExpectInvalid(ValidatePagedLayerView(b), "kv_heads=0");
  b = v;
  b.head_dim = 0;
  ExpectInvalid(ValidatePagedLayerView(b), "head_dim=0");
  b = v;
  b.base[1] = nullptr;
  ExpectInvalid(ValidatePagedLayerView(b), "V base is null");
  b = v;
  b.base[0] = Addr(0x1001);
  ExpectInvalid(ValidatePagedLayerView(b),
                "K base address 0x1001 is not aligned to the element size 2");
  b = v;
  b.strides[1].dim = -1;
  ExpectInvalid(ValidatePagedLayerView(b), "V stride of dim D=-1 is negative");
  b = v;
  b.num_tensors = 1;
  ExpectInvalid(ValidatePagedLayerView(b),
                "kv_heads=4 but a latent cache has exactly 1 head");
  b = v;
  b.dtype = static_cast<DType>(0);
  ExpectInvalid(ValidatePagedLayerView(b), "dtype=0 is not a known DType");
  b = v;
  b.strides[0].block = int64_t{1} << 62;
  ExpectInvalid(ValidatePagedLayerView(b), "K extent");
  b = v;
  b.base[0] = Addr(UINTPTR_MAX - 1);
  ExpectInvalid(ValidatePagedLayerView(b), "overflows the address space");
}

class PlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TensorDesc k = Desc(0x10000, {10, 16, 4, 64}, {4096, 256, 64, 1});
    view_ = *PagedViewFromSeparate(k, k, kDimsNHD);
  }
  PagedLayerView view_;
};

TEST_F(PlanTest, ResolvesDefaultsAndSizes) {
  const std::vector<int32_t> ids = {3, 7, 1};
  // 40 tokens from slot 5 of block 3: slots 5..15, 16 of 7, 13 of 1.
  auto plan = PlanLayerCopy(view_, {ids, 5, 40}, {});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->heads, 4u);
  EXPECT_EQ(plan->chunk_heads, 4u);
  EXPECT_EQ(plan->row_bytes, 128u);
  EXPECT_EQ(plan->tensor_bytes, 4u * 40 * 128);
  EXPECT_EQ(plan->layer_bytes, 2u * 4 * 40 * 128);
  EXPECT_EQ(plan->CanonicalOffset(1, 2, 3), 4u * 40 * 128 + (2 * 40 + 3) * 128);

  // A tensor-parallel rank holding chunk heads [4, 8) of 8.
  auto tp =
      PlanLayerCopy(view_, {ids, 5, 40}, {.chunk_begin = 4, .chunk_heads = 8});
  ASSERT_TRUE(tp.ok()) << tp.status();
  EXPECT_EQ(tp->heads, 4u);
  EXPECT_EQ(tp->chunk_head_begin, 4u);
  EXPECT_EQ(tp->layer_bytes, 2u * 8 * 40 * 128);

  // Heads [1, 3) only, into a compact buffer.
  auto slice =
      PlanLayerCopy(view_, {ids, 5, 40}, {.paged_begin = 1, .count = 2});
  ASSERT_TRUE(slice.ok()) << slice.status();
  EXPECT_EQ(slice->chunk_heads, 2u);
  EXPECT_EQ(slice->layer_bytes, 2u * 2 * 40 * 128);
}

TEST_F(PlanTest, SlotErrors) {
  const std::vector<int32_t> ids = {3, 7, 1};
  ExpectInvalid(PlanLayerCopy(view_, {ids, 0, 0}, {}).status(), "tokens=0");
  ExpectInvalid(PlanLayerCopy(view_, {ids, 16, 8}, {}).status(),
                "first_block_offset=16 must be < block_size=16");
  ExpectInvalid(PlanLayerCopy(view_, {ids, 0, 32}, {}).status(),
                "block_ids has 3 entries but offset=0 + tokens=32 with "
                "block_size=16 touch 2 blocks");
  ExpectInvalid(PlanLayerCopy(view_, {ids, 15, 40}, {}).status(),
                "touch 4 blocks");
  const std::vector<int32_t> out = {3, 10};
  ExpectInvalid(PlanLayerCopy(view_, {out, 0, 32}, {}).status(),
                "block_ids[1]=10 is outside [0, num_blocks=10)");
  const std::vector<int32_t> neg = {-1, 2};
  ExpectInvalid(PlanLayerCopy(view_, {neg, 0, 32}, {}).status(),
                "block_ids[0]=-1 is outside");
  const std::vector<int32_t> dup = {4, 2, 4};
  ExpectInvalid(PlanLayerCopy(view_, {dup, 0, 48}, {}).status(),
                "block id 4 appears more than once");
}

TEST_F(PlanTest, HeadErrors) {
  const std::vector<int32_t> ids = {3};
  const ChunkSlots slots{ids, 0, 16};
  ExpectInvalid(PlanLayerCopy(view_, slots, {.paged_begin = 4}).status(),
                "head paged_begin=4 must be < kv_heads=4");
  ExpectInvalid(
      PlanLayerCopy(view_, slots, {.paged_begin = 2, .count = 3}).status(),
      "paged heads [2, 5) exceed kv_heads=4");
  ExpectInvalid(
      PlanLayerCopy(view_, slots, {.chunk_begin = 6, .chunk_heads = 8})
          .status(),
      "chunk heads [6, 10) exceed chunk_heads=8");
  PagedLayerView bad = view_;
  bad.block_size = 0;
  ExpectInvalid(PlanLayerCopy(bad, slots, {}).status(), "block_size=0");
}

}  // namespace
}  // namespace kvd
