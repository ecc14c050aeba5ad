// End to end across processes: starts the real kvdepot-node (port 0 +
// --port-file, the data path on one UCX transport), then two concurrent
// `kvdepotctl bench put` processes with different seeds, then two concurrent
// `kvdepotctl bench get` processes that fetch and byte-check the other's
// chunks, then two that check their own; over UCX tcp and over shared
// memory. Each get regenerates the objects from the seed and compares every
// byte, so an exit code of 0 means bytes went end to end intact.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
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
constexpr absl::Duration kBenchBound = absl::Seconds(90);
constexpr int kChunks = 10;
constexpr uint64_t kSmolLM2ObjectBytes = 5899100;  // 256 tokens, 30 layers
constexpr uint32_t kSeedA = 11, kSeedB = 22;
constexpr char kDataToken[] = "client-processes-data-token";

struct Transport {
  const char* name;
  const char* tls;  // UCX_TLS of the node and both clients
};

const Transport kTransports[] = {
    {"tcp", "tcp"},
    {"shm", "posix,cma,self"},
};

// One `kvdepotctl bench` run, started at construction.
struct Bench {
  std::string what;  // for messages
  std::unique_ptr<ChildProcess> child;
  json out;  // the JSON object printed, or discarded
};

class ClientProcessesTest : public ::testing::TestWithParam<Transport> {
 protected:
  void SetUp() override {
    dir_ = MakeTestTempDir("kvdepot-client-processes");
    config_ = dir_ + "/node.yaml";
    WriteTextFile(config_, R"(
node:
  id: client-processes-node
  shutdown_grace: 2s
  admin_token: client-processes-admin-token
auth:
  token: client-processes-data-token
host:
  capacity: 256MiB
  huge_pages: false
transfer:
  request_timeout: 30s
)");
    const std::string port_file = dir_ + "/port";
    node_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{
            KVD_NODE_BIN, "--standalone", "--config", config_, "--set",
            absl::StrCat("transfer.ucx_tls=", GetParam().tls), "--listen",
            "127.0.0.1:0", "--port-file", port_file},
        dir_ + "/node.log");
    const absl::Time deadline = absl::Now() + kStartBound;
    while (absl::Now() < deadline) {
      int port = 0;
      if (absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadTextFile(port_file)),
                           &port) &&
          port > 0) {
        address_ = absl::StrCat("127.0.0.1:", port);
        return;
      }
      ASSERT_FALSE(node_->Poll())
          << "node exited early with " << node_->exit_code() << ":\n"
          << node_->output();
      absl::SleepFor(absl::Milliseconds(20));
    }
    FAIL() << "no port file after " << kStartBound << ":\n" << node_->output();
  }

  void TearDown() override {
    if (node_ != nullptr && !node_->Poll()) {
      kill(node_->pid(), SIGTERM);
      EXPECT_TRUE(node_->WaitFor(kStopBound)) << node_->output();
      EXPECT_EQ(node_->exit_code(), 0) << node_->output();
    }
    if (!HasFailure()) {
      std::system(absl::StrCat("rm -rf '", dir_, "'").c_str());
    } else if (node_ != nullptr) {
      ADD_FAILURE() << "node log:\n" << node_->output();
    }
  }

  // Starts `kvdepotctl --node ADDRESS --token TOKEN --json bench OP ...`.
  Bench Start(const std::string& op, uint32_t seed,
              std::vector<std::string> extra,
              const std::string& token = kDataToken) {
    std::vector<std::string> argv = {
        KVD_CTL_BIN, "--node",           address_,    "--token",
        token,       "--json",           "bench",     op,
        "--model",   "smollm2",          "--chunks",  absl::StrCat(kChunks),
        "--seed",    absl::StrCat(seed), "--ucx-tls", GetParam().tls};
    argv.insert(argv.end(), extra.begin(), extra.end());
    Bench b;
    b.what = absl::StrJoin(argv, " ");
    b.child = std::make_unique<ChildProcess>(
        argv, absl::StrCat(dir_, "/", op, "-", seed, "-", ++runs_, ".log"));
    return b;
  }

  // Waits for `b` and parses the last line that is a JSON object (UCX may
  // log to the same stream).
  void Finish(Bench& b) {
    ASSERT_TRUE(b.child->WaitFor(kBenchBound))
        << b.what << " did not finish in " << kBenchBound << ":\n"
        << b.child->output();
    b.out = json();
    for (absl::string_view line : absl::StrSplit(b.child->output(), '\n')) {
      if (absl::StartsWith(line, "{")) {
        b.out = json::parse(line, nullptr, /*allow_exceptions=*/false);
      }
    }
    ASSERT_TRUE(b.out.is_object()) << b.what << ":\n" << b.child->output();
  }

  // Expects a run that moved and (for gets) verified every chunk.
  void ExpectComplete(const Bench& b, const std::string& op, uint32_t seed) {
    SCOPED_TRACE(b.what);
    const std::string output = b.child->output();
    EXPECT_EQ(b.child->exit_code(), 0) << output;
    EXPECT_EQ(b.out["bench"], "kvdepotctl_bench_" + op) << output;
    EXPECT_EQ(b.out["ok"], true) << output;
    EXPECT_EQ(b.out["params"]["seed"], seed);
    EXPECT_EQ(b.out["params"]["chunks"], kChunks);
    EXPECT_EQ(b.out["params"]["object_bytes"], kSmolLM2ObjectBytes);
    const json& m = b.out["metrics"];
    EXPECT_EQ(m["chunks_ok"], kChunks) << output;
    EXPECT_EQ(m["bytes"], kChunks * kSmolLM2ObjectBytes) << output;
    EXPECT_EQ(m["misses"], 0) << output;
    EXPECT_EQ(m["mismatches"], 0) << output;
    EXPECT_EQ(m["errors"], 0) << output;
    EXPECT_GT(m["gb_per_s"].get<double>(), 0) << output;
    EXPECT_GT(m["batches"].get<int>(), 0) << output;
    EXPECT_LE(m["batch_p50_ms"].get<double>(), m["batch_p99_ms"].get<double>());
  }

  std::string dir_;
  std::string config_;
  std::string address_;
  std::unique_ptr<ChildProcess> node_;
  int runs_ = 0;
};

