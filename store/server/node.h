// Node: one running kvdepot-node in standalone mode: a StoreEngine plus the
// gRPC server hosting ControlService.
//
// Lifecycle:  Start() -> serving -> Shutdown() -> destroyed.
//   Start    opens the engine (recovering the SSD tier), binds the listen
//            address and starts serving. kInvalidArgument for bad options,
//            kUnavailable when the address cannot be bound, engine codes for
//            I/O failures; nothing keeps running on failure.
//   Shutdown reports HEALTH_DRAINING, stops accepting RPCs, lets in-flight
//            RPCs finish for up to `grace` (then cancels them), waits for the
//            server's threads, and Syncs the engine so the SSD state is
//            durable. Returns the Sync status. Idempotent; the destructor
//            calls it if the owner did not.
//
// Thread safety: port(), address() and info() may be called from any thread;
// Shutdown() from one thread at a time.
#ifndef KVDEPOT_STORE_SERVER_NODE_H_
#define KVDEPOT_STORE_SERVER_NODE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/clock.h"
#include "core/metrics.h"
#include "store/engine/store_engine.h"
#include "store/server/control_service.h"
#include "store/server/data_server.h"
#include "store/server/node_config.h"

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
  // The node's metrics, rendered at /metrics.
  MetricsRegistry* metrics() { return &metrics_; }

  absl::Status Shutdown(absl::Duration grace);

 private:
  Node() = default;

  NodeInfo info_;
  int port_ = 0;
  std::string address_;
  bool shut_down_ = false;
  // Destruction order matters: server before service before data path
  // before engine.
  MetricsRegistry metrics_;
  std::unique_ptr<StoreEngine> engine_;
  std::unique_ptr<DataServer> data_;
  std::unique_ptr<ControlService> service_;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace kvd

#endif  // KVDEPOT_STORE_SERVER_NODE_H_
