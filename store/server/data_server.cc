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

namespace kvd {

namespace {

using kvdepot::v1::DataProtocol;
using wire::Op;
using wire::SessionId;

constexpr size_t kMaxWorkerAddressBytes = 64 << 10;
// Put data held for requests not yet reserved, across all sessions.
constexpr size_t kMaxEarlyPayloads = 4 * wire::kMaxBatchKeys;

std::string SessionKey(const SessionId& id) {
  return std::string(reinterpret_cast<const char*>(id.data()), id.size());
}

bool AllowsAny(const std::vector<std::string>& transports,
               std::initializer_list<absl::string_view> wanted) {
  for (const std::string& t : transports) {
    if (t == "default" || t == "all" || t == "memcpy") return true;
    for (absl::string_view w : wanted) {
      if (t == w) return true;
    }
  }
  return false;
}

bool HasRdmaDevice() {
  std::error_code ec;
  auto it = std::filesystem::directory_iterator("/sys/class/infiniband", ec);
  return !ec && it != std::filesystem::directory_iterator();
}

absl::string_view OpName(Op op) {
  switch (op) {
    case Op::kPut:
      return "put";
    case Op::kGet:
      return "get";
    case Op::kLookup:
      return "lookup";
  }
  return "unknown";
}

}  // namespace

class DataServer::Impl {
 public:
  Impl(StoreEngine* engine, std::unique_ptr<Transport> transport,
       const DataServerOptions& options)
      : engine_(engine),
        transport_(std::move(transport)),
        options_(options),
        info_(transport_->info()),
        pool_(std::make_unique<ThreadPool>(options.engine_threads)) {}

  absl::Status Start(MetricsRegistry* metrics);
  void Shutdown();
  absl::StatusOr<kvdepot::v1::HelloResponse> Hello(
      const kvdepot::v1::HelloRequest& request, absl::string_view peer);
  const TransportInfo& info() const { return info_; }

 private:
  struct Session {
    PeerId peer = 0;
    DataProtocol protocol = kvdepot::v1::DATA_PROTOCOL_AM;
    absl::Time last_seen;
  };

  enum class ItemState { kEngine, kWaitingData, kTransferring, kDone };

  struct Item {
    ChunkKey key;
    uint64_t size = 0;     // put: object bytes; get: selected bytes
    uint64_t address = 0;  // RMA: the client's buffer
    uint64_t capacity = 0;
    bool whole_object = true;
    ChunkSelection selection;
    ItemState state = ItemState::kEngine;
    wire::Result result;
    std::optional<PutReservation> reservation;
    std::optional<PinnedChunk> pinned;
    std::vector<ByteRange> ranges;
    std::vector<uint8_t> gathered;  // AM get of a selection
    int transfers = 0;              // one-sided ops still in flight
    absl::Status transfer_status;
  };

  struct Request {
    SessionId session;
    PeerId peer = 0;
    DataProtocol protocol = kvdepot::v1::DATA_PROTOCOL_AM;
    uint64_t id = 0;
    Op op = Op::kPut;
    std::string rkey;
    std::vector<Item> items;
    size_t remaining = 0;
    absl::Time start, deadline;
  };

  struct Metrics {
    HistogramFamily* seconds = nullptr;
    CounterFamily* keys = nullptr;
    CounterFamily* bytes = nullptr;
    Counter* unknown_session = nullptr;
    Counter* timeouts = nullptr;
    Gauge* sessions = nullptr;
  };

