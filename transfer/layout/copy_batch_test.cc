// CopyBatch on the CPU: runs the kernels' per-unit arithmetic (UnitAt) over
// host memory and compares it with the CPU oracle, so the descriptor
// packing, unit choice and index math are tested where no GPU is present.
#include "transfer/layout/copy_batch.h"

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "transfer/layout/chunk_gather.h"
#include "transfer/layout/internal/paged_test_util.h"

namespace kvd {
namespace {

using ::kvd::testing::Case;
using ::kvd::testing::Cases;
using ::kvd::testing::FillRandom;
using ::kvd::testing::PagedGeometry;
using ::kvd::testing::TestPagedLayer;
using ::testing::HasSubstr;

// What the kernel does, one unit at a time.
void Emulate(CopyBatch& batch, CopyDirection direction) {
  batch.Relocate(batch.block_ids.data());
  for (const CopyGroup& g : batch.groups) {
    for (uint32_t i = g.first_job; i < g.first_job + g.num_jobs; ++i) {
      const CopyJob& j = batch.jobs[i];
      ASSERT_EQ(j.unit_bytes, g.unit_bytes);
      ASSERT_LE(j.total_units, g.max_units);
      for (uint32_t u = 0; u < j.total_units; ++u) {
        const UnitAddress a = UnitAt(j, u);
        ASSERT_EQ(reinterpret_cast<uintptr_t>(a.paged) % g.unit_bytes, 0u);
        ASSERT_EQ(reinterpret_cast<uintptr_t>(a.canon) % g.unit_bytes, 0u);
        if (direction == CopyDirection::kGather) {
          std::memcpy(a.canon, a.paged, g.unit_bytes);
        } else {
          std::memcpy(a.paged, a.canon, g.unit_bytes);
        }
      }
    }
  }
}

// One case's storage: a random paged cache and a canonical layer.
struct Fixture {
  explicit Fixture(const Case& c, uint64_t seed) : c(c), paged(c.g) {
    FillRandom(paged.bytes(), seed);
    view = *paged.View(paged.bytes().data());
    plan = *PlanLayerCopy(view, Slots(), c.heads);
    // 16 bytes of slack so the layer can start at any alignment.
    storage.assign(plan.layer_bytes + 16, 0);
    FillRandom(storage, seed + 1);
  }
  ChunkSlots Slots() const { return {c.block_ids, c.offset, c.tokens}; }
  LayerCopyJob Job(size_t layer_offset = 0) {
    return {view, Slots(), c.heads, storage.data() + layer_offset,
            plan.layer_bytes};
  }
  absl::Span<uint8_t> Layer(size_t layer_offset = 0) {
    return absl::MakeSpan(storage).subspan(layer_offset, plan.layer_bytes);
  }