TEST_P(ClientProcessesTest, TwoProcessesPutThenEachVerifiesBothSeeds) {
  ASSERT_FALSE(address_.empty());
  // Two writers at once, with different batchings, threads and protocols.
  Bench put_a = Start("put", kSeedA,
                      {"--batch", "3", "--threads", "2", "--protocol", "rma"});
  Bench put_b = Start("put", kSeedB, {"--batch", "4", "--protocol", "am"});
  Finish(put_a);
  Finish(put_b);
  ExpectComplete(put_a, "put", kSeedA);
  ExpectComplete(put_b, "put", kSeedB);
  EXPECT_EQ(put_a.out["params"]["protocol"], "rma");
  EXPECT_EQ(put_b.out["params"]["protocol"], "am");

  // Each reader process checks the other's chunks, then its own.
  for (bool cross : {true, false}) {
    Bench get_a = Start("get", cross ? kSeedB : kSeedA,
                        {"--batch", "4", "--protocol", "am"});
    Bench get_b =
        Start("get", cross ? kSeedA : kSeedB,
              {"--batch", "5", "--threads", "2", "--protocol", "rma"});
    Finish(get_a);
    Finish(get_b);
    ExpectComplete(get_a, "get", cross ? kSeedB : kSeedA);
    ExpectComplete(get_b, "get", cross ? kSeedA : kSeedB);
  }

  // A seed nobody put: every chunk is a miss, exit 1, a message naming it.
  Bench missing = Start("get", 33, {});
  Finish(missing);
  EXPECT_EQ(missing.child->exit_code(), 1) << missing.child->output();
  EXPECT_EQ(missing.out["ok"], false);
  EXPECT_EQ(missing.out["metrics"]["misses"], kChunks);
  EXPECT_THAT(missing.out["error"].get<std::string>(),
              HasSubstr("is not on the node"));
  EXPECT_THAT(missing.child->output(), HasSubstr("kvdepotctl: bench get:"));

  // A wrong data token is refused at Hello.
  Bench refused = Start("get", kSeedA, {}, "not-the-token");
  Finish(refused);
  EXPECT_EQ(refused.child->exit_code(), 1) << refused.child->output();
  EXPECT_EQ(refused.out["ok"], false);
  EXPECT_THAT(refused.out["error"].get<std::string>(),
              HasSubstr("UNAUTHENTICATED"));

  // The node counted exactly that traffic.
  ChildProcess stats({KVD_CTL_BIN, "--node", address_, "--json", "stats"},
                     dir_ + "/stats.log");
  ASSERT_TRUE(stats.WaitFor(absl::Seconds(20)));
  ASSERT_EQ(stats.exit_code(), 0) << stats.output();
  json s = json::parse(stats.output(), nullptr, false);
  ASSERT_TRUE(s.is_object()) << stats.output();
  EXPECT_EQ(s["chunks"], 2 * kChunks);
  EXPECT_EQ(s["puts"], 2 * kChunks);
  EXPECT_EQ(s["get_hits"], 4 * kChunks);
  EXPECT_EQ(s["get_misses"], kChunks);
  EXPECT_EQ(s["get_bytes"], 4 * kChunks * kSmolLM2ObjectBytes);
}

INSTANTIATE_TEST_SUITE_P(Transports, ClientProcessesTest,
                         ::testing::ValuesIn(kTransports),
                         [](const ::testing::TestParamInfo<Transport>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace kvd
