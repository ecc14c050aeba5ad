#include "store/client/client.h"

#include <grpcpp/grpcpp.h>

#include <map>
#include <optional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "core/status.h"
#include "store/client/control_channel.h"
#include "store/proto/data_wire.h"
#include "store/proto/grpc_status.h"
#include "store/proto/kvdepot.grpc.pb.h"
#include "transfer/ucx/ucx_transport.h"

namespace kvd {
namespace {

using kvdepot::v1::DataProtocol;
using wire::Op;

const char kClientVersion[] = "0.1.0";

absl::Span<const uint8_t> AsBytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace

class Client::Impl {
 public:
  explicit Impl(ClientOptions options) : options_(std::move(options)) {}
  ~Impl();

  absl::Status Start();
  absl::StatusOr<std::unique_ptr<Registration>> RegisterBuffer(
      absl::Span<uint8_t> memory);
  void Put(absl::Span<const ChunkKey> keys,
           absl::Span<const absl::Span<const uint8_t>> objects,
           PutCallback done);
  void Get(absl::Span<const GetTarget> targets, GetCallback done);
  void Lookup(absl::Span<const ChunkKey> keys, LookupCallback done);
  kvdepot::v1::HelloResponse hello() const {
    absl::MutexLock lock(&mu_);
    return hello_;
  }

 private:
  struct Session {
    PeerId peer = 0;
    wire::SessionId id{};
    DataProtocol protocol = kvdepot::v1::DATA_PROTOCOL_AM;
    uint64_t generation = 0;
  };

  // One batch in flight; lives on the progress thread.
  struct Pending {
    Op op = Op::kPut;
    size_t count = 0;
    uint64_t session_generation = 0;
    absl::Time deadline;
    std::vector<absl::Span<uint8_t>> dsts;  // AM get destinations
    std::vector<absl::Status> item_errors;  // AM get receive failures
    std::function<void(absl::StatusOr<wire::ResultsBody>)> complete;
  };

  // A registered buffer the client knows the rkey of.
  class ClientRegistration final : public Registration {
   public:
    ClientRegistration(Impl* impl, std::unique_ptr<Registration> inner)
        : impl_(impl), inner_(std::move(inner)) {}
    ~ClientRegistration() override {
      absl::MutexLock lock(&impl_->mu_);
      impl_->buffers_.erase(
          reinterpret_cast<uintptr_t>(inner_->memory().data()));
    }
    absl::Span<uint8_t> memory() const override { return inner_->memory(); }
    const std::string& rkey() const override { return inner_->rkey(); }

   private:
    Impl* const impl_;
    std::unique_ptr<Registration> inner_;
  };

  absl::StatusOr<Session> EnsureSession();
  absl::StatusOr<Session> HelloLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The rkey of the registered buffer holding every span, or an error.
  absl::StatusOr<std::string> RkeyFor(
      absl::Span<const absl::Span<const uint8_t>> spans) const;
  // Sends a request and runs `complete` with its results (or a failure
  // status for the whole batch). `after_send` runs on the loop right after
  // the request went out (AM puts send their data there).
  void Submit(Op op, size_t count, std::string body,
              std::vector<absl::Span<uint8_t>> dsts,
              std::function<void(const Session&, uint64_t)> after_send,
              std::function<void(absl::StatusOr<wire::ResultsBody>)> complete);
  void OnResponse(absl::Span<const uint8_t> header, IncomingPayload payload);
  void OnGetData(absl::Span<const uint8_t> header, IncomingPayload payload);
  void DropSession(uint64_t generation, absl::string_view why);
  void FailPending(uint64_t id, absl::Status status);
  void Sweep();

  const ClientOptions options_;
  std::unique_ptr<Transport> transport_;
  std::optional<ControlChannel> channel_;
  std::unique_ptr<kvdepot::v1::Control::Stub> stub_;

  mutable absl::Mutex mu_;
  std::optional<Session> session_ ABSL_GUARDED_BY(mu_);
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  kvdepot::v1::HelloResponse hello_ ABSL_GUARDED_BY(mu_);
  std::map<uintptr_t, std::pair<size_t, std::string>> buffers_
      ABSL_GUARDED_BY(mu_);
  uint64_t next_request_ ABSL_GUARDED_BY(mu_) = 1;

