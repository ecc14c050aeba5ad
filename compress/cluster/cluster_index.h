// ClusterKV's cluster index (DAC'25; ../shared/COMPRESSION.md): the
// post-RoPE keys of a context, per layer and KV head, grouped into clusters
// of similar direction, so a decode step can recall only the tokens whose
// cluster its query points at.
//
//   ClusterOptions o;                                   // 80 tokens/cluster
//   ClusterIndex index = BuildClusterIndex(keys, o);    // after prefill
//   ExtendClusterIndex(keys, index, o);                 // every W new tokens
//   Selection s = SelectClusters(index, layer, head, query, total,
//                                {.budget = 400});   // s.positions to attend
//
// Clustering is spherical k-means: keys and centroids are compared by cosine
// (keys normalized, centroids the normalized mean of their members),
// initialized by k-means++ from a seeded generator (deterministic), at most
// `iterations` rounds or until no assignment changes. Positions [0, sinks)
// are never clustered: attention sinks are always attended. With `balanced`,
// no cluster takes more than ceil(n / clusters) tokens (each token goes to
// the most similar centroid with room, the most confident tokens first).
//
// An index covers positions [sinks, clustered_end) of every head; tokens
// decoded after it are attended directly until ExtendClusterIndex clusters
// them into new clusters of their own (the originals do not move).
//
// Encode/DecodeClusterIndex give each layer of the index a checksummed byte
// form, to store next to the chunks it indexes (store/client/
// cluster_recall.h: PutClusterIndex); the decoder validates every field.
#ifndef KVDEPOT_COMPRESS_CLUSTER_CLUSTER_INDEX_H_
#define KVDEPOT_COMPRESS_CLUSTER_CLUSTER_INDEX_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "compress/kv_tensor.h"

namespace kvd::compress {

struct ClusterOptions {
  uint32_t sinks = 16;               // first positions, never clustered
  uint32_t tokens_per_cluster = 80;  // clusters = ceil(tokens / this)
  uint32_t iterations = 20;          // k-means rounds at most
  bool balanced = false;             // cap clusters at ceil(n / clusters)
  uint64_t seed = 1;
};

// The clusters of one KV head.
struct HeadClusters {
  std::vector<float> centroids;     // [clusters][dim], unit length
  std::vector<uint32_t> offsets;    // [clusters + 1] into positions
  std::vector<uint32_t> positions;  // grouped by cluster, ascending in each

  uint32_t clusters() const {
    return offsets.empty() ? 0 : static_cast<uint32_t>(offsets.size() - 1);
  }
  absl::Span<const uint32_t> Members(uint32_t c) const {
    return absl::MakeConstSpan(positions).subspan(offsets[c],
                                                  offsets[c + 1] - offsets[c]);
  }
};

struct ClusterIndex {
  uint32_t layers = 0;
  uint32_t kv_heads = 0;
  uint32_t head_dim = 0;
  uint32_t sinks = 0;
  uint32_t clustered_end = 0;       // positions [sinks, clustered_end)
  std::vector<HeadClusters> heads;  // [layer * kv_heads + head]

  const HeadClusters& At(uint32_t layer, uint32_t head) const {
    return heads[size_t{layer} * kv_heads + head];
  }
};

// Clusters positions [sinks, T) of each layer's keys (`keys[l]` is layer l,
// [kv_heads][T][head_dim], post-RoPE). kInvalidArgument for no layers,
// layers of different shapes, tokens_per_cluster or iterations of 0.
// With T <= sinks nothing is clustered (clustered_end = T).
absl::StatusOr<ClusterIndex> BuildClusterIndex(
    absl::Span<const HeadTensor> keys, const ClusterOptions& options);

// Clusters positions [index.clustered_end, T) of `keys` (the same layers,
// now T tokens long) into new clusters, appended to each head's.
absl::Status ExtendClusterIndex(absl::Span<const HeadTensor> keys,
                                ClusterIndex& index,
                                const ClusterOptions& options);

struct SelectOptions {
  uint32_t budget = 0;  // positions attended, sinks and recent ones included
  uint32_t recent = 0;  // the last `recent` positions are always attended
};

struct Selection {
  std::vector<uint32_t> clusters;   // chosen, in descending score order
  std::vector<uint32_t> positions;  // attended, ascending
};

// What one KV head attends to for `query` (head_dim floats; for
// grouped-query attention the mean of the group's queries): the sinks,
// every position past clustered_end, the last `recent` ones, then whole
// clusters in descending order of query . centroid while they fit in the
// budget (a cluster that does not fit is skipped for a smaller one).
// REQUIRES: layer, head in range; total >= index.clustered_end; query has
// index.head_dim floats.
Selection SelectClusters(const ClusterIndex& index, uint32_t layer,
                         uint32_t head, absl::Span<const float> query,
                         uint32_t total, const SelectOptions& options);

// One byte form per layer, in order.
std::vector<std::vector<uint8_t>> EncodeClusterIndex(const ClusterIndex& index);
// From the layers' byte forms, in order. kDataLoss for a bad magic, checksum
// or truncation; kInvalidArgument for a version this build does not read,
// layers out of order or unlike each other, or fields out of range (each
// head's positions must be exactly [sinks, clustered_end), centroids
// finite).
absl::StatusOr<ClusterIndex> DecodeClusterIndex(
    absl::Span<const absl::Span<const uint8_t>> layers);

}  // namespace kvd::compress

#endif  // KVDEPOT_COMPRESS_CLUSTER_CLUSTER_INDEX_H_
