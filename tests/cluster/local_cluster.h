// Test helper: a cluster on loopback made of the real binaries: one etcd
// (EtcdServer) and N kvdepot-node processes in cluster mode (UCX over tcp,
// SSD tier in a temporary directory), plus a ClusterClient. Other local
// addresses may be used (e.g. in network namespaces the test made).
#ifndef KVDEPOT_TESTS_CLUSTER_LOCAL_CLUSTER_H_
#define KVDEPOT_TESTS_CLUSTER_LOCAL_CLUSTER_H_

#include <signal.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "cluster/cluster_client.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "store/client/control_channel.h"
#include "store/proto/kvdepot.grpc.pb.h"
#include "tests/cluster/etcd_server.h"
#include "tests/node/child_process.h"

namespace kvd {

inline constexpr char kClusterName[] = "test";
inline constexpr char kClusterDataToken[] = "cluster-test-data-token";
inline constexpr absl::Duration kClusterTimeout = absl::Seconds(2);

class LocalCluster {
 public:
  // etcd listens on `etcd_host`.
  explicit LocalCluster(const std::string& etcd_host = "127.0.0.1")
      : dir_(MakeTestTempDir("kvdepot-cluster")), etcd_(etcd_host) {
    WriteTextFile(dir_ + "/node.yaml", R"(
node:
  shutdown_grace: 2s
  admin_token: cluster-test-admin-token
auth:
  token: cluster-test-data-token
host:
  capacity: 64MiB
  huge_pages: false
ssd:
  capacity: 256MiB
  segment_size: 8MiB
  direct_io: false
transfer:
  ucx_tls: tcp
  request_timeout: 2s
cluster:
  name: test
  heartbeat_ttl: 2s
metrics:
  listen: ""
)");
  }
  ~LocalCluster() {
    nodes_.clear();
    etcd_.Stop();
    if (!::testing::Test::HasFailure()) {
      std::system(absl::StrCat("rm -rf '", dir_, "'").c_str());
    }
  }

  EtcdServer& etcd() { return etcd_; }

  // Starts node "n<i>" (again, after a kill: same SSD directory) listening
  // on `host`, and waits for its port file. `launcher` is prepended to the
  // command line (e.g. {"/usr/sbin/ip", "netns", "exec", NAME}).
  ::testing::AssertionResult StartNode(int i,
                                       const std::string& host = "127.0.0.1",
                                       std::vector<std::string> launcher = {}) {
    if (nodes_.size() <= static_cast<size_t>(i)) nodes_.resize(i + 1);
    const std::string id = absl::StrCat("n", i);
    const std::string port_file = absl::StrCat(dir_, "/", id, ".port");
    std::remove(port_file.c_str());
    std::vector<std::string> argv = std::move(launcher);
    argv.insert(argv.end(),
                {KVD_NODE_BIN, "--config", dir_ + "/node.yaml", "--set",
                 "node.id=" + id, "--set", "cluster.etcd=" + etcd_.endpoint(),
                 "--listen", host + ":0", "--port-file", port_file,
                 "--data-dir", absl::StrCat(dir_, "/", id)});
    nodes_[i] = std::make_unique<ChildProcess>(
        argv, absl::StrCat(dir_, "/", id, ".log"));
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (absl::Now() < deadline) {
      int port = 0;
      if (absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadTextFile(port_file)),
                           &port) &&
          port > 0) {
        if (addresses_.size() <= static_cast<size_t>(i))
          addresses_.resize(i + 1);
        addresses_[i] = absl::StrCat(host, ":", port);
        return ::testing::AssertionSuccess();
      }
      if (nodes_[i]->Poll()) break;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return ::testing::AssertionFailure() << id << " did not start:\n"
                                         << nodes_[i]->output();
  }

  void Kill(int i, int signal = SIGKILL) {
    kill(nodes_[i]->pid(), signal);
    EXPECT_TRUE(nodes_[i]->WaitFor(absl::Seconds(15)));
  }

  absl::StatusOr<std::unique_ptr<cluster::ClusterClient>> Client(int replicas) {
    ClientOptions node;
    node.token = kClusterDataToken;
    node.ucx_tls = "tcp";
    node.timeout = kClusterTimeout;
    return cluster::ClusterClient::Connect({.cluster = kClusterName,
                                            .etcd = {etcd_.endpoint()},
                                            .replicas = replicas,
                                            .node = node,
                                            .down_cooldown = absl::Seconds(3)});
  }

  std::string log(int i) const { return nodes_[i]->output(); }

  // Runs the admin Drain of node i to the end: every chunk it holds gets an
  // SSD copy (and the node takes no more writes).
  ::testing::AssertionResult MakeDurable(int i) {
    auto channel = ControlChannel::Create(
        {.address = addresses_[i], .token = "cluster-test-admin-token"});
    if (!channel.ok()) {
      return ::testing::AssertionFailure() << channel.status();
    }
    auto stub = kvdepot::v1::Control::NewStub(channel->channel());
    grpc::ClientContext context;
    channel->Authorize(&context);
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    auto stream = stub->Drain(&context, kvdepot::v1::DrainRequest());
    kvdepot::v1::DrainProgress progress;
    bool durable = false;
    while (stream->Read(&progress)) durable = progress.durable();
    grpc::Status status = stream->Finish();
    if (!status.ok() || !durable) {
      return ::testing::AssertionFailure()
             << "drain: " << status.error_message() << " "
             << progress.ShortDebugString();
    }
    return ::testing::AssertionSuccess();
  }

 private:
  const std::string dir_;
  EtcdServer etcd_;
  std::vector<std::unique_ptr<ChildProcess>> nodes_;
  std::vector<std::string> addresses_;
};

}  // namespace kvd

#endif  // KVDEPOT_TESTS_CLUSTER_LOCAL_CLUSTER_H_
