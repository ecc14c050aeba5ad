#include "store/server/node.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/test_chunks.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "store/client/control_channel.h"
#include "store/proto/grpc_status.h"
#include "store/server/test_certs.h"

namespace kvd {
namespace {

using ::testing::HasSubstr;

NodeSettings TestSettings() {
  NodeSettings settings;
  settings.node_id = "node-test";
  settings.listen = "127.0.0.1:0";
  settings.allow_no_token = true;
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

// One HTTP/1.1 GET over a real socket; the whole response, or "" on failure.
std::string HttpGet(int port, const std::string& path) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  timeval timeout{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    std::string request = absl::StrCat("GET ", path,
                                       " HTTP/1.1\r\nHost: localhost\r\n"
                                       "Connection: close\r\n\r\n");
    if (send(fd, request.data(), request.size(), 0) ==
        static_cast<ssize_t>(request.size())) {
      char buf[4096];
      ssize_t n;
      while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) response.append(buf, n);
    }
  }
  close(fd);
  return response;
}

TEST(NodeTest, ServesPrometheusMetrics) {
  NodeSettings settings = TestSettings();
  settings.metrics_listen = "127.0.0.1:0";
  absl::StatusOr<std::unique_ptr<Node>> node = Node::Start(settings);
  ASSERT_TRUE(node.ok()) << node.status();
  const int port = (*node)->metrics_port();
  ASSERT_GT(port, 0);
  // The data path registers its own families in the node's registry.
  absl::StatusOr<Counter*> data_ops = (*node)->metrics()->AddCounter(
      "kvdepot_test_data_ops_total", "Registered by a test.");
  ASSERT_TRUE(data_ops.ok());
  (*data_ops)->Increment(7);
  TestPrompt p = MakeTestPrompt(TestChunkSpec(), 1, 3);
  for (const absl::Status& s : (*node)->engine()->Put(p.keys, p.Spans())) {
    ASSERT_TRUE(s.ok()) << s;
  }
  ASSERT_TRUE((*node)->engine()->GetObject(p.keys[0]).ok());

  std::string text = HttpGet(port, "/metrics");
  EXPECT_THAT(text, HasSubstr("HTTP/1.1 200"));
  EXPECT_THAT(text, HasSubstr("text/plain; version=0.0.4"));
  EXPECT_THAT(text, HasSubstr("\nkvdepot_chunks 3\n"));
  EXPECT_THAT(text, HasSubstr("\nkvdepot_store_puts_total 3\n"));
  EXPECT_THAT(text, HasSubstr("\nkvdepot_store_get_hits_total 1\n"));
  EXPECT_THAT(text, HasSubstr("kvdepot_tier_objects{tier=\"host\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("kvdepot_tier_enabled{tier=\"ssd\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("kvdepot_tier_capacity_bytes{tier=\"host\"} "
                              "8388608\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE kvdepot_store_puts_total counter"));
  EXPECT_THAT(text,
              HasSubstr("kvdepot_auth_failures_total{reason=\"missing\"} 0"));
  EXPECT_THAT(text, HasSubstr("kvdepot_node_info{node_id=\"node-test\""));
  EXPECT_THAT(text, HasSubstr("\nkvdepot_test_data_ops_total 7\n"));
  // Counters keep their value across scrapes (mirrored as differences).
  std::string again = HttpGet(port, "/metrics");
  EXPECT_THAT(again, HasSubstr("\nkvdepot_store_puts_total 3\n"));
  EXPECT_THAT(HttpGet(port, "/other"), HasSubstr("HTTP/1.1 404"));

  // A second node cannot take the same metrics port.
  NodeSettings clash = TestSettings();
  clash.metrics_listen = absl::StrCat("127.0.0.1:", port);
  absl::StatusOr<std::unique_ptr<Node>> second = Node::Start(clash);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(second.status().message(), HasSubstr("metrics.listen"));

  EXPECT_TRUE((*node)->Shutdown(absl::Seconds(1)).ok());
  EXPECT_EQ(HttpGet(port, "/metrics"), "");
}

TEST(NodeTest, RefusesEmptyTokensUnlessAllowed) {
  NodeSettings settings = TestSettings();
  settings.allow_no_token = false;
  settings.admin_token = "admin";
  absl::StatusOr<std::unique_ptr<Node>> node = Node::Start(settings);
  EXPECT_EQ(node.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(node.status().message(), HasSubstr("auth.token is empty"));
  EXPECT_THAT(node.status().message(), HasSubstr("auth.allow_no_token"));
  settings.data_token = "data";
  EXPECT_TRUE(Node::Start(settings).ok());
}

class NodeTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/kvd_node_tls_" + std::to_string(getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    absl::StatusOr<TestCerts> certs = MakeTestCerts(dir_);
    ASSERT_TRUE(certs.ok()) << certs.status();
    certs_ = *certs;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  NodeSettings TlsSettings(bool client_ca) {
    NodeSettings settings = TestSettings();
    settings.allow_no_token = false;
    settings.data_token = "tls-data";
    settings.admin_token = "tls-admin";
    settings.tls_cert = certs_.server_cert;
    settings.tls_key = certs_.server_key;
    if (client_ca) settings.tls_client_ca = certs_.ca;
    return settings;
  }

  // Status over a channel made by the client helper.
  absl::Status Ping(const Node& node, ControlChannelOptions options) {
    options.address = node.address();
    absl::StatusOr<ControlChannel> channel = ControlChannel::Create(options);
    if (!channel.ok()) return channel.status();
    auto stub = kvdepot::v1::Control::NewStub(channel->channel());
    grpc::ClientContext context;
    channel->Authorize(&context);
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    kvdepot::v1::StatusResponse response;
    return FromGrpcStatus(
        stub->Status(&context, kvdepot::v1::StatusRequest(), &response));
  }

  absl::Status Evict(const Node& node, ControlChannelOptions options) {
    options.address = node.address();
    absl::StatusOr<ControlChannel> channel = ControlChannel::Create(options);
    if (!channel.ok()) return channel.status();
    auto stub = kvdepot::v1::Control::NewStub(channel->channel());
    grpc::ClientContext context;
    channel->Authorize(&context);
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    kvdepot::v1::EvictRequest request;
    request.add_keys(std::string(64, 'c'));
    kvdepot::v1::EvictResponse response;
    return FromGrpcStatus(stub->Evict(&context, request, &response));
  }

  std::string dir_;
  TestCerts certs_;
};

TEST_F(NodeTlsTest, ServesTlsAndRefusesPlaintext) {
  absl::StatusOr<std::unique_ptr<Node>> node = Node::Start(TlsSettings(false));
  ASSERT_TRUE(node.ok()) << node.status();
  const Node& n = **node;
  EXPECT_TRUE(Ping(n, {.tls_ca = certs_.ca}).ok());
  // Dialing 127.0.0.1 matches the certificate's IP SAN; a name override too.
  EXPECT_TRUE(
      Ping(n, {.tls_ca = certs_.ca, .tls_server_name = "localhost"}).ok());
  EXPECT_EQ(Ping(n, {}).code(), absl::StatusCode::kUnavailable);
  // A certificate from another CA does not verify.
  EXPECT_EQ(Ping(n, {.tls_ca = certs_.other_ca}).code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(NodeTlsTest, ClientCertificatesAreRequiredAndVerified) {
  absl::StatusOr<std::unique_ptr<Node>> node = Node::Start(TlsSettings(true));
  ASSERT_TRUE(node.ok()) << node.status();
  const Node& n = **node;
  ControlChannelOptions good{.tls_ca = certs_.ca,
                             .tls_cert = certs_.client_cert,
                             .tls_key = certs_.client_key};
  EXPECT_TRUE(Ping(n, good).ok());
  EXPECT_NE(Ping(n, {.tls_ca = certs_.ca}).code(), absl::StatusCode::kOk);
  EXPECT_NE(Ping(n, {.tls_ca = certs_.ca,
                     .tls_cert = certs_.other_client_cert,
                     .tls_key = certs_.other_client_key})
                .code(),
            absl::StatusCode::kOk);
  EXPECT_EQ(Ping(n, {}).code(), absl::StatusCode::kUnavailable);

  // Tokens on top of TLS: wrong refused and counted, admin accepted.
  ControlChannelOptions wrong = good;
  wrong.token = "not-the-token";
  absl::Status refused = Evict(n, wrong);
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnauthenticated) << refused;
  ControlChannelOptions data = good;
  data.token = "tls-data";
  EXPECT_EQ(Evict(n, data).code(), absl::StatusCode::kPermissionDenied);
  ControlChannelOptions admin = good;
  admin.token = "tls-admin";
  EXPECT_TRUE(Evict(n, admin).ok());
  std::string text = (*node)->metrics()->RenderText();
  EXPECT_THAT(text,
              HasSubstr("kvdepot_auth_failures_total{reason=\"invalid\"} 1"));
  EXPECT_THAT(text,
              HasSubstr("kvdepot_auth_failures_total{reason=\"not_admin\"} 1"));
}

TEST_F(NodeTlsTest, BadTlsSettingsNameTheKey) {
  NodeSettings settings = TlsSettings(false);
  settings.tls_cert = dir_ + "/missing.pem";
  absl::StatusOr<std::unique_ptr<Node>> node = Node::Start(settings);
  EXPECT_EQ(node.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(node.status().message(), HasSubstr("tls.cert="));
  settings = TlsSettings(false);
  settings.tls_key = "";
  EXPECT_THAT(Node::Start(settings).status().message(),
              HasSubstr("go together"));
  settings = TlsSettings(false);
  settings.tls_key = certs_.ca + ".notthere";
  EXPECT_THAT(Node::Start(settings).status().message(), HasSubstr("tls.key="));
  EXPECT_EQ(ControlChannel::Create(
                {.address = "127.0.0.1:1", .tls_cert = certs_.client_cert})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvd
