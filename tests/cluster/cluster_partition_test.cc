// A partitioned node (DESIGN.md §3.6, issue "cluster mode"): a node cut off
// by a network link going down is treated as dead (its lease expires, its
// chunks read as misses or come from a replica, no call hangs past the
// timeout bound) and rejoins cleanly when the link returns.
//
// Topology, in network namespaces this test makes; the host's own network
// namespace is never touched:
//   hub   the test process itself moves into a fresh namespace; etcd, n0, n1
//         and the clients run there on 10.213.0.1 (veth end kvdh<pid>);
//   part  a named namespace kvdp<pid> where n2 runs on 10.213.0.2.
// Setting the hub's veth end down partitions n2; setting it up heals.
//
// Needs CAP_NET_ADMIN (root) and iproute2; skipped without them.
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
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

constexpr char kIp[] = "/usr/sbin/ip";
constexpr char kHubAddress[] = "10.213.0.1";
constexpr char kPartAddress[] = "10.213.0.2";

// Runs `ip ARGS...` to its end; the failure carries its output, and
// `output` (if given) gets it.
::testing::AssertionResult Ip(std::vector<std::string> args,
                              std::string* output = nullptr) {
  args.insert(args.begin(), kIp);
  ChildProcess ip(args, ::testing::TempDir() + "/kvdepot-ip.log");
  const bool ok = ip.WaitFor(absl::Seconds(10)) && ip.exit_code() == 0;
  if (output != nullptr) *output = ip.output();
  if (!ok) {
    std::string command;
    for (const std::string& a : args) absl::StrAppend(&command, a, " ");
    return ::testing::AssertionFailure() << command << "failed:\n"
                                         << ip.output();
  }
  return ::testing::AssertionSuccess();
}

// Whether `ip ARGS...` (a `link show` of one link) shows it with carrier.
bool HasCarrier(std::vector<std::string> args) {
  std::string state;
  return Ip(std::move(args), &state) &&
         state.find("LOWER_UP") != std::string::npos &&
         state.find("NO-CARRIER") == std::string::npos;
}

class ClusterPartitionTest : public ::testing::Test {
 protected:
  // Moves the process into its own network namespace, once, before any
  // thread exists (namespaces are per thread; later threads inherit it).
  // Also into its own mount namespace with this network namespace's /sys,
  // as `ip netns exec` does: UCX lists devices from /sys/class/net.
  static void SetUpTestSuite() {
    if (unshare(CLONE_NEWNET | CLONE_NEWNS) != 0) {
      skip_ = absl::StrCat("cannot make a network namespace (",
                           std::strerror(errno), "): needs CAP_NET_ADMIN");
      return;
    }
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        umount2("/sys", MNT_DETACH) != 0 ||
        mount("sysfs", "/sys", "sysfs", 0, nullptr) != 0) {
      skip_ = absl::StrCat("cannot mount /sys for the namespace (",
                           std::strerror(errno), ")");
      return;
    }
    if (!Ip({"link", "set", "lo", "up"})) skip_ = "ip link failed";
  }

  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    ASSERT_TRUE(Ip({"netns", "add", part_}));
    made_netns_ = true;
    ASSERT_TRUE(Ip({"link", "add", hub_link_, "type", "veth", "peer", "name",
                    "kvdpart", "netns", part_}));
    // The far end first: a veth end set up before its peer may be left
    // without carrier on this kernel.
    ASSERT_TRUE(Ip({"-n", part_, "addr", "add",
                    absl::StrCat(kPartAddress, "/24"), "dev", "kvdpart"}));
    ASSERT_TRUE(Ip({"-n", part_, "link", "set", "kvdpart", "up"}));
    ASSERT_TRUE(Ip({"-n", part_, "link", "set", "lo", "up"}));
    ASSERT_TRUE(Ip(
        {"addr", "add", absl::StrCat(kHubAddress, "/24"), "dev", hub_link_}));
    ASSERT_TRUE(Ip({"link", "set", hub_link_, "up"}));
    // UCX uses only interfaces with carrier, listed when it starts.
    ASSERT_TRUE(Eventually(
        [&] {
          return HasCarrier({"link", "show", hub_link_}) &&
                 HasCarrier({"-n", part_, "link", "show", "kvdpart"});
        },
        absl::Seconds(10)));

    cluster_ = std::make_unique<LocalCluster>(kHubAddress);
    ASSERT_TRUE(cluster_->etcd().Start());
    ASSERT_TRUE(cluster_->StartNode(0, kHubAddress));
    ASSERT_TRUE(cluster_->StartNode(1, kHubAddress));
    ASSERT_TRUE(
        cluster_->StartNode(2, kPartAddress, {kIp, "netns", "exec", part_}));
  }

  void TearDown() override {
    cluster_.reset();
    if (made_netns_) {
      EXPECT_TRUE(Ip({"netns", "del", part_}));
    }
  }

  // The client's view holds `n` nodes within 20 s.
  static bool WaitForNodes(ClusterClient& client, size_t n) {
    return Eventually([&] { return client.membership()->nodes.size() == n; },
                      absl::Seconds(20));
  }

  static std::string skip_;
  const std::string part_ = absl::StrCat("kvdp", getpid());
  const std::string hub_link_ = absl::StrCat("kvdh", getpid());
  bool made_netns_ = false;
  std::unique_ptr<LocalCluster> cluster_;
};

