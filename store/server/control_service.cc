#include "store/server/control_service.h"

#include <optional>
#include <string>
#include <utility>

#include "store/proto/grpc_status.h"

namespace kvd {

kvdepot::v1::Tier TierToProto(TierKind kind) {
  switch (kind) {
    case TierKind::kGpu:
      return kvdepot::v1::TIER_GPU;
    case TierKind::kHost:
      return kvdepot::v1::TIER_HOST;
    case TierKind::kSsd:
      return kvdepot::v1::TIER_SSD;
  }
  return kvdepot::v1::TIER_UNSPECIFIED;
}

void StoreStatsToProto(const StoreStats& stats, absl::Duration uptime,
                       kvdepot::v1::StatsResponse* out) {
  out->Clear();
  for (int i = 0; i < kNumTiers; ++i) {
    kvdepot::v1::TierStats* tier = out->add_tiers();
    tier->set_tier(TierToProto(static_cast<TierKind>(i)));
    tier->set_enabled(stats.tier_enabled[i]);
    tier->set_capacity_bytes(stats.tiers[i].capacity_bytes);
    tier->set_allocated_bytes(stats.tiers[i].allocated_bytes);
    tier->set_stored_bytes(stats.tiers[i].stored_bytes);
    tier->set_objects(stats.tiers[i].objects);
    tier->set_demotions(stats.demotions[i]);
  }
  out->set_chunks(stats.chunks);
  out->set_puts(stats.puts);
  out->set_put_bytes(stats.put_bytes);
  out->set_dedup_puts(stats.dedup_puts);
  out->set_gets(stats.gets);
  out->set_get_bytes(stats.get_bytes);
  out->set_get_hits(stats.get_hits);
  out->set_get_misses(stats.get_misses);
  out->set_lookups(stats.lookups);
  out->set_lookup_keys(stats.lookup_keys);
  out->set_lookup_hits(stats.lookup_hits);
  out->set_removes(stats.removes);
  out->set_promotions(stats.promotions);
  out->set_evictions(stats.evictions);
  out->set_corrupt_chunks(stats.corrupt_chunks);
  out->set_lease_expiries(stats.lease_expiries);
  out->set_active_leases(stats.active_leases);
  out->set_host_huge_pages(stats.host_huge_pages);
  out->set_index_meta_bytes(stats.index_meta_bytes);
  out->set_uptime_ms(absl::ToInt64Milliseconds(uptime));
}

ControlService::ControlService(StoreEngine* engine, NodeInfo info, Clock* clock,
                               ControlServiceOptions options)
    : engine_(engine),
      info_(std::move(info)),
      clock_(clock),
      listen_address_(info_.listen_address),
      handshake_(options.handshake),
      cluster_status_(std::move(options.cluster_status)),
      move_chunks_(std::move(options.move_chunks)) {
  MetricsRegistry* metrics = options.metrics;
  if (metrics == nullptr) {
    own_metrics_ = std::make_unique<MetricsRegistry>();
    metrics = own_metrics_.get();
  }
  auth_ = std::make_unique<Authenticator>(options.auth, metrics);
}

ControlService::~ControlService() = default;

void ControlService::SetListenAddress(std::string address) {
  absl::MutexLock lock(&mu_);
  listen_address_ = std::move(address);
}

void ControlService::SetHealthDetail(std::string detail) {
  absl::MutexLock lock(&mu_);
  health_detail_ = std::move(detail);
}

absl::Status ControlService::Authorize(::grpc::ServerContext* context,
                                       Access need, absl::string_view rpc) {
  std::optional<absl::string_view> authorization;
  std::string peer = "unknown";
  if (context != nullptr) {
    const auto& metadata = context->client_metadata();
    auto it = metadata.find("authorization");
    if (it != metadata.end()) {
      authorization = absl::string_view(it->second.data(), it->second.size());
    }
    peer = context->peer();
  }
  return auth_->Check(need, authorization, peer, rpc);
}

absl::Duration ControlService::Uptime() const {
  absl::Duration d = clock_->Now() - info_.start_time;
  return d < absl::ZeroDuration() ? absl::ZeroDuration() : d;
}

::grpc::Status ControlService::Status(::grpc::ServerContext* context,
                                      const kvdepot::v1::StatusRequest* request,
                                      kvdepot::v1::StatusResponse* response) {
  response->set_node_id(info_.node_id);
  response->set_version(info_.version);
  response->set_uptime_ms(absl::ToInt64Milliseconds(Uptime()));
  response->set_mode(info_.mode);
  response->set_cluster(info_.cluster);
  if (cluster_status_) cluster_status_(response);
  StoreStats stats = engine_->Stats();
  for (int i = 0; i < kNumTiers; ++i) {
    if (stats.tier_enabled[i]) {
      response->add_tiers_enabled(TierToProto(static_cast<TierKind>(i)));
    }
  }
  response->set_health(health());
  {
    absl::MutexLock lock(&mu_);
    response->set_listen_address(listen_address_);
    response->set_health_detail(health_detail_);
  }
  response->set_start_time_unix_ms(absl::ToUnixMillis(info_.start_time));
  return ToGrpcStatus(absl::OkStatus());
}

::grpc::Status ControlService::Stats(::grpc::ServerContext* context,
                                     const kvdepot::v1::StatsRequest* request,
                                     kvdepot::v1::StatsResponse* response) {
  StoreStatsToProto(engine_->Stats(), Uptime(), response);
  return ToGrpcStatus(absl::OkStatus());
}

::grpc::Status ControlService::Hello(::grpc::ServerContext* context,
                                     const kvdepot::v1::HelloRequest* request,
                                     kvdepot::v1::HelloResponse* response) {
  absl::Status allowed = Authorize(context, Access::kData, "Control.Hello");
  if (!allowed.ok()) return ToGrpcStatus(allowed);
  DataPathHandshake* handshake = handshake_.load(std::memory_order_acquire);
  if (handshake == nullptr) {
    return ToGrpcStatus(
        absl::UnavailableError("data path not enabled on this node"));
  }
  absl::StatusOr<kvdepot::v1::HelloResponse> hello =
      handshake->Hello(*request, context != nullptr ? context->peer() : "");
  if (!hello.ok()) return ToGrpcStatus(hello.status());
  *response = *std::move(hello);
  return ToGrpcStatus(absl::OkStatus());
}

}  // namespace kvd
