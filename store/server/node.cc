#include "store/server/node.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/memory/memory.h"
#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "grpcpp/grpcpp.h"
#include "spdlog/spdlog.h"
#include "store/proto/data_wire.h"
#include "store/proto/tls_files.h"
#include "store/server/chunk_mover.h"
#include "transfer/ucx/ucx_transport.h"

#ifndef KVD_VERSION
#define KVD_VERSION "unknown"
#endif

namespace kvd {
namespace {

constexpr int kMaxControlMessageBytes = 4 << 20;

// Plaintext, or TLS from the configured PEM files (client certificates
// required and verified when tls.client_ca is set).
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(
    const NodeSettings& s) {
  if (s.tls_cert.empty()) return grpc::InsecureServerCredentials();
  KVD_ASSIGN_OR_RETURN(std::string cert, ReadPemFile("tls.cert", s.tls_cert));
  KVD_ASSIGN_OR_RETURN(std::string key, ReadPemFile("tls.key", s.tls_key));
  grpc::SslServerCredentialsOptions options(
      s.tls_client_ca.empty()
          ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
          : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  if (!s.tls_client_ca.empty()) {
    KVD_ASSIGN_OR_RETURN(options.pem_root_certs,
                         ReadPemFile("tls.client_ca", s.tls_client_ca));
  }
  options.pem_key_cert_pairs.push_back({std::move(key), std::move(cert)});
  return grpc::SslServerCredentials(options);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Node>> Node::Start(const NodeSettings& settings,
                                                  Clock* clock) {
  if (clock == nullptr) clock = Clock::Real();
  KVD_RETURN_IF_ERROR(ValidateListenAddress("node.listen", settings.listen));
  if (!settings.metrics_listen.empty()) {
    KVD_RETURN_IF_ERROR(
        ValidateListenAddress("metrics.listen", settings.metrics_listen));
  }
  KVD_RETURN_IF_ERROR(ValidateSecuritySettings(settings));
  KVD_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                       ServerCredentials(settings));
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
  node->info_.mode = settings.cluster.name.empty()
                         ? kvdepot::v1::MODE_STANDALONE
                         : kvdepot::v1::MODE_CLUSTER;
  node->info_.cluster = settings.cluster.name;
  node->info_.start_time = clock->Now();
  if (!settings.cluster.name.empty()) {
    KVD_RETURN_IF_ERROR(node->StartMembership(settings.cluster));
  }
  KVD_ASSIGN_OR_RETURN(
      node->store_metrics_,
      StoreMetrics::Create(&node->metrics_, node->engine_.get()));
  KVD_ASSIGN_OR_RETURN(
      GaugeFamily * node_info,
      node->metrics_.AddGaugeFamily("kvdepot_node_info",
                                    "Identity of the node (always 1).",
                                    {"node_id", "version"}));
  KVD_ASSIGN_OR_RETURN(Gauge * info_gauge,
                       node_info->WithLabels({settings.node_id, KVD_VERSION}));
  info_gauge->Set(1);

  ControlServiceOptions service_options;
  service_options.auth = {settings.data_token, settings.admin_token,
                          settings.allow_no_token};
  service_options.metrics = &node->metrics_;
  if (node->membership_ != nullptr) {
    service_options.cluster_status =
        [raw = node.get()](kvdepot::v1::StatusResponse* out) {
          std::shared_ptr<const cluster::MembershipView> view =
              raw->membership_->view();
          out->set_placement_epoch(view->placement_epoch);
          if (view->placement) {
            out->set_placement_fingerprint(view->placement->fingerprint());
          }
          out->set_cluster_nodes(view->nodes.size());
          out->set_membership_live(view->live);
          absl::MutexLock lock(&raw->registrar_mu_);
          out->set_registered(raw->registrar_ != nullptr &&
                              raw->registrar_->registered());
        };
    service_options.move_chunks =
        [raw = node.get()](int replicas, kvdepot::v1::DrainProgress* progress,
                           const std::function<bool()>& report) {
          return raw->MoveChunks(replicas, progress, report);
        };
    node->peers_ = {.cluster = settings.cluster.name,
                    .etcd = settings.cluster.etcd,
                    .node = {.token = settings.data_token,
                             .tls_ca = settings.tls_client_ca,
                             .tls_cert = settings.tls_cert,
                             .tls_key = settings.tls_key,
                             .ucx_tls = settings.ucx_tls,
                             .timeout = settings.request_timeout}};
  }
  node->service_ = std::make_unique<ControlService>(
      node->engine_.get(), node->info_, clock, service_options);

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
  builder.AddListeningPort(settings.listen, credentials, &selected_port);
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
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on node.listen=", settings.listen,
        settings.tls_cert.empty()
            ? " (address in use, not local, or not permitted)"
            : " (address in use, not local, not permitted, or the TLS "
              "certificate and key were rejected)"));
  }
  node->port_ = selected_port;
  absl::string_view host =
      absl::string_view(settings.listen).substr(0, settings.listen.rfind(':'));
  node->address_ = absl::StrCat(host, ":", selected_port);
  node->info_.listen_address = node->address_;
  node->service_->SetListenAddress(node->address_);