  // Progress-thread state.
  absl::flat_hash_map<uint64_t, Pending> pending_;
};

absl::Status Client::Impl::Start() {
  if (options_.make_transport) {
    KVD_ASSIGN_OR_RETURN(transport_, options_.make_transport());
  } else {
    KVD_ASSIGN_OR_RETURN(transport_,
                         CreateUcxTransport({.tls = options_.ucx_tls,
                                             .net_devices = "",
                                             .name = "kvdepot-client"}));
  }
  KVD_ASSIGN_OR_RETURN(
      channel_,
      ControlChannel::Create({.address = options_.address,
                              .tls_ca = options_.tls_ca,
                              .tls_cert = options_.tls_cert,
                              .tls_key = options_.tls_key,
                              .tls_server_name = options_.tls_server_name,
                              .token = options_.token}));
  stub_ = kvdepot::v1::Control::NewStub(channel_->channel());
  transport_->SetHandler(
      wire::kResponse, [this](absl::Span<const uint8_t> h, IncomingPayload p) {
        OnResponse(h, std::move(p));
      });
  transport_->SetHandler(
      wire::kGetData, [this](absl::Span<const uint8_t> h, IncomingPayload p) {
        OnGetData(h, std::move(p));
      });
  transport_->SetTick(absl::Milliseconds(50), [this] { Sweep(); });
  return EnsureSession().status();
}

Client::Impl::~Impl() {
  // Fail what is still in flight, then stop the transport.
  absl::Notification done;
  transport_->Post([&] {
    std::vector<uint64_t> ids;
    for (const auto& [id, p] : pending_) ids.push_back(id);
    for (uint64_t id : ids) {
      FailPending(id, absl::CancelledError("client destroyed"));
    }
    done.Notify();
  });
  done.WaitForNotification();
  transport_.reset();
}

absl::StatusOr<Client::Impl::Session> Client::Impl::EnsureSession() {
  absl::MutexLock lock(&mu_);
  if (session_) return *session_;
  return HelloLocked();
}

absl::StatusOr<Client::Impl::Session> Client::Impl::HelloLocked() {
  kvdepot::v1::HelloRequest request;
  request.set_protocol_version(wire::kProtocolVersion);
  request.set_client_version(kClientVersion);
  request.set_worker_address(transport_->address());
  request.set_host_id(wire::LocalHostId());
  request.set_preferred_protocol(options_.protocol);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + options_.timeout));
  // Ride out the channel's reconnect backoff (a restarting node) within the
  // deadline instead of failing at once.
  context.set_wait_for_ready(true);
  channel_->Authorize(&context);
  kvdepot::v1::HelloResponse response;
  absl::Status status =
      FromGrpcStatus(stub_->Hello(&context, request, &response));
  if (absl::IsDeadlineExceeded(status)) {
    // No node answered in time: to the caller that is an unreachable node.
    status = absl::UnavailableError(status.message());
  }
  if (!status.ok()) {
    return Annotate(status, absl::StrCat("hello to ", options_.address));
  }
  if (response.session_id().size() != sizeof(wire::SessionId)) {
    return absl::InternalError(absl::StrCat(
        "node sent a ", response.session_id().size(), "-byte session id"));
  }
  // UCX connects two endpoints only when both ask for the same failure
  // handling, which follows from their UCX_TLS lists (transfer/ucx): say so
  // instead of letting the first request hang.
  if (transport_->info().backend == "ucx") {
    const std::vector<std::string> node_tls(response.transports().begin(),
                                            response.transports().end());
    const bool node_detects = UcxDetectsPeerFailure(node_tls);
    if (node_detects != transport_->info().detects_peer_failure) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the node's UCX transports (", absl::StrJoin(node_tls, ","),
          ") and this client's (",
          absl::StrJoin(transport_->info().transports, ","),
          ") disagree on peer failure handling; use the same UCX_TLS "
          "(transfer.ucx_tls) on both, e.g. both tcp or both with shared "
          "memory"));
    }
  }
  Session s;
  std::memcpy(s.id.data(), response.session_id().data(), s.id.size());
  s.protocol = response.protocol();
  s.generation = ++generation_;
  const uint64_t generation = s.generation;
  KVD_ASSIGN_OR_RETURN(
      s.peer, transport_->Connect(response.worker_address(),
                                  [this, generation](PeerId, absl::Status st) {
                                    DropSession(generation, st.message());
                                  }));
  session_ = s;
  hello_ = std::move(response);
  return s;
}

