// PagedChunkIO against a real node in this process (gRPC Hello, UCX tcp
// data path): chunks saved from one paged KV cache load into another cache
// at other blocks bit for bit; misses and corrupt chunks leave the cache
// untouched. The cache has vLLM's CPU layout: per layer one tensor
// [blocks][kv_heads][block_size][2 * head_dim], K in the first half of the
// last dimension, V in the second.
#include "store/client/paged_chunk_io.h"

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/client/client.h"
#include "store/server/node.h"
#include "tests/node/test_node.h"

namespace kvd {
namespace {

constexpr char kToken[] = "paged-chunk-io-test-token";
constexpr uint32_t kBlockSize = 16;
constexpr int64_t kBlocks = 24;

ModelSpec Spec() {
  ModelSpec s;
  s.model_id = "test/paged-chunk-io";
  s.num_layers = 3;
  s.kv_heads = 2;
  s.head_dim = 8;
  s.chunk_tokens = 32;  // two blocks
  return s;
}

// One engine's cache: layer tensors as vLLM's CPU backend allocates them.
class PagedCache {
 public:
  explicit PagedCache(const ModelSpec& spec) : spec_(spec) {
    row_ = 2 * spec.head_dim;
    layer_elems_ = kBlocks * spec.kv_heads * kBlockSize * row_;
    data_.resize(spec.num_layers * layer_elems_);
  }

  void FillRandom(uint64_t seed) {
    std::mt19937_64 rng(seed);
    for (uint16_t& x : data_) x = static_cast<uint16_t>(rng());
  }

  std::vector<PagedLayerView> Views() {
    std::vector<PagedLayerView> views;
    for (uint32_t l = 0; l < spec_.num_layers; ++l) {
      uint16_t* base = data_.data() + l * layer_elems_;
      const std::vector<int64_t> shape = {kBlocks, spec_.kv_heads, kBlockSize,
                                          spec_.head_dim};
      const std::vector<int64_t> strides = {spec_.kv_heads * kBlockSize * row_,
                                            kBlockSize * row_, row_, 1};
      TensorDesc k{base, spec_.dtype, shape, strides};
      TensorDesc v{base + spec_.head_dim, spec_.dtype, shape, strides};
      auto view = PagedViewFromSeparate(k, v, kDimsHND);
      EXPECT_TRUE(view.ok()) << view.status();
      views.push_back(*view);
    }
    return views;
  }

  // The K and V rows of token slot `t` of `block`, every layer and head.
  std::vector<uint16_t> Tokens(const std::vector<int32_t>& blocks) const {
    std::vector<uint16_t> out;
    for (uint32_t l = 0; l < spec_.num_layers; ++l) {
      for (int32_t b : blocks) {
        for (uint32_t h = 0; h < spec_.kv_heads; ++h) {
          const uint16_t* row = data_.data() + l * layer_elems_ +
                                (b * spec_.kv_heads + h) * kBlockSize * row_;
          out.insert(out.end(), row, row + kBlockSize * row_);
        }
      }
    }
    return out;
  }

  const std::vector<uint16_t>& data() const { return data_; }

 private:
  const ModelSpec spec_;
  int64_t row_ = 0;
  int64_t layer_elems_ = 0;
  std::vector<uint16_t> data_;  // bf16 bit patterns
};

// The real client, with the last byte of what it gets flipped when the read
// starts at layer `from_layer` or later: a chunk corrupted between the node
// and the engine.
class CorruptingStore final : public ChunkStore {
 public:
  explicit CorruptingStore(ChunkStore* inner, uint32_t from_layer = 0)
      : inner_(inner), from_layer_(from_layer) {}
  absl::StatusOr<std::unique_ptr<Registration>> RegisterBuffer(
      absl::Span<uint8_t> memory) override {
    return inner_->RegisterBuffer(memory);
  }
  std::vector<absl::Status> Put(
      absl::Span<const ChunkKey> keys,
      absl::Span<const absl::Span<const uint8_t>> objects) override {
    return inner_->Put(keys, objects);
  }
  std::vector<absl::StatusOr<uint64_t>> Get(
      absl::Span<const GetTarget> targets) override {
    auto got = inner_->Get(targets);
    for (size_t i = 0; i < got.size(); ++i) {
      if (got[i].ok() && targets[i].selection.layer_begin >= from_layer_) {
        targets[i].dst[*got[i] - 1] ^= 0x5a;  // the last layer read
      }
    }
    return got;
  }
  absl::StatusOr<size_t> Lookup(absl::Span<const ChunkKey> keys) override {
    return inner_->Lookup(keys);
  }

 private:
  ChunkStore* const inner_;
  const uint32_t from_layer_;
};

class PagedChunkIOTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto node = Node::Start(
        LoopbackNodeSettings("paged-chunk-io-test", kToken, 32ull << 20));
    ASSERT_TRUE(node.ok()) << node.status();
    node_ = *std::move(node);
    auto client = ConnectTo(*node_, kToken);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
  }