  if (!settings.metrics_listen.empty()) {
    Node* raw = node.get();
    absl::StatusOr<std::unique_ptr<MetricsHttpServer>> http =
        MetricsHttpServer::Start("metrics.listen", settings.metrics_listen,
                                 [raw] {
                                   raw->store_metrics_->Refresh();
                                   return raw->metrics_.RenderText();
                                 });
    if (!http.ok()) {
      node->Shutdown(absl::ZeroDuration()).IgnoreError();
      return http.status();
    }
    node->metrics_http_ = std::move(http).value();
    node->metrics_port_ = node->metrics_http_->port();
  }
  if (node->membership_ != nullptr) {
    if (absl::Status s = node->StartRegistration(settings.cluster); !s.ok()) {
      node->Shutdown(absl::ZeroDuration()).IgnoreError();
      return s;
    }
  }
  return node;
}

absl::Status Node::StartMembership(const ClusterSettings& settings) {
  KVD_ASSIGN_OR_RETURN(
      etcd_, cluster::EtcdClient::Create({.endpoints = settings.etcd}));
  membership_ =
      std::make_unique<cluster::MembershipWatcher>(etcd_.get(), settings.name);
  return absl::OkStatus();
}

absl::Status Node::StartRegistration(const ClusterSettings& settings) {
  std::string advertise = settings.advertise;
  if (advertise.empty()) {
    absl::string_view host =
        absl::string_view(address_).substr(0, address_.rfind(':'));
    if (host == "0.0.0.0" || host == "[::]") {
      return absl::InvalidArgumentError(
          absl::StrCat("node.listen=", address_,
                       " is a wildcard address other nodes cannot dial: set "
                       "cluster.advertise"));
    }
    advertise = address_;
  }
  uint32_t weight = settings.weight;
  if (weight == 0) {
    const StoreStats stats = engine_->Stats();
    uint64_t bytes = 0;
    for (const TierUsage& t : stats.tiers) bytes += t.capacity_bytes;
    weight = static_cast<uint32_t>(std::max<uint64_t>(1, bytes >> 30));
  }
  KVD_ASSIGN_OR_RETURN(
      std::unique_ptr<cluster::Registrar> registrar,
      cluster::Registrar::Start(
          etcd_.get(),
          {.cluster = settings.name,
           .node_id = info_.node_id,
           .ttl = settings.heartbeat_ttl,
           .refresh = std::max(settings.heartbeat_ttl, absl::Seconds(10)),
           .record = [this, advertise, weight] {
             return MakeRecord(advertise, weight);
           }}));
  absl::MutexLock lock(&registrar_mu_);
  registrar_ = std::move(registrar);
  return absl::OkStatus();
}

