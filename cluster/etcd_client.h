// EtcdClient: the calls cluster mode makes to etcd (DESIGN.md §3.6) over
// etcd's v3 gRPC API (cluster/etcd/etcd_rpc.proto): leases, keys under a
// prefix, and prefix watches.
//
//   KVD_ASSIGN_OR_RETURN(auto etcd, EtcdClient::Create(
//       {.endpoints = {"10.0.0.2:2379", "10.0.0.3:2379"}}));
//   KVD_ASSIGN_OR_RETURN(int64_t lease, etcd->GrantLease(absl::Seconds(5)));
//   KVD_RETURN_IF_ERROR(etcd->Put("/kvdepot/c/nodes/a", value, lease));
//
// Endpoints: every call starts at the endpoint that answered last and moves
// on to the next one when an endpoint is unreachable; each attempt is bounded
// by `call_timeout`. When none answers the call fails with kUnavailable
// (or kDeadlineExceeded), naming the endpoints tried.
//
// Plaintext gRPC: etcd is expected on a trusted network or loopback.
//
// Thread-safe; Watch blocks its calling thread until cancelled.
#ifndef KVDEPOT_CLUSTER_ETCD_CLIENT_H_
#define KVDEPOT_CLUSTER_ETCD_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace grpc {
class Channel;
class ClientContext;
}  // namespace grpc

namespace kvd::cluster {

struct EtcdOptions {
  std::vector<std::string> endpoints;  // "host:port", at least one
  absl::Duration call_timeout = absl::Seconds(2);
};

// Splits "a:2379,b:2379" into validated endpoints; `key` names the source.
absl::StatusOr<std::vector<std::string>> ParseEtcdEndpoints(
    absl::string_view key, absl::string_view list);

struct EtcdKeyValue {
  std::string key;
  std::string value;
  int64_t mod_revision = 0;
};

struct EtcdEvent {
  bool deleted = false;  // false: put
  std::string key;
  std::string value;  // empty for a delete
  int64_t revision = 0;
};

// Cancels, from another thread, the Watch calls given it: the running one
// and every later one (cancelling is for good).
class EtcdWatchCancel {
 public:
  void Cancel();
  bool cancelled() const;

 private:
  friend class EtcdClient;
  // False when already cancelled (the watch must not start).
  bool Attach(grpc::ClientContext* context);
  void Detach();

  mutable absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
};

class EtcdClient {
 public:
  static absl::StatusOr<std::unique_ptr<EtcdClient>> Create(
      const EtcdOptions& options);

  // A lease of `ttl` rounded up to whole seconds; returns its id.
  absl::StatusOr<int64_t> GrantLease(absl::Duration ttl);
  // Renews a lease once; returns the TTL it now has. kNotFound when the
  // lease expired or was revoked.
  absl::StatusOr<absl::Duration> KeepAlive(int64_t lease);
  absl::Status RevokeLease(int64_t lease);

  // `lease` 0: the key outlives every lease.
  absl::Status Put(absl::string_view key, absl::string_view value,
                   int64_t lease = 0);
  absl::Status Delete(absl::string_view key);
  // Every key starting with `prefix`, in key order, and the store's
  // revision at the time of the read.
  struct Snapshot {
    std::vector<EtcdKeyValue> kvs;
    int64_t revision = 0;
  };
  absl::StatusOr<Snapshot> GetPrefix(absl::string_view prefix);

  // Streams the changes under `prefix` from `start_revision` on, one call of
  // `on_events` per etcd response, until `cancel` fires (returns kCancelled)
  // or the stream breaks (kUnavailable), or etcd has compacted
  // start_revision away (kOutOfRange: read the prefix again). Blocks.
  absl::Status Watch(
      absl::string_view prefix, int64_t start_revision,
      const std::function<void(std::vector<EtcdEvent>)>& on_events,
      EtcdWatchCancel* cancel);

  const std::vector<std::string>& endpoints() const { return endpoints_; }

 private:
  EtcdClient(std::vector<std::string> endpoints, absl::Duration call_timeout);

  // Runs `call` against each endpoint in turn, starting with the last good
  // one, until one is reachable.
  absl::Status Call(
      absl::string_view what,
      const std::function<absl::Status(const std::shared_ptr<grpc::Channel>&,
                                       absl::Time)>& call);

  static std::shared_ptr<grpc::Channel> NewChannel(const std::string& endpoint);
  std::shared_ptr<grpc::Channel> Channel(size_t at);
  // Records how endpoint `at` answered: the one to start with next time, or
  // a fresh channel for an endpoint that is down.
  void Answered(size_t at, const absl::Status& status);

  const std::vector<std::string> endpoints_;
  const absl::Duration call_timeout_;
  absl::Mutex mu_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_ ABSL_GUARDED_BY(mu_);
  size_t current_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace kvd::cluster

#endif  // KVDEPOT_CLUSTER_ETCD_CLIENT_H_
