// ClusterRecall against a real node in this process (gRPC Hello, UCX tcp
// data path): recalled rows are exactly the stored chunks' bytes, from the
// host tier or promoted from SSD; a cluster recalled again moves nothing,
// the cache evicts past its size, a chunk the node does not have fails the
// recall, and the cluster index is stored with the chunks.
#include "store/client/cluster_recall.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/test_chunks.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/client/client.h"
#include "store/server/node.h"
#include "tests/node/test_node.h"

namespace kvd {
namespace {

constexpr char kToken[] = "cluster-recall-test-token";

// Keys [layers][heads][tokens][dim] of random directions: any index will do,
// the rows recalled are checked against the stored bytes, not the keys.
compress::ClusterIndex RandomIndex(const ModelSpec& spec, uint32_t tokens) {
  std::mt19937_64 rng(3);
  std::normal_distribution<float> normal;
  std::vector<compress::HeadTensor> keys;
  for (uint32_t l = 0; l < spec.num_layers; ++l) {
    compress::HeadTensor& k =
        keys.emplace_back(spec.kv_heads, tokens, spec.head_dim);
    for (float& x : k.data) x = normal(rng);
  }
  auto index = compress::BuildClusterIndex(
      keys, {.sinks = 4, .tokens_per_cluster = 16, .iterations = 5});
  EXPECT_TRUE(index.ok()) << index.status();
  return *std::move(index);
}

class ClusterRecallTest : public ::testing::Test {
 protected:
  void SetUp() override { Start("", 3); }

  // A node (with an SSD tier in `ssd_dir` when set, and then a 2 MiB host
  // tier) holding a prompt of `chunks` chunks.
  void Start(const std::string& ssd_dir, int chunks) {
    NodeSettings s =
        LoopbackNodeSettings("cluster-recall-test", kToken,
                             ssd_dir.empty() ? 32ull << 20 : 2ull << 20);
    s.store.ssd_dir = ssd_dir;
    s.store.ssd_capacity_bytes = 64ull << 20;
    s.store.ssd_segment_bytes = 4ull << 20;
    s.store.ssd_direct_io = false;
    auto node = Node::Start(s);
    ASSERT_TRUE(node.ok()) << node.status();
    node_ = *std::move(node);
    auto client = ConnectTo(*node_, kToken);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
    prompt_ = MakeTestPrompt(spec_, 7, chunks);
    buffer_.resize(4 << 20);
    auto reg = client_->RegisterBuffer(absl::MakeSpan(buffer_));
    ASSERT_TRUE(reg.ok()) << reg.status();
    std::vector<absl::Span<const uint8_t>> spans;
    size_t offset = 0;
    for (const auto& obj : prompt_.objects) {
      std::copy(obj.begin(), obj.end(), buffer_.begin() + offset);
      spans.emplace_back(buffer_.data() + offset, obj.size());
      offset += obj.size();
    }
    // Four chunks a batch: the host tier demotes between batches.
    const absl::Span<const ChunkKey> keys = prompt_.keys;
    for (size_t i = 0; i < keys.size(); i += 4) {
      const size_t n = std::min<size_t>(4, keys.size() - i);
      for (const absl::Status& st : client_->Put(
               keys.subspan(i, n), absl::MakeSpan(spans).subspan(i, n))) {
        ASSERT_TRUE(st.ok()) << st;
      }
    }
  }

  // The stored K (half 0) or V (half 1) row of `position` in a layer/head.
  std::vector<uint8_t> StoredRow(uint32_t layer, uint32_t head,
                                 uint32_t position, int half) const {
    const uint32_t tokens = spec_.chunk_tokens;
    const std::vector<uint8_t>& obj = prompt_.objects[position / tokens];
    const uint64_t row = uint64_t{spec_.head_dim} * 2;  // bf16
    auto header = DecodeChunkHeader(obj);
    const uint64_t at = header->layers[layer].offset +
                        half * spec_.LayerBytes(tokens) / 2 +
                        (uint64_t{head} * tokens + position % tokens) * row;
    return {obj.begin() + at, obj.begin() + at + row};
  }