void Client::Impl::DropSession(uint64_t generation, absl::string_view why) {
  std::optional<Session> gone;
  {
    absl::MutexLock lock(&mu_);
    if (!session_ || session_->generation != generation) return;
    gone = session_;
    session_.reset();
  }
  transport_->Disconnect(gone->peer);
  const std::string reason(why);
  transport_->Post([this, generation, reason] {
    std::vector<uint64_t> ids;
    for (const auto& [id, p] : pending_) {
      if (p.session_generation == generation) ids.push_back(id);
    }
    for (uint64_t id : ids) {
      FailPending(id, absl::UnavailableError(absl::StrCat(
                          "connection to the node lost: ", reason)));
    }
  });
}

void Client::Impl::FailPending(uint64_t id, absl::Status status) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;
  auto complete = std::move(it->second.complete);
  pending_.erase(it);
  complete(status);
}

void Client::Impl::Sweep() {
  const absl::Time now = absl::Now();
  std::vector<std::pair<uint64_t, uint64_t>> late;  // (id, generation)
  for (const auto& [id, p] : pending_) {
    if (now > p.deadline) late.emplace_back(id, p.session_generation);
  }
  for (auto [id, generation] : late) {
    FailPending(id, absl::UnavailableError(
                        absl::StrCat("the node did not answer within ",
                                     absl::FormatDuration(options_.timeout))));
    DropSession(generation, "request timed out");
  }
}

absl::StatusOr<std::unique_ptr<Registration>> Client::Impl::RegisterBuffer(
    absl::Span<uint8_t> memory) {
  KVD_ASSIGN_OR_RETURN(std::unique_ptr<Registration> inner,
                       transport_->Register(memory));
  absl::MutexLock lock(&mu_);
  buffers_[reinterpret_cast<uintptr_t>(memory.data())] = {memory.size(),
                                                          inner->rkey()};
  return std::make_unique<ClientRegistration>(this, std::move(inner));
}

absl::StatusOr<std::string> Client::Impl::RkeyFor(
    absl::Span<const absl::Span<const uint8_t>> spans) const {
  absl::MutexLock lock(&mu_);
  const std::string* rkey = nullptr;
  for (const absl::Span<const uint8_t>& span : spans) {
    const auto a = reinterpret_cast<uintptr_t>(span.data());
    auto it = buffers_.upper_bound(a);
    const std::string* found = nullptr;
    if (it != buffers_.begin()) {
      --it;
      if (a + span.size() <= it->first + it->second.first) {
        found = &it->second.second;
      }
    }
    if (found == nullptr) {
      return absl::InvalidArgumentError(
          "a span lies outside every registered buffer; this session moves "
          "bytes one-sided, so register the buffer with RegisterBuffer");
    }
    if (rkey != nullptr && *rkey != *found) {
      return absl::InvalidArgumentError(
          "the spans of one batch lie in different registered buffers");
    }
    rkey = found;
  }
  return rkey == nullptr ? std::string() : *rkey;
}

void Client::Impl::Submit(
    Op op, size_t count, std::string body,
    std::vector<absl::Span<uint8_t>> dsts,
    std::function<void(const Session&, uint64_t)> after_send,
    std::function<void(absl::StatusOr<wire::ResultsBody>)> complete) {
  absl::StatusOr<Session> session = EnsureSession();
  if (!session.ok()) return complete(session.status());
  uint64_t id;
  {
    absl::MutexLock lock(&mu_);
    id = next_request_++;
  }
  transport_->Post([this, op, count, id, s = *session,
                    body = std::make_shared<std::string>(std::move(body)),
                    dsts = std::move(dsts), after_send = std::move(after_send),
                    complete = std::move(complete)]() mutable {
    Pending& p = pending_[id];
    p.op = op;
    p.count = count;
    p.session_generation = s.generation;
    p.deadline = absl::Now() + options_.timeout;
    p.dsts = std::move(dsts);
    p.item_errors.resize(p.dsts.size());
    p.complete = std::move(complete);
    transport_->Send(s.peer, wire::kRequest,
                     wire::Encode(wire::RequestHeader{s.id, id, op}),
                     AsBytes(*body), [body](absl::Status) {});
    if (after_send) after_send(s, id);
  });
}