  // Loop-thread handlers.
  void OnRequest(absl::Span<const uint8_t> header, IncomingPayload payload);
  void OnPutData(absl::Span<const uint8_t> header, IncomingPayload payload);
  void OnBody(const wire::RequestHeader& h, const Session& s,
              std::vector<uint8_t> body);
  void StartPut(Request* r, wire::PutBody body);
  void StartGet(Request* r, wire::GetBody body);
  void AnswerLookup(const wire::RequestHeader& h, const Session& s,
                    wire::LookupBody body);
  void Reserved(Request* r, size_t i);
  void Received(Request* r, size_t i, absl::Status status);
  void Pinned(Request* r, size_t i);
  void Finish(Request* r, size_t i, const absl::Status& status,
              uint64_t value = 0);
  void Respond(Request* r);
  // The kPutData payload for item i that arrived before its reservation.
  std::optional<IncomingPayload> TakeEarlyData(const Request& r, size_t i);
  void ReceivePutData(Request* r, size_t i, IncomingPayload payload);
  void FailRequest(Request* r, const absl::Status& status);
  static absl::Status CheckRkey(const Request& r, const std::string& rkey);
  void SendResults(PeerId peer, uint64_t request_id,
                   const wire::ResultsBody& results);
  void Sweep();
  void EndSession(const SessionId& id, absl::string_view why);
  std::optional<Session> FindSession(const SessionId& id, bool touch);
  void Count(Op op, absl::string_view what, uint64_t n, bool bytes);

  StoreEngine* const engine_;
  std::unique_ptr<Transport> transport_;
  const DataServerOptions options_;
  const TransportInfo info_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<Registration> pool_registration_;
  Metrics metrics_;

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Session> sessions_ ABSL_GUARDED_BY(mu_);

