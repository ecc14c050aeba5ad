// ControlService: the node's implementation of kvdepot.v1.Control
// (store/proto/kvdepot.proto) on top of a StoreEngine.
//
// Thread safety: gRPC calls the RPC methods concurrently from its threads;
// they read immutable NodeInfo, an atomic health value, the listen address
// (under a mutex: it is known only once the server has bound its port) and
// StoreEngine::Stats() (itself thread-safe).
//
// Ownership: the service does not own the engine or the clock. REQUIRES:
// both outlive the service, and the gRPC server that hosts the service is
// shut down (Server::Shutdown + Wait) before either is destroyed.
#ifndef KVDEPOT_STORE_SERVER_CONTROL_SERVICE_H_
#define KVDEPOT_STORE_SERVER_CONTROL_SERVICE_H_

#include <atomic>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/clock.h"
#include "store/engine/store_engine.h"
#include "store/proto/kvdepot.grpc.pb.h"
#include "store/server/data_path_handshake.h"

namespace kvd {

// What the node knows about itself at start.
struct NodeInfo {
  std::string node_id;
  std::string version;
  std::string listen_address;  // as configured; see SetListenAddress
  kvdepot::v1::Mode mode = kvdepot::v1::MODE_STANDALONE;
  absl::Time start_time;
};

// Fills `out` from engine figures: one TierStats per tier, hottest first,
// and every counter of StoreStats. `uptime` goes to out->uptime_ms.
void StoreStatsToProto(const StoreStats& stats, absl::Duration uptime,
                       kvdepot::v1::StatsResponse* out);

kvdepot::v1::Tier TierToProto(TierKind kind);

class ControlService final : public kvdepot::v1::Control::Service {
 public:
  ControlService(StoreEngine* engine, NodeInfo info, Clock* clock);

  ::grpc::Status Status(::grpc::ServerContext* context,
                        const kvdepot::v1::StatusRequest* request,
                        kvdepot::v1::StatusResponse* response) override;
  ::grpc::Status Stats(::grpc::ServerContext* context,
                       const kvdepot::v1::StatsRequest* request,
                       kvdepot::v1::StatsResponse* response) override;
  ::grpc::Status Hello(::grpc::ServerContext* context,
                       const kvdepot::v1::HelloRequest* request,
                       kvdepot::v1::HelloResponse* response) override;

  // The data path Hello hands over to (null: UNAVAILABLE). Set before the
  // server starts; not owned, must outlive the service.
  void SetDataPath(DataPathHandshake* handshake) { data_path_ = handshake; }

  // Reported by Status from now on (e.g. HEALTH_DRAINING at shutdown).
  void SetHealth(kvdepot::v1::Health health) {
    health_.store(health, std::memory_order_relaxed);
  }
  kvdepot::v1::Health health() const {
    return health_.load(std::memory_order_relaxed);
  }

  // The bound address, once the server knows its port.
  void SetListenAddress(std::string address) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  absl::Duration Uptime() const;

  StoreEngine* const engine_;
  const NodeInfo info_;
  Clock* const clock_;
  absl::Mutex mu_;
  std::string listen_address_ ABSL_GUARDED_BY(mu_);
  DataPathHandshake* data_path_ = nullptr;
  std::atomic<kvdepot::v1::Health> health_{kvdepot::v1::HEALTH_SERVING};
};

}  // namespace kvd

#endif  // KVDEPOT_STORE_SERVER_CONTROL_SERVICE_H_
