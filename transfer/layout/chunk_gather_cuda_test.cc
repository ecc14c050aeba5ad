// The CUDA gather/scatter against the CPU oracle (chunk_gather.h) on random
// bytes over every geometry of paged_test_util.h and a few realistic ones.
// Tests that need a GPU skip without one; validation tests run everywhere.
#include "transfer/layout/chunk_gather_cuda.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/cuda_status.h"
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

#define CUDA_OK(expr) ASSERT_EQ((expr), cudaSuccess) << #expr

// Device memory holding a copy of a host byte vector.
class DeviceBytes {
 public:
  explicit DeviceBytes(const std::vector<uint8_t>& host) : size_(host.size()) {
    EXPECT_EQ(cudaMalloc(&ptr_, size_ + 16), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(ptr_, host.data(), size_, cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  ~DeviceBytes() { cudaFree(ptr_); }
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;

  uint8_t* data() const { return static_cast<uint8_t*>(ptr_); }
  std::vector<uint8_t> Download() const {
    std::vector<uint8_t> out(size_);
    EXPECT_EQ(cudaMemcpy(out.data(), ptr_, size_, cudaMemcpyDeviceToHost),
              cudaSuccess);
    return out;
  }

 private:
  void* ptr_ = nullptr;
  size_t size_;
};

// One copy on both sides: a host paged cache and canonical layer for the
// oracle, and device copies of both for the kernel.
struct Side {
  Side(const Case& c, uint64_t seed, size_t layer_offset)
      : c(c), paged(c.g), layer_offset(layer_offset) {
    FillRandom(paged.bytes(), seed);
    view = *paged.View(paged.bytes().data());
    plan = *PlanLayerCopy(view, Slots(), c.heads);
    canon.resize(plan.layer_bytes + layer_offset);
    FillRandom(canon, seed + 1);
    d_paged = std::make_unique<DeviceBytes>(paged.bytes());
    d_canon = std::make_unique<DeviceBytes>(canon);
  }
  ChunkSlots Slots() const { return {c.block_ids, c.offset, c.tokens}; }
  absl::Span<uint8_t> HostLayer() {
    return absl::MakeSpan(canon).subspan(layer_offset, plan.layer_bytes);
  }
  LayerCopyJob DeviceJob() const {
    return {*paged.View(d_paged->data()), Slots(), c.heads,
            d_canon->data() + layer_offset, plan.layer_bytes};
  }

  Case c;
  TestPagedLayer paged;
  size_t layer_offset;
  PagedLayerView view;
  LayerCopyPlan plan;
  std::vector<uint8_t> canon;
  std::unique_ptr<DeviceBytes> d_paged, d_canon;
};

class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
    ASSERT_EQ(cudaStreamCreate(&stream_), cudaSuccess);
  }
  void TearDown() override {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  // Runs gather (or scatter) for every side in one call and checks each
  // side's device bytes against the oracle run on its host copy.
  void CheckBatch(std::vector<Side*> sides, CopyDirection dir) {
    std::vector<LayerCopyJob> jobs;
    for (Side* s : sides) {
      jobs.push_back(s->DeviceJob());
      if (dir == CopyDirection::kGather) {
        ASSERT_TRUE(
            GatherChunkLayer(s->view, s->Slots(), s->c.heads, s->HostLayer())
                .ok());
      } else {
        ASSERT_TRUE(
            ScatterChunkLayer(s->HostLayer(), s->Slots(), s->c.heads, s->view)
                .ok());
      }
    }
    const absl::Status st = dir == CopyDirection::kGather
                                ? GatherChunkLayersCuda(jobs, stream_)
                                : ScatterChunkLayersCuda(jobs, stream_);
    ASSERT_TRUE(st.ok()) << st;
    CUDA_OK(cudaStreamSynchronize(stream_));
    for (Side* s : sides) {
      if (dir == CopyDirection::kGather) {
        EXPECT_EQ(s->d_canon->Download(), s->canon) << s->c.g.Name();
      } else {
        EXPECT_EQ(s->d_paged->Download(), s->paged.bytes()) << s->c.g.Name();
      }
    }
  }

  cudaStream_t stream_ = nullptr;
};

class CudaCaseTest : public CudaTest,
                     public ::testing::WithParamInterface<Case> {};

TEST_P(CudaCaseTest, GatherMatchesOracle) {
  for (const size_t offset : {0, 2, 4, 8}) {
    if (offset % DTypeSize(GetParam().g.dtype) != 0) continue;
    Side side(GetParam(), 11 + offset, offset);
    CheckBatch({&side}, CopyDirection::kGather);
  }
}

TEST_P(CudaCaseTest, ScatterMatchesOracle) {
  for (const size_t offset : {0, 2, 4, 8}) {
    if (offset % DTypeSize(GetParam().g.dtype) != 0) continue;
    Side side(GetParam(), 21 + offset, offset);
    CheckBatch({&side}, CopyDirection::kScatter);
  }
}

INSTANTIATE_TEST_SUITE_P(Geometries, CudaCaseTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return info.param.g.Name() + "_" +
                                  std::to_string(info.index);
                         });

TEST_F(CudaTest, EveryGeometryInOneBatch) {
  const std::vector<Case> cases = Cases();
  std::vector<std::unique_ptr<Side>> owned;
  std::vector<Side*> sides;
  for (size_t i = 0; i < cases.size(); ++i) {
    owned.push_back(std::make_unique<Side>(cases[i], 100 + i, 0));
    sides.push_back(owned.back().get());
  }
  CheckBatch(sides, CopyDirection::kGather);
  CheckBatch(sides, CopyDirection::kScatter);
}

// Realistic sizes: head_dim 128, block 16, chunks of 64 tokens over
// scattered blocks, several layers and chunks in one launch.
std::vector<Case> LargeCases() {
  std::vector<Case> cases;
  const std::vector<int32_t> blocks = {17, 3, 40, 8, 25, 61, 0, 33, 12, 50};
  for (const std::string dims : {"NTHD", "NHTD", "SNTHD", "NSTHD"}) {
    for (int chunk = 0; chunk < 2; ++chunk) {
      Case c;
      c.g = {.dims = dims,
             .num_blocks = 64,
             .block_size = 16,
             .kv_heads = 8,
             .head_dim = 128};
      c.offset = chunk == 0 ? 0 : 5;
      c.tokens = 64;
      const size_t n = (c.offset + c.tokens + 15) / 16;
      c.block_ids.assign(blocks.begin() + chunk * 5,
                         blocks.begin() + chunk * 5 + n);
      if (dims == "SNTHD") c.heads = {.chunk_begin = 8, .chunk_heads = 16};
      if (dims == "NSTHD") c.heads = {.paged_begin = 2, .count = 4};
      cases.push_back(c);
    }
  }
  return cases;
}

TEST_F(CudaTest, RealisticLayersAndChunksInOneBatch) {
  std::vector<std::unique_ptr<Side>> owned;
  std::vector<Side*> sides;
  uint64_t seed = 1000;
  for (const Case& c : LargeCases()) {
    owned.push_back(std::make_unique<Side>(c, seed++, 0));
    sides.push_back(owned.back().get());
  }
  CheckBatch(sides, CopyDirection::kGather);
  CheckBatch(sides, CopyDirection::kScatter);
}

TEST_F(CudaTest, GatherIntoPinnedHostMemory) {
  Side side(Cases()[2], 5, 0);
  void* pinned = nullptr;
  CUDA_OK(cudaHostAlloc(&pinned, side.plan.layer_bytes, cudaHostAllocDefault));
  LayerCopyJob job = side.DeviceJob();
  job.layer = pinned;
  ASSERT_TRUE(GatherChunkLayersCuda({&job, 1}, stream_).ok());
  CUDA_OK(cudaStreamSynchronize(stream_));
  ASSERT_TRUE(
      GatherChunkLayer(side.view, side.Slots(), side.c.heads, side.HostLayer())
          .ok());
  const uint8_t* got = static_cast<const uint8_t*>(pinned);
  EXPECT_TRUE(std::equal(side.canon.begin(), side.canon.end(), got));
  cudaFreeHost(pinned);
}

TEST_F(CudaTest, UnregisteredHostMemoryIsRejected) {
  Side side(Cases()[0], 6, 0);
  LayerCopyJob job = side.DeviceJob();
  job.layer = side.canon.data();  // pageable host memory
  const absl::Status s = GatherChunkLayersCuda({&job, 1}, stream_);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("jobs[0] layer at 0x"));
  EXPECT_THAT(s.message(), HasSubstr("unregistered host memory"));
}

