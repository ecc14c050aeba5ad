// ControlService: the node's implementation of kvdepot.v1.Control
// (store/proto/kvdepot.proto) on top of a StoreEngine.
//
// Authentication (store/server/auth.h): Status and Stats are open; Hello
// needs the data token; ListChunks, Inspect, Evict and Drain need the admin
// token. The token is checked before any request field is looked at. Every
// request field is then validated (kInvalidArgument naming the field and
// its bound). The admin RPCs live in control_admin.cc.
//
// Thread safety: gRPC calls the RPC methods concurrently from its threads;
// they read immutable NodeInfo, an atomic health value, the listen address
// and health detail (under a mutex: the address is known only once the
// server has bound its port) and the engine (itself thread-safe). One Drain
// runs at a time.
//
// Ownership: the service does not own the engine, the clock, the metrics
// registry or the handshake. REQUIRES: they outlive the service, and the
// gRPC server that hosts the service is shut down (Server::Shutdown + Wait)
// before any of them is destroyed.
#ifndef KVDEPOT_STORE_SERVER_CONTROL_SERVICE_H_
#define KVDEPOT_STORE_SERVER_CONTROL_SERVICE_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/clock.h"
#include "core/metrics.h"
#include "store/engine/store_engine.h"
#include "store/proto/kvdepot.grpc.pb.h"
#include "store/server/auth.h"
#include "store/server/data_path_handshake.h"

namespace kvd {

// What the node knows about itself at start.
struct NodeInfo {
  std::string node_id;
  std::string version;
  std::string listen_address;  // as configured; see SetListenAddress
  kvdepot::v1::Mode mode = kvdepot::v1::MODE_STANDALONE;
  absl::Time start_time;
  std::string cluster;  // cluster mode: its name
};

// Fills `out` from engine figures: one TierStats per tier, hottest first,
// and every counter of StoreStats. `uptime` goes to out->uptime_ms.
void StoreStatsToProto(const StoreStats& stats, absl::Duration uptime,
                       kvdepot::v1::StatsResponse* out);

kvdepot::v1::Tier TierToProto(TierKind kind);

struct ControlServiceOptions {
  AuthOptions auth;
  // Where kvdepot_auth_failures_total goes; nullptr: a registry of the
  // service's own (tests).
  MetricsRegistry* metrics = nullptr;
  // Serves Hello; nullptr: Hello is kUnavailable ("data path not enabled").
  DataPathHandshake* handshake = nullptr;
  // Cluster mode: fills the cluster fields of a Status response.
  std::function<void(kvdepot::v1::StatusResponse*)> cluster_status;
  // Cluster mode: serves a Drain with move_to_owners. Copies every chunk of
  // this node (writes already stopped) to its `replicas` owners among the
  // other nodes, counting in `progress` and calling `report` as it goes;
  // `report` returning false means the caller went away: stop with
  // kCancelled. Unset: such a Drain is kFailedPrecondition.
  std::function<absl::Status(int replicas, kvdepot::v1::DrainProgress* progress,
                             const std::function<bool()>& report)>
      move_chunks;
};

class DrainStream;

// Request limits of the admin RPCs.
inline constexpr uint32_t kDefaultListPageSize = 100;
inline constexpr uint32_t kMaxListPageSize = 1000;
inline constexpr int kMaxEvictKeys = 1000;

class ControlService final : public kvdepot::v1::Control::Service {
 public:
  ControlService(StoreEngine* engine, NodeInfo info, Clock* clock,
                 ControlServiceOptions options = {});
  ~ControlService() override;

  ::grpc::Status Status(::grpc::ServerContext* context,
                        const kvdepot::v1::StatusRequest* request,
                        kvdepot::v1::StatusResponse* response) override;
  ::grpc::Status Stats(::grpc::ServerContext* context,
                       const kvdepot::v1::StatsRequest* request,
                       kvdepot::v1::StatsResponse* response) override;
  ::grpc::Status Hello(::grpc::ServerContext* context,
                       const kvdepot::v1::HelloRequest* request,
                       kvdepot::v1::HelloResponse* response) override;

  // Admin RPCs (control_admin.cc; Drain in control_drain.cc).
  ::grpc::Status ListChunks(::grpc::ServerContext* context,
                            const kvdepot::v1::ListChunksRequest* request,
                            kvdepot::v1::ListChunksResponse* response) override;
  ::grpc::Status Inspect(::grpc::ServerContext* context,
                         const kvdepot::v1::InspectRequest* request,
                         kvdepot::v1::InspectResponse* response) override;
  ::grpc::Status Evict(::grpc::ServerContext* context,
                       const kvdepot::v1::EvictRequest* request,
                       kvdepot::v1::EvictResponse* response) override;
  ::grpc::Status Drain(
      ::grpc::ServerContext* context, const kvdepot::v1::DrainRequest* request,
      ::grpc::ServerWriter<kvdepot::v1::DrainProgress>* writer) override;

  // The data path Hello hands over to; nullptr (the default) disables Hello
  // (kUnavailable). Not owned. REQUIRES: set before serving, or `handshake`
  // outlives every call in flight.
  void SetDataPath(DataPathHandshake* handshake) {
    handshake_.store(handshake, std::memory_order_release);
  }

  // Reported by Status from now on (e.g. HEALTH_DRAINING at shutdown).
  void SetHealth(kvdepot::v1::Health health) {
    health_.store(health, std::memory_order_relaxed);
  }
  kvdepot::v1::Health health() const {
    return health_.load(std::memory_order_relaxed);
  }

  // The bound address, once the server knows its port.
  void SetListenAddress(std::string address) ABSL_LOCKS_EXCLUDED(mu_);
  // Reported by Status as health_detail from now on; empty clears it.
  void SetHealthDetail(std::string detail) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  absl::Duration Uptime() const;
  // The token check of one call; `rpc` is e.g. "Control.Evict".
  absl::Status Authorize(::grpc::ServerContext* context, Access need,
                         absl::string_view rpc);
  // The two kinds of Drain, after writes stopped; fill `progress` but for
  // `done`. kCancelled when the caller went away.
  absl::Status MakeDurable(const std::string& peer,
                           kvdepot::v1::DrainProgress* progress,
                           DrainStream& stream);
  absl::Status MoveToOwners(const std::string& peer, int replicas,
                            kvdepot::v1::DrainProgress* progress,
                            DrainStream& stream);

  StoreEngine* const engine_;
  const NodeInfo info_;
  Clock* const clock_;
  absl::Mutex mu_;
  std::string listen_address_ ABSL_GUARDED_BY(mu_);
  std::string health_detail_ ABSL_GUARDED_BY(mu_);
  std::atomic<kvdepot::v1::Health> health_{kvdepot::v1::HEALTH_SERVING};
  std::unique_ptr<MetricsRegistry> own_metrics_;  // when none was given
  std::unique_ptr<Authenticator> auth_;
  std::atomic<DataPathHandshake*> handshake_{nullptr};
  std::atomic<bool> drain_running_{false};
  const std::function<void(kvdepot::v1::StatusResponse*)> cluster_status_;
  const decltype(ControlServiceOptions::move_chunks) move_chunks_;
};

}  // namespace kvd

#endif  // KVDEPOT_STORE_SERVER_CONTROL_SERVICE_H_
