// ControlClient: a blocking client for kvdepot.v1.Control with a per-call
// deadline, returning absl::Status (converted by FromGrpcStatus).
//
// Outcomes of each call: the response; kUnavailable when the node cannot be
// reached (refused, unresolvable, down); kDeadlineExceeded when it did not
// answer within the deadline; otherwise the node's own status. Messages name
// the RPC and the address.
//
// Every call carries the channel's token (ControlChannel::Authorize); the
// admin RPCs fail with kUnauthenticated / kPermissionDenied without the admin
// token. Drain has no deadline: it ends when the node has made every chunk
// durable or moved it (or gave up), or when the process is interrupted.
//
// Thread safety: calls may be made concurrently (gRPC stubs are
// thread-safe).
#ifndef KVDEPOT_STORE_CLI_CONTROL_CLIENT_H_
#define KVDEPOT_STORE_CLI_CONTROL_CLIENT_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "store/client/control_channel.h"
#include "store/proto/kvdepot.grpc.pb.h"

namespace kvd {

class ControlClient {
 public:
  // kInvalidArgument when `address` is not HOST:PORT or `deadline` is not
  // positive. Creates the channel lazily: nothing connects until a call.
  static absl::StatusOr<std::unique_ptr<ControlClient>> Create(
      std::string address, absl::Duration deadline);
  // The same, over TLS and with a token as `options` say (options.address is
  // the node). kInvalidArgument as ControlChannel::Create.
  static absl::StatusOr<std::unique_ptr<ControlClient>> Create(
      const ControlChannelOptions& options, absl::Duration deadline);

  absl::StatusOr<kvdepot::v1::StatusResponse> Status();
  absl::StatusOr<kvdepot::v1::StatsResponse> Stats();
  absl::StatusOr<kvdepot::v1::ListChunksResponse> ListChunks(
      const kvdepot::v1::ListChunksRequest& request);
  absl::StatusOr<kvdepot::v1::InspectResponse> Inspect(const std::string& key);
  absl::StatusOr<kvdepot::v1::EvictResponse> Evict(
      const std::vector<std::string>& keys);
  // Calls `progress` for every message the node streams; OK once the stream
  // ended normally (the last message has done = true).
  absl::Status Drain(
      const kvdepot::v1::DrainRequest& request,
      const std::function<void(const kvdepot::v1::DrainProgress&)>& progress);

  const std::string& address() const { return channel_.address(); }

 private:
  ControlClient(ControlChannel channel, absl::Duration deadline);

  const ControlChannel channel_;
  const absl::Duration deadline_;
  std::unique_ptr<kvdepot::v1::Control::Stub> stub_;
};

}  // namespace kvd

#endif  // KVDEPOT_STORE_CLI_CONTROL_CLIENT_H_
