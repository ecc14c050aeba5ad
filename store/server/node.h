// Node: one running kvdepot-node: a StoreEngine, the gRPC server hosting
// ControlService (plaintext or TLS, with client certificates when
// tls.client_ca is set), the UCX data path, and the Prometheus /metrics
// endpoint. In cluster mode (settings.cluster.name set) it also registers in
// etcd (cluster/membership.h: a record with its addresses, weight and tier
// usage under a lease it renews) and follows the membership, which Status
// reports; Shutdown revokes the lease first, so the node leaves at once.
//
// Lifecycle:  Start() -> serving -> Shutdown() -> destroyed.
//   Start    checks the settings (ValidateSecuritySettings), reads the TLS
//            files, opens the engine (recovering the SSD tier), binds the
//            listen address and the metrics address and starts serving.
//            kInvalidArgument for bad settings or unreadable TLS files (the
//            message names the key), kUnavailable when an address cannot be
//            bound, engine codes for I/O failures; nothing keeps running on
//            failure.
//   Shutdown reports HEALTH_DRAINING, stops accepting RPCs, lets in-flight
//            RPCs finish for up to `grace` (then cancels them), waits for the
//            server's threads, stops the metrics endpoint, and Syncs the
//            engine so the SSD state is durable. Returns the Sync status.
//            Idempotent; the destructor calls it if the owner did not.
//
// Metrics: the node owns one MetricsRegistry (metrics()). It holds the
// engine's figures (store/server/store_metrics.h, refreshed per scrape),
// kvdepot_auth_failures_total and kvdepot_node_info; other parts of the node
// (the data path) register their own families in it.
//
// Thread safety: port(), address(), metrics_port(), info() and metrics() may
// be called from any thread; Shutdown() from one thread at a time.
#ifndef KVDEPOT_STORE_SERVER_NODE_H_
#define KVDEPOT_STORE_SERVER_NODE_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "cluster/cluster_client.h"
#include "cluster/etcd_client.h"
#include "cluster/membership.h"
#include "core/clock.h"
#include "core/metrics.h"
#include "store/engine/store_engine.h"
#include "store/server/control_service.h"
#include "store/server/data_server.h"
#include "store/server/metrics_http.h"
#include "store/server/node_config.h"
#include "store/server/store_metrics.h"

namespace grpc {
class Server;
}  // namespace grpc

namespace kvd {

class Node {
 public:
  // `clock` defaults to Clock::Real(); not owned, must outlive the node.
  static absl::StatusOr<std::unique_ptr<Node>> Start(
      const NodeSettings& settings, Clock* clock = nullptr);

  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // The bound port (the chosen one when node.listen asked for port 0).
  int port() const { return port_; }
  // node.listen with the bound port, e.g. "127.0.0.1:41234".
  const std::string& address() const { return address_; }
  const NodeInfo& info() const { return info_; }
  StoreEngine* engine() { return engine_.get(); }
  ControlService* control_service() { return service_.get(); }
  // The node's registry; valid for the node's lifetime. Register families at
  // start, not per request.
  MetricsRegistry* metrics() { return &metrics_; }
  // The bound port of /metrics; 0 when metrics.listen is empty.
  int metrics_port() const { return metrics_port_; }

  absl::Status Shutdown(absl::Duration grace);

  // Cluster mode: the membership this node follows; nullptr standalone.
  cluster::MembershipWatcher* membership() { return membership_.get(); }

 private:
  Node() = default;
  // Cluster mode: follows the membership (before the service exists).
  absl::Status StartMembership(const ClusterSettings& settings);
  // Cluster mode: registers, once the address is bound.
  absl::Status StartRegistration(const ClusterSettings& settings);
  kvdepot::v1::NodeRecord MakeRecord(const std::string& advertise,
                                     uint32_t weight) const;
  // Cluster mode: the move_to_owners Drain (ControlServiceOptions::
  // move_chunks). Announces the drain in the membership record, waits until
  // etcd shows it, then moves every chunk (store/server/chunk_mover.h).
  absl::Status MoveChunks(int replicas, kvdepot::v1::DrainProgress* progress,
                          const std::function<bool()>& report);

  NodeInfo info_;
  int port_ = 0;
  std::string address_;
  int metrics_port_ = 0;
  bool shut_down_ = false;
  // Destruction order matters (reverse of declaration): the metrics endpoint
  // and the server go before the service, the data path, the store metrics
  // and the engine; the registry goes last.
  MetricsRegistry metrics_;
  std::unique_ptr<StoreEngine> engine_;
  std::unique_ptr<StoreMetrics> store_metrics_;
  std::unique_ptr<DataServer> data_;
  std::unique_ptr<ControlService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<MetricsHttpServer> metrics_http_;
  // Cluster mode only. The registrar reads the engine, the data path and the
  // service, so it goes first.
  std::unique_ptr<cluster::EtcdClient> etcd_;
  std::unique_ptr<cluster::MembershipWatcher> membership_;
  // How a drain reaches the other nodes: this node's etcd endpoints and data
  // token; TLS with its own certificate, trusting tls.client_ca.
  cluster::ClusterClientOptions peers_;
  // Set once the address is bound; RPCs read it, Shutdown takes it.
  mutable absl::Mutex registrar_mu_;
  std::unique_ptr<cluster::Registrar> registrar_ ABSL_GUARDED_BY(registrar_mu_);
};

}  // namespace kvd

#endif  // KVDEPOT_STORE_SERVER_NODE_H_
