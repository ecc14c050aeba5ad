// `kvdepotctl cluster status|where|prefix|drain` against a real cluster
// (etcd and three kvdepot-node processes on loopback) holding chunks put by
// a ClusterClient.
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/test_chunks.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/cluster/cluster_load.h"
#include "tests/cluster/local_cluster.h"

namespace kvd {
namespace {

using nlohmann::json;

struct Result {
  int exit_code = -1;
  std::string output;
};

class ClusterCtlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cluster_.etcd().Start());
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(cluster_.StartNode(i));
    auto client = cluster_.Client(2);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
    ASSERT_TRUE(
        Eventually([&] { return client_->membership()->nodes.size() == 3; },
                   absl::Seconds(20)));
  }

  // Runs kvdepotctl cluster --etcd E --cluster test ARGS... to its end.
  Result Ctl(std::vector<std::string> args,
             const std::string& etcd = std::string()) {
    std::vector<std::string> argv = {
        KVD_CTL_BIN, "cluster",
        "--etcd",    etcd.empty() ? cluster_.etcd().endpoint() : etcd,
        "--cluster", kClusterName,
        "--token",   "cluster-test-admin-token"};
    argv.insert(argv.end(), args.begin(), args.end());
    const std::string log = ::testing::TempDir() + "/kvdepotctl-cluster.log";
    ChildProcess ctl(argv, log);
    Result r;
    if (!ctl.WaitFor(absl::Seconds(30))) return r;
    r.exit_code = ctl.exit_code();
    r.output = ctl.output();
    return r;
  }

  LocalCluster cluster_;
  std::unique_ptr<cluster::ClusterClient> client_;
};

TEST_F(ClusterCtlTest, StatusWherePrefix) {
  // Membership reaches every node through its own watch: the last node to
  // join may not have seen the others yet. Status is read until the nodes
  // agree (bounded), then checked.
  Result status;
  json s;
  Eventually(
      [&] {
        status = Ctl({"status", "--json"});
        s = json::parse(status.output, nullptr, false);
        if (status.exit_code != 0 || s.is_discarded()) return false;
        for (const json& n : s["nodes"]) {
          if (n["placement_fingerprint"] !=
              s["nodes"][0]["placement_fingerprint"]) {
            return false;
          }
        }
        return true;
      },
      absl::Seconds(10));
  ASSERT_EQ(status.exit_code, 0) << status.output;
  ASSERT_FALSE(s.is_discarded()) << status.output;
  ASSERT_EQ(s["nodes"].size(), 3u);
  double share = 0;
  for (const json& n : s["nodes"]) {
    EXPECT_EQ(n["health"], "serving") << n.dump();
    // Every node places keys over the same node set.
    EXPECT_EQ(n["placement_fingerprint"],
              s["nodes"][0]["placement_fingerprint"]);
    share += n["share"].get<double>();
  }
  EXPECT_NEAR(share, 1.0, 1e-9);

  // Where a stored chunk is: its two owners, the same as the client's.
  TestPrompt prompt = MakeTestPrompt(TestChunkSpec(), 7, 3);
  std::vector<absl::Status> put = client_->Put(prompt.keys, prompt.Spans());
  for (const absl::Status& p : put) ASSERT_TRUE(p.ok()) << p;
  const ChunkKey& key = prompt.keys[1];
  Result where = Ctl({"where", key.Hex(), "--replicas", "2", "--json"});
  ASSERT_EQ(where.exit_code, 0) << where.output;
  json w = json::parse(where.output, nullptr, false);
  ASSERT_FALSE(w.is_discarded()) << where.output;
  std::vector<std::string> owners = client_->OwnersOf(key);
  ASSERT_EQ(w["owners"].size(), owners.size());
  for (size_t i = 0; i < owners.size(); ++i) {
    EXPECT_EQ(w["owners"][i]["node_id"], owners[i]);
    EXPECT_EQ(w["owners"][i]["where"], "host");
  }
  Result absent =
      Ctl({"where", std::string(64, 'a'), "--replicas", "2", "--json"});
  ASSERT_EQ(absent.exit_code, 0) << absent.output;
  const json a = json::parse(absent.output, nullptr, false);
  ASSERT_FALSE(a.is_discarded()) << absent.output;
  for (const json& o : a["owners"]) {
    EXPECT_EQ(o["where"], "absent");
  }

  // A prompt of 600 tokens: two full 256-token chunks, none cached.
  const std::string tokens = ::testing::TempDir() + "/tokens.txt";
  std::string text;
  for (int t = 0; t < 600; ++t) absl::StrAppend(&text, t, t % 10 ? " " : "\n");
  WriteTextFile(tokens, text);
  Result prefix = Ctl({"prefix", tokens, "--json"});
  ASSERT_EQ(prefix.exit_code, 0) << prefix.output;
  json p = json::parse(prefix.output, nullptr, false);
  ASSERT_FALSE(p.is_discarded()) << prefix.output;
  EXPECT_EQ(p["tokens"], 600);
  EXPECT_EQ(p["chunks"], 2);
  EXPECT_EQ(p["cached_chunks"], 0);

  // Bad input and no etcd: clear errors, distinct exit codes.
  EXPECT_EQ(Ctl({"where", "xyz"}).exit_code, 2);
  WriteTextFile(tokens, "1 2 three");
  EXPECT_EQ(Ctl({"prefix", tokens}).exit_code, 2);
  Result no_etcd = Ctl({"status"}, "127.0.0.1:1");
  EXPECT_EQ(no_etcd.exit_code, 3) << no_etcd.output;
}

