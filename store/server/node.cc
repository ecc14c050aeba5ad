#include "store/server/node.h"

#include <chrono>
#include <utility>

#include "absl/memory/memory.h"
#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "grpcpp/grpcpp.h"
#include "store/proto/data_wire.h"
#include "transfer/ucx/ucx_transport.h"

#ifndef KVD_VERSION
#define KVD_VERSION "unknown"
#endif

namespace kvd {
namespace {

constexpr int kMaxControlMessageBytes = 4 << 20;

}  // namespace

absl::StatusOr<std::unique_ptr<Node>> Node::Start(const NodeSettings& settings,
                                                  Clock* clock) {
  if (clock == nullptr) clock = Clock::Real();
  KVD_RETURN_IF_ERROR(ValidateListenAddress("node.listen", settings.listen));
  auto node = absl::WrapUnique(new Node);

  StoreOptions options = settings.store;
  options.clock = clock;
  absl::StatusOr<std::unique_ptr<StoreEngine>> engine =
      StoreEngine::Create(options);
  if (!engine.ok()) return Annotate(engine.status(), "open store engine");
  node->engine_ = std::move(engine).value();

  node->info_.node_id = settings.node_id;
  node->info_.version = KVD_VERSION;
  node->info_.listen_address = settings.listen;
  node->info_.mode = kvdepot::v1::MODE_STANDALONE;
  node->info_.start_time = clock->Now();
  node->service_ =
      std::make_unique<ControlService>(node->engine_.get(), node->info_, clock);

  absl::StatusOr<std::unique_ptr<Transport>> transport = CreateUcxTransport(
      {.tls = settings.ucx_tls, .net_devices = "", .name = "kvdepot-node"});
  if (!transport.ok()) return Annotate(transport.status(), "start UCX");
  DataServerOptions data;
  data.node_id = settings.node_id;
  data.version = KVD_VERSION;
  data.host_id = wire::LocalHostId();
  data.protocol = settings.data_protocol;
  data.request_timeout = settings.request_timeout;
  data.engine_threads = settings.transfer_threads;
  absl::StatusOr<std::unique_ptr<DataServer>> data_server = DataServer::Create(
      node->engine_.get(), *std::move(transport), data, &node->metrics_);
  if (!data_server.ok()) {
    return Annotate(data_server.status(), "start the data path");
  }
  node->data_ = *std::move(data_server);
  node->service_->SetDataPath(node->data_.get());

  grpc::ServerBuilder builder;
  int selected_port = 0;
  // TLS and client certificates come with the admin RPCs (DESIGN.md §4).
  builder.AddListeningPort(settings.listen, grpc::InsecureServerCredentials(),
                           &selected_port);
  // Without this, a second node on the same port would bind silently and
  // split the traffic (gRPC sets SO_REUSEPORT by default).
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(kMaxControlMessageBytes);
  builder.RegisterService(node->service_.get());
  node->server_ = builder.BuildAndStart();
  if (node->server_ == nullptr || selected_port == 0) {
    if (node->server_ != nullptr) {
      node->server_->Shutdown();
      node->server_->Wait();
    }
    node->shut_down_ = true;
    return absl::UnavailableError(
        absl::StrCat("cannot listen on node.listen=", settings.listen,
                     " (address in use, not local, or not permitted)"));
  }
  node->port_ = selected_port;
  absl::string_view host =
      absl::string_view(settings.listen).substr(0, settings.listen.rfind(':'));
  node->address_ = absl::StrCat(host, ":", selected_port);
  node->info_.listen_address = node->address_;
  node->service_->SetListenAddress(node->address_);
  return node;
}

absl::Status Node::Shutdown(absl::Duration grace) {
  if (shut_down_) return absl::OkStatus();
  shut_down_ = true;
  if (server_ != nullptr) {
    service_->SetHealth(kvdepot::v1::HEALTH_DRAINING);
    // Stops accepting at once; in-flight RPCs get until the deadline.
    server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
    server_->Wait();
  }
  data_.reset();  // closes sessions; releases reservations and pins
  if (engine_ == nullptr) return absl::OkStatus();
  return Annotate(engine_->Sync(), "sync store engine");
}

Node::~Node() {
  if (!shut_down_) Shutdown(absl::ZeroDuration()).IgnoreError();
}

}  // namespace kvd