  // Loop-thread state.
  absl::flat_hash_map<std::pair<std::string, uint64_t>,
                      std::unique_ptr<Request>>
      requests_;
  // kPutData that arrived before its request, by (session, request, index).
  struct Early {
    absl::Time deadline;
    absl::flat_hash_map<uint32_t, IncomingPayload> payloads;
  };
  absl::flat_hash_map<std::pair<std::string, uint64_t>, Early> early_;
  size_t early_payloads_ = 0;  // across early_
  // Per session, the highest request id seen, and requests whose body is
  // still arriving: data for an id below the highest and not pending belongs
  // to a request already answered.
  absl::flat_hash_map<std::string, uint64_t> highest_request_;
  absl::flat_hash_set<std::pair<std::string, uint64_t>> bodies_pending_;
  bool shutting_down_ = false;
};

absl::Status DataServer::Impl::Start(MetricsRegistry* metrics) {
  KVD_ASSIGN_OR_RETURN(pool_registration_,
                       transport_->Register(engine_->HostPool()));
  if (metrics != nullptr) {
    KVD_ASSIGN_OR_RETURN(metrics_.seconds,
                         metrics->AddHistogramFamily(
                             "kvdepot_data_request_seconds",
                             "Data-path request latency at the node, by op.",
                             ExponentialBuckets(25e-6, 2, 20), {"op"}));
    KVD_ASSIGN_OR_RETURN(
        metrics_.keys,
        metrics->AddCounterFamily("kvdepot_data_keys_total",
                                  "Keys handled by the data path, by op and "
                                  "result (ok, miss, error).",
                                  {"op", "result"}));
    KVD_ASSIGN_OR_RETURN(
        metrics_.bytes,
        metrics->AddCounterFamily("kvdepot_data_bytes_total",
                                  "Chunk bytes moved, by op.", {"op"}));
    KVD_ASSIGN_OR_RETURN(
        metrics_.unknown_session,
        metrics->AddCounter("kvdepot_data_unknown_session_total",
                            "Data-path messages naming no open session "
                            "(dropped)."));
    KVD_ASSIGN_OR_RETURN(
        metrics_.timeouts,
        metrics->AddCounter("kvdepot_data_request_timeouts_total",
                            "Requests that missed their deadline (their "
                            "session was closed)."));
    KVD_ASSIGN_OR_RETURN(
        metrics_.sessions,
        metrics->AddGauge("kvdepot_data_sessions", "Open data-path sessions."));
  }
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
    if (metrics_.sessions != nullptr) metrics_.sessions->Set(sessions_.size());
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
    const bool shm =
        same_host && AllowsAny(info_.transports, {"sm", "shm", "posix", "sysv",
                                                  "cma", "knem", "xpmem"});
    const bool rdma =
        HasRdmaDevice() &&
        AllowsAny(info_.transports, {"rc", "rc_x", "dc", "dc_x", "ib", "ud"});
    protocol = shm || rdma ? kvdepot::v1::DATA_PROTOCOL_RMA
                           : kvdepot::v1::DATA_PROTOCOL_AM;
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
    if (metrics_.sessions != nullptr) metrics_.sessions->Set(sessions_.size());
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

void DataServer::Impl::OnRequest(absl::Span<const uint8_t> header,
                                 IncomingPayload payload) {
  absl::StatusOr<wire::RequestHeader> h = wire::DecodeRequestHeader(header);
  std::optional<Session> session;
  if (h.ok()) session = FindSession(h->session, /*touch=*/true);
  if (!h.ok() || !session || shutting_down_) {
    // Nobody to answer: a malformed header or an unknown session is dropped.
    if (metrics_.unknown_session != nullptr) {
      metrics_.unknown_session->Increment();
    }
    if (!h.ok()) {
      spdlog::warn("dropped a data request: {}",
                   std::string(h.status().message()));
    }
    return;
  }
  if (payload.size() > (64u << 20)) {
    spdlog::warn("dropped a {}-byte request body", payload.size());
    EndSession(h->session, "oversized request body");
    return;
  }
  const auto key = std::make_pair(SessionKey(h->session), h->request_id);
  uint64_t& highest = highest_request_[key.first];
  highest = std::max(highest, h->request_id);
  bodies_pending_.insert(key);
  auto body = std::make_shared<std::vector<uint8_t>>(payload.size());
  std::move(payload).Receive(
      absl::MakeSpan(*body),
      [this, h = *h, s = *session, body, key](absl::Status status) {
        bodies_pending_.erase(key);
        if (!status.ok()) return;  // the session's failure handler cleans up
        OnBody(h, s, std::move(*body));
      });
}

void DataServer::Impl::OnBody(const wire::RequestHeader& h, const Session& s,
                              std::vector<uint8_t> body) {
  if (h.op == Op::kLookup) {
    absl::StatusOr<wire::LookupBody> lookup = wire::DecodeLookupBody(body);
    if (!lookup.ok()) {
      return SendResults(s.peer, h.request_id,
                         wire::ResultsBody{{wire::ResultOf(lookup.status())}});
    }
    return AnswerLookup(h, s, *std::move(lookup));
  }
  auto key = std::make_pair(SessionKey(h.session), h.request_id);
  if (requests_.contains(key)) {
    spdlog::warn("duplicate request id {} in one session", h.request_id);
    return EndSession(h.session, "duplicate request id");
  }
  auto request = std::make_unique<Request>();
  Request* r = request.get();
  r->session = h.session;
  r->peer = s.peer;
  r->protocol = s.protocol;
  r->id = h.request_id;
  r->op = h.op;
  r->start = absl::Now();
  r->deadline = r->start + options_.request_timeout;
  requests_[key] = std::move(request);

  absl::Status decoded;
  if (h.op == Op::kPut) {
    absl::StatusOr<wire::PutBody> put = wire::DecodePutBody(body);
    if (put.ok()) return StartPut(r, *std::move(put));
    decoded = put.status();
  } else {
    absl::StatusOr<wire::GetBody> get = wire::DecodeGetBody(body);
    if (get.ok()) return StartGet(r, *std::move(get));
    decoded = get.status();
  }
  FailRequest(r, decoded);
}

void DataServer::Impl::FailRequest(Request* r, const absl::Status& status) {
  // One result naming what is wrong with the request as a whole.
  r->items.resize(1);
  r->remaining = 1;
  Finish(r, 0, status);
}

absl::Status DataServer::Impl::CheckRkey(const Request& r,
                                         const std::string& rkey) {
  if (r.protocol == kvdepot::v1::DATA_PROTOCOL_RMA && rkey.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("rkey is empty; an RMA session's ", OpName(r.op),
                     " names the client's registered buffer"));
  }
  return absl::OkStatus();
}

void DataServer::Impl::AnswerLookup(const wire::RequestHeader& h,
                                    const Session& s, wire::LookupBody body) {
  const absl::Time start = absl::Now();
  const size_t present = engine_->Lookup(body.keys);
  SendResults(s.peer, h.request_id,
              wire::ResultsBody{{wire::ResultOf(absl::OkStatus(), present)}});
  Count(Op::kLookup, "ok", body.keys.size(), false);
  if (metrics_.seconds != nullptr) {
    if (auto hist = metrics_.seconds->WithLabels({"lookup"}); hist.ok()) {
      (*hist)->Observe(absl::ToDoubleSeconds(absl::Now() - start));
    }
  }
}

void DataServer::Impl::StartPut(Request* r, wire::PutBody body) {
  if (absl::Status s = CheckRkey(*r, body.rkey); !s.ok()) {
    return FailRequest(r, s);
  }
  r->rkey = std::move(body.rkey);
  r->items.resize(body.items.size());
  r->remaining = body.items.size();
  for (size_t i = 0; i < body.items.size(); ++i) {
    r->items[i].key = body.items[i].key;
    r->items[i].size = body.items[i].size;
    r->items[i].address = body.items[i].address;
  }
  if (r->remaining == 0) return Respond(r);
  for (size_t i = 0; i < r->items.size(); ++i) {
    pool_->Submit([this, r, i] {
      Item& item = r->items[i];
      absl::StatusOr<PutReservation> res =
          engine_->ReservePut(item.key, item.size);
      transport_->Post([this, r, i, res = std::move(res)]() mutable {
        Item& it = r->items[i];
        if (absl::IsAlreadyExists(res.status())) {
          return Finish(r, i, absl::OkStatus());  // deduplicated: no transfer
        }
        if (!res.ok()) return Finish(r, i, res.status());
        it.reservation = *std::move(res);
        Reserved(r, i);
      });
    });
  }
}

void DataServer::Impl::Reserved(Request* r, size_t i) {
  Item& item = r->items[i];
  if (r->protocol == kvdepot::v1::DATA_PROTOCOL_RMA) {
    item.state = ItemState::kTransferring;
    transport_->Get(r->peer, item.reservation->dst, item.address, r->rkey,
                    [this, r, i](absl::Status s) { Received(r, i, s); });
    return;
  }
  // Active messages: the object comes (or came) as a kPutData payload.
  item.state = ItemState::kWaitingData;
  if (std::optional<IncomingPayload> early = TakeEarlyData(*r, i)) {
    ReceivePutData(r, i, *std::move(early));
  }
}

void DataServer::Impl::ReceivePutData(Request* r, size_t i,
                                      IncomingPayload payload) {
  Item& item = r->items[i];
  if (payload.size() != item.size) {
    return Finish(r, i,
                  absl::InvalidArgumentError(
                      absl::StrCat("put data is ", payload.size(),
                                   " bytes, the request said ", item.size)));
  }
  item.state = ItemState::kTransferring;
  std::move(payload).Receive(
      item.reservation->dst,
      [this, r, i](absl::Status s) { Received(r, i, s); });
}

void DataServer::Impl::OnPutData(absl::Span<const uint8_t> header,
                                 IncomingPayload payload) {
  absl::StatusOr<wire::DataHeader> h = wire::DecodeDataHeader(header);
  if (!h.ok() || !FindSession(h->session, /*touch=*/true) || shutting_down_) {
    if (metrics_.unknown_session != nullptr) {
      metrics_.unknown_session->Increment();
    }
    return;  // dropping the payload discards it
  }
  auto key = std::make_pair(SessionKey(h->session), h->request_id);
  auto it = requests_.find(key);
  if (it == requests_.end()) {
    // Client request ids only grow: an id at or below the highest seen is a
    // request already answered (its data deduplicated or refused).
    auto seen = highest_request_.find(key.first);
    if (seen != highest_request_.end() && h->request_id <= seen->second &&
        !bodies_pending_.contains(key)) {
      return;
    }
  }
  if (it == requests_.end() || it->second->items.size() <= h->index ||
      it->second->items[h->index].state == ItemState::kEngine) {
    // Before its request, or before its reservation: keep it for later, up
    // to a bound (a rendezvous payload holds a descriptor, not the bytes).
    if (early_payloads_ >= kMaxEarlyPayloads) {
      spdlog::warn("dropped put data for request {}: {} payloads wait already",
                   h->request_id, early_payloads_);
      return;
    }
    Early& early = early_[key];
    early.deadline = absl::Now() + options_.request_timeout;
    if (early.payloads.insert_or_assign(h->index, std::move(payload)).second) {
      ++early_payloads_;
    }
    return;
  }
  Request* r = it->second.get();
  Item& item = r->items[h->index];
  if (item.state != ItemState::kWaitingData) return;  // dedup, failed, dup
  ReceivePutData(r, h->index, std::move(payload));
}

void DataServer::Impl::Received(Request* r, size_t i, absl::Status status) {
  Item& item = r->items[i];
  if (!status.ok()) return Finish(r, i, status);
  item.state = ItemState::kEngine;
  pool_->Submit([this, r, i] {
    PutReservation res = *std::move(r->items[i].reservation);
    r->items[i].reservation.reset();
    absl::Status committed = engine_->CommitPut(std::move(res));
    transport_->Post([this, r, i, committed] {
      Count(Op::kPut, "", r->items[i].size, true);
      Finish(r, i, committed);
    });
  });
}

void DataServer::Impl::StartGet(Request* r, wire::GetBody body) {
  if (absl::Status s = CheckRkey(*r, body.rkey); !s.ok()) {
    return FailRequest(r, s);
  }
  r->rkey = std::move(body.rkey);
  r->items.resize(body.items.size());
  r->remaining = body.items.size();
  for (size_t i = 0; i < body.items.size(); ++i) {
    Item& item = r->items[i];
    item.key = body.items[i].key;
    item.whole_object = body.items[i].whole_object;
    item.selection = body.items[i].selection;
    item.address = body.items[i].address;
    item.capacity = body.items[i].capacity;
  }
  if (r->remaining == 0) return Respond(r);
  for (size_t i = 0; i < r->items.size(); ++i) {
    pool_->Submit([this, r, i] {
      Item& item = r->items[i];
      absl::StatusOr<PinnedChunk> pinned = engine_->PinChunk(item.key);
      absl::StatusOr<std::vector<ByteRange>> ranges;
      if (pinned.ok()) {
        ranges = item.whole_object
                     ? std::vector<ByteRange>{{0, pinned->bytes.size()}}
                     : SelectByteRanges(pinned->header, item.selection);
      }
      transport_->Post([this, r, i, pinned = std::move(pinned),
                        ranges = std::move(ranges)]() mutable {
        if (!pinned.ok()) return Finish(r, i, pinned.status());
        Item& it = r->items[i];
        it.pinned = *std::move(pinned);
        if (!ranges.ok()) return Finish(r, i, ranges.status());
        it.ranges = *std::move(ranges);
        Pinned(r, i);
      });
    });
  }
}

void DataServer::Impl::Pinned(Request* r, size_t i) {
  Item& item = r->items[i];
  uint64_t total = 0;
  for (const ByteRange& range : item.ranges) total += range.length;
  if (total > item.capacity) {
    return Finish(r, i,
                  absl::InvalidArgumentError(absl::StrCat(
                      "get.capacity=", item.capacity, " is smaller than the ",
                      total, " bytes selected")));
  }
  item.size = total;
  item.state = ItemState::kTransferring;
  const absl::Span<const uint8_t> src = item.pinned->bytes;
  if (r->protocol == kvdepot::v1::DATA_PROTOCOL_RMA) {
    item.transfers = static_cast<int>(item.ranges.size());
    uint64_t offset = 0;
    for (const ByteRange& range : item.ranges) {
      transport_->Put(r->peer, src.subspan(range.offset, range.length),
                      item.address + offset, r->rkey,
                      [this, r, i](absl::Status s) {
                        Item& it = r->items[i];
                        if (!s.ok() && it.transfer_status.ok()) {
                          it.transfer_status = s;
                        }
                        if (--it.transfers == 0) {
                          Finish(r, i, it.transfer_status, it.size);
                        }
                      });
      offset += range.length;
    }
    return;
  }
  absl::Span<const uint8_t> payload = src;
  if (!item.whole_object) {
    item.gathered.resize(total);
    uint64_t offset = 0;
    for (const ByteRange& range : item.ranges) {
      std::memcpy(item.gathered.data() + offset, src.data() + range.offset,
                  range.length);
      offset += range.length;
    }
    payload = item.gathered;
  }
  transport_->Send(
      r->peer, wire::kGetData,
      wire::Encode(wire::DataHeader{{}, r->id, static_cast<uint32_t>(i)}),
      payload,
      [this, r, i](absl::Status s) { Finish(r, i, s, r->items[i].size); });
}

void DataServer::Impl::Finish(Request* r, size_t i, const absl::Status& status,
                              uint64_t value) {
  Item& item = r->items[i];
  if (item.state == ItemState::kDone) return;
  item.state = ItemState::kDone;
  item.result = wire::ResultOf(status, value);
  if (item.reservation) {
    engine_->AbortPut(*std::move(item.reservation));
    item.reservation.reset();
  }
  if (item.pinned) {
    engine_->UnpinChunk(*item.pinned);
    item.pinned.reset();
    if (status.ok()) Count(Op::kGet, "", item.size, true);
  }
  item.gathered = {};
  // Data that came for an item finished without it (deduplicated, failed) is
  // released now, which completes the client's send.
  if (r->op == Op::kPut) TakeEarlyData(*r, i);
  if (--r->remaining > 0) return;
  if (r->op == Op::kGet && r->protocol == kvdepot::v1::DATA_PROTOCOL_RMA) {
    // Flush before ack: the writes must be remotely complete.
    transport_->Flush(r->peer, [this, r](absl::Status s) {
      if (!s.ok()) {
        for (Item& it : r->items) {
          if (it.result.code == absl::StatusCode::kOk) {
            it.result = wire::ResultOf(s);
          }
        }
      }
      Respond(r);
    });
    return;
  }
  Respond(r);
}

std::optional<IncomingPayload> DataServer::Impl::TakeEarlyData(const Request& r,
                                                               size_t i) {
  auto e = early_.find(std::make_pair(SessionKey(r.session), r.id));
  if (e == early_.end()) return std::nullopt;
  auto p = e->second.payloads.find(static_cast<uint32_t>(i));
  if (p == e->second.payloads.end()) return std::nullopt;
  IncomingPayload payload = std::move(p->second);
  e->second.payloads.erase(p);
  --early_payloads_;
  if (e->second.payloads.empty()) early_.erase(e);
  return payload;
}

void DataServer::Impl::Respond(Request* r) {
  wire::ResultsBody results;
  results.results.reserve(r->items.size());
  for (const Item& item : r->items) {
    results.results.push_back(item.result);
    const absl::StatusCode c = item.result.code;
    Count(r->op,
          c == absl::StatusCode::kOk         ? "ok"
          : c == absl::StatusCode::kNotFound ? "miss"
                                             : "error",
          1, false);
  }
  SendResults(r->peer, r->id, results);
  if (metrics_.seconds != nullptr) {
    if (auto hist = metrics_.seconds->WithLabels({OpName(r->op)}); hist.ok()) {
      (*hist)->Observe(absl::ToDoubleSeconds(absl::Now() - r->start));
    }
  }
  requests_.erase(std::make_pair(SessionKey(r->session), r->id));
}

void DataServer::Impl::SendResults(PeerId peer, uint64_t request_id,
                                   const wire::ResultsBody& results) {
  auto body = std::make_shared<std::string>(wire::Encode(results));
  transport_->Send(
      peer, wire::kResponse, wire::Encode(wire::ResponseHeader{request_id}),
      absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(body->data()),
                          body->size()),
      [body](absl::Status) {});  // a lost answer is the client's timeout
}

void DataServer::Impl::Count(Op op, absl::string_view what, uint64_t n,
                             bool bytes) {
  CounterFamily* family = bytes ? metrics_.bytes : metrics_.keys;
  if (family == nullptr) return;
  absl::StatusOr<Counter*> c = bytes ? family->WithLabels({OpName(op)})
                                     : family->WithLabels({OpName(op), what});
  if (c.ok()) (*c)->Increment(n);
}

void DataServer::Impl::Sweep() {
  const absl::Time now = absl::Now();
  std::vector<SessionId> late;
  for (const auto& [key, r] : requests_) {
    if (now > r->deadline) late.push_back(r->session);
  }
  for (const SessionId& id : late) {
    if (metrics_.timeouts != nullptr) metrics_.timeouts->Increment();
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

}  // namespace kvd
