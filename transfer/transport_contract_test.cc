// The Transport contract (transfer/transport.h), run against every backend
// this machine has: in-process, UCX over TCP, UCX over shared memory.
#include <atomic>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "transfer/inproc/inproc_transport.h"
#include "transfer/transport.h"
#include "transfer/ucx/ucx_transport.h"

namespace kvd {
namespace {

using Factory = std::unique_ptr<Transport> (*)();

struct Backend {
  const char* name;
  Factory make;
};

std::unique_ptr<Transport> Ucx(const char* tls) {
  auto t = CreateUcxTransport({.tls = tls, .net_devices = "", .name = "test"});
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *std::move(t) : nullptr;
}

const Backend kBackends[] = {
    {"inproc", [] { return CreateInProcTransport(); }},
    {"ucx_tcp", [] { return Ucx("tcp"); }},
    {"ucx_shm", [] { return Ucx("posix,cma,self"); }},
};

// Waits for one completion and returns its status.
class Waiter {
 public:
  Completion Done() {
    return [this](absl::Status s) {
      status_ = s;
      done_.Notify();
    };
  }
  absl::Status Wait() {
    EXPECT_TRUE(done_.WaitForNotificationWithTimeout(absl::Seconds(30)))
        << "completion did not run";
    return status_;
  }

 private:
  absl::Notification done_;
  absl::Status status_ = absl::UnknownError("not completed");
};

std::vector<uint8_t> RandomBytes(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  std::mt19937 rng(seed);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

class TransportContractTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    a_ = GetParam().make();
    b_ = GetParam().make();
    ASSERT_NE(a_, nullptr);
    ASSERT_NE(b_, nullptr);
  }

  PeerId ConnectAToB(PeerErrorHandler on_error = nullptr) {
    auto peer = a_->Connect(b_->address(), std::move(on_error));
    EXPECT_TRUE(peer.ok()) << peer.status();
    return peer.ok() ? *peer : 0;
  }