  // Keys of a prompt of `chunks` chunks of random tokens.
  std::vector<ChunkKey> Keys(int chunks, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<uint32_t> tokens(chunks * Spec().chunk_tokens);
    for (uint32_t& t : tokens) t = rng() % 49152;
    return ChainChunkKeys(Spec().Fingerprint(), tokens, Spec().chunk_tokens);
  }

  static std::vector<PagedChunk> Chunks(
      const std::vector<ChunkKey>& keys,
      const std::vector<std::vector<int32_t>>& blocks) {
    std::vector<PagedChunk> out;
    for (size_t i = 0; i < keys.size(); ++i) {
      out.push_back({.key = keys[i],
                     .parent = i == 0 ? ChunkKey::Zero() : keys[i - 1],
                     .block_ids = blocks[i]});
    }
    return out;
  }

  std::unique_ptr<Node> node_;
  std::unique_ptr<Client> client_;
};

TEST_F(PagedChunkIOTest, SavedChunksLoadIntoOtherBlocksBitForBit) {
  PagedCache prefill(Spec()), decode(Spec());
  prefill.FillRandom(1);
  decode.FillRandom(2);
  // Staging for two objects: three chunks take two rounds each way.
  const uint64_t object = ChunkHeaderSize(0, 3) + Spec().ChunkPayloadBytes();
  auto saver = PagedChunkIO::Create(
      client_.get(), {.spec = Spec(), .staging_bytes = 2 * object},
      prefill.Views());
  ASSERT_TRUE(saver.ok()) << saver.status();
  EXPECT_EQ((*saver)->object_bytes(), object);
  const std::vector<ChunkKey> keys = Keys(3, 7);
  const std::vector<std::vector<int32_t>> from = {{5, 2}, {9, 0}, {17, 11}};
  for (const absl::Status& s : (*saver)->Save(Chunks(keys, from))) {
    ASSERT_TRUE(s.ok()) << s;
  }
  EXPECT_EQ(client_->Lookup(keys).value_or(0), 3u);

  auto loader = PagedChunkIO::Create(
      client_.get(), {.spec = Spec(), .staging_bytes = 2 * object},
      decode.Views());
  ASSERT_TRUE(loader.ok()) << loader.status();
  const std::vector<std::vector<int32_t>> to = {{1, 3}, {22, 4}, {6, 8}};
  const std::vector<uint16_t> untouched = decode.Tokens({10, 12});
  for (const absl::Status& s : (*loader)->Load(Chunks(keys, to))) {
    ASSERT_TRUE(s.ok()) << s;
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    EXPECT_EQ(decode.Tokens(to[i]), prefill.Tokens(from[i])) << "chunk " << i;
  }
  EXPECT_EQ(decode.Tokens({10, 12}), untouched);
}

TEST_F(PagedChunkIOTest, LayersArriveInOrderAndLoadBitForBit) {
  PagedCache prefill(Spec()), decode(Spec());
  prefill.FillRandom(5);
  decode.FillRandom(6);
  const uint64_t object = ChunkHeaderSize(0, 3) + Spec().ChunkPayloadBytes();
  auto saver =
      PagedChunkIO::Create(client_.get(), {.spec = Spec()}, prefill.Views());
  ASSERT_TRUE(saver.ok()) << saver.status();
  const std::vector<ChunkKey> keys = Keys(3, 11);
  const std::vector<std::vector<int32_t>> from = {{5, 2}, {9, 0}, {17, 11}};
  for (const absl::Status& s : (*saver)->Save(Chunks(keys, from))) {
    ASSERT_TRUE(s.ok()) << s;
  }
  // Two rounds (staging for two objects), one layer per fetch: progress is
  // reported layer by layer during the last round only.
  auto loader = PagedChunkIO::Create(
      client_.get(), {.spec = Spec(), .staging_bytes = 2 * object},
      decode.Views());
  ASSERT_TRUE(loader.ok()) << loader.status();
  const std::vector<std::vector<int32_t>> to = {{1, 3}, {22, 4}, {6, 8}};
  std::vector<uint32_t> progress;
  std::vector<absl::Status> got = (*loader)->LoadLayers(
      Chunks(keys, to), 1, [&](uint32_t end) { progress.push_back(end); });
  for (const absl::Status& s : got) ASSERT_TRUE(s.ok()) << s;
  EXPECT_THAT(progress, ::testing::ElementsAre(1, 2, 3));
  for (size_t i = 0; i < keys.size(); ++i) {
    EXPECT_EQ(decode.Tokens(to[i]), prefill.Tokens(from[i])) << "chunk " << i;
  }
  // Two layers per fetch over three layers: fetches of 2 and 1.
  progress.clear();
  const std::vector<PagedChunk> first = {Chunks(keys, to)[0]};
  got = (*loader)->LoadLayers(first, 2,
                              [&](uint32_t end) { progress.push_back(end); });
  EXPECT_TRUE(got[0].ok()) << got[0];
  EXPECT_THAT(progress, ::testing::ElementsAre(2, 3));
  // A miss still reports every layer, so a waiting engine goes on.
  progress.clear();
  got = (*loader)->LoadLayers({{.key = Keys(1, 12)[0], .block_ids = {5, 6}}}, 1,
                              [&](uint32_t end) { progress.push_back(end); });
  EXPECT_EQ(got[0].code(), absl::StatusCode::kNotFound) << got[0];
  EXPECT_THAT(progress, ::testing::ElementsAre(3));
}

