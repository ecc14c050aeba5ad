// Cluster membership on etcd (DESIGN.md §3.6).
//
// Each node keeps a record (kvdepot.v1.NodeRecord, protobuf JSON) at
//   /kvdepot/<cluster>/nodes/<node id>
// attached to an etcd lease it renews (Registrar). A node that stops
// renewing, because it died or is cut off from etcd, drops out when the lease
// expires; a node that shuts down revokes its lease and drops out at once.
// Clients and nodes follow the records with MembershipWatcher and place
// chunks over the nodes it lists.
//
// etcd outages: both classes keep retrying in the background. A watcher
// keeps serving the last membership it saw (view()->live is false meanwhile)
// and catches up when etcd answers again; a registrar re-registers if its
// lease expired in the meantime.
#ifndef KVDEPOT_CLUSTER_MEMBERSHIP_H_
#define KVDEPOT_CLUSTER_MEMBERSHIP_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "cluster/etcd_client.h"
#include "cluster/placement.h"
#include "store/proto/kvdepot.pb.h"

namespace kvd::cluster {

// Cluster names: 1..64 of [A-Za-z0-9._-]. `key` names the source.
absl::Status ValidateClusterName(absl::string_view key, absl::string_view name);

// "/kvdepot/<cluster>/nodes/".
std::string NodesPrefix(absl::string_view cluster);

std::string EncodeNodeRecord(const kvdepot::v1::NodeRecord& record);
// Parses and validates a record read from etcd key NodesPrefix + `id`:
// kInvalidArgument naming the field for bad JSON, an id that differs from
// the key, a bad control address, a zero weight.
absl::StatusOr<kvdepot::v1::NodeRecord> DecodeNodeRecord(
    absl::string_view id, absl::string_view value);

// One consistent picture of the cluster.
struct MembershipView {
  // etcd revision of the newest change in this view (0: nothing read yet).
  int64_t revision = 0;
  // Bumped whenever the set of nodes or a weight changes, i.e. whenever
  // placement may move keys. Counts changes seen by this watcher.
  uint64_t placement_epoch = 0;
  // Records sorted by node id: the index order of `placement`.
  std::vector<kvdepot::v1::NodeRecord> nodes;
  std::optional<Placement> placement;  // empty while no node is registered
  bool live = false;  // false: etcd is unreachable, this is the last view
};

class MembershipWatcher {
 public:
  using Listener = std::function<void(const MembershipView&)>;

  // Starts following `cluster` in a background thread. `etcd` must outlive
  // the watcher. `listener` (may be empty) runs on that thread after each
  // change of the view; it must not call back into the watcher.
  MembershipWatcher(EtcdClient* etcd, std::string cluster,
                    Listener listener = nullptr);
  ~MembershipWatcher();
  MembershipWatcher(const MembershipWatcher&) = delete;
  MembershipWatcher& operator=(const MembershipWatcher&) = delete;

  // The current view; never null.
  std::shared_ptr<const MembershipView> view() const;
  // Waits until a view has been read from etcd; kUnavailable after
  // `timeout` (with the last etcd error).
  absl::Status WaitForView(absl::Duration timeout) const;

 private:
  void Run();
  // Adds, replaces or (when it fails validation) drops one record.
  void Apply(absl::string_view key, absl::string_view value)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Publishes a new view of the records.
  void Publish(int64_t revision, bool live) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  EtcdClient* const etcd_;
  const std::string cluster_;
  const std::string prefix_;
  const Listener listener_;
  EtcdWatchCancel cancel_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status last_error_ ABSL_GUARDED_BY(mu_);
  absl::btree_map<std::string, kvdepot::v1::NodeRecord> records_
      ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const MembershipView> view_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

struct RegistrarOptions {
  std::string cluster;
  std::string node_id;
  absl::Duration ttl = absl::Seconds(5);  // whole seconds, >= 2 s
  // How often the record is rewritten (fresh usage figures).
  absl::Duration refresh = absl::Seconds(10);
  // Builds the record at each write; runs on the registrar's thread.
  std::function<kvdepot::v1::NodeRecord()> record;
};

class Registrar {
 public:
  // kInvalidArgument for a bad cluster name, node id or TTL. Registers in
  // the background: etcd need not be up yet. `etcd` must outlive it.
  static absl::StatusOr<std::unique_ptr<Registrar>> Start(
      EtcdClient* etcd, RegistrarOptions options);
  // Stops renewing; the record stays until the lease expires (use Leave()
  // first to go at once).
  ~Registrar();

  // True while the record is in etcd under a lease we renew.
  bool registered() const;
  // Revokes the lease, so the record goes at once, and stops.
  absl::Status Leave();
  // Rewrites the record now (e.g. its health changed) instead of at the next
  // refresh; returns at once.
  void Refresh();

 private:
  Registrar(EtcdClient* etcd, RegistrarOptions options);
  void Run();
  // Sleeps up to `d` or until Refresh(); false when stopping.
  bool Wait(absl::Duration d);
  bool Woken() const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return stopping_ || rewrite_;
  }

  EtcdClient* const etcd_;
  const RegistrarOptions options_;
  const std::string key_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool rewrite_ ABSL_GUARDED_BY(mu_) = false;  // Refresh() was called
  int64_t lease_ ABSL_GUARDED_BY(mu_) = 0;     // 0: not registered
  std::thread thread_;
};

}  // namespace kvd::cluster

#endif  // KVDEPOT_CLUSTER_MEMBERSHIP_H_