  void ExpectRows(const compress::ClusterIndex& index, const ClusterWant& w,
                  const std::vector<RecalledCluster>& got) const {
    ASSERT_EQ(got.size(), w.clusters.size());
    const uint64_t row = uint64_t{spec_.head_dim} * 2;
    for (size_t c = 0; c < got.size(); ++c) {
      const auto members = index.At(w.layer, w.head).Members(w.clusters[c]);
      ASSERT_EQ(got[c].tokens, members.size());
      for (size_t i = 0; i < members.size(); ++i) {
        for (int half : {0, 1}) {
          const auto rows = half == 0 ? got[c].k : got[c].v;
          const std::vector<uint8_t> want =
              StoredRow(w.layer, w.head, members[i], half);
          EXPECT_TRUE(
              std::equal(want.begin(), want.end(), rows.begin() + i * row))
              << "layer " << w.layer << " head " << w.head << " cluster "
              << w.clusters[c] << " position " << members[i] << " half "
              << half;
        }
      }
    }
  }

  const ModelSpec spec_ = TestChunkSpec("test/cluster-recall");
  std::unique_ptr<Node> node_;
  std::unique_ptr<Client> client_;
  TestPrompt prompt_;
  std::vector<uint8_t> buffer_;
};

TEST_F(ClusterRecallTest, RowsAreTheStoredBytesAndRepeatsMoveNothing) {
  const compress::ClusterIndex index = RandomIndex(spec_, 3 * 64);
  auto recall = ClusterRecall::Create(client_.get(), {.spec = spec_},
                                      prompt_.keys, &index);
  ASSERT_TRUE(recall.ok()) << recall.status();
  const std::vector<ClusterWant> wants = {
      {.layer = 1, .head = 0, .clusters = {0, 3}},
      {.layer = 3, .head = 1, .clusters = {2}}};
  auto got = (*recall)->Recall(wants);
  ASSERT_TRUE(got.ok()) << got.status();
  for (size_t w = 0; w < wants.size(); ++w)
    ExpectRows(index, wants[w], (*got)[w]);
  const ClusterRecallStats first = (*recall)->stats();
  EXPECT_EQ(first.clusters_fetched, 3u);
  EXPECT_EQ(first.clusters_cached, 0u);
  uint64_t rows = 0;
  for (const auto& w : wants) {
    for (uint32_t c : w.clusters)
      rows += index.At(w.layer, w.head).Members(c).size();
  }
  EXPECT_EQ(first.bytes_fetched, rows * 2 * spec_.head_dim * 2);

  // The same clusters and one more: only the new one moves.
  std::vector<ClusterWant> again = wants;
  again[0].clusters.push_back(5);
  got = (*recall)->Recall(again);
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectRows(index, again[0], (*got)[0]);
  EXPECT_EQ((*recall)->stats().clusters_fetched, 4u);
  EXPECT_EQ((*recall)->stats().clusters_cached, 3u);
  EXPECT_EQ((*recall)->stats().bytes_fetched - first.bytes_fetched,
            index.At(1, 0).Members(5).size() * 2 * spec_.head_dim * 2);
}

TEST_F(ClusterRecallTest, SmallCacheEvictsAndBadInputIsRefused) {
  const compress::ClusterIndex index = RandomIndex(spec_, 3 * 64);
  auto recall = ClusterRecall::Create(
      client_.get(), {.spec = spec_, .cache_bytes = 1}, prompt_.keys, &index);
  ASSERT_TRUE(recall.ok()) << recall.status();
  const std::vector<ClusterWant> a = {{.layer = 0, .head = 0, .clusters = {1}}};
  const std::vector<ClusterWant> b = {{.layer = 0, .head = 1, .clusters = {1}}};
  ASSERT_TRUE((*recall)->Recall(a).ok());
  ASSERT_TRUE((*recall)->Recall(b).ok());  // evicts a's cluster
  auto got = (*recall)->Recall(a);
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectRows(index, a[0], (*got)[0]);
  EXPECT_EQ((*recall)->stats().clusters_fetched, 3u);

  EXPECT_TRUE(absl::IsInvalidArgument(
      (*recall)->Recall({{.layer = 4, .head = 0, .clusters = {0}}}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      (*recall)
          ->Recall({{.layer = 0, .head = 0, .clusters = {999}}})
          .status()));
  ModelSpec other = spec_;
  other.kv_heads = 4;
  EXPECT_TRUE(absl::IsInvalidArgument(
      ClusterRecall::Create(client_.get(), {.spec = other}, prompt_.keys,
                            &index)
          .status()));
  std::vector<ChunkKey> two(prompt_.keys.begin(), prompt_.keys.begin() + 2);
  EXPECT_TRUE(absl::IsInvalidArgument(
      ClusterRecall::Create(client_.get(), {.spec = spec_}, two, &index)
          .status()));  // the index covers a third chunk
}

TEST_F(ClusterRecallTest, AChunkTheNodeLacksFailsTheRecall) {
  // A fourth chunk that was never put.
  std::vector<ChunkKey> keys = prompt_.keys;
  keys.push_back(MakeTestPrompt(spec_, 8, 1).keys[0]);
  const compress::ClusterIndex index = RandomIndex(spec_, 4 * 64);
  auto recall =
      ClusterRecall::Create(client_.get(), {.spec = spec_}, keys, &index);
  ASSERT_TRUE(recall.ok()) << recall.status();
  const compress::HeadClusters& h = index.At(2, 1);
  uint32_t in_missing = h.clusters();
  for (uint32_t c = 0; c < h.clusters() && in_missing == h.clusters(); ++c) {
    for (uint32_t p : h.Members(c)) {
      if (p >= 3 * 64) in_missing = c;
    }
  }
  ASSERT_LT(in_missing, h.clusters());
  auto got =
      (*recall)->Recall({{.layer = 2, .head = 1, .clusters = {in_missing}}});
  EXPECT_TRUE(absl::IsNotFound(got.status())) << got.status();
  EXPECT_EQ((*recall)->stats().clusters_fetched, 0u);
}

TEST_F(ClusterRecallTest, TheIndexTravelsWithTheChunks) {
  const compress::ClusterIndex index = RandomIndex(spec_, 3 * 64);
  const ChunkKey last = prompt_.keys.back();
  EXPECT_TRUE(
      absl::IsNotFound(GetClusterIndex(client_.get(), spec_, last).status()));
  ASSERT_TRUE(PutClusterIndex(client_.get(), spec_, last, index).ok());
  auto back = GetClusterIndex(client_.get(), spec_, last);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(compress::EncodeClusterIndex(*back),
            compress::EncodeClusterIndex(index));
  // Read as another namespace's index: refused, never decoded.
  ModelSpec salted = spec_;
  salted.tenant_salt = "another-tenant";
  EXPECT_TRUE(
      absl::IsDataLoss(GetClusterIndex(client_.get(), salted, last).status()));
  ModelSpec deeper = spec_;
  deeper.num_layers = 5;
  EXPECT_TRUE(absl::IsInvalidArgument(
      PutClusterIndex(client_.get(), deeper, last, index)));
}

// The node keeps 2 MiB in host memory: most of a 3 MiB prompt is on SSD,
// and recall reads it back through the node's promotion.
class ClusterRecallSsdTest : public ClusterRecallTest {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("kvd-cluster-recall-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    Start(dir_.string(), 24);
  }
  void TearDown() override {
    client_.reset();
    node_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::filesystem::path dir_;
};

TEST_F(ClusterRecallSsdTest, ClustersOnSsdAreRecalledExactly) {
  EXPECT_GT(
      node_->engine()->Stats().demotions[static_cast<int>(TierKind::kHost)],
      0u);
  const compress::ClusterIndex index = RandomIndex(spec_, 24 * 64);
  auto recall = ClusterRecall::Create(client_.get(), {.spec = spec_},
                                      prompt_.keys, &index);
  ASSERT_TRUE(recall.ok()) << recall.status();
  ClusterWant all{.layer = 2, .head = 1};
  for (uint32_t c = 0; c < index.At(2, 1).clusters(); ++c) {
    all.clusters.push_back(c);
  }
  auto got = (*recall)->Recall({all});
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectRows(index, all, (*got)[0]);
  EXPECT_GT(node_->engine()->Stats().promotions, 0u);
}

}  // namespace
}  // namespace kvd
