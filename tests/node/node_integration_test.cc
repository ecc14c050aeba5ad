// End-to-end test of the real binaries: starts kvdepot-node on 127.0.0.1
// with port 0 + --port-file and a temporary data dir, queries it with
// kvdepotctl (JSON and tables), stops it with SIGTERM and expects exit 0
// within a bound; and checks that bad configurations exit non-zero naming
// the key.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/node/child_process.h"

namespace kvd {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

constexpr absl::Duration kStartBound = absl::Seconds(30);
constexpr absl::Duration kStopBound = absl::Seconds(15);
constexpr uint64_t kHostCapacity = 64ull << 20;
constexpr uint64_t kSsdCapacity = 64ull << 20;

using Child = ChildProcess;

struct Result {
  int exit_code = -1;
  std::string output;  // stdout + stderr
};

// Runs a command to completion (bounded) and returns its output.
Result RunToEnd(const std::vector<std::string>& argv, const std::string& log,
                absl::Duration bound = absl::Seconds(20)) {
  Child child(argv, log);
  Result r;
  if (!child.WaitFor(bound)) {
    ADD_FAILURE() << absl::StrJoin(argv, " ") << " did not finish in " << bound;
    return r;
  }
  r.exit_code = child.exit_code();
  r.output = ReadTextFile(log);
  return r;
}

class NodeIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTestTempDir("kvdepot-node-test");
    config_ = dir_ + "/node.yaml";
    WriteTextFile(config_, absl::StrCat(R"(
node:
  id: itest-node
  shutdown_grace: 2s
  admin_token: itest-admin
auth:
  token: itest-data
metrics:
  listen: "127.0.0.1:0"
log:
  level: info
host:
  capacity: )",
                                        kHostCapacity, R"(
  huge_pages: false
ssd:
  capacity: )",
                                        kSsdCapacity, R"(
  segment_size: 1MiB
  direct_io: false   # the temp dir may be tmpfs, which has no O_DIRECT
lease:
  ttl: 5s
)"));
  }

  void TearDown() override {
    std::string cmd = absl::StrCat("rm -rf '", dir_, "'");
    if (!HasFailure()) std::system(cmd.c_str());
  }

  // Starts the node and waits for its port file. Returns the port or 0.
  int StartNode(std::unique_ptr<Child>* node) {
    std::string port_file = dir_ + "/port";
    node_log_ = dir_ + "/node.log";
    *node = std::make_unique<Child>(
        std::vector<std::string>{KVD_NODE_BIN, "--standalone", "--config",
                                 config_, "--listen", "127.0.0.1:0",
                                 "--data-dir", dir_ + "/data", "--port-file",
                                 port_file},
        node_log_);
    absl::Time deadline = absl::Now() + kStartBound;
    while (absl::Now() < deadline) {
      std::string text = ReadTextFile(port_file);
      int port = 0;
      if (absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &port) &&
          port > 0) {
        return port;
      }
      if ((*node)->Poll()) {
        ADD_FAILURE() << "node exited early with " << (*node)->exit_code()
                      << ":\n"
                      << ReadTextFile(node_log_);
        return 0;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    ADD_FAILURE() << "no port file after " << kStartBound << ":\n"
                  << ReadTextFile(node_log_);
    return 0;
  }

  Result Ctl(int port, std::vector<std::string> args) {
    std::vector<std::string> argv = {KVD_CTL_BIN, "--node",
                                     absl::StrCat("127.0.0.1:", port)};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunToEnd(argv, dir_ + "/ctl.log");
  }

  std::string dir_;
  std::string config_;
  std::string node_log_;
};

TEST_F(NodeIntegrationTest, ServesStatusAndStatsThenStopsCleanlyOnSigterm) {
  std::unique_ptr<Child> node;
  int port = StartNode(&node);
  ASSERT_GT(port, 0);

  Result status = Ctl(port, {"status", "--json"});
  ASSERT_EQ(status.exit_code, 0) << status.output;
  json s = json::parse(status.output, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(s.is_discarded()) << status.output;
  EXPECT_EQ(s["node_id"], "itest-node");
  EXPECT_EQ(s["mode"], "standalone");
  EXPECT_EQ(s["health"], "serving");
  EXPECT_FALSE(s["version"].get<std::string>().empty());
  EXPECT_EQ(s["listen_address"], absl::StrCat("127.0.0.1:", port));
  EXPECT_EQ(s["tiers_enabled"], json({"host", "ssd"}));
  EXPECT_GE(s["uptime_ms"].get<uint64_t>(), 0u);

  Result stats = Ctl(port, {"--json", "stats"});
  ASSERT_EQ(stats.exit_code, 0) << stats.output;
  json t = json::parse(stats.output, nullptr, false);
  ASSERT_FALSE(t.is_discarded()) << stats.output;
  ASSERT_EQ(t["tiers"].size(), 3u);
  EXPECT_EQ(t["tiers"][0]["tier"], "gpu");
  EXPECT_EQ(t["tiers"][0]["enabled"], false);
  EXPECT_EQ(t["tiers"][1]["tier"], "host");
  EXPECT_EQ(t["tiers"][1]["enabled"], true);
  EXPECT_EQ(t["tiers"][1]["capacity_bytes"], kHostCapacity);
  EXPECT_EQ(t["tiers"][2]["tier"], "ssd");
  EXPECT_EQ(t["tiers"][2]["enabled"], true);
  EXPECT_EQ(t["tiers"][2]["capacity_bytes"], kSsdCapacity);
  EXPECT_EQ(t["chunks"], 0);
  EXPECT_EQ(t["puts"], 0);
  EXPECT_TRUE(t["get_hit_rate"].is_null());

  Result table = Ctl(port, {"stats"});
  ASSERT_EQ(table.exit_code, 0) << table.output;
  EXPECT_THAT(table.output, HasSubstr("64.00 MiB"));
  Result text = Ctl(port, {"status"});
  ASSERT_EQ(text.exit_code, 0) << text.output;
  EXPECT_THAT(text.output, HasSubstr("standalone"));

  // A second node on the same port must fail, not share it.
  Result second = RunToEnd({KVD_NODE_BIN, "--standalone", "--config", config_,
                            "--listen", absl::StrCat("127.0.0.1:", port)},
                           dir_ + "/second.log");
  EXPECT_EQ(second.exit_code, 1) << second.output;
  EXPECT_THAT(second.output, HasSubstr("cannot listen"));

  ASSERT_EQ(kill(node->pid(), SIGTERM), 0);
  ASSERT_TRUE(node->WaitFor(kStopBound))
      << "node did not stop within " << kStopBound << ":\n"
      << ReadTextFile(node_log_);
  EXPECT_EQ(node->exit_code(), 0) << ReadTextFile(node_log_);
  std::string log = ReadTextFile(node_log_);
  EXPECT_THAT(log, HasSubstr(absl::StrCat("ready")));
  EXPECT_THAT(log, HasSubstr(absl::StrCat("127.0.0.1:", port)));
  EXPECT_THAT(log, HasSubstr("stopped cleanly"));

  // Gone: kvdepotctl reports it as unreachable, quickly.
  absl::Time before = absl::Now();
  Result gone = Ctl(port, {"status"});
  EXPECT_EQ(gone.exit_code, 3) << gone.output;
  EXPECT_THAT(gone.output, HasSubstr("unreachable"));
  EXPECT_LT(absl::Now() - before, absl::Seconds(10));
}

// The port in "metrics=127.0.0.1:PORT" of the node's ready line, or 0.
int MetricsPort(const std::string& log) {
  const std::string kTag = "metrics=127.0.0.1:";
  size_t at = log.find(kTag);
  if (at == std::string::npos) return 0;
  size_t end = log.find(' ', at);
  int port = 0;
  if (!absl::SimpleAtoi(log.substr(at + kTag.size(), end - at - kTag.size()),
                        &port)) {
    return 0;
  }
  return port;
}

// GET `path` over a plain socket; the whole response, or "".
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
    std::string request = absl::StrCat(
        "GET ", path,
        " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
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

TEST_F(NodeIntegrationTest, AdminCommandsNeedTheTokenAndDrainStopsWrites) {
  std::unique_ptr<Child> node;
  int port = StartNode(&node);
  ASSERT_GT(port, 0);

  Result refused = Ctl(port, {"chunks", "list"});
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  EXPECT_THAT(refused.output, HasSubstr("UNAUTHENTICATED"));
  Result data_only = Ctl(port, {"chunks", "list", "--token", "itest-data"});
  EXPECT_EQ(data_only.exit_code, 1) << data_only.output;
  EXPECT_THAT(data_only.output, HasSubstr("PERMISSION_DENIED"));

  Result list =
      Ctl(port, {"chunks", "list", "--json", "--token", "itest-admin"});
  ASSERT_EQ(list.exit_code, 0) << list.output;
  json l = json::parse(list.output, nullptr, false);
  ASSERT_FALSE(l.is_discarded()) << list.output;
  EXPECT_EQ(l["count"], 0);

  Result bad_key =
      Ctl(port, {"--token", "itest-admin", "chunks", "inspect", "xyz"});
  EXPECT_EQ(bad_key.exit_code, 1) << bad_key.output;
  EXPECT_THAT(bad_key.output, HasSubstr("key=\"xyz\" is not 64 hex digits"));
  Result bad_tier =
      Ctl(port, {"--token", "itest-admin", "chunks", "list", "--tier", "tape"});
  EXPECT_EQ(bad_tier.exit_code, 2) << bad_tier.output;

  Result evict = Ctl(port, {"--token", "itest-admin", "--json", "evict",
                            std::string(64, 'a')});
  ASSERT_EQ(evict.exit_code, 0) << evict.output;
  json e = json::parse(evict.output, nullptr, false);
  ASSERT_FALSE(e.is_discarded()) << evict.output;
  EXPECT_EQ(e["results"][0]["status"], "not_found");

  Result drain = Ctl(port, {"--token", "itest-admin", "drain", "--json"});
  ASSERT_EQ(drain.exit_code, 0) << drain.output;
  std::string last_line = drain.output.substr(
      drain.output.rfind('\n', drain.output.size() - 2) + 1);
  json d = json::parse(last_line, nullptr, false);
  ASSERT_FALSE(d.is_discarded()) << drain.output;
  EXPECT_EQ(d["done"], true);
  EXPECT_EQ(d["durable"], true);

  Result status = Ctl(port, {"status", "--json"});
  ASSERT_EQ(status.exit_code, 0) << status.output;
  EXPECT_EQ(json::parse(status.output, nullptr, false)["health"], "draining");

  const int metrics_port = MetricsPort(ReadTextFile(node_log_));
  ASSERT_GT(metrics_port, 0) << ReadTextFile(node_log_);
  std::string metrics = HttpGet(metrics_port, "/metrics");
  EXPECT_THAT(metrics, HasSubstr("HTTP/1.1 200"));
  EXPECT_THAT(metrics,
              HasSubstr("kvdepot_auth_failures_total{reason=\"missing\"} 1"));
  EXPECT_THAT(metrics,
              HasSubstr("kvdepot_auth_failures_total{reason=\"not_admin\"} 1"));
  EXPECT_THAT(metrics, HasSubstr("kvdepot_tier_enabled{tier=\"ssd\"} 1"));
  EXPECT_THAT(ReadTextFile(node_log_), HasSubstr("auth: refused"));

  ASSERT_EQ(kill(node->pid(), SIGTERM), 0);
  ASSERT_TRUE(node->WaitFor(kStopBound)) << ReadTextFile(node_log_);
  EXPECT_EQ(node->exit_code(), 0) << ReadTextFile(node_log_);
}

TEST_F(NodeIntegrationTest, EmptyTokensAreRefusedAtStart) {
  Result r = RunToEnd({KVD_NODE_BIN, "--standalone", "--config", config_,
                       "--set", "auth.token=", "--listen", "127.0.0.1:0"},
                      dir_ + "/bad.log");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("auth.token is empty"));
}

TEST_F(NodeIntegrationTest, SigintAlsoStopsCleanly) {
  std::unique_ptr<Child> node;
  int port = StartNode(&node);
  ASSERT_GT(port, 0);
  ASSERT_EQ(kill(node->pid(), SIGINT), 0);
  ASSERT_TRUE(node->WaitFor(kStopBound)) << ReadTextFile(node_log_);
  EXPECT_EQ(node->exit_code(), 0) << ReadTextFile(node_log_);
}

TEST_F(NodeIntegrationTest, UnknownKeyInFileIsNamed) {
  WriteTextFile(config_, "host:\n  capacty: 1GiB\n");
  Result r = RunToEnd({KVD_NODE_BIN, "--standalone", "--config", config_,
                       "--listen", "127.0.0.1:0"},
                      dir_ + "/bad.log");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("host.capacty"));
}