void Client::Impl::OnResponse(absl::Span<const uint8_t> header,
                              IncomingPayload payload) {
  absl::StatusOr<wire::ResponseHeader> h = wire::DecodeResponseHeader(header);
  if (!h.ok() || !pending_.contains(h->request_id)) return;
  if (payload.size() > (16u << 20)) {
    return FailPending(h->request_id,
                       absl::InternalError("oversized response from the node"));
  }
  auto body = std::make_shared<std::vector<uint8_t>>(payload.size());
  const uint64_t id = h->request_id;
  std::move(payload).Receive(absl::MakeSpan(*body), [this, id,
                                                     body](absl::Status s) {
    auto it = pending_.find(id);
    if (it == pending_.end()) return;
    if (!s.ok()) return FailPending(id, s);
    absl::StatusOr<wire::ResultsBody> results = wire::DecodeResultsBody(*body);
    Pending p = std::move(it->second);
    pending_.erase(it);
    if (results.ok()) {
      if (results->results.size() != p.count) {
        results = absl::InternalError(
            absl::StrCat("node answered ", results->results.size(),
                         " results for ", p.count, " keys"));
      } else {
        for (size_t i = 0; i < p.item_errors.size(); ++i) {
          if (!p.item_errors[i].ok()) {
            results->results[i] = wire::ResultOf(p.item_errors[i]);
          }
        }
      }
    }
    p.complete(std::move(results));
  });
}

void Client::Impl::OnGetData(absl::Span<const uint8_t> header,
                             IncomingPayload payload) {
  absl::StatusOr<wire::DataHeader> h = wire::DecodeDataHeader(header);
  if (!h.ok()) return;
  auto it = pending_.find(h->request_id);
  if (it == pending_.end() || it->second.op != Op::kGet ||
      h->index >= it->second.dsts.size()) {
    return;
  }
  Pending& p = it->second;
  const absl::Span<uint8_t> dst = p.dsts[h->index];
  if (payload.size() > dst.size()) {
    p.item_errors[h->index] = absl::InternalError(
        absl::StrCat("node sent ", payload.size(), " bytes for a ", dst.size(),
                     "-byte destination"));
    return;
  }
  const uint64_t id = h->request_id;
  const uint32_t index = h->index;
  std::move(payload).Receive(dst, [this, id, index](absl::Status s) {
    auto pit = pending_.find(id);
    if (pit != pending_.end() && !s.ok()) pit->second.item_errors[index] = s;
  });
}

void Client::Impl::Put(absl::Span<const ChunkKey> keys,
                       absl::Span<const absl::Span<const uint8_t>> objects,
                       PutCallback done) {
  const size_t n = keys.size();
  auto fail_all = [n, &done](const absl::Status& s) {
    done(std::vector<absl::Status>(n, s));
  };
  if (keys.size() != objects.size() || n > wire::kMaxBatchKeys) {
    return fail_all(absl::InvalidArgumentError(absl::StrCat(
        keys.size(), " keys and ", objects.size(),
        " objects; a batch pairs them, at most ", wire::kMaxBatchKeys)));
  }
  absl::StatusOr<Session> session = EnsureSession();
  if (!session.ok()) return fail_all(session.status());
  const bool rma = session->protocol == kvdepot::v1::DATA_PROTOCOL_RMA;
  wire::PutBody body;
  if (rma) {
    absl::StatusOr<std::string> rkey = RkeyFor(objects);
    if (!rkey.ok()) return fail_all(rkey.status());
    body.rkey = *std::move(rkey);
  }
  body.items.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    body.items.push_back(
        {keys[i], objects[i].size(),
         rma ? reinterpret_cast<uint64_t>(objects[i].data()) : 0});
  }
  std::vector<absl::Span<const uint8_t>> spans(objects.begin(), objects.end());
  auto after_send = [this, rma, spans = std::move(spans)](const Session& s,
                                                          uint64_t id) {
    if (rma) return;
    for (size_t i = 0; i < spans.size(); ++i) {
      transport_->Send(
          s.peer, wire::kPutData,
          wire::Encode(wire::DataHeader{s.id, id, static_cast<uint32_t>(i)}),
          spans[i], [](absl::Status) {});
    }
  };
  Submit(Op::kPut, n, wire::Encode(body), {}, std::move(after_send),
         [n, done = std::move(done)](absl::StatusOr<wire::ResultsBody> r) {
           std::vector<absl::Status> out;
           out.reserve(n);
           for (size_t i = 0; i < n; ++i) {
             out.push_back(r.ok() ? wire::StatusOf(r->results[i]) : r.status());
           }
           done(std::move(out));
         });
}