  Case c;
  TestPagedLayer paged;
  PagedLayerView view;
  LayerCopyPlan plan;
  std::vector<uint8_t> storage;
};

class EmulatedKernelTest : public ::testing::TestWithParam<Case> {};

TEST_P(EmulatedKernelTest, GatherMatchesOracle) {
  for (const size_t layer_offset : {0, 2, 4, 8}) {
    Fixture f(GetParam(), 1);
    const uint32_t es = f.view.element_size();
    if (layer_offset % es != 0) continue;
    std::vector<uint8_t> want = f.storage;
    ASSERT_TRUE(GatherChunkLayer(f.view, f.Slots(), f.c.heads,
                                 absl::MakeSpan(want).subspan(
                                     layer_offset, f.plan.layer_bytes))
                    .ok());
    const LayerCopyJob job = f.Job(layer_offset);
    auto batch = BuildCopyBatch({&job, 1}, CopyDirection::kGather);
    ASSERT_TRUE(batch.ok()) << batch.status();
    ASSERT_EQ(batch->groups.size(), 1u);
    Emulate(*batch, CopyDirection::kGather);
    EXPECT_EQ(f.storage, want) << "layer_offset=" << layer_offset;
  }
}

TEST_P(EmulatedKernelTest, ScatterMatchesOracle) {
  for (const size_t layer_offset : {0, 2, 4, 8}) {
    Fixture f(GetParam(), 2);
    if (layer_offset % f.view.element_size() != 0) continue;
    std::vector<uint8_t> want = f.paged.bytes();
    auto want_view = f.paged.View(want.data());
    ASSERT_TRUE(ScatterChunkLayer(f.Layer(layer_offset), f.Slots(), f.c.heads,
                                  *want_view)
                    .ok());
    const LayerCopyJob job = f.Job(layer_offset);
    auto batch = BuildCopyBatch({&job, 1}, CopyDirection::kScatter);
    ASSERT_TRUE(batch.ok()) << batch.status();
    Emulate(*batch, CopyDirection::kScatter);
    EXPECT_EQ(f.paged.bytes(), want) << "layer_offset=" << layer_offset;
  }
}

INSTANTIATE_TEST_SUITE_P(Geometries, EmulatedKernelTest,
                         ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return info.param.g.Name() + "_" +
                                  std::to_string(info.index);
                         });

TEST(CopyBatchTest, MixedBatchGroupsByUnitWidth) {
  std::vector<Fixture> fixtures;
  const std::vector<Case> cases = Cases();
  fixtures.reserve(cases.size());
  for (size_t i = 0; i < cases.size(); ++i) fixtures.emplace_back(cases[i], i);
  std::vector<LayerCopyJob> jobs;
  std::vector<std::vector<uint8_t>> want;
  for (Fixture& f : fixtures) {
    jobs.push_back(f.Job());
    want.push_back(f.storage);
    ASSERT_TRUE(GatherChunkLayer(
                    f.view, f.Slots(), f.c.heads,
                    absl::MakeSpan(want.back()).subspan(0, f.plan.layer_bytes))
                    .ok());
  }
  auto batch = BuildCopyBatch(jobs, CopyDirection::kGather);
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_EQ(batch->jobs.size(), jobs.size());
  EXPECT_GT(batch->groups.size(), 1u);
  for (size_t g = 1; g < batch->groups.size(); ++g) {
    EXPECT_GT(batch->groups[g - 1].unit_bytes, batch->groups[g].unit_bytes);
  }
  Emulate(*batch, CopyDirection::kGather);
  for (size_t i = 0; i < fixtures.size(); ++i) {
    EXPECT_EQ(fixtures[i].storage, want[i]) << cases[i].g.Name();
  }
}

// The plan of a 4-token copy from block 0, re-based so that the paged
// storage starts at 0x10000.
LayerCopyPlan PlanAt(const PagedGeometry& g, TestPagedLayer& l) {
  auto view = l.View(reinterpret_cast<uint8_t*>(0x10000));
  EXPECT_TRUE(view.ok()) << view.status();
  static const std::vector<int32_t> ids = {0};
  auto plan = PlanLayerCopy(*view, {ids, 0, 4}, {});
  EXPECT_TRUE(plan.ok()) << plan.status();
  return *plan;
}

uint32_t Unit(PagedGeometry g, uintptr_t layer) {
  TestPagedLayer l(g);
  return UnitBytesFor(PlanAt(g, l), reinterpret_cast<void*>(layer));
}

TEST(CopyBatchTest, UnitBytesFollowAlignment) {
  EXPECT_EQ(Unit({.dims = "NTHD", .head_dim = 64}, 0x20000), 16u);
  EXPECT_EQ(Unit({.dims = "SNHTD", .head_dim = 64}, 0x20000), 16u);
  EXPECT_EQ(Unit({.dims = "NSTHD", .head_dim = 64}, 0x20000), 16u);
  EXPECT_EQ(Unit({.dims = "NTHD", .head_dim = 64}, 0x20008), 8u);
  EXPECT_EQ(Unit({.dims = "NTHD", .head_dim = 64}, 0x20002), 2u);
  EXPECT_EQ(Unit({.dims = "NTHD", .head_dim = 64, .lead = 2}, 0x20000), 4u);
  EXPECT_EQ(Unit({.dims = "NTHD", .head_dim = 64, .pad = 1}, 0x20000), 2u);
  EXPECT_EQ(Unit({.dims = "NTHD", .head_dim = 6}, 0x20000), 4u);
  EXPECT_EQ(Unit({.dims = "NTHD",
                  .dtype = DType::kFp32,
                  .head_dim = 64,
                  .dim_stride = 2},
                 0x20000),
            4u);
  EXPECT_EQ(
      Unit({.dims = "NTHD", .dtype = DType::kFp8E4M3, .head_dim = 5}, 0x20000),
      1u);
}

TEST(CopyBatchTest, SizeOneDimensionsDoNotLimitTheUnit) {
  const PagedGeometry g{
      .dims = "NTHD", .num_blocks = 1, .kv_heads = 1, .head_dim = 64};
  TestPagedLayer l(g);
  LayerCopyPlan plan = PlanAt(g, l);
  const void* layer = reinterpret_cast<void*>(0x20000);
  ASSERT_EQ(UnitBytesFor(plan, layer), 16u);
  for (PagedStrides& s : plan.paged.strides) {
    s.block = 3;  // only block 0 exists
    s.head = 5;   // only head 0 exists
  }
  EXPECT_EQ(UnitBytesFor(plan, layer), 16u);
  plan.paged.strides[1].token = 65;
  EXPECT_EQ(UnitBytesFor(plan, layer), 2u);
}

TEST(CopyBatchTest, ScatterTargetsMustBeDisjoint) {
  const PagedGeometry g{.dims = "NTHD", .num_blocks = 8, .kv_heads = 4};
  TestPagedLayer paged(g);
  const PagedLayerView view = *paged.View(paged.bytes().data());
  std::vector<uint8_t> a(4096), b(4096);
  const std::vector<int32_t> ids_a = {5, 6};
  const std::vector<int32_t> ids_b = {6, 7};
  auto job = [&](absl::Span<const int32_t> ids, uint32_t offset,
                 uint32_t tokens, HeadMap heads, std::vector<uint8_t>& buf) {
    auto plan = PlanLayerCopy(view, {ids, offset, tokens}, heads);
    EXPECT_TRUE(plan.ok()) << plan.status();
    return LayerCopyJob{
        view, {ids, offset, tokens}, heads, buf.data(), plan->layer_bytes};
  };
  // Chunk A ends at slot 2 of block 6, chunk B starts at slot 2: disjoint.
  std::vector<LayerCopyJob> jobs = {job(ids_a, 0, 6, {}, a),
                                    job(ids_b, 2, 6, {}, b)};
  EXPECT_TRUE(BuildCopyBatch(jobs, CopyDirection::kScatter).ok());
  // B starting at slot 1 overlaps A's slot 1 of block 6.
  jobs[1] = job(ids_b, 1, 7, {}, b);
  auto s = BuildCopyBatch(jobs, CopyDirection::kScatter).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(),
              HasSubstr("jobs[0] and jobs[1] both scatter into block 6 slots "
                        "[1, 2) heads [0, 4) of the same paged layer"));
  // Gathering from overlapping slots is fine.
  EXPECT_TRUE(BuildCopyBatch(jobs, CopyDirection::kGather).ok());
  // Disjoint heads of the same slots are fine (two TP slices).
  jobs = {job(ids_a, 0, 8, {.paged_begin = 0, .count = 2}, a),
          job(ids_a, 0, 8, {.paged_begin = 2, .count = 2}, b)};
  EXPECT_TRUE(BuildCopyBatch(jobs, CopyDirection::kScatter).ok());
  jobs[1] = job(ids_a, 0, 8, {.paged_begin = 1, .count = 2}, b);
  EXPECT_THAT(BuildCopyBatch(jobs, CopyDirection::kScatter).status().message(),
              HasSubstr("heads [1, 2)"));
  // Another layer (another base) never conflicts.
  TestPagedLayer other(g);
  jobs[1].paged = *other.View(other.bytes().data());
  EXPECT_TRUE(BuildCopyBatch(jobs, CopyDirection::kScatter).ok());
}

TEST(CopyBatchTest, JobErrors) {
  Fixture f(Cases()[0], 3);
  auto expect = [](LayerCopyJob job, const std::string& text) {
    auto s = BuildCopyBatch({&job, 1}, CopyDirection::kGather).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_THAT(s.message(), HasSubstr(text));
  };
  LayerCopyJob bad = f.Job();
  bad.layer = nullptr;
  expect(bad, "jobs[0]: layer is null");
  bad = f.Job();
  bad.layer_bytes += 2;
  expect(bad,
         "layer_bytes=578 but the plan needs 576 = 2 tensors x "
         "chunk_heads=2 x tokens=9 x 16 bytes");
  bad = f.Job(1);
  expect(bad, "layer address 0x");
  bad = f.Job();
  bad.slots.first_block_offset = 9;
  expect(bad, "jobs[0]: first_block_offset=9 must be < block_size=4");
  std::vector<LayerCopyJob> mixed = {f.Job(), bad};
  EXPECT_THAT(BuildCopyBatch(mixed, CopyDirection::kScatter).status().message(),
              HasSubstr("jobs[1]: first_block_offset=9"));
  EXPECT_TRUE(BuildCopyBatch({}, CopyDirection::kGather)->jobs.empty());
}

TEST(CopyBatchTest, TooManyUnitsInOneJob) {
  // Fake addresses: nothing is touched. A strided head dim forces 4-byte
  // units: 2 tensors x 1024 heads x 2048 tokens x 1024 units = 2^32.
  PagedLayerView v;
  v.dtype = DType::kFp32;
  v.base[0] = reinterpret_cast<void*>(0x100000);
  v.base[1] = reinterpret_cast<void*>(0x100000000000);
  const PagedStrides s{
      .block = int64_t{1} << 32, .token = 1 << 21, .head = 2048, .dim = 2};
  v.strides[0] = v.strides[1] = s;
  v.num_blocks = 1;
  v.block_size = 2048;
  v.kv_heads = 1024;
  v.head_dim = 1024;
  const std::vector<int32_t> ids = {0};
  auto plan = PlanLayerCopy(v, {ids, 0, 2048}, {});
  ASSERT_TRUE(plan.ok()) << plan.status();
  const LayerCopyJob job{v,
                         {ids, 0, 2048},
                         {},
                         reinterpret_cast<void*>(0x200000000000),
                         plan->layer_bytes};
  auto s2 = BuildCopyBatch({&job, 1}, CopyDirection::kGather).status();
  EXPECT_THAT(s2.message(),
              HasSubstr("jobs[0]: 4294967296 copy units of 4 bytes exceed "
                        "2^31 - 1; split the chunk"));
}

