// DataPathHandshake: what the control service calls for Hello, after it has
// checked the caller's data token. Implemented by the node's DataServer.
#ifndef KVDEPOT_STORE_SERVER_DATA_PATH_HANDSHAKE_H_
#define KVDEPOT_STORE_SERVER_DATA_PATH_HANDSHAKE_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "store/proto/kvdepot.pb.h"

namespace kvd {

class DataPathHandshake {
 public:
  virtual ~DataPathHandshake() = default;
  // `peer` is the caller's address as gRPC reports it, for logs.
  virtual absl::StatusOr<kvdepot::v1::HelloResponse> Hello(
      const kvdepot::v1::HelloRequest& request, absl::string_view peer) = 0;
};

}  // namespace kvd

#endif  // KVDEPOT_STORE_SERVER_DATA_PATH_HANDSHAKE_H_
