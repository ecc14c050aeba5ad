#include "store/server/node_config.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvd {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

absl::StatusOr<NodeSettings> Load(const std::string& yaml,
                                  std::vector<std::string> overrides = {}) {
  absl::StatusOr<Config> config =
      Config::FromYaml(NodeConfigSchema(), yaml, overrides, "node.yaml");
  if (!config.ok()) return config.status();
  return NodeSettingsFromConfig(*config);
}

TEST(NodeConfigTest, DefaultsMapToStoreOptions) {
  absl::StatusOr<NodeSettings> s = Load("auth: {allow_no_token: true}\n");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->metrics_listen, "127.0.0.1:9400");
  EXPECT_TRUE(s->data_token.empty());
  EXPECT_TRUE(s->tls_cert.empty());
  EXPECT_TRUE(s->tls_client_ca.empty());
  EXPECT_FALSE(s->node_id.empty());  // the host name
  EXPECT_EQ(s->listen, "127.0.0.1:7400");
  EXPECT_EQ(s->log_level, "info");
  StoreOptions defaults;
  EXPECT_EQ(s->store.host_capacity_bytes, defaults.host_capacity_bytes);
  EXPECT_EQ(s->store.ssd_capacity_bytes, defaults.ssd_capacity_bytes);
  EXPECT_EQ(s->store.ssd_segment_bytes, defaults.ssd_segment_bytes);
  EXPECT_EQ(s->store.lease_ttl, defaults.lease_ttl);
  EXPECT_EQ(s->store.gpu_capacity_bytes, 0u);
  EXPECT_TRUE(s->store.ssd_dir.empty());
}

TEST(NodeConfigTest, FullFileMaps) {
  absl::StatusOr<NodeSettings> s = Load(R"(
node: {id: gpu-host-7, listen: "0.0.0.0:7401", admin_token: s3cret}
log: {level: debug}
host: {capacity: 64GiB, huge_pages: false}
gpu: {capacity: 8GiB, device: 3}
ssd: {dir: /var/lib/kvdepot, capacity: 2TiB, segment_size: 512MiB, direct_io: off}
lease: {ttl: 500ms}
auth: {token: d4ta}
tls: {cert: /etc/kvd/node.pem, key: /etc/kvd/node.key, client_ca: /etc/kvd/ca.pem}
metrics: {listen: "0.0.0.0:9401"}
)");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->data_token, "d4ta");
  EXPECT_FALSE(s->allow_no_token);
  EXPECT_EQ(s->tls_cert, "/etc/kvd/node.pem");
  EXPECT_EQ(s->tls_key, "/etc/kvd/node.key");
  EXPECT_EQ(s->tls_client_ca, "/etc/kvd/ca.pem");
  EXPECT_EQ(s->metrics_listen, "0.0.0.0:9401");
  EXPECT_EQ(s->node_id, "gpu-host-7");
  EXPECT_EQ(s->listen, "0.0.0.0:7401");
  EXPECT_EQ(s->admin_token, "s3cret");
  EXPECT_EQ(s->log_level, "debug");
  EXPECT_EQ(s->store.host_capacity_bytes, 64ull << 30);
  EXPECT_FALSE(s->store.host_huge_pages);
  EXPECT_EQ(s->store.gpu_capacity_bytes, 8ull << 30);
  EXPECT_EQ(s->store.gpu_device, 3);
  EXPECT_EQ(s->store.ssd_dir, "/var/lib/kvdepot");
  EXPECT_EQ(s->store.ssd_capacity_bytes, 2ull << 40);
  EXPECT_EQ(s->store.ssd_segment_bytes, 512ull << 20);
  EXPECT_FALSE(s->store.ssd_direct_io);
  EXPECT_EQ(s->store.lease_ttl, absl::Milliseconds(500));
}

TEST(NodeConfigTest, CheckedInExampleIsValid) {
  absl::StatusOr<Config> config =
      Config::Load(NodeConfigSchema(), KVD_EXAMPLE_CONFIG, {});
  ASSERT_TRUE(config.ok()) << config.status();
  absl::StatusOr<NodeSettings> s = NodeSettingsFromConfig(*config);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->node_id, "kvd-example-0");
  // The example documents every key the node accepts.
  for (const auto& [name, key] : NodeConfigSchema().keys()) {
    EXPECT_TRUE(config->IsSet(name)) << name << " is missing from the example";
  }
}

TEST(NodeConfigTest, OverridesApply) {
  absl::StatusOr<NodeSettings> s =
      Load("host: {capacity: 1GiB}\n",
           {"host.capacity=2GiB", "node.id=x", "auth.allow_no_token=true",
            "metrics.listen="});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->store.host_capacity_bytes, 2ull << 30);
  EXPECT_EQ(s->node_id, "x");
  EXPECT_TRUE(s->metrics_listen.empty());  // disabled
}