TEST(CopyBatchTest, AppendChunkJobs) {
  const PagedGeometry g{.dims = "NHTD"};
  std::vector<TestPagedLayer> layers(3, TestPagedLayer(g));
  std::vector<PagedLayerView> views;
  for (auto& l : layers) views.push_back(*l.View(l.bytes().data()));
  const std::vector<int32_t> ids = {1, 2};
  const ChunkSlots slots{ids, 0, 8};
  const uint64_t layer_bytes = 2 * 2 * 8 * 8 * 2;
  std::vector<uint8_t> payload(3 * layer_bytes);
  std::vector<LayerCopyJob> jobs;
  ASSERT_TRUE(
      AppendChunkJobs(views, slots, {}, payload.data(), payload.size(), &jobs)
          .ok());
  ASSERT_EQ(jobs.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(jobs[i].layer, payload.data() + i * layer_bytes);
    EXPECT_EQ(jobs[i].layer_bytes, layer_bytes);
    EXPECT_EQ(jobs[i].paged.base[0], views[i].base[0]);
  }
  auto s = AppendChunkJobs(views, slots, {}, payload.data(), payload.size() - 1,
                           &jobs);
  EXPECT_THAT(s.message(),
              HasSubstr("payload_bytes=1535 but 3 layers take 1536 bytes"));
  views[1].head_dim = 0;
  s = AppendChunkJobs(views, slots, {}, payload.data(), payload.size(), &jobs);
  EXPECT_THAT(s.message(), HasSubstr("layers[1]: head_dim=0"));
  EXPECT_THAT(
      AppendChunkJobs({}, slots, {}, payload.data(), 0, &jobs).message(),
      HasSubstr("layers is empty"));
  EXPECT_THAT(AppendChunkJobs(views, slots, {}, nullptr, 0, &jobs).message(),
              HasSubstr("payload is null"));
  EXPECT_EQ(jobs.size(), 3u);
}

}  // namespace
}  // namespace kvd
