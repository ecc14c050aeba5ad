#include "store/cli/control_client.h"

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "store/proto/grpc_status.h"

namespace kvd {
namespace {

// A call's outcome as a Status; names the RPC and the node.
template <typename Response, typename Call>
absl::StatusOr<Response> Invoke(const std::string& address,
                                absl::Duration deadline, absl::string_view rpc,
                                Call call) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  Response response;
  grpc::Status status = call(&context, &response);
  if (!status.ok()) {
    return FromGrpcStatus(status,
                          absl::StrCat("Control.", rpc, " on ", address));
  }
  return response;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ControlClient>> ControlClient::Create(
    std::string address, absl::Duration deadline) {
  size_t colon = address.rfind(':');
  uint32_t port = 0;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(absl::string_view(address).substr(colon + 1), &port) ||
      port == 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--node=\"", address, "\" is not HOST:PORT with a port in 1..65535"));
  }
  if (deadline <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--timeout=", absl::FormatDuration(deadline), " must be positive"));
  }
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  return std::unique_ptr<ControlClient>(new ControlClient(
      std::move(address), deadline, kvdepot::v1::Control::NewStub(channel)));
}

ControlClient::ControlClient(std::string address, absl::Duration deadline,
                             std::unique_ptr<kvdepot::v1::Control::Stub> stub)
    : address_(std::move(address)),
      deadline_(deadline),
      stub_(std::move(stub)) {}

absl::StatusOr<kvdepot::v1::StatusResponse> ControlClient::Status() {
  return Invoke<kvdepot::v1::StatusResponse>(
      address_, deadline_, "Status",
      [&](grpc::ClientContext* context, kvdepot::v1::StatusResponse* response) {
        return stub_->Status(context, kvdepot::v1::StatusRequest(), response);
      });
}

absl::StatusOr<kvdepot::v1::StatsResponse> ControlClient::Stats() {
  return Invoke<kvdepot::v1::StatsResponse>(
      address_, deadline_, "Stats",
      [&](grpc::ClientContext* context, kvdepot::v1::StatsResponse* response) {
        return stub_->Stats(context, kvdepot::v1::StatsRequest(), response);
      });
}

}  // namespace kvd
