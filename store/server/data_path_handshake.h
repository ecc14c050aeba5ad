// DataPathHandshake: the seam between the Control service's Hello RPC and the
// node's data path (DESIGN.md §3.4). ControlService authenticates the call
// (data or admin token) and then hands the request here; the data path checks
// the protocol version, registers the client's UCX worker and opens a
// session.
//
// Thread safety: Hello is called concurrently from gRPC threads.
// Ownership: ControlService does not own it. REQUIRES: it outlives the gRPC
// server hosting the service (Server::Shutdown + Wait come first).
#ifndef KVDEPOT_STORE_SERVER_DATA_PATH_HANDSHAKE_H_
#define KVDEPOT_STORE_SERVER_DATA_PATH_HANDSHAKE_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "store/proto/kvdepot.pb.h"

namespace kvd {

class DataPathHandshake {
 public:
  virtual ~DataPathHandshake() = default;

  // `peer` is gRPC's name of the caller, e.g. "ipv4:10.0.0.5:51234", for logs.
  // Returns the response to send, or a status that goes to the client as is
  // (kInvalidArgument naming the field for a bad request, kFailedPrecondition
  // for a protocol version the node does not speak, kUnavailable when the
  // data path cannot take a session now).
  virtual absl::StatusOr<kvdepot::v1::HelloResponse> Hello(
      const kvdepot::v1::HelloRequest& request, absl::string_view peer) = 0;
};

}  // namespace kvd

#endif  // KVDEPOT_STORE_SERVER_DATA_PATH_HANDSHAKE_H_