TEST_F(NodeIntegrationTest, BadValueOverrideIsNamed) {
  Result r =
      RunToEnd({KVD_NODE_BIN, "--standalone", "--config", config_, "--set",
                "host.capacity=lots", "--listen", "127.0.0.1:0"},
               dir_ + "/bad.log");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("host.capacity"));
  EXPECT_THAT(r.output, HasSubstr("lots"));
}

TEST_F(NodeIntegrationTest, OutOfBoundsValueIsNamed) {
  Result r =
      RunToEnd({KVD_NODE_BIN, "--standalone", "--config", config_, "--set",
                "ssd.segment_size=1000", "--listen", "127.0.0.1:0"},
               dir_ + "/bad.log");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("ssd.segment_size"));
}

TEST_F(NodeIntegrationTest, MissingStandaloneIsAUsageError) {
  Result r = RunToEnd({KVD_NODE_BIN, "--config", config_}, dir_ + "/bad.log");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--standalone"));
}

TEST_F(NodeIntegrationTest, CheckConfigPrintsEffectiveValues) {
  Result r = RunToEnd({KVD_NODE_BIN, "--standalone", "--config", config_,
                       "--set", "node.admin_token=secret", "--set",
                       "auth.token=hidden", "--check-config"},
                      dir_ + "/check.log");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("node.id: itest-node\n"));
  EXPECT_THAT(r.output, HasSubstr("node.admin_token: <redacted>\n"));
  EXPECT_THAT(r.output, HasSubstr("auth.token: <redacted>\n"));
  EXPECT_THAT(r.output, ::testing::Not(HasSubstr("secret")));
  EXPECT_THAT(r.output, ::testing::Not(HasSubstr("hidden")));
}

}  // namespace
}  // namespace kvd