// These run with or without a device: validation happens first.
TEST(CudaValidationTest, RejectsBadJobsBeforeTouchingTheDevice) {
  TestPagedLayer paged(PagedGeometry{});
  const PagedLayerView view = *paged.View(paged.bytes().data());
  const std::vector<int32_t> ids = {0, 1};
  std::vector<uint8_t> layer(1024);
  LayerCopyJob job{view, {ids, 0, 8}, {}, layer.data(), 7};
  absl::Status s = GatherChunkLayersCuda({&job, 1}, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("jobs[0]: layer_bytes=7"));
  job.layer_bytes = 512;
  job.slots.tokens = 9;
  s = ScatterChunkLayersCuda({&job, 1}, nullptr);
  EXPECT_THAT(s.message(), HasSubstr("block_ids has 2 entries"));
  EXPECT_TRUE(GatherChunkLayersCuda({}, nullptr).ok());
}

TEST(CudaValidationTest, NoDeviceIsFailedPrecondition) {
  if (CudaDeviceCount() > 0) GTEST_SKIP() << "a CUDA device is present";
  TestPagedLayer paged(PagedGeometry{});
  const PagedLayerView view = *paged.View(paged.bytes().data());
  const std::vector<int32_t> ids = {0, 1};
  std::vector<uint8_t> layer(512);
  const LayerCopyJob job{view, {ids, 0, 8}, {}, layer.data(), 512};
  const absl::Status s = GatherChunkLayersCuda({&job, 1}, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
}

}  // namespace
}  // namespace kvd