  std::unique_ptr<Transport> a_, b_;
};

TEST_P(TransportContractTest, MessagesArriveInOrderWithTheirHeaders) {
  constexpr int kCount = 200;
  absl::Mutex mu;
  std::vector<std::string> got;
  absl::Notification all;
  b_->SetHandler(3, [&](absl::Span<const uint8_t> header, IncomingPayload p) {
    EXPECT_TRUE(p.empty());
    absl::MutexLock lock(&mu);
    got.emplace_back(header.begin(), header.end());
    if (got.size() == kCount) all.Notify();
  });
  const PeerId peer = ConnectAToB();
  std::atomic<int> sent{0};
  for (int i = 0; i < kCount; ++i) {
    a_->Send(peer, 3, absl::StrCat("message ", i), {}, [&](absl::Status s) {
      EXPECT_TRUE(s.ok()) << s;
      sent++;
    });
  }
  ASSERT_TRUE(all.WaitForNotificationWithTimeout(absl::Seconds(30)));
  // Completions reference this frame: wait for every one of them.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (sent.load() < kCount && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_EQ(sent.load(), kCount);
  absl::MutexLock lock(&mu);
  for (int i = 0; i < kCount; ++i)
    EXPECT_EQ(got[i], absl::StrCat("message ", i));
}

TEST_P(TransportContractTest, LargePayloadLandsWhereTheReceiverChooses) {
  const std::vector<uint8_t> src = RandomBytes(6 << 20, 1);
  std::vector<uint8_t> dst(src.size() + 64, 0xee);
  Waiter received;
  b_->SetHandler(1, [&](absl::Span<const uint8_t> header, IncomingPayload p) {
    EXPECT_EQ(std::string(header.begin(), header.end()), "chunk");
    EXPECT_EQ(p.size(), src.size());
    // Receive later, from another task: the payload is not bound to the call.
    auto held = std::make_shared<IncomingPayload>(std::move(p));
    b_->Post([&, held] {
      std::move(*held).Receive(absl::MakeSpan(dst).subspan(64),
                               received.Done());
    });
  });
  Waiter sent;
  a_->Send(ConnectAToB(), 1, "chunk", src, sent.Done());
  ASSERT_TRUE(received.Wait().ok());
  ASSERT_TRUE(sent.Wait().ok());
  EXPECT_TRUE(std::equal(src.begin(), src.end(), dst.begin() + 64));
  EXPECT_EQ(dst[63], 0xee);
}

TEST_P(TransportContractTest, DroppedPayloadStillCompletesTheSend) {
  const std::vector<uint8_t> src = RandomBytes(4 << 20, 2);
  b_->SetHandler(1, [](absl::Span<const uint8_t>, IncomingPayload) {});
  Waiter sent;
  a_->Send(ConnectAToB(), 1, "x", src, sent.Done());
  EXPECT_TRUE(sent.Wait().ok());
}

TEST_P(TransportContractTest, OneSidedPutAndGetOnRegisteredMemory) {
  std::vector<uint8_t> remote(8 << 20, 0);
  auto reg = b_->Register(absl::MakeSpan(remote));
  ASSERT_TRUE(reg.ok()) << reg.status();
  const PeerId peer = ConnectAToB();
  const std::vector<uint8_t> src = RandomBytes(5 << 20, 3);
  const uint64_t base = reinterpret_cast<uint64_t>(remote.data());
  Waiter put;
  a_->Put(peer, src, base + 4096, (*reg)->rkey(), put.Done());
  ASSERT_TRUE(put.Wait().ok());
  Waiter flushed;
  a_->Flush(peer, flushed.Done());
  ASSERT_TRUE(flushed.Wait().ok());
  EXPECT_TRUE(std::equal(src.begin(), src.end(), remote.begin() + 4096));

  std::vector<uint8_t> back(src.size());
  Waiter got;
  a_->Get(peer, absl::MakeSpan(back), base + 4096, (*reg)->rkey(), got.Done());
  ASSERT_TRUE(got.Wait().ok());
  EXPECT_EQ(back, src);
}

TEST_P(TransportContractTest, OperationsOnADisconnectedPeerFail) {
  const PeerId peer = ConnectAToB();
  a_->Disconnect(peer);
  Waiter sent;
  a_->Send(peer, 1, "late", {}, sent.Done());
  EXPECT_TRUE(absl::IsUnavailable(sent.Wait()));
  Waiter flushed;
  a_->Flush(peer, flushed.Done());
  EXPECT_TRUE(absl::IsUnavailable(flushed.Wait()));
}

TEST_P(TransportContractTest, APeerThatGoesAwayFailsItsOperationsNotHangs) {
  if (!a_->info().detects_peer_failure) {
    GTEST_SKIP() << GetParam().name << " cannot detect a dead peer";
  }
  std::atomic<bool> told{false};
  b_->SetHandler(1, [](absl::Span<const uint8_t>, IncomingPayload) {});
  const PeerId peer =
      ConnectAToB([&](PeerId, absl::Status s) { told = !s.ok(); });
  Waiter first;
  a_->Send(peer, 1, "hello", {}, first.Done());
  ASSERT_TRUE(first.Wait().ok());
  b_.reset();
  // Keep talking until the failure shows: it must within the bound.
  const std::vector<uint8_t> payload(1 << 20, 7);
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  absl::Status last;
  while (absl::Now() < deadline) {
    Waiter w;
    a_->Send(peer, 1, "anyone?", payload, w.Done());
    last = w.Wait();
    if (!last.ok()) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_FALSE(last.ok()) << "sends to a dead peer kept succeeding";
}

TEST_P(TransportContractTest, TickRunsPeriodically) {
  std::atomic<int> ticks{0};
  a_->SetTick(absl::Milliseconds(5), [&] { ticks++; });
  absl::SleepFor(absl::Milliseconds(200));
  a_.reset();  // the tick references this frame
  EXPECT_GE(ticks.load(), 5);
}

INSTANTIATE_TEST_SUITE_P(Backends, TransportContractTest,
                         ::testing::ValuesIn(kBackends),
                         [](const ::testing::TestParamInfo<Backend>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace kvd