// drain NODE with R = 1: every chunk of the node moves to its new owner
// while readers keep reading (no miss at any time: they fall back to the
// draining node until a chunk has moved), new writes avoid the node, and
// after it is killed everything still reads back.
TEST_F(ClusterCtlTest, DrainMovesEveryChunkToItsNewOwner) {
  auto r1 = cluster_.Client(1);
  ASSERT_TRUE(r1.ok()) << r1.status();
  std::unique_ptr<cluster::ClusterClient> client = *std::move(r1);
  ASSERT_TRUE(
      Eventually([&] { return client->membership()->nodes.size() == 3; },
                 absl::Seconds(20)));
  Arena data(MakeTestPrompt(TestChunkSpec(), 11, 36));
  auto registration = client->RegisterBuffer(absl::MakeSpan(data.memory));
  ASSERT_TRUE(registration.ok()) << registration.status();
  Tally setup;
  PutAll(*client, data, setup);
  ASSERT_EQ(setup.errors + setup.misses, 0) << setup.first_error;
  int on_n0 = 0;
  for (const ChunkKey& k : data.prompt.keys)
    on_n0 += client->OwnersOf(k)[0] == "n0";
  ASSERT_GT(on_n0, 3);

  Tally reads;
  std::atomic<bool> stop{false};
  std::thread reader([&] {
    while (!stop) GetAll(*client, data, reads);
  });
  Result drain = Ctl({"drain", "n0"});
  stop = true;
  reader.join();
  ASSERT_EQ(drain.exit_code, 0) << drain.output;
  EXPECT_THAT(drain.output,
              ::testing::HasSubstr(absl::StrCat(on_n0, "/", on_n0, " chunks")));
  EXPECT_THAT(drain.output, ::testing::HasSubstr("done, moved"));
  EXPECT_GT(reads.ops, 0);
  EXPECT_EQ(reads.errors, 0) << reads.first_error;
  EXPECT_EQ(reads.misses, 0);

  // n0 stays registered as draining; clients place nothing on it.
  Result status = Ctl({"status", "--json"});
  ASSERT_EQ(status.exit_code, 0) << status.output;
  const json s = json::parse(status.output, nullptr, false);
  ASSERT_FALSE(s.is_discarded()) << status.output;
  EXPECT_EQ(s["nodes"][0]["node_id"], "n0");
  EXPECT_EQ(s["nodes"][0]["health"], "draining");
  ASSERT_TRUE(Eventually(
      [&] {
        for (const ChunkKey& k : data.prompt.keys) {
          if (client->OwnersOf(k)[0] == "n0") return false;
        }
        return true;
      },
      absl::Seconds(10)));
  Arena later(MakeTestPrompt(TestChunkSpec(), 12, 12));
  auto later_registration =
      client->RegisterBuffer(absl::MakeSpan(later.memory));
  ASSERT_TRUE(later_registration.ok()) << later_registration.status();
  Tally more;
  PutAll(*client, later, more);
  EXPECT_EQ(more.errors, 0) << more.first_error;

  // n0 goes: nothing it held is lost.
  cluster_.Kill(0);
  ASSERT_TRUE(
      Eventually([&] { return client->membership()->nodes.size() == 2; },
                 absl::Seconds(20)));
  Tally after;
  GetAll(*client, data, after);
  GetAll(*client, later, after);
  EXPECT_EQ(after.errors, 0) << after.first_error;
  EXPECT_EQ(after.misses, 0);

  // A node the cluster does not have, and one that is gone: exit 1.
  EXPECT_EQ(Ctl({"drain", "n9"}).exit_code, 1);
  EXPECT_EQ(Ctl({"drain", "n0"}).exit_code, 1);
}

}  // namespace
}  // namespace kvd
