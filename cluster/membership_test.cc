#include "cluster/membership.h"

#include <memory>
#include <string>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/cluster/etcd_server.h"

namespace kvd::cluster {
namespace {

using kvdepot::v1::NodeRecord;

NodeRecord Record(const std::string& id, int port, uint32_t weight = 1) {
  NodeRecord r;
  r.set_node_id(id);
  r.set_control_address(absl::StrCat("127.0.0.1:", port));
  r.set_weight(weight);
  return r;
}

std::vector<std::string> Ids(const MembershipView& v) {
  std::vector<std::string> out;
  for (const NodeRecord& r : v.nodes) out.push_back(r.node_id());
  return out;
}

class MembershipTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(etcd_server_.Start());
    etcd_ = *EtcdClient::Create({.endpoints = {etcd_server_.endpoint()}});
  }

  std::unique_ptr<Registrar> Register(const std::string& id, int port,
                                      uint32_t weight = 1) {
    auto r = Registrar::Start(
        etcd_.get(), {.cluster = "t",
                      .node_id = id,
                      .ttl = absl::Seconds(2),
                      .refresh = absl::Seconds(1),
                      .record = [=] { return Record(id, port, weight); }});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *std::move(r) : nullptr;
  }

  EtcdServer etcd_server_;
  std::unique_ptr<EtcdClient> etcd_;
};

TEST_F(MembershipTest, LeasesKeysAndPrefixes) {
  absl::StatusOr<int64_t> lease = etcd_->GrantLease(absl::Seconds(5));
  ASSERT_TRUE(lease.ok()) << lease.status();
  ASSERT_TRUE(etcd_->Put("/p/a", "1", *lease).ok());
  ASSERT_TRUE(etcd_->Put("/p/b", "2").ok());
  ASSERT_TRUE(etcd_->Put("/q", "3").ok());
  absl::StatusOr<EtcdClient::Snapshot> got = etcd_->GetPrefix("/p/");
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->kvs.size(), 2u);
  EXPECT_EQ(got->kvs[0].key, "/p/a");
  EXPECT_EQ(got->kvs[1].value, "2");
  EXPECT_GT(got->revision, 0);

  absl::StatusOr<absl::Duration> ttl = etcd_->KeepAlive(*lease);
  ASSERT_TRUE(ttl.ok()) << ttl.status();
  EXPECT_GT(*ttl, absl::Seconds(3));
  ASSERT_TRUE(etcd_->RevokeLease(*lease).ok());
  EXPECT_TRUE(absl::IsNotFound(etcd_->KeepAlive(*lease).status()));
  EXPECT_FALSE(etcd_->Put("/p/c", "x", *lease).ok());
  EXPECT_EQ(etcd_->GetPrefix("/p/")->kvs.size(), 1u);  // /p/a went with it
  ASSERT_TRUE(etcd_->Delete("/p/b").ok());
  EXPECT_TRUE(etcd_->GetPrefix("/p/")->kvs.empty());
}

TEST_F(MembershipTest, WatcherFollowsJoinsLeavesAndExpiries) {
  MembershipWatcher watcher(etcd_.get(), "t");
  ASSERT_TRUE(watcher.WaitForView(absl::Seconds(10)).ok());
  EXPECT_TRUE(watcher.view()->nodes.empty());
  EXPECT_FALSE(watcher.view()->placement.has_value());

  auto a = Register("a", 7001, 2);
  auto b = Register("b", 7002);
  ASSERT_TRUE(Eventually([&] { return watcher.view()->nodes.size() == 2; },
                         absl::Seconds(10)));
  auto view = watcher.view();
  EXPECT_THAT(Ids(*view), ::testing::ElementsAre("a", "b"));
  ASSERT_TRUE(view->placement.has_value());
  EXPECT_EQ(view->placement->nodes()[0].weight, 2u);
  EXPECT_TRUE(view->live);
  EXPECT_TRUE(a->registered());

  // Heartbeat rewrites do not move keys: the epoch holds.
  const uint64_t epoch = view->placement_epoch;
  const int64_t revision = view->revision;
  ASSERT_TRUE(Eventually([&] { return watcher.view()->revision > revision; },
                         absl::Seconds(5)));
  EXPECT_EQ(watcher.view()->placement_epoch, epoch);

  // A graceful leave is seen at once; a silent death after the TTL.
  const absl::Time left = absl::Now();
  ASSERT_TRUE(a->Leave().ok());
  ASSERT_TRUE(Eventually([&] { return watcher.view()->nodes.size() == 1; },
                         absl::Seconds(1)));
  EXPECT_LT(absl::Now() - left, absl::Seconds(1));
  EXPECT_GT(watcher.view()->placement_epoch, epoch);
  b.reset();  // stops heartbeating without revoking
  ASSERT_TRUE(Eventually([&] { return watcher.view()->nodes.empty(); },
                         absl::Seconds(10)));
  EXPECT_FALSE(watcher.view()->placement.has_value());
}

