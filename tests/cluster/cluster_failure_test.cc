// Cluster mode end to end (DESIGN.md §3.6, issue "cluster mode"): etcd and
// three real kvdepot-node processes on loopback, driven by a ClusterClient.
//   - kill -9 of one node under a mixed put/get/lookup load: no client error
//     other than misses, no call longer than the timeout bound, and with
//     R = 2 no misses at all;
//   - etcd down: the data path keeps serving on the last membership, and
//     membership changes resume when etcd returns;
//   - a killed node restarted on its SSD directory rejoins with its chunks.
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/cluster/cluster_load.h"
#include "tests/cluster/local_cluster.h"

namespace kvd {
namespace {

using cluster::ClusterClient;

class ClusterFailureTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cluster_.etcd().Start());
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(cluster_.StartNode(i));
    auto client = cluster_.Client(GetParam());
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
    ASSERT_TRUE(WaitForNodes(3));
  }

  bool WaitForNodes(size_t n) {
    return Eventually([&] { return client_->membership()->nodes.size() == n; },
                      absl::Seconds(20));
  }

  std::unique_ptr<Arena> NewArena(uint32_t seed, int chunks) {
    auto arena =
        std::make_unique<Arena>(MakeTestPrompt(TestChunkSpec(), seed, chunks));
    auto reg = client_->RegisterBuffer(absl::MakeSpan(arena->memory));
    EXPECT_TRUE(reg.ok()) << reg.status();
    registrations_.push_back(*std::move(reg));
    return arena;
  }

  LocalCluster cluster_;
  std::unique_ptr<ClusterClient> client_;
  std::vector<std::unique_ptr<Registration>> registrations_;

  void TearDown() override {
    registrations_.clear();
    client_.reset();
  }
};

TEST_P(ClusterFailureTest, KillNineUnderLoad) {
  const int replicas = GetParam();
  // Data written before the failure, spread over all three nodes.
  std::unique_ptr<Arena> before = NewArena(1, 48);
  Tally setup;
  PutAll(*client_, *before, setup);
  ASSERT_EQ(setup.errors, 0) << setup.first_error;
  ASSERT_EQ(client_->Lookup(before->prompt.keys).value_or(0), 48u);

  // Load: new prompts put, the old one read back and looked up, in a loop.
  Tally load;
  std::atomic<bool> stop{false};
  std::atomic<int> lookup_short{0};
  std::vector<std::unique_ptr<Arena>> during;
  for (uint32_t seed = 100; seed < 130; ++seed) {
    during.push_back(NewArena(seed, 4));
  }
  std::thread worker([&] {
    for (size_t round = 0; !stop; ++round) {
      PutAll(*client_, *during[round % during.size()], load);
      GetAll(*client_, *before, load);
      const absl::Time start = absl::Now();
      absl::StatusOr<size_t> cached = client_->Lookup(before->prompt.keys);
      Record(load, absl::Now() - start, cached.status());
      if (cached.ok() && *cached < before->prompt.keys.size()) lookup_short++;
    }
  });
  absl::SleepFor(absl::Seconds(1));
  cluster_.Kill(1);
  // The lease expires (TTL 2 s) and everyone places without n1.
  EXPECT_TRUE(WaitForNodes(2));
  absl::SleepFor(absl::Seconds(1));
  stop = true;
  worker.join();

  EXPECT_GT(load.ops, 100);
  EXPECT_EQ(load.errors, 0) << load.first_error;
  // Each call is bounded: a connect and a request timeout at worst.
  EXPECT_LE(load.slowest_ms,
            absl::ToInt64Milliseconds(2 * kClusterTimeout) + 1000);
  // What was put while n1 died went to live owners: all of it reads back.
  Tally after;
  for (auto& arena : during) GetAll(*client_, *arena, after);
  EXPECT_EQ(after.errors, 0) << after.first_error;
  GetAll(*client_, *before, after);
  if (replicas >= 2) {
    EXPECT_EQ(load.misses, 0);
    EXPECT_EQ(lookup_short, 0);
    EXPECT_EQ(after.misses, 0);
  } else {
    // n1's third of the old prompt is gone; the rest is there.
    EXPECT_GT(after.misses, 0);
    EXPECT_LT(after.misses, 48);
  }
  std::printf("R=%d: %d ops, %d misses, slowest %lld ms\n", replicas,
              load.ops.load(), load.misses.load(),
              static_cast<long long>(load.slowest_ms.load()));
}

TEST_P(ClusterFailureTest, EtcdOutageAndRejoin) {
  std::unique_ptr<Arena> data = NewArena(2, 24);
  Tally tally;
  PutAll(*client_, *data, tally);
  ASSERT_EQ(tally.errors, 0) << tally.first_error;

  cluster_.etcd().Stop();
  ASSERT_TRUE(Eventually([&] { return !client_->membership()->live; },
                         absl::Seconds(10)));
  absl::SleepFor(absl::Seconds(3));  // past every lease TTL
  // The data path serves on the last known membership.
  EXPECT_EQ(client_->membership()->nodes.size(), 3u);
  GetAll(*client_, *data, tally);
  std::unique_ptr<Arena> more = NewArena(3, 8);
  PutAll(*client_, *more, tally);
  GetAll(*client_, *more, tally);
  EXPECT_EQ(tally.errors, 0) << tally.first_error;
  EXPECT_EQ(tally.misses, 0);
  EXPECT_EQ(client_->Lookup(data->prompt.keys).value_or(0), 24u);

  // etcd returns: membership follows changes again (a node killed now
  // drops out; restarted on its SSD directory, it rejoins with its chunks,
  // here all of them: they were made durable first).
  ASSERT_TRUE(cluster_.etcd().Start());
  ASSERT_TRUE(Eventually([&] { return client_->membership()->live; },
                         absl::Seconds(20)));
  ASSERT_TRUE(WaitForNodes(3));
  ASSERT_TRUE(cluster_.MakeDurable(2));
  cluster_.Kill(2);
  ASSERT_TRUE(WaitForNodes(2));
  ASSERT_TRUE(cluster_.StartNode(2));
  ASSERT_TRUE(WaitForNodes(3));
  Tally rejoined;
  GetAll(*client_, *data, rejoined);
  EXPECT_EQ(rejoined.errors, 0) << rejoined.first_error;
  EXPECT_EQ(rejoined.misses, 0) << cluster_.log(2);
}

INSTANTIATE_TEST_SUITE_P(Replicas, ClusterFailureTest, ::testing::Values(1, 2),
                         [](const auto& info) {
                           return absl::StrCat("R", info.param);
                         });

}  // namespace
}  // namespace kvd