void Client::Impl::Get(absl::Span<const GetTarget> targets, GetCallback done) {
  const size_t n = targets.size();
  auto fail_all = [n, &done](const absl::Status& s) {
    done(std::vector<absl::StatusOr<uint64_t>>(n, s));
  };
  if (n > wire::kMaxBatchKeys) {
    return fail_all(absl::InvalidArgumentError(absl::StrCat(
        n, " targets; a batch holds at most ", wire::kMaxBatchKeys)));
  }
  absl::StatusOr<Session> session = EnsureSession();
  if (!session.ok()) return fail_all(session.status());
  const bool rma = session->protocol == kvdepot::v1::DATA_PROTOCOL_RMA;
  std::vector<absl::Span<uint8_t>> dsts;
  wire::GetBody body;
  if (rma) {
    std::vector<absl::Span<const uint8_t>> spans;
    for (const GetTarget& t : targets) spans.emplace_back(t.dst);
    absl::StatusOr<std::string> rkey = RkeyFor(spans);
    if (!rkey.ok()) return fail_all(rkey.status());
    body.rkey = *std::move(rkey);
  }
  for (const GetTarget& t : targets) {
    wire::GetItem item;
    item.key = t.key;
    item.whole_object = t.whole_object;
    if (!t.whole_object) item.selection = t.selection;
    item.address = rma ? reinterpret_cast<uint64_t>(t.dst.data()) : 0;
    item.capacity = t.dst.size();
    body.items.push_back(item);
    if (!rma) dsts.push_back(t.dst);
  }
  Submit(Op::kGet, n, wire::Encode(body), std::move(dsts), nullptr,
         [n, done = std::move(done)](absl::StatusOr<wire::ResultsBody> r) {
           std::vector<absl::StatusOr<uint64_t>> out;
           out.reserve(n);
           for (size_t i = 0; i < n; ++i) {
             if (!r.ok()) {
               out.push_back(r.status());
             } else if (r->results[i].code != absl::StatusCode::kOk) {
               out.push_back(wire::StatusOf(r->results[i]));
             } else {
               out.push_back(r->results[i].value);
             }
           }
           done(std::move(out));
         });
}

void Client::Impl::Lookup(absl::Span<const ChunkKey> keys,
                          LookupCallback done) {
  if (keys.size() > wire::kMaxBatchKeys) {
    return done(absl::InvalidArgumentError(absl::StrCat(
        keys.size(), " keys; a lookup holds at most ", wire::kMaxBatchKeys)));
  }
  wire::LookupBody body{{keys.begin(), keys.end()}};
  Submit(Op::kLookup, 1, wire::Encode(body), {}, nullptr,
         [done = std::move(done)](absl::StatusOr<wire::ResultsBody> r) {
           if (!r.ok()) return done(r.status());
           const wire::Result& res = r->results[0];
           if (res.code != absl::StatusCode::kOk) {
             return done(wire::StatusOf(res));
           }
           done(static_cast<size_t>(res.value));
         });
}

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(
    const ClientOptions& options) {
  auto impl = std::make_unique<Impl>(options);
  KVD_RETURN_IF_ERROR(impl->Start());
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

absl::StatusOr<std::unique_ptr<Registration>> Client::RegisterBuffer(
    absl::Span<uint8_t> memory) {
  return impl_->RegisterBuffer(memory);
}

void Client::PutAsync(absl::Span<const ChunkKey> keys,
                      absl::Span<const absl::Span<const uint8_t>> objects,
                      PutCallback done) {
  impl_->Put(keys, objects, std::move(done));
}

void Client::GetAsync(absl::Span<const GetTarget> targets, GetCallback done) {
  impl_->Get(targets, std::move(done));
}

void Client::LookupAsync(absl::Span<const ChunkKey> keys, LookupCallback done) {
  impl_->Lookup(keys, std::move(done));
}

namespace {

// Runs an async call and waits for its one completion.
template <typename T, typename Start>
T Wait(Start start) {
  absl::Notification done;
  std::optional<T> out;
  start([&](T result) {
    out = std::move(result);
    done.Notify();
  });
  done.WaitForNotification();
  return *std::move(out);
}

}  // namespace

std::vector<absl::Status> Client::Put(
    absl::Span<const ChunkKey> keys,
    absl::Span<const absl::Span<const uint8_t>> objects) {
  return Wait<std::vector<absl::Status>>(
      [&](PutCallback cb) { PutAsync(keys, objects, std::move(cb)); });
}

std::vector<absl::StatusOr<uint64_t>> Client::Get(
    absl::Span<const GetTarget> targets) {
  return Wait<std::vector<absl::StatusOr<uint64_t>>>(
      [&](GetCallback cb) { GetAsync(targets, std::move(cb)); });
}

absl::StatusOr<size_t> Client::Lookup(absl::Span<const ChunkKey> keys) {
  return Wait<absl::StatusOr<size_t>>(
      [&](LookupCallback cb) { LookupAsync(keys, std::move(cb)); });
}

kvdepot::v1::HelloResponse Client::hello() const { return impl_->hello(); }

}  // namespace kvd