TEST_F(MembershipTest, BadRecordsAreSkippedNotFatal) {
  const std::string prefix = NodesPrefix("t");
  ASSERT_TRUE(
      etcd_->Put(prefix + "good", EncodeNodeRecord(Record("good", 1))).ok());
  ASSERT_TRUE(etcd_->Put(prefix + "json", "{not json").ok());
  ASSERT_TRUE(
      etcd_->Put(prefix + "other", EncodeNodeRecord(Record("x", 1))).ok());
  ASSERT_TRUE(
      etcd_->Put(prefix + "w0", EncodeNodeRecord(Record("w0", 1, 0))).ok());
  NodeRecord no_port = Record("np", 1);
  no_port.set_control_address("127.0.0.1");
  ASSERT_TRUE(etcd_->Put(prefix + "np", EncodeNodeRecord(no_port)).ok());

  MembershipWatcher watcher(etcd_.get(), "t");
  ASSERT_TRUE(watcher.WaitForView(absl::Seconds(10)).ok());
  EXPECT_THAT(Ids(*watcher.view()), ::testing::ElementsAre("good"));
  // A record that turns bad later is dropped.
  ASSERT_TRUE(etcd_->Put(prefix + "good", "[]").ok());
  ASSERT_TRUE(Eventually([&] { return watcher.view()->nodes.empty(); },
                         absl::Seconds(5)));

  EXPECT_FALSE(DecodeNodeRecord("x", EncodeNodeRecord(Record("y", 1))).ok());
  EXPECT_TRUE(DecodeNodeRecord("y", EncodeNodeRecord(Record("y", 1))).ok());
  EXPECT_FALSE(ValidateClusterName("c", "").ok());
  EXPECT_FALSE(ValidateClusterName("c", "a/b").ok());
  EXPECT_FALSE(ValidateClusterName("c", std::string(65, 'a')).ok());
  EXPECT_TRUE(ValidateClusterName("c", "prod-eu_1.a").ok());
  EXPECT_FALSE(
      Registrar::Start(etcd_.get(), {.cluster = "t",
                                     .node_id = "a/b",
                                     .record = [] { return NodeRecord(); }})
          .ok());
  EXPECT_FALSE(
      Registrar::Start(etcd_.get(), {.cluster = "t",
                                     .node_id = "a",
                                     .ttl = absl::Milliseconds(2500),
                                     .record = [] { return NodeRecord(); }})
          .ok());
}

TEST_F(MembershipTest, EtcdOutageKeepsTheLastViewAndResumes) {
  auto a = Register("a", 7001);
  MembershipWatcher watcher(etcd_.get(), "t");
  ASSERT_TRUE(Eventually([&] { return watcher.view()->nodes.size() == 1; },
                         absl::Seconds(10)));

  etcd_server_.Stop();
  ASSERT_TRUE(
      Eventually([&] { return !watcher.view()->live; }, absl::Seconds(10)));
  EXPECT_THAT(Ids(*watcher.view()), ::testing::ElementsAre("a"));
  absl::SleepFor(absl::Seconds(3));  // past the TTL: etcd is not there to
                                     // expire anything
  EXPECT_THAT(Ids(*watcher.view()), ::testing::ElementsAre("a"));

  ASSERT_TRUE(etcd_server_.Start());
  auto b = Register("b", 7002);
  ASSERT_TRUE(Eventually(
      [&] {
        auto v = watcher.view();
        return v->live && v->nodes.size() == 2;
      },
      absl::Seconds(20)));
  EXPECT_TRUE(Eventually([&] { return a->registered(); }, absl::Seconds(10)));
}

TEST(MembershipNoEtcdTest, UnreachableEtcdIsAClearError) {
  const std::string endpoint = absl::StrCat("127.0.0.1:", PickFreePort());
  auto etcd = *EtcdClient::Create(
      {.endpoints = {endpoint}, .call_timeout = absl::Milliseconds(300)});
  EXPECT_TRUE(absl::IsUnavailable(etcd->GetPrefix("/").status()) ||
              absl::IsDeadlineExceeded(etcd->GetPrefix("/").status()));
  MembershipWatcher watcher(etcd.get(), "t");
  absl::Status s = watcher.WaitForView(absl::Seconds(1));
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr(endpoint));

  EXPECT_FALSE(ParseEtcdEndpoints("cluster.etcd", "").ok());
  EXPECT_FALSE(ParseEtcdEndpoints("cluster.etcd", "a:0").ok());
  auto parsed = ParseEtcdEndpoints("cluster.etcd", " http://a:2379, b:2379 ,");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_THAT(*parsed, ::testing::ElementsAre("a:2379", "b:2379"));
}

}  // namespace
}  // namespace kvd::cluster