struct BadCase {
  std::string yaml;
  std::vector<std::string> expected;  // substrings of the message
};

class NodeConfigRejectTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(NodeConfigRejectTest, NamesKeyAndBound) {
  absl::StatusOr<NodeSettings> s = Load(GetParam().yaml);
  ASSERT_FALSE(s.ok()) << GetParam().yaml;
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  for (const std::string& want : GetParam().expected) {
    EXPECT_THAT(s.status().message(), HasSubstr(want)) << GetParam().yaml;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Bounds, NodeConfigRejectTest,
    ::testing::Values(
        BadCase{"host: {capacity: 512KiB}\n",
                {"host.capacity=512KiB", "minimum 1MiB"}},
        BadCase{"host: {capacity: lots}\n", {"host.capacity", "\"lots\""}},
        BadCase{"host: {capcity: 1GiB}\n", {"unknown config key host.capcity"}},
        BadCase{"ssd: {segment_size: 1000}\n",
                {"ssd.segment_size=1000B", "outside [1MiB, 16GiB]"}},
        BadCase{"ssd: {segment_size: 1048577}\n",
                {"ssd.segment_size", "multiple of 4096"}},
        BadCase{"ssd: {dir: /tmp/x, capacity: 1MiB, segment_size: 2MiB}\n",
                {"ssd.capacity=1MiB", "smaller than ssd.segment_size=2MiB"}},
        BadCase{"ssd: {direct_io: maybe}\n",
                {"ssd.direct_io", "maybe", "bool"}},
        BadCase{"gpu: {device: 300}\n", {"gpu.device=300", "maximum 255"}},
        BadCase{"gpu: {device: -1}\n", {"gpu.device", "-1"}},
        BadCase{"lease: {ttl: 2h}\n", {"lease.ttl=2h", "[1ms, 1h]"}},
        BadCase{"lease: {ttl: 0}\n", {"lease.ttl=0", "[1ms, 1h]"}},
        BadCase{"node: {id: \"a b\"}\n", {"node.id", "letters, digits"}},
        BadCase{"node: {listen: localhost}\n", {"node.listen", "no port"}},
        BadCase{"node: {listen: \"127.0.0.1:70000\"}\n",
                {"node.listen", "0..65535"}},
        BadCase{"node: {listen: \"::1:7400\"}\n", {"node.listen", "brackets"}},
        BadCase{"log: {level: loud}\n", {"log.level=loud"}},
        BadCase{"", {"auth.token is empty", "auth.allow_no_token=true"}},
        BadCase{"auth: {token: t}\n",
                {"node.admin_token is empty", "local development only"}},
        BadCase{"auth: {allow_no_token: true}\ntls: {cert: /a.pem}\n",
                {"tls.cert=\"/a.pem\"", "tls.key=\"\"", "go together"}},
        BadCase{"auth: {allow_no_token: true}\ntls: {client_ca: /ca.pem}\n",
                {"tls.client_ca", "needs TLS"}},
        BadCase{"auth: {allow_no_token: true}\nmetrics: {listen: nowhere}\n",
                {"metrics.listen", "no port"}},
        BadCase{"auth: {allow_no_token: true}\ncluster: {name: \"a/b\"}\n",
                {"cluster.name", "[A-Za-z0-9._-]"}},
        BadCase{
            "auth: {allow_no_token: true}\ncluster: {name: c, etcd: \" ,\"}\n",
            {"cluster.etcd", "no etcd endpoint"}},
        BadCase{
            "auth: {allow_no_token: true}\ncluster: {name: c, etcd: \"e:0\"}\n",
            {"cluster.etcd", "1..65535"}},
        BadCase{"auth: {allow_no_token: true}\n"
                "cluster: {name: c, advertise: \"h\"}\n",
                {"cluster.advertise", "no port"}},
        BadCase{"auth: {allow_no_token: true}\n"
                "cluster: {name: c, heartbeat_ttl: 1500ms}\n",
                {"cluster.heartbeat_ttl=1.5s", "whole seconds in [2s, 10m]"}},
        BadCase{"auth: {allow_no_token: true}\n"
                "cluster: {name: c, weight: 1000001}\n",
                {"cluster.weight=1000001", "maximum 1000000"}},
        BadCase{"auth: {allow_no_token: perhaps}\n",
                {"auth.allow_no_token", "perhaps"}}));

TEST(NodeConfigTest, ListenAddressForms) {
  for (const char* ok : {"127.0.0.1:0", "0.0.0.0:7400", "[::1]:7400",
                         "localhost:65535", "[::]:1"}) {
    EXPECT_TRUE(ValidateListenAddress("--listen", ok).ok()) << ok;
  }
  for (const char* bad :
       {"", ":7400", "host:", "host:-1", "host:x", "[::1:7"}) {
    EXPECT_FALSE(ValidateListenAddress("--listen", bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace kvd
