#include "store/server/data_server.h"

#include <openssl/rand.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "core/status.h"
#include "core/thread_pool.h"
#include "spdlog/spdlog.h"
#include "store/proto/data_wire.h"
#include "store/server/internal/data_server_impl.h"

namespace kvd {

namespace {

constexpr size_t kMaxWorkerAddressBytes = 64 << 10;

}  // namespace

absl::Status DataServer::Impl::Start(MetricsRegistry* metrics) {
  KVD_ASSIGN_OR_RETURN(pool_registration_,
                       transport_->Register(engine_->HostPool()));
  if (metrics == nullptr) {
    own_metrics_ = std::make_unique<MetricsRegistry>();
    metrics = own_metrics_.get();
  }
  KVD_RETURN_IF_ERROR(RegisterMetrics(metrics));
  transport_->SetHandler(
      wire::kRequest, [this](absl::Span<const uint8_t> h, IncomingPayload p) {
        OnRequest(h, std::move(p));
      });
  transport_->SetHandler(
      wire::kPutData, [this](absl::Span<const uint8_t> h, IncomingPayload p) {
        OnPutData(h, std::move(p));
      });
  transport_->SetTick(absl::Milliseconds(100), [this] { Sweep(); });
  return absl::OkStatus();
}

void DataServer::Impl::Shutdown() {
  absl::Notification closed;
  transport_->Post([&] {
    shutting_down_ = true;
    std::vector<SessionId> ids;
    {
      absl::MutexLock lock(&mu_);
      for (const auto& [key, s] : sessions_) {
        SessionId id;
        std::memcpy(id.data(), key.data(), id.size());
        ids.push_back(id);
      }
    }
    for (const SessionId& id : ids) EndSession(id, "node shutting down");
    closed.Notify();
  });
  closed.WaitForNotification();
  // Closing the connections cancels every transfer; wait until the requests
  // they belonged to have released their reservations and pins.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  for (;;) {
    absl::Notification checked;
    bool idle = false;
    transport_->Post([&] {
      idle = requests_.empty();
      early_.clear();
      early_payloads_ = 0;
      checked.Notify();
    });
    checked.WaitForNotification();
    if (idle || absl::Now() > deadline) break;
    absl::SleepFor(absl::Milliseconds(5));
  }
  pool_.reset();  // runs what is queued; its posts land on the live loop
  absl::Notification flushed;
  transport_->Post([&] { flushed.Notify(); });
  flushed.WaitForNotification();
  pool_registration_.reset();
  transport_.reset();
}

std::optional<DataServer::Impl::Session> DataServer::Impl::FindSession(
    const SessionId& id, bool touch) {
  absl::MutexLock lock(&mu_);
  auto it = sessions_.find(SessionKey(id));
  if (it == sessions_.end()) return std::nullopt;
  if (touch) it->second.last_seen = absl::Now();
  return it->second;
}

void DataServer::Impl::EndSession(const SessionId& id, absl::string_view why) {
  std::optional<Session> session;
  {
    absl::MutexLock lock(&mu_);
    auto it = sessions_.find(SessionKey(id));
    if (it == sessions_.end()) return;
    session = it->second;
    sessions_.erase(it);
    metrics_.sessions->Set(sessions_.size());
  }
  highest_request_.erase(SessionKey(id));
  spdlog::info("data session with peer {} closed: {}", session->peer,
               std::string(why));
  transport_->Disconnect(session->peer);
  // Items waiting for data that will not come now end here; transfers in
  // flight end through their cancelled completions.
  const std::string key = SessionKey(id);
  std::vector<std::pair<Request*, size_t>> waiting;
  for (auto& [rk, r] : requests_) {
    if (rk.first != key) continue;
    for (size_t i = 0; i < r->items.size(); ++i) {
      if (r->items[i].state == ItemState::kWaitingData) {
        waiting.emplace_back(r.get(), i);
      }
    }
  }
  for (auto [r, i] : waiting) {
    Finish(r, i, absl::UnavailableError(absl::StrCat("session closed: ", why)));
  }
}

absl::StatusOr<kvdepot::v1::HelloResponse> DataServer::Impl::Hello(
    const kvdepot::v1::HelloRequest& request, absl::string_view peer) {
  if (request.protocol_version() != wire::kProtocolVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "protocol_version ", request.protocol_version(),
        " is not supported; this node speaks ", wire::kProtocolVersion));
  }
  if (request.worker_address().empty() ||
      request.worker_address().size() > kMaxWorkerAddressBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("worker_address is ", request.worker_address().size(),
                     " bytes, expected 1..", kMaxWorkerAddressBytes));
  }
  if (request.host_id().size() > 256) {
    return absl::InvalidArgumentError("host_id is longer than 256 bytes");
  }
  {
    absl::MutexLock lock(&mu_);
    if (sessions_.size() >= options_.max_sessions) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the node has ", sessions_.size(),
                       " sessions, the limit is ", options_.max_sessions));
    }
  }
  DataProtocol protocol = request.preferred_protocol();
  if (protocol == kvdepot::v1::DATA_PROTOCOL_UNSPECIFIED) {
    protocol = options_.protocol;
  }
  if (protocol == kvdepot::v1::DATA_PROTOCOL_UNSPECIFIED) {
    const bool same_host =
        !request.host_id().empty() && request.host_id() == options_.host_id;
    const bool native =
        info_.native_rma_remote || (same_host && info_.native_rma_same_host);
    protocol =
        native ? kvdepot::v1::DATA_PROTOCOL_RMA : kvdepot::v1::DATA_PROTOCOL_AM;
  }
  if (!kvdepot::v1::DataProtocol_IsValid(protocol)) {
    return absl::InvalidArgumentError(
        absl::StrCat("preferred_protocol ", protocol, " is unknown"));
  }
  SessionId id;
  if (RAND_bytes(id.data(), static_cast<int>(id.size())) != 1) {
    return absl::InternalError("no randomness for a session id");
  }
  KVD_ASSIGN_OR_RETURN(
      PeerId peer_id,
      transport_->Connect(request.worker_address(),
                          [this, id](PeerId, absl::Status status) {
                            EndSession(id, status.message());
                          }));
  {
    absl::MutexLock lock(&mu_);
    sessions_[SessionKey(id)] = Session{peer_id, protocol, absl::Now()};
    metrics_.sessions->Set(sessions_.size());
  }
  spdlog::info("data session opened for {} (client {}, protocol {})",
               std::string(peer), request.client_version(),
               DataProtocol_Name(protocol));
  kvdepot::v1::HelloResponse out;
  out.set_protocol_version(wire::kProtocolVersion);
  out.set_node_id(options_.node_id);
  out.set_version(options_.version);
  out.set_worker_address(transport_->address());
  out.set_session_id(SessionKey(id));
  out.set_protocol(protocol);
  out.set_host_id(options_.host_id);
  out.set_max_batch_keys(wire::kMaxBatchKeys);
  out.set_max_object_bytes(wire::kMaxObjectBytes - 1);
  for (const std::string& t : info_.transports) out.add_transports(t);
  out.set_cuda_memory(info_.cuda_memory);
  return out;
}

