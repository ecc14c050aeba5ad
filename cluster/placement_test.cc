#include "cluster/placement.h"

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvd::cluster {
namespace {

using ::testing::HasSubstr;

// Chunk keys are SHA-256 values, uniform bytes: random bytes stand in.
std::vector<ChunkKey> RandomKeys(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<ChunkKey> keys(n);
  for (ChunkKey& k : keys) {
    for (size_t i = 0; i < ChunkKey::kSize; i += 8) {
      const uint64_t v = rng();
      std::memcpy(k.bytes.data() + i, &v, 8);
    }
  }
  return keys;
}

std::vector<PlacementNode> Nodes(int n, uint32_t weight = 1) {
  std::vector<PlacementNode> nodes;
  for (int i = 0; i < n; ++i)
    nodes.push_back({absl::StrCat("node-", i), weight});
  return nodes;
}

Placement Make(std::vector<PlacementNode> nodes) {
  auto p = Placement::Create(std::move(nodes));
  EXPECT_TRUE(p.ok()) << p.status();
  return *std::move(p);
}

// Owner ids of every key (ids, not indexes: indexes shift with membership).
std::vector<std::string> PrimaryIds(const Placement& p,
                                    const std::vector<ChunkKey>& keys) {
  std::vector<std::string> ids;
  for (const ChunkKey& k : keys) ids.push_back(p.nodes()[p.PrimaryOf(k)].id);
  return ids;
}

TEST(PlacementTest, RejectsBadMembership) {
  auto expect = [](std::vector<PlacementNode> nodes, const char* what) {
    auto p = Placement::Create(std::move(nodes));
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(p.status().message(), HasSubstr(what));
  };
  expect({}, "no nodes");
  expect({{"", 1}}, "node id of 0 bytes");
  expect({{std::string(256, 'a'), 1}}, "node id of 256 bytes");
  expect({{"a", 1}, {"b", 0}}, "node b has weight=0");
  expect({{"a", 1}, {"b", 2}, {"a", 3}}, "node id a appears twice");
  expect(Nodes(Placement::kMaxNodes + 1), "exceeds 65536");
}

TEST(PlacementTest, OwnersAreDistinctBestFirstAndIndependentOfInputOrder) {
  std::vector<PlacementNode> nodes = Nodes(7);
  nodes[2].weight = 3;
  nodes[5].weight = 2;
  const Placement p = Make(nodes);
  std::reverse(nodes.begin(), nodes.end());
  const Placement q = Make(nodes);
  for (const ChunkKey& k : RandomKeys(2000, 1)) {
    const Placement::Owners o = p.OwnersOf(k, 3);
    ASSERT_EQ(o.size(), 3u);
    EXPECT_EQ(o[0], p.PrimaryOf(k));
    EXPECT_NE(o[0], o[1]);
    EXPECT_NE(o[0], o[2]);
    EXPECT_NE(o[1], o[2]);
    EXPECT_EQ(o, q.OwnersOf(k, 3));
    // Asking for fewer replicas gives a prefix of the same list.
    EXPECT_EQ(p.OwnersOf(k, 2), Placement::Owners(o.begin(), o.begin() + 2));
  }
  // More replicas than nodes: every node, once.
  const Placement two = Make(Nodes(2));
  EXPECT_EQ(two.OwnersOf(RandomKeys(1, 2)[0], Placement::kMaxReplicas).size(),
            2u);
}

TEST(PlacementTest, EqualWeightsBalance) {
  const Placement p = Make(Nodes(50));
  const std::vector<ChunkKey> keys = RandomKeys(200000, 3);
  std::vector<size_t> load(50);
  for (const ChunkKey& k : keys) ++load[p.PrimaryOf(k)];
  const double mean = keys.size() / 50.0;
  // 4000 keys a node: a binomial's 4 sigma is 6%.
  EXPECT_LT(*std::max_element(load.begin(), load.end()), 1.1 * mean);
  EXPECT_GT(*std::min_element(load.begin(), load.end()), 0.9 * mean);
}

TEST(PlacementTest, LoadFollowsWeight) {
  std::vector<PlacementNode> nodes = Nodes(4);
  nodes[0].weight = 4;
  nodes[1].weight = 2;  // with nodes 2 and 3 at 1: shares 4/8, 2/8, 1/8, 1/8
  const Placement p = Make(nodes);
  const std::vector<ChunkKey> keys = RandomKeys(200000, 4);
  std::vector<size_t> load(4);
  for (const ChunkKey& k : keys) ++load[p.PrimaryOf(k)];
  for (int i = 0; i < 4; ++i) {
    const double share = p.nodes()[i].weight / 8.0;
    EXPECT_NEAR(load[i] / double(keys.size()), share, 0.01 + 0.03 * share)
        << p.nodes()[i].id;
  }
}

TEST(PlacementTest, JoinMovesOnlyKeysToTheNewNode) {
  const std::vector<ChunkKey> keys = RandomKeys(100000, 5);
  const std::vector<std::string> before = PrimaryIds(Make(Nodes(20)), keys);
  const std::vector<std::string> after = PrimaryIds(Make(Nodes(21)), keys);
  size_t moved = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (before[i] == after[i]) continue;
    ++moved;
    EXPECT_EQ(after[i], "node-20");
  }
  EXPECT_LT(moved, 1.2 * keys.size() / 21);
  EXPECT_GT(moved, 0.8 * keys.size() / 21);
}

TEST(PlacementTest, LeaveMovesOnlyTheLeaversKeysToTheirSecondReplica) {
  const std::vector<ChunkKey> keys = RandomKeys(50000, 6);
  std::vector<PlacementNode> nodes = Nodes(10);
  nodes[3].weight = 2;
  const Placement full = Make(nodes);
  nodes.erase(nodes.begin() + 7);  // "node-7"
  const Placement less = Make(nodes);
  for (const ChunkKey& k : keys) {
    const Placement::Owners o = full.OwnersOf(k, 2);
    const std::string& now = less.nodes()[less.PrimaryOf(k)].id;
    if (full.nodes()[o[0]].id == "node-7") {
      EXPECT_EQ(now, full.nodes()[o[1]].id);
    } else {
      EXPECT_EQ(now, full.nodes()[o[0]].id);
    }
  }
}

TEST(PlacementTest, FingerprintNamesTheNodeSetAndWeights) {
  auto a = *Placement::Create({{"x", 1}, {"y", 2}});
  auto b = *Placement::Create({{"y", 2}, {"x", 1}});
  auto c = *Placement::Create({{"x", 1}, {"y", 3}});
  auto d = *Placement::Create({{"x", 1}});
  EXPECT_EQ(a.fingerprint(), b.fingerprint());
  EXPECT_NE(a.fingerprint(), c.fingerprint());
  EXPECT_NE(a.fingerprint(), d.fingerprint());
}

}  // namespace
}  // namespace kvd::cluster
