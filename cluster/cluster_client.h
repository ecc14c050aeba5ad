// ClusterClient: the engine-side library for a kvdepot cluster (DESIGN.md
// §3.6). It follows the membership in etcd, places every chunk key on its
// owners by weighted rendezvous hashing (cluster/placement.h) with
// replication factor R, and talks to each owner through a per-node Client
// (store/client/client.h). No master is in the data path.
//
//   KVD_ASSIGN_OR_RETURN(auto c, ClusterClient::Connect(
//       {.cluster = "prod", .etcd = {"10.0.0.2:2379"}, .replicas = 2,
//        .node = {.token = token}}));
//   auto buffer = c->RegisterBuffer(staging);  // once
//   std::vector<absl::Status> put = c->Put(keys, objects);
//   absl::StatusOr<size_t> cached = c->Lookup(prompt_keys);
//
// Batches fan out: the keys of one call are grouped by owner and the groups
// go to their nodes in parallel.
//   Put     writes each key to its R first live owners; a key is stored when
//           at least one of them took it. An owner that fails is skipped and
//           the key goes to the next node in its ranking, which is where
//           placement puts it once the failed node leaves the membership.
//   Get     reads each key from its first live owner, then the next replicas
//           (up to R nodes) on a miss or a failure, then the draining nodes
//           that owned it before they began to leave. A key no reachable
//           owner has is kNotFound: a miss, never an error.
//   Lookup  asks each owner only about its own keys of the prompt and
//           combines the answers into the longest present prefix.
//
// Draining nodes (record health HEALTH_DRAINING; `kvdepotctl cluster drain`)
// take no writes and own no keys: placement passes over them, and reads
// fall back to them while their chunks move to the new owners.
//
// Failures: a node that does not answer (no connection, or no reply within
// `node.timeout`) is marked down for `down_cooldown` and skipped meanwhile;
// its keys read as misses (R = 1) or come from a replica. A call returns
// within about two `node.timeout`s (connect, then the request) even when
// owners die under it. When etcd is unreachable the last membership is used.
//
// Memory: as with Client, spans must lie in one buffer registered here
// (RegisterBuffer registers it with every node, now and as nodes join).
//
// Thread-safe.
#ifndef KVDEPOT_CLUSTER_CLUSTER_CLIENT_H_
#define KVDEPOT_CLUSTER_CLUSTER_CLIENT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "cluster/etcd_client.h"
#include "cluster/membership.h"
#include "core/chunk_key.h"
#include "store/client/client.h"

namespace kvd::cluster {

struct ClusterClientOptions {
  std::string cluster;
  std::vector<std::string> etcd;  // host:port endpoints
  int replicas = 1;               // R, 1..Placement::kMaxReplicas
  // Per-node settings (token, TLS, transport, protocol, timeout); `address`
  // is ignored: each node's comes from its membership record.
  ClientOptions node;
  absl::Duration down_cooldown = absl::Seconds(5);
  // How long Connect waits for the first membership from etcd.
  absl::Duration membership_timeout = absl::Seconds(10);
};

class ClusterClient final : public ChunkStore {
 public:
  // kInvalidArgument for bad options; kUnavailable when no membership could
  // be read from etcd within membership_timeout. An empty cluster is not an
  // error: every call then misses (Put reports kUnavailable).
  static absl::StatusOr<std::unique_ptr<ClusterClient>> Connect(
      ClusterClientOptions options);
  ~ClusterClient();

  absl::StatusOr<std::unique_ptr<Registration>> RegisterBuffer(
      absl::Span<uint8_t> memory) override;

  std::vector<absl::Status> Put(
      absl::Span<const ChunkKey> keys,
      absl::Span<const absl::Span<const uint8_t>> objects) override;
  std::vector<absl::StatusOr<uint64_t>> Get(
      absl::Span<const GetTarget> targets) override;
  absl::StatusOr<size_t> Lookup(absl::Span<const ChunkKey> keys) override;

  // The ids of the nodes `key` is placed on now, best first: its R owners
  // among the nodes not marked down.
  std::vector<std::string> OwnersOf(const ChunkKey& key) const;
  std::shared_ptr<const MembershipView> membership() const {
    return watcher_->view();
  }

  class Node;
  class BufferRegistration;

 private:
  explicit ClusterClient(ClusterClientOptions options);
  // The nodes of `view` for `key` (from its kMaxReplicas best), nodes marked
  // down left out.
  struct Candidates {
    std::vector<uint32_t> owners;  // serving nodes, best first
    // Draining nodes ranked above the R-th owner: they held the key before
    // they began to leave and serve reads until it has moved.
    std::vector<uint32_t> leaving;
  };
  Candidates Ranked(const MembershipView& view, const ChunkKey& key) const;
  // A node's client; valid while `node` is held.
  struct Connection {
    std::shared_ptr<Node> node;
    Client* client;
  };
  // The connection to node `index` of `view`, connected (Hello) if needed;
  // marks the node down and returns the error when it cannot be reached.
  absl::StatusOr<Connection> Connected(const MembershipView& view,
                                       uint32_t index);
  void MarkDown(const std::string& id, const absl::Status& why);
  bool IsDown(const std::string& id) const;
  void Unregister(const uint8_t* memory);

  const ClusterClientOptions options_;
  std::unique_ptr<EtcdClient> etcd_;
  std::unique_ptr<MembershipWatcher> watcher_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<Node>> nodes_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, absl::Time> down_until_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Span<uint8_t>> buffers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvd::cluster

#endif  // KVDEPOT_CLUSTER_CLUSTER_CLIENT_H_
