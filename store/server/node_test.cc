#include "store/server/node.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "store/proto/grpc_status.h"

namespace kvd {
namespace {

using ::testing::HasSubstr;

NodeSettings TestSettings() {
  NodeSettings settings;
  settings.node_id = "node-test";
  settings.listen = "127.0.0.1:0";
  settings.log_level = "info";
  settings.shutdown_grace = absl::Seconds(1);
  settings.store.host_capacity_bytes = 8ull << 20;
  settings.store.host_huge_pages = false;
  return settings;
}

std::unique_ptr<kvdepot::v1::Control::Stub> Connect(const std::string& addr) {
  return kvdepot::v1::Control::NewStub(
      grpc::CreateChannel(addr, grpc::InsecureChannelCredentials()));
}

absl::StatusOr<kvdepot::v1::StatusResponse> CallStatus(
    kvdepot::v1::Control::Stub* stub) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  kvdepot::v1::StatusResponse response;
  grpc::Status status =
      stub->Status(&context, kvdepot::v1::StatusRequest(), &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

TEST(NodeTest, ServesOnAnyPortAndShutsDown) {
  absl::StatusOr<std::unique_ptr<Node>> node = Node::Start(TestSettings());
  ASSERT_TRUE(node.ok()) << node.status();
  ASSERT_GT((*node)->port(), 0);
  EXPECT_EQ((*node)->address(), absl::StrCat("127.0.0.1:", (*node)->port()));

  auto stub = Connect((*node)->address());
  absl::StatusOr<kvdepot::v1::StatusResponse> status = CallStatus(stub.get());
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->node_id(), "node-test");
  EXPECT_EQ(status->listen_address(), (*node)->address());
  EXPECT_EQ(status->health(), kvdepot::v1::HEALTH_SERVING);
  EXPECT_FALSE(status->version().empty());

  grpc::ClientContext context;
  kvdepot::v1::StatsResponse stats;
  ASSERT_TRUE(stub->Stats(&context, kvdepot::v1::StatsRequest(), &stats).ok());
  EXPECT_EQ(stats.tiers(1).capacity_bytes(), 8ull << 20);

  EXPECT_TRUE((*node)->Shutdown(absl::Seconds(1)).ok());
  EXPECT_TRUE((*node)->Shutdown(absl::Seconds(1)).ok());  // idempotent
  // Stopped: new calls fail as "retry elsewhere", not hang.
  absl::StatusOr<kvdepot::v1::StatusResponse> after = CallStatus(stub.get());
  EXPECT_EQ(after.status().code(), absl::StatusCode::kUnavailable);
}

TEST(NodeTest, PortInUseIsUnavailable) {
  absl::StatusOr<std::unique_ptr<Node>> first = Node::Start(TestSettings());
  ASSERT_TRUE(first.ok()) << first.status();
  NodeSettings settings = TestSettings();
  settings.listen = (*first)->address();
  absl::StatusOr<std::unique_ptr<Node>> second = Node::Start(settings);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(second.status().message(), HasSubstr(settings.listen));
}

TEST(NodeTest, BadEngineOptionsFailStart) {
  NodeSettings settings = TestSettings();
  settings.store.host_capacity_bytes = 0;
  absl::StatusOr<std::unique_ptr<Node>> node = Node::Start(settings);
  EXPECT_FALSE(node.ok());
  EXPECT_THAT(node.status().message(), HasSubstr("open store engine"));
}

TEST(NodeTest, DestructorShutsDown) {
  absl::StatusOr<std::unique_ptr<Node>> node = Node::Start(TestSettings());
  ASSERT_TRUE(node.ok()) << node.status();
  node->reset();  // no explicit Shutdown: must not hang or crash
}

}  // namespace
}  // namespace kvd
