// NcclComm: error mapping and option validation run everywhere; transfers
// need GPUs and skip without them (one GPU: a one-rank loopback and a
// peer that never joins; two GPUs: two ranks on two threads).
#include "transfer/nccl/nccl_comm.h"

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/cuda_status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "transfer/nccl/nccl_status.h"

static_assert(KVD_HAVE_NCCL == 1, "kvd::nccl_comm must define KVD_HAVE_NCCL=1");

namespace kvd {
namespace {

using ::testing::HasSubstr;

NcclId SomeId() {
  NcclId id;
  id.bytes[3] = 1;
  return id;
}

TEST(NcclStatusTest, CodesFollowTheRetryPolicy) {
  EXPECT_TRUE(NcclToStatus(ncclSuccess, "x").ok());
  const auto code = [](ncclResult_t r) { return NcclToStatus(r, "x").code(); };
  EXPECT_EQ(code(ncclSystemError), absl::StatusCode::kUnavailable);
  EXPECT_EQ(code(ncclRemoteError), absl::StatusCode::kUnavailable);
  EXPECT_EQ(code(ncclInProgress), absl::StatusCode::kUnavailable);
  EXPECT_EQ(code(ncclInvalidArgument), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(ncclInvalidUsage), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(code(ncclUnhandledCudaError), absl::StatusCode::kInternal);
  EXPECT_EQ(code(ncclInternalError), absl::StatusCode::kInternal);
  EXPECT_EQ(code(static_cast<ncclResult_t>(99)), absl::StatusCode::kInternal);
  const absl::Status s = NcclToStatus(ncclRemoteError, "ncclSend(peer=1)");
  EXPECT_THAT(s.message(), HasSubstr("ncclSend(peer=1): "));
  EXPECT_THAT(s.message(), HasSubstr("(ncclResult_t 6)"));
}

TEST(NcclCommTest, RejectsBadOptionsBeforeTouchingTheDevice) {
  auto expect = [](NcclCommOptions o, const std::string& text) {
    auto c = NcclComm::Create(SomeId(), o);
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument)
        << c.status();
    EXPECT_THAT(c.status().message(), HasSubstr(text));
  };
  expect({.nranks = 0, .rank = 0}, "nranks=0 must be >= 1");
  expect({.nranks = 2, .rank = 2}, "rank=2 is outside [0, nranks=2)");
  expect({.nranks = 2, .rank = -1}, "rank=-1 is outside");
  expect({.nranks = 1, .rank = 0, .device = -3}, "device=-3 is negative");
  expect({.nranks = 1, .rank = 0, .timeout = absl::ZeroDuration()},
         "timeout=0 must be positive");
  expect({.nranks = 1, .rank = 0, .poll_interval = absl::Seconds(-1)},
         "poll_interval=-1s is negative");
  expect({.nranks = 1, .rank = 0, .clock = nullptr}, "clock is null");
  auto zero = NcclComm::Create(NcclId{}, {.nranks = 1, .rank = 0});
  EXPECT_THAT(zero.status().message(), HasSubstr("all zero"));
}

TEST(NcclCommTest, NoDeviceIsFailedPrecondition) {
  if (CudaDeviceCount() > 0) GTEST_SKIP() << "a CUDA device is present";
  auto c = NcclComm::Create(SomeId(), {.nranks = 1, .rank = 0});
  EXPECT_EQ(c.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(c.status().message(), HasSubstr("no CUDA device"));
}

TEST(NcclCommTest, CreateNcclIdGivesFreshIds) {
  // ncclGetUniqueId needs no GPU, only a network interface to listen on.
  auto a = CreateNcclId();
  auto b = CreateNcclId();
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_FALSE(a->IsZero());
  EXPECT_NE(*a, *b);
  auto parsed = ParseNcclId(SerializeNcclId(*a));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, *a);
}

// Device memory filled from a seed, or zeroed.
class DeviceBuffer {
 public:
  DeviceBuffer(int device, size_t bytes) : bytes_(bytes) {
    EXPECT_EQ(cudaSetDevice(device), cudaSuccess);
    EXPECT_EQ(cudaMalloc(&ptr_, bytes), cudaSuccess);
    EXPECT_EQ(cudaMemset(ptr_, 0, bytes), cudaSuccess);
  }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return ptr_; }
  void Fill(uint64_t seed) {
    std::vector<uint8_t> host(bytes_);
    std::mt19937_64 rng(seed);
    for (auto& b : host) b = static_cast<uint8_t>(rng());
    EXPECT_EQ(cudaMemcpy(ptr_, host.data(), bytes_, cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  std::vector<uint8_t> Read() const {
    std::vector<uint8_t> host(bytes_);
    EXPECT_EQ(cudaMemcpy(host.data(), ptr_, bytes_, cudaMemcpyDeviceToHost),
              cudaSuccess);
    return host;
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_;
};

class OneGpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() < 1) GTEST_SKIP() << "needs 1 CUDA device";
    auto id = CreateNcclId();
    ASSERT_TRUE(id.ok()) << id.status();
    // The text form, as another process would receive it.
    auto parsed = ParseNcclId(SerializeNcclId(*id));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    auto comm = NcclComm::Create(
        *parsed, {.nranks = 1, .rank = 0, .timeout = absl::Seconds(20)});
    ASSERT_TRUE(comm.ok()) << comm.status();
    comm_ = *std::move(comm);
    ASSERT_EQ(cudaStreamCreate(&stream_), cudaSuccess);
  }
  void TearDown() override {
    comm_.reset();
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  std::unique_ptr<NcclComm> comm_;
  cudaStream_t stream_ = nullptr;
};

TEST_F(OneGpuTest, LoopbackToSelf) {
  for (const size_t bytes : {size_t{1}, size_t{4097}, size_t{64} << 20}) {
    DeviceBuffer src(0, bytes), dst(0, bytes);
    src.Fill(bytes);
    const std::vector<NcclOp> ops = {{NcclOpKind::kSend, src.data(), bytes, 0},
                                     {NcclOpKind::kRecv, dst.data(), bytes, 0}};
    ASSERT_TRUE(comm_->Transfer(ops, stream_).ok());
    ASSERT_TRUE(comm_->Wait(stream_).ok());
    EXPECT_EQ(dst.Read(), src.Read()) << bytes << " bytes";
  }
  EXPECT_TRUE(comm_->CheckAsyncError().ok());
}

TEST_F(OneGpuTest, BadOpsEnqueueNothing) {
  DeviceBuffer buf(0, 64);
  NcclOp op{NcclOpKind::kSend, buf.data(), 64, 1};
  EXPECT_THAT(comm_->Transfer({&op, 1}, stream_).message(),
              HasSubstr("ops[0].peer=1 is outside [0, nranks=1)"));
  op = {NcclOpKind::kRecv, nullptr, 64, 0};
  EXPECT_THAT(comm_->Transfer({&op, 1}, stream_).message(),
              HasSubstr("ops[0].buffer is null with bytes=64"));
  EXPECT_THAT(comm_->Transfer({}, stream_).message(),
              HasSubstr("ops is empty"));
  EXPECT_FALSE(comm_->aborted());
}

TEST_F(OneGpuTest, UnmatchedReceiveTimesOutAndAborts) {
  auto comm = NcclComm::Create(
      *CreateNcclId(), {.nranks = 1, .rank = 0, .timeout = absl::Seconds(2)});
  ASSERT_TRUE(comm.ok()) << comm.status();
  DeviceBuffer buf(0, 1024);
  // A receive from self with no matching send never completes.
  const absl::Status enqueued = (*comm)->Recv(buf.data(), 1024, 0, stream_);
  if (!enqueued.ok()) {
    GTEST_SKIP() << "NCCL refused the unmatched self receive outright (also "
                    "clean): "
                 << enqueued;
  }
  const absl::Status waited = (*comm)->Wait(stream_);
  EXPECT_EQ(waited.code(), absl::StatusCode::kUnavailable) << waited;
  EXPECT_TRUE((*comm)->aborted());
  EXPECT_EQ((*comm)->Send(buf.data(), 1, 0, stream_).code(),
            absl::StatusCode::kFailedPrecondition);
}

// The timeout-and-abort path on one GPU: rank 1 never joins, so the
// non-blocking initialization never finishes; Create gives up after its
// timeout and aborts instead of hanging.
TEST(OneGpuTimeoutTest, CreateGivesUpWhenAPeerNeverJoins) {
  if (CudaDeviceCount() < 1) GTEST_SKIP() << "needs 1 CUDA device";
  auto id = CreateNcclId();
  ASSERT_TRUE(id.ok()) << id.status();
  const absl::Time start = absl::Now();
  auto comm = NcclComm::Create(
      *id, {.nranks = 2, .rank = 0, .timeout = absl::Seconds(2)});
  EXPECT_EQ(comm.status().code(), absl::StatusCode::kUnavailable)
      << comm.status();
  EXPECT_THAT(comm.status().message(),
              HasSubstr("did not finish within 2s; the communicator was "
                        "aborted"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
}

TEST(TwoGpuTest, TwoRanksOnTwoThreads) {
  if (CudaDeviceCount() < 2) GTEST_SKIP() << "needs 2 CUDA devices";
  auto id = CreateNcclId();
  ASSERT_TRUE(id.ok()) << id.status();
  const std::string text = SerializeNcclId(*id);
  constexpr size_t kChunk = 3 << 20;
  constexpr int kChunks = 4;
  std::vector<std::vector<uint8_t>> sent(kChunks), received(kChunks);
  std::vector<std::vector<uint8_t>> back_sent(2), back_received(2);
  absl::Status status[2];
  auto rank_main = [&](int rank) {
    auto parsed = ParseNcclId(text);
    if (!parsed.ok()) {
      status[rank] = parsed.status();
      return;
    }
    auto comm = NcclComm::Create(*parsed, {.nranks = 2,
                                           .rank = rank,
                                           .device = rank,
                                           .timeout = absl::Seconds(60)});
    if (!comm.ok()) {
      status[rank] = comm.status();
      return;
    }
    cudaStream_t stream;
    cudaStreamCreate(&stream);
    std::vector<std::unique_ptr<DeviceBuffer>> bufs;
    std::vector<NcclOp> ops;
    for (int i = 0; i < kChunks; ++i) {
      bufs.push_back(std::make_unique<DeviceBuffer>(rank, kChunk));
      if (rank == 0) {
        bufs.back()->Fill(100 + i);
        ops.push_back({NcclOpKind::kSend, bufs.back()->data(), kChunk, 1});
      } else {
        ops.push_back({NcclOpKind::kRecv, bufs.back()->data(), kChunk, 0});
      }
    }
    // Prefill -> decode: one group of sends / receives.
    status[rank] = (*comm)->Transfer(ops, stream);
    if (status[rank].ok()) status[rank] = (*comm)->Wait(stream);
    for (int i = 0; i < kChunks && status[rank].ok(); ++i) {
      (rank == 0 ? sent : received)[i] = bufs[i]->Read();
    }
    // Both directions at once in one group.
    DeviceBuffer out(rank, 4096), in(rank, 4096);
    out.Fill(7 + rank);
    const std::vector<NcclOp> both = {
        {NcclOpKind::kSend, out.data(), 4096, 1 - rank},
        {NcclOpKind::kRecv, in.data(), 4096, 1 - rank}};
    if (status[rank].ok()) status[rank] = (*comm)->Transfer(both, stream);
    if (status[rank].ok()) status[rank] = (*comm)->Wait(stream);
    back_sent[rank] = out.Read();
    back_received[rank] = in.Read();
    comm->reset();
    cudaStreamDestroy(stream);
  };
  std::thread r0(rank_main, 0), r1(rank_main, 1);
  r0.join();
  r1.join();
  ASSERT_TRUE(status[0].ok()) << status[0];
  ASSERT_TRUE(status[1].ok()) << status[1];
  for (int i = 0; i < kChunks; ++i) EXPECT_EQ(sent[i], received[i]) << i;
  EXPECT_EQ(back_received[0], back_sent[1]);
  EXPECT_EQ(back_received[1], back_sent[0]);
}

}  // namespace
}  // namespace kvd
