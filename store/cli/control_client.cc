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
absl::StatusOr<Response> Invoke(const ControlChannel& channel,
                                absl::Duration deadline, absl::string_view rpc,
                                Call call) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  channel.Authorize(&context);
  Response response;
  grpc::Status status = call(&context, &response);
  if (!status.ok()) {
    return FromGrpcStatus(
        status, absl::StrCat("Control.", rpc, " on ", channel.address()));
  }
  return response;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ControlClient>> ControlClient::Create(
    std::string address, absl::Duration deadline) {
  ControlChannelOptions options;
  options.address = std::move(address);
  return Create(options, deadline);
}

absl::StatusOr<std::unique_ptr<ControlClient>> ControlClient::Create(
    const ControlChannelOptions& options, absl::Duration deadline) {
  const std::string& address = options.address;
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
  absl::StatusOr<ControlChannel> channel = ControlChannel::Create(options);
  if (!channel.ok()) return channel.status();
  return std::unique_ptr<ControlClient>(
      new ControlClient(*std::move(channel), deadline));
}

ControlClient::ControlClient(ControlChannel channel, absl::Duration deadline)
    : channel_(std::move(channel)),
      deadline_(deadline),
      stub_(kvdepot::v1::Control::NewStub(channel_.channel())) {}

absl::StatusOr<kvdepot::v1::StatusResponse> ControlClient::Status() {
  return Invoke<kvdepot::v1::StatusResponse>(
      channel_, deadline_, "Status",
      [&](grpc::ClientContext* context, kvdepot::v1::StatusResponse* response) {
        return stub_->Status(context, kvdepot::v1::StatusRequest(), response);
      });
}

absl::StatusOr<kvdepot::v1::StatsResponse> ControlClient::Stats() {
  return Invoke<kvdepot::v1::StatsResponse>(
      channel_, deadline_, "Stats",
      [&](grpc::ClientContext* context, kvdepot::v1::StatsResponse* response) {
        return stub_->Stats(context, kvdepot::v1::StatsRequest(), response);
      });
}

absl::StatusOr<kvdepot::v1::ListChunksResponse> ControlClient::ListChunks(
    const kvdepot::v1::ListChunksRequest& request) {
  return Invoke<kvdepot::v1::ListChunksResponse>(
      channel_, deadline_, "ListChunks",
      [&](grpc::ClientContext* context,
          kvdepot::v1::ListChunksResponse* response) {
        return stub_->ListChunks(context, request, response);
      });
}

absl::StatusOr<kvdepot::v1::InspectResponse> ControlClient::Inspect(
    const std::string& key) {
  kvdepot::v1::InspectRequest request;
  request.set_key(key);
  return Invoke<kvdepot::v1::InspectResponse>(
      channel_, deadline_, "Inspect",
      [&](grpc::ClientContext* context,
          kvdepot::v1::InspectResponse* response) {
        return stub_->Inspect(context, request, response);
      });
}

absl::StatusOr<kvdepot::v1::EvictResponse> ControlClient::Evict(
    const std::vector<std::string>& keys) {
  kvdepot::v1::EvictRequest request;
  for (const std::string& key : keys) request.add_keys(key);
  return Invoke<kvdepot::v1::EvictResponse>(
      channel_, deadline_, "Evict",
      [&](grpc::ClientContext* context, kvdepot::v1::EvictResponse* response) {
        return stub_->Evict(context, request, response);
      });
}

absl::Status ControlClient::Drain(
    const kvdepot::v1::DrainRequest& request,
    const std::function<void(const kvdepot::v1::DrainProgress&)>& progress) {
  grpc::ClientContext context;
  channel_.Authorize(&context);
  std::unique_ptr<grpc::ClientReader<kvdepot::v1::DrainProgress>> reader =
      stub_->Drain(&context, request);
  kvdepot::v1::DrainProgress message;
  while (reader->Read(&message)) progress(message);
  grpc::Status status = reader->Finish();
  if (!status.ok()) {
    return FromGrpcStatus(status, absl::StrCat("Control.Drain on ", address()));
  }
  return absl::OkStatus();
}

}  // namespace kvd
