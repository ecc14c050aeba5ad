// ControlClient: a blocking client for kvdepot.v1.Control with a per-call
// deadline, returning absl::Status (converted by FromGrpcStatus).
//
// Outcomes of each call: the response; kUnavailable when the node cannot be
// reached (refused, unresolvable, down); kDeadlineExceeded when it did not
// answer within the deadline; otherwise the node's own status. Messages name
// the RPC and the address.
//
// Thread safety: calls may be made concurrently (gRPC stubs are
// thread-safe).
#ifndef KVDEPOT_STORE_CLI_CONTROL_CLIENT_H_
#define KVDEPOT_STORE_CLI_CONTROL_CLIENT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "store/proto/kvdepot.grpc.pb.h"

namespace kvd {

class ControlClient {
 public:
  // kInvalidArgument when `address` is not HOST:PORT or `deadline` is not
  // positive. Creates the channel lazily: nothing connects until a call.
  static absl::StatusOr<std::unique_ptr<ControlClient>> Create(
      std::string address, absl::Duration deadline);

  absl::StatusOr<kvdepot::v1::StatusResponse> Status();
  absl::StatusOr<kvdepot::v1::StatsResponse> Stats();

  const std::string& address() const { return address_; }

 private:
  ControlClient(std::string address, absl::Duration deadline,
                std::unique_ptr<kvdepot::v1::Control::Stub> stub);

  const std::string address_;
  const absl::Duration deadline_;
  std::unique_ptr<kvdepot::v1::Control::Stub> stub_;
};

}  // namespace kvd

#endif  // KVDEPOT_STORE_CLI_CONTROL_CLIENT_H_