absl::Status DataServer::Impl::RegisterMetrics(MetricsRegistry* registry) {
  KVD_ASSIGN_OR_RETURN(HistogramFamily * seconds,
                       registry->AddHistogramFamily(
                           "kvdepot_data_request_seconds",
                           "Data-path request latency at the node, by op.",
                           ExponentialBuckets(25e-6, 2, 20), {"op"}));
  KVD_ASSIGN_OR_RETURN(
      CounterFamily * keys,
      registry->AddCounterFamily("kvdepot_data_keys_total",
                                 "Keys handled by the data path, by op and "
                                 "result (ok, miss, error).",
                                 {"op", "result"}));
  KVD_ASSIGN_OR_RETURN(
      CounterFamily * bytes,
      registry->AddCounterFamily("kvdepot_data_bytes_total",
                                 "Chunk bytes moved, by op.", {"op"}));
  for (Op op : {Op::kPut, Op::kGet, Op::kLookup}) {
    OpMetrics& m = MetricsOf(op);
    const absl::string_view name = OpName(op);
    KVD_ASSIGN_OR_RETURN(m.seconds, seconds->WithLabels({name}));
    KVD_ASSIGN_OR_RETURN(m.ok, keys->WithLabels({name, "ok"}));
    KVD_ASSIGN_OR_RETURN(m.miss, keys->WithLabels({name, "miss"}));
    KVD_ASSIGN_OR_RETURN(m.error, keys->WithLabels({name, "error"}));
    KVD_ASSIGN_OR_RETURN(m.bytes, bytes->WithLabels({name}));
  }
  KVD_ASSIGN_OR_RETURN(
      metrics_.unknown_session,
      registry->AddCounter("kvdepot_data_unknown_session_total",
                           "Data-path messages naming no open session "
                           "(dropped)."));
  KVD_ASSIGN_OR_RETURN(
      metrics_.timeouts,
      registry->AddCounter("kvdepot_data_request_timeouts_total",
                           "Requests that missed their deadline (their "
                           "session was closed)."));
  KVD_ASSIGN_OR_RETURN(
      metrics_.sessions,
      registry->AddGauge("kvdepot_data_sessions", "Open data-path sessions."));
  return absl::OkStatus();
}

void DataServer::Impl::CountResult(Op op, absl::StatusCode code) {
  OpMetrics& m = MetricsOf(op);
  Counter* c = code == absl::StatusCode::kOk         ? m.ok
               : code == absl::StatusCode::kNotFound ? m.miss
                                                     : m.error;
  c->Increment();
}

void DataServer::Impl::Sweep() {
  const absl::Time now = absl::Now();
  std::vector<SessionId> late;
  for (const auto& [key, r] : requests_) {
    if (now > r->deadline) late.push_back(r->session);
  }
  for (const SessionId& id : late) {
    metrics_.timeouts->Increment();
    EndSession(id, "a request missed its deadline");
  }
  absl::erase_if(early_, [this, now](const auto& e) {
    if (now <= e.second.deadline) return false;
    early_payloads_ -= e.second.payloads.size();
    return true;
  });
  std::vector<SessionId> idle;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [key, s] : sessions_) {
      if (now - s.last_seen > options_.session_idle_timeout) {
        SessionId id;
        std::memcpy(id.data(), key.data(), id.size());
        idle.push_back(id);
      }
    }
  }
  for (const SessionId& id : idle) EndSession(id, "idle");
}

absl::StatusOr<std::unique_ptr<DataServer>> DataServer::Create(
    StoreEngine* engine, std::unique_ptr<Transport> transport,
    const DataServerOptions& options, MetricsRegistry* metrics) {
  auto impl = std::make_unique<Impl>(engine, std::move(transport), options);
  KVD_RETURN_IF_ERROR(impl->Start(metrics));
  return std::unique_ptr<DataServer>(new DataServer(std::move(impl)));
}

DataServer::DataServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

DataServer::~DataServer() { impl_->Shutdown(); }

absl::StatusOr<kvdepot::v1::HelloResponse> DataServer::Hello(
    const kvdepot::v1::HelloRequest& request, absl::string_view peer) {
  return impl_->Hello(request, peer);
}

const TransportInfo& DataServer::transport_info() const {
  return impl_->info();
}

std::string DataServer::worker_address() const {
  return impl_->worker_address();
}

}  // namespace kvd