absl::Status Node::MoveChunks(int replicas,
                              kvdepot::v1::DrainProgress* progress,
                              const std::function<bool()>& report) {
  {
    absl::MutexLock lock(&registrar_mu_);
    if (registrar_ == nullptr) {
      return absl::UnavailableError("the node is not registered in etcd");
    }
    registrar_->Refresh();  // the record now says HEALTH_DRAINING
  }
  // Readers must see the drain before chunks move, or they would look for
  // the moved chunks here.
  constexpr absl::Duration kAnnounceTimeout = absl::Seconds(10);
  const absl::Time give_up = absl::Now() + kAnnounceTimeout;
  auto announced = [&] {
    for (const kvdepot::v1::NodeRecord& n : membership_->view()->nodes) {
      if (n.node_id() == info_.node_id) {
        return n.health() == kvdepot::v1::HEALTH_DRAINING;
      }
    }
    return false;
  };
  while (!announced()) {
    if (absl::Now() > give_up) {
      return absl::UnavailableError(absl::StrCat(
          "etcd did not show this node draining within ",
          absl::FormatDuration(kAnnounceTimeout), "; nothing was moved"));
    }
    if (!report()) return absl::CancelledError("caller went away");
    absl::SleepFor(absl::Milliseconds(20));
  }
  cluster::ClusterClientOptions options = peers_;
  options.replicas = replicas;
  KVD_ASSIGN_OR_RETURN(std::unique_ptr<cluster::ClusterClient> peers,
                       cluster::ClusterClient::Connect(std::move(options)));
  return MoveChunksToOwners(engine_.get(), peers.get(), progress, report);
}

kvdepot::v1::NodeRecord Node::MakeRecord(const std::string& advertise,
                                         uint32_t weight) const {
  kvdepot::v1::NodeRecord r;
  r.set_node_id(info_.node_id);
  r.set_control_address(advertise);
  r.set_weight(weight);
  r.set_worker_address(data_->worker_address());
  for (const std::string& t : data_->transport_info().transports) {
    r.add_transports(t);
  }
  kvdepot::v1::StatsResponse stats;
  StoreStatsToProto(engine_->Stats(), absl::ZeroDuration(), &stats);
  *r.mutable_tiers() = stats.tiers();
  r.set_chunks(stats.chunks());
  r.set_health(service_->health());
  r.set_version(info_.version);
  r.set_start_time_unix_ms(absl::ToUnixMillis(info_.start_time));
  r.set_heartbeat_unix_ms(absl::ToUnixMillis(absl::Now()));
  return r;
}

absl::Status Node::Shutdown(absl::Duration grace) {
  if (shut_down_) return absl::OkStatus();
  shut_down_ = true;
  std::unique_ptr<cluster::Registrar> registrar;
  {
    absl::MutexLock lock(&registrar_mu_);
    registrar = std::move(registrar_);
  }
  if (registrar != nullptr) {
    // Leave the membership first: clients stop sending here at once.
    if (absl::Status s = registrar->Leave(); !s.ok()) {
      spdlog::warn(
          "cluster: could not revoke the lease ({}); the record "
          "expires with it",
          s.ToString());
    }
    registrar.reset();
  }
  if (server_ != nullptr) {
    service_->SetHealth(kvdepot::v1::HEALTH_DRAINING);
    // Stops accepting at once; in-flight RPCs get until the deadline.
    server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
    server_->Wait();
  }
  if (metrics_http_ != nullptr) metrics_http_->Stop();
  data_.reset();  // closes sessions; releases reservations and pins
  if (engine_ == nullptr) return absl::OkStatus();
  return Annotate(engine_->Sync(), "sync store engine");
}

Node::~Node() {
  if (!shut_down_) Shutdown(absl::ZeroDuration()).IgnoreError();
}

}  // namespace kvd