std::string ClusterPartitionTest::skip_;

// One client per replication factor, each with its own prompt and load.
struct Load {
  std::unique_ptr<ClusterClient> client;
  std::unique_ptr<Arena> data;  // put before the partition
  std::unique_ptr<Registration> registration;
  Tally tally;
};

TEST_F(ClusterPartitionTest, PartitionedNodeIsDeadThenRejoins) {
  std::vector<std::unique_ptr<Load>> loads;
  for (int replicas : {1, 2}) {
    auto load = std::make_unique<Load>();
    auto client = cluster_->Client(replicas);
    ASSERT_TRUE(client.ok()) << client.status();
    load->client = *std::move(client);
    ASSERT_TRUE(WaitForNodes(*load->client, 3));
    load->data = std::make_unique<Arena>(
        MakeTestPrompt(TestChunkSpec(), 20 + replicas, 36));
    auto registration =
        load->client->RegisterBuffer(absl::MakeSpan(load->data->memory));
    ASSERT_TRUE(registration.ok()) << registration.status();
    load->registration = *std::move(registration);
    Tally setup;
    PutAll(*load->client, *load->data, setup);
    ASSERT_EQ(setup.errors + setup.misses, 0) << setup.first_error;
    loads.push_back(std::move(load));
  }
  ClusterClient& r1 = *loads[0]->client;

  std::atomic<bool> stop{false};
  std::vector<std::thread> workers;
  for (auto& load : loads) {
    workers.emplace_back([&stop, l = load.get()] {
      while (!stop) GetAll(*l->client, *l->data, l->tally);
    });
  }
  absl::SleepFor(absl::Seconds(1));
  const absl::Time cut = absl::Now();
  ASSERT_TRUE(Ip({"link", "set", hub_link_, "down"}));
  // n2 cannot renew its lease (TTL 2 s): everyone places without it.
  EXPECT_TRUE(WaitForNodes(r1, 2));
  const absl::Duration to_dead = absl::Now() - cut;
  absl::SleepFor(absl::Seconds(1));
  Tally partitioned;  // R = 1 reads now: n2's share misses
  GetAll(r1, *loads[0]->data, partitioned);

  ASSERT_TRUE(Ip({"link", "set", hub_link_, "up"}));
  const absl::Time healed = absl::Now();
  EXPECT_TRUE(WaitForNodes(r1, 3));
  const absl::Duration to_rejoin = absl::Now() - healed;
  // Rejoined cleanly: n2 serves what it held again, to both clients.
  for (auto& load : loads) {
    EXPECT_TRUE(Eventually(
        [&] {
          Tally t;
          GetAll(*load->client, *load->data, t);
          return t.errors == 0 && t.misses == 0;
        },
        absl::Seconds(20)));
  }
  stop = true;
  for (std::thread& w : workers) w.join();

  EXPECT_EQ(partitioned.errors, 0) << partitioned.first_error;
  EXPECT_GT(partitioned.misses, 0);
  EXPECT_LT(partitioned.misses, 36);
  for (auto& load : loads) {
    const Tally& t = load->tally;
    EXPECT_GT(t.ops, 100);
    EXPECT_EQ(t.errors, 0) << t.first_error;
    // A silent peer costs a timeout, never more than the call's bound.
    EXPECT_LE(t.slowest_ms,
              absl::ToInt64Milliseconds(2 * kClusterTimeout) + 1000);
  }
  EXPECT_EQ(loads[1]->tally.misses, 0);  // R = 2: a replica always answered
  std::printf(
      "partition: dead after %.1f s, rejoined %.1f s after the heal; "
      "R=1 %d ops %d misses, R=2 %d ops %d misses; slowest %lld / %lld ms\n",
      absl::ToDoubleSeconds(to_dead), absl::ToDoubleSeconds(to_rejoin),
      loads[0]->tally.ops.load(), loads[0]->tally.misses.load(),
      loads[1]->tally.ops.load(), loads[1]->tally.misses.load(),
      static_cast<long long>(loads[0]->tally.slowest_ms.load()),
      static_cast<long long>(loads[1]->tally.slowest_ms.load()));
}

}  // namespace
}  // namespace kvd
