// ClusterRecall: ClusterKV's recall of evicted tokens from the store
// (../shared/COMPRESSION.md). A request's context is stored as raw chunks
// (chunk i holds positions [i * chunk_tokens, (i + 1) * chunk_tokens)) and
// clustered by a ClusterIndex (compress/cluster/); each decode step picks
// clusters per layer and KV head, and Recall returns the K and V rows of
// their tokens:
//
//   auto recall = ClusterRecall::Create(store, {.spec = spec}, keys, &index);
//   auto got = (*recall)->Recall({{.layer = 3, .head = 1, .clusters = {7}}});
//   // got->at(0)[0].k: the K rows of cluster 7's positions, in its order.
//
// The rows of every cluster not already cached move in one batched Get:
// one item per chunk touched, each the byte ranges of its rows (the node
// promotes a chunk from SSD on the way). Recalled clusters stay in an LRU
// cache of options.cache_bytes, so a cluster selected again moves nothing.
//
// Integrity: ranges are single rows, not whole layers, so the client cannot
// check them against the layer checksums; the node verified every layer
// when the chunk was put (and its header on every read). A missing chunk
// fails the call with kNotFound.
//
// The index travels with the chunks it indexes (PutClusterIndex,
// GetClusterIndex), so any engine or node serving the request can recall.
//
// Thread-compatible: one call at a time.
#ifndef KVDEPOT_STORE_CLIENT_CLUSTER_RECALL_H_
#define KVDEPOT_STORE_CLIENT_CLUSTER_RECALL_H_

#include <cstdint>
#include <memory>
#include <tuple>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "compress/cluster/cluster_index.h"
#include "core/chunk_key.h"
#include "core/model_spec.h"
#include "store/client/chunk_store.h"

namespace kvd {

struct ClusterRecallOptions {
  ModelSpec spec;  // the chunks' namespace (raw: empty codec chain)
  uint64_t cache_bytes = uint64_t{256} << 20;
  // Staging for one Recall's fetched rows; a larger recall fails.
  uint64_t staging_bytes = uint64_t{64} << 20;
};

struct ClusterWant {
  uint32_t layer = 0;
  uint32_t head = 0;
  std::vector<uint32_t> clusters;  // ids in the index's (layer, head)
};

// One cluster's rows: `tokens` rows of head_dim elements of the namespace
// dtype, K then V, valid until the next Recall.
struct RecalledCluster {
  absl::Span<const uint8_t> k;
  absl::Span<const uint8_t> v;
  uint32_t tokens = 0;
};

struct ClusterRecallStats {
  uint64_t recalls = 0;
  uint64_t clusters_fetched = 0;
  uint64_t clusters_cached = 0;  // served from the cache
  uint64_t bytes_fetched = 0;
};

class ClusterRecall {
 public:
  // kInvalidArgument when the spec is invalid or coded, the index does not
  // match it (layers, heads, head_dim) or covers positions past `keys`.
  // `store` and `index` must outlive it.
  static absl::StatusOr<std::unique_ptr<ClusterRecall>> Create(
      ChunkStore* store, ClusterRecallOptions options,
      std::vector<ChunkKey> keys, const compress::ClusterIndex* index);

  // Per want, per cluster: its rows. kInvalidArgument for a layer, head or
  // cluster out of range, or more rows than staging holds; the store's
  // error for a chunk it cannot serve. On error the cache is unchanged.
  absl::StatusOr<std::vector<std::vector<RecalledCluster>>> Recall(
      absl::Span<const ClusterWant> wants);

  const ClusterRecallStats& stats() const { return stats_; }

 private:
  struct Entry {
    std::vector<uint8_t> rows;  // K rows, then V rows
    uint32_t tokens = 0;
    uint64_t last_use = 0;
  };
  using CacheKey = std::tuple<uint32_t, uint32_t, uint32_t>;

  ClusterRecall(ChunkStore* store, ClusterRecallOptions options,
                std::vector<ChunkKey> keys,
                const compress::ClusterIndex* index);
  // Drops least recently used entries not used by the current call until
  // the cache fits.
  void Evict();

  ChunkStore* const store_;
  const ClusterRecallOptions options_;
  const std::vector<ChunkKey> keys_;
  const compress::ClusterIndex* const index_;
  const uint64_t row_bytes_;
  std::vector<uint8_t> staging_;
  std::unique_ptr<Registration> registration_;
  absl::flat_hash_map<CacheKey, Entry> cache_;
  uint64_t cached_bytes_ = 0;
  uint64_t clock_ = 0;  // one tick per Recall
  ClusterRecallStats stats_;
};

// A request's cluster index as one object of its chunks' namespace: codec
// chain "clusterkv-index", one layer per model layer (EncodeClusterIndex),
// keyed ClusterIndexKey(last chunk) and parented by that chunk, so the
// store evicts it before the chunks it indexes.
ChunkKey ClusterIndexKey(const ChunkKey& last_chunk);
// kInvalidArgument when the index does not match the spec's layers, heads
// and head_dim; the store's error otherwise.
absl::Status PutClusterIndex(ChunkStore* store, const ModelSpec& spec,
                             const ChunkKey& last_chunk,
                             const compress::ClusterIndex& index);
// kNotFound when it is not stored; kDataLoss when the object is corrupt,
// of another namespace or not an index.
absl::StatusOr<compress::ClusterIndex> GetClusterIndex(
    ChunkStore* store, const ModelSpec& spec, const ChunkKey& last_chunk);

}  // namespace kvd

#endif  // KVDEPOT_STORE_CLIENT_CLUSTER_RECALL_H_