TEST_F(PagedChunkIOTest, ALaterLayerCorruptFailsTheChunkAfterEarlierLayers) {
  PagedCache prefill(Spec()), decode(Spec());
  prefill.FillRandom(7);
  decode.FillRandom(8);
  auto saver =
      PagedChunkIO::Create(client_.get(), {.spec = Spec()}, prefill.Views());
  ASSERT_TRUE(saver.ok()) << saver.status();
  const std::vector<ChunkKey> keys = Keys(1, 13);
  ASSERT_TRUE((*saver)->Save(Chunks(keys, {{2, 9}}))[0].ok());
  CorruptingStore corrupting(client_.get(), /*from_layer=*/1);
  auto loader =
      PagedChunkIO::Create(&corrupting, {.spec = Spec()}, decode.Views());
  ASSERT_TRUE(loader.ok()) << loader.status();
  const std::vector<uint16_t> before = decode.Tokens({4, 5});
  std::vector<uint32_t> progress;
  std::vector<absl::Status> got =
      (*loader)->LoadLayers(Chunks(keys, {{4, 5}}), 1,
                            [&](uint32_t end) { progress.push_back(end); });
  EXPECT_EQ(got[0].code(), absl::StatusCode::kDataLoss) << got[0];
  // Layer 0 arrived and was scattered; the failure at layer 1 ends the wait
  // for every layer, and layers 1 and 2 are as they were.
  EXPECT_THAT(progress, ::testing::ElementsAre(1, 3));
  const std::vector<uint16_t> after = decode.Tokens({4, 5});
  const std::vector<uint16_t> source = prefill.Tokens({2, 9});
  const size_t layer = after.size() / Spec().num_layers;
  EXPECT_TRUE(std::equal(after.begin(), after.begin() + layer, source.begin()));
  EXPECT_TRUE(
      std::equal(after.begin() + layer, after.end(), before.begin() + layer));
}

TEST_F(PagedChunkIOTest, MissesCorruptionAndBadSlotsWriteNothing) {
  PagedCache prefill(Spec()), decode(Spec());
  prefill.FillRandom(3);
  decode.FillRandom(4);
  auto saver =
      PagedChunkIO::Create(client_.get(), {.spec = Spec()}, prefill.Views());
  ASSERT_TRUE(saver.ok()) << saver.status();
  const std::vector<ChunkKey> keys = Keys(2, 8);
  std::vector<PagedChunk> saved = Chunks(keys, {{0, 1}, {2, 3}});
  saved.push_back({.key = Keys(1, 9)[0], .block_ids = {4, kBlocks}});
  std::vector<absl::Status> put = (*saver)->Save(saved);
  EXPECT_TRUE(put[0].ok()) << put[0];
  EXPECT_TRUE(put[1].ok()) << put[1];
  EXPECT_EQ(put[2].code(), absl::StatusCode::kInvalidArgument);  // no block

  CorruptingStore corrupting(client_.get());
  auto corrupt =
      PagedChunkIO::Create(&corrupting, {.spec = Spec()}, decode.Views());
  ASSERT_TRUE(corrupt.ok()) << corrupt.status();
  const std::vector<uint16_t> before = decode.data();
  std::vector<absl::Status> got =
      (*corrupt)->Load(Chunks(keys, {{5, 6}, {7, 8}}));
  for (const absl::Status& s : got) {
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  }
  auto loader =
      PagedChunkIO::Create(client_.get(), {.spec = Spec()}, decode.Views());
  ASSERT_TRUE(loader.ok()) << loader.status();
  got = (*loader)->Load({{.key = Keys(1, 10)[0], .block_ids = {5, 6}},
                         {.key = keys[0], .block_ids = {7, 7}}});
  EXPECT_EQ(got[0].code(), absl::StatusCode::kNotFound) << got[0];
  EXPECT_EQ(got[1].code(), absl::StatusCode::kInvalidArgument) << got[1];
  EXPECT_EQ(decode.data(), before);
}

TEST_F(PagedChunkIOTest, CreateRejectsAMismatchedCache) {
  PagedCache cache(Spec());
  ModelSpec wider = Spec();
  wider.kv_heads = 4;
  auto io = PagedChunkIO::Create(client_.get(), {.spec = wider}, cache.Views());
  EXPECT_EQ(io.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(io.status().message(), ::testing::HasSubstr("does not match"));
  ModelSpec deeper = Spec();
  deeper.num_layers = 4;
  io = PagedChunkIO::Create(client_.get(), {.spec = deeper}, cache.Views());
  EXPECT_EQ(io.status().code(), absl::StatusCode::kInvalidArgument);
  io = PagedChunkIO::Create(
      client_.get(), {.spec = Spec(), .staging_bytes = 1000}, cache.Views());
  EXPECT_THAT(io.status().message(), ::testing::HasSubstr("staging_bytes"));
}

}  // namespace
}  // namespace kvd
