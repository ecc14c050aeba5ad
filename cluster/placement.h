// Placement of chunks on cluster nodes (DESIGN.md §3.6): weighted
// rendezvous hashing of the chunk key over the live nodes, computed by
// every client from the membership it sees; there is no master in the data
// path. A key's owners are the R nodes with the highest scores
//
//   score(key, node) = weight(node) / -ln(u(key, node)),  u in (0, 1)
//
// where u is a 64-bit mix of the key's first 8 bytes (SHA-256 output, so
// uniform) and the node id's xxh3 hash. A node then owns a share of the keys
// proportional to its weight, and a join or leave moves only the keys
// whose owners change: about weight / total weight of them.
//
// Nodes of equal weight rank by u alone, so owners are found with one mix
// and compare per node and one logarithm per weight class. Scores compare
// as doubles from std::log: clients built against the same libm agree
// exactly; elsewhere only keys whose top scores differ in the last bit
// could disagree, which a reader sees as a miss.
//
// Thread safety: immutable after Create; share one per membership epoch.
#ifndef KVDEPOT_CLUSTER_PLACEMENT_H_
#define KVDEPOT_CLUSTER_PLACEMENT_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/status/statusor.h"
#include "core/chunk_key.h"

namespace kvd::cluster {

struct PlacementNode {
  std::string id;       // unique, 1..kMaxNodeIdBytes bytes
  uint32_t weight = 0;  // relative capacity (e.g. GiB), > 0
};

class Placement {
 public:
  static constexpr size_t kMaxNodes = 1 << 16;
  static constexpr size_t kMaxNodeIdBytes = 255;
  static constexpr int kMaxReplicas = 8;

  using Owners = absl::InlinedVector<uint32_t, 4>;  // node indexes

  // kInvalidArgument naming the field for no nodes, more than kMaxNodes,
  // an empty, over-long or repeated id, or a zero weight. The input order
  // does not matter: nodes are kept sorted by id.
  static absl::StatusOr<Placement> Create(std::vector<PlacementNode> nodes);

  // Nodes sorted by id; owner indexes refer to this order.
  const std::vector<PlacementNode>& nodes() const { return nodes_; }

  // The min(replicas, nodes().size()) owners of `key`, highest score first.
  // REQUIRES: 1 <= replicas <= kMaxReplicas.
  Owners OwnersOf(const ChunkKey& key, int replicas) const;

  // OwnersOf(key, 1)[0], without the vector.
  uint32_t PrimaryOf(const ChunkKey& key) const;

  // A hash of the node ids and weights: equal on every client and node that
  // places keys the same way.
  uint64_t fingerprint() const { return fingerprint_; }

 private:
  // Nodes of one weight, as a run [begin, end) of `order_`.
  struct WeightClass {
    double weight;
    uint32_t begin, end;
  };

  Placement() = default;

  std::vector<PlacementNode> nodes_;
  std::vector<uint64_t> seeds_;          // xxh3 of each node's id
  std::vector<uint32_t> order_;          // node indexes grouped by weight
  std::vector<uint64_t> ordered_seeds_;  // seeds_ in `order_`
  std::vector<WeightClass> classes_;
  uint64_t fingerprint_ = 0;
};

}  // namespace kvd::cluster

#endif  // KVDEPOT_CLUSTER_PLACEMENT_H_
