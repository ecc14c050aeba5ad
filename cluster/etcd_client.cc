#include "cluster/etcd_client.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "cluster/etcd/etcd_rpc.grpc.pb.h"
#include "core/host_port.h"
#include "core/status.h"
#include "grpcpp/grpcpp.h"
#include "store/proto/grpc_status.h"

namespace kvd::cluster {
namespace {

namespace pb = etcdserverpb;

// A peer that vanishes without closing the connection (a partition) is
// noticed within time + timeout. etcd refuses pings more often than every
// 5 s (--grpc-keepalive-min-time).
constexpr int kKeepAliveTimeMs = 10'000;
constexpr int kKeepAliveTimeoutMs = 5'000;

// The first key after every key that starts with `prefix`.
std::string PrefixEnd(absl::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    if (static_cast<uint8_t>(end.back()) != 0xff) {
      end.back() = static_cast<char>(static_cast<uint8_t>(end.back()) + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // etcd: "every key >= key"
}

bool EndpointDown(const absl::Status& s) {
  return absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s);
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ParseEtcdEndpoints(
    absl::string_view key, absl::string_view list) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(list, ',')) {
    part = absl::StripAsciiWhitespace(part);
    absl::ConsumePrefix(&part, "http://");
    if (part.empty()) continue;
    KVD_RETURN_IF_ERROR(ValidateDialAddress(key, part));
    out.emplace_back(part);
  }
  if (out.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, "=\"", list, "\" names no etcd endpoint"));
  }
  return out;
}

void EtcdWatchCancel::Cancel() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  if (context_ != nullptr) context_->TryCancel();
}

bool EtcdWatchCancel::cancelled() const {
  absl::MutexLock lock(&mu_);
  return cancelled_;
}

bool EtcdWatchCancel::Attach(grpc::ClientContext* context) {
  absl::MutexLock lock(&mu_);
  if (cancelled_) return false;
  context_ = context;
  return true;
}

void EtcdWatchCancel::Detach() {
  absl::MutexLock lock(&mu_);
  context_ = nullptr;
}

absl::StatusOr<std::unique_ptr<EtcdClient>> EtcdClient::Create(
    const EtcdOptions& options) {
  if (options.endpoints.empty()) {
    return absl::InvalidArgumentError("etcd endpoints: none given");
  }
  for (const std::string& e : options.endpoints) {
    KVD_RETURN_IF_ERROR(ValidateDialAddress("etcd endpoint", e));
  }
  if (options.call_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("etcd call_timeout must be positive");
  }
  return absl::WrapUnique(
      new EtcdClient(options.endpoints, options.call_timeout));
}

EtcdClient::EtcdClient(std::vector<std::string> endpoints,
                       absl::Duration call_timeout)
    : endpoints_(std::move(endpoints)), call_timeout_(call_timeout) {
  for (const std::string& e : endpoints_) channels_.push_back(NewChannel(e));
}

std::shared_ptr<grpc::Channel> EtcdClient::NewChannel(
    const std::string& endpoint) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, kKeepAliveTimeMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kKeepAliveTimeoutMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  return grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(),
                                   args);
}

std::shared_ptr<grpc::Channel> EtcdClient::Channel(size_t at) {
  absl::MutexLock lock(&mu_);
  return channels_[at];
}

void EtcdClient::Answered(size_t at, const absl::Status& status) {
  absl::MutexLock lock(&mu_);
  if (!EndpointDown(status)) {
    current_ = at;
    return;
  }
  // A channel that failed to connect keeps failing fast for seconds after
  // the endpoint is back (gRPC's reconnect backoff; measured ~10 s with
  // gRPC 1.51 whatever the backoff arguments say): start over with a fresh
  // one, which connects on its first call.
  channels_[at] = NewChannel(endpoints_[at]);
}

absl::Status EtcdClient::Call(
    absl::string_view what,
    const std::function<absl::Status(const std::shared_ptr<grpc::Channel>&,
                                     absl::Time)>& call) {
  size_t start;
  {
    absl::MutexLock lock(&mu_);
    start = current_;
  }
  absl::Status last;
  for (size_t i = 0; i < endpoints_.size(); ++i) {
    const size_t at = (start + i) % endpoints_.size();
    last = call(Channel(at), absl::Now() + call_timeout_);
    Answered(at, last);
    if (!EndpointDown(last)) return last;
  }
  return Annotate(last, absl::StrCat("etcd ", what, " (endpoints ",
                                     absl::StrJoin(endpoints_, ","), ")"));
}

absl::StatusOr<int64_t> EtcdClient::GrantLease(absl::Duration ttl) {
  pb::LeaseGrantRequest request;
  request.set_ttl(absl::ToInt64Seconds(absl::Ceil(ttl, absl::Seconds(1))));
  pb::LeaseGrantResponse response;
  KVD_RETURN_IF_ERROR(
      Call("LeaseGrant", [&](const auto& channel, absl::Time deadline) {
        grpc::ClientContext context;
        context.set_deadline(absl::ToChronoTime(deadline));
        return FromGrpcStatus(pb::Lease::NewStub(channel)->LeaseGrant(
            &context, request, &response));
      }));
  if (!response.error().empty() || response.id() == 0) {
    return absl::UnavailableError(
        absl::StrCat("etcd LeaseGrant refused: ", response.error()));
  }
  return response.id();
}

absl::StatusOr<absl::Duration> EtcdClient::KeepAlive(int64_t lease) {
  pb::LeaseKeepAliveRequest request;
  request.set_id(lease);
  pb::LeaseKeepAliveResponse response;
  KVD_RETURN_IF_ERROR(
      Call("LeaseKeepAlive", [&](const auto& channel, absl::Time deadline) {
        grpc::ClientContext context;
        context.set_deadline(absl::ToChronoTime(deadline));
        auto stream = pb::Lease::NewStub(channel)->LeaseKeepAlive(&context);
        bool answered = stream->Write(request) && stream->WritesDone() &&
                        stream->Read(&response);
        grpc::Status status = stream->Finish();
        if (status.ok() && !answered) {
          return absl::UnavailableError("keep-alive stream closed unanswered");
        }
        return FromGrpcStatus(status);
      }));
  if (response.ttl() <= 0) {
    return absl::NotFoundError(
        absl::StrCat("etcd lease ", lease, " has expired"));
  }
  return absl::Seconds(response.ttl());
}

absl::Status EtcdClient::RevokeLease(int64_t lease) {
  pb::LeaseRevokeRequest request;
  request.set_id(lease);
  pb::LeaseRevokeResponse response;
  return Call("LeaseRevoke", [&](const auto& channel, absl::Time deadline) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(deadline));
    return FromGrpcStatus(
        pb::Lease::NewStub(channel)->LeaseRevoke(&context, request, &response));
  });
}

absl::Status EtcdClient::Put(absl::string_view key, absl::string_view value,
                             int64_t lease) {
  pb::PutRequest request;
  request.set_key(std::string(key));
  request.set_value(std::string(value));
  request.set_lease(lease);
  pb::PutResponse response;
  return Call("Put", [&](const auto& channel, absl::Time deadline) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(deadline));
    return FromGrpcStatus(
        pb::KV::NewStub(channel)->Put(&context, request, &response));
  });
}

absl::Status EtcdClient::Delete(absl::string_view key) {
  pb::DeleteRangeRequest request;
  request.set_key(std::string(key));
  pb::DeleteRangeResponse response;
  return Call("DeleteRange", [&](const auto& channel, absl::Time deadline) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(deadline));
    return FromGrpcStatus(
        pb::KV::NewStub(channel)->DeleteRange(&context, request, &response));
  });
}

absl::StatusOr<EtcdClient::Snapshot> EtcdClient::GetPrefix(
    absl::string_view prefix) {
  pb::RangeRequest request;
  request.set_key(std::string(prefix));
  request.set_range_end(PrefixEnd(prefix));
  pb::RangeResponse response;
  KVD_RETURN_IF_ERROR(
      Call("Range", [&](const auto& channel, absl::Time deadline) {
        grpc::ClientContext context;
        context.set_deadline(absl::ToChronoTime(deadline));
        return FromGrpcStatus(
            pb::KV::NewStub(channel)->Range(&context, request, &response));
      }));
  Snapshot out;
  out.revision = response.header().revision();
  for (const pb::KeyValue& kv : response.kvs()) {
    out.kvs.push_back({kv.key(), kv.value(), kv.mod_revision()});
  }
  return out;
}

absl::Status EtcdClient::Watch(
    absl::string_view prefix, int64_t start_revision,
    const std::function<void(std::vector<EtcdEvent>)>& on_events,
    EtcdWatchCancel* cancel) {
  size_t at;
  {
    absl::MutexLock lock(&mu_);
    at = current_;
  }
  grpc::ClientContext context;
  if (!cancel->Attach(&context)) return absl::CancelledError("watch cancelled");
  auto stub = pb::Watch::NewStub(Channel(at));
  auto stream = stub->Watch(&context);
  pb::WatchRequest request;
  pb::WatchCreateRequest* create = request.mutable_create_request();
  create->set_key(std::string(prefix));
  create->set_range_end(PrefixEnd(prefix));
  create->set_start_revision(start_revision);
  absl::Status ended;
  pb::WatchResponse response;
  if (!stream->Write(request)) {
    ended = absl::UnavailableError("cannot open the watch stream");
  }
  while (ended.ok() && stream->Read(&response)) {
    if (response.canceled()) {
      ended = response.compact_revision() > 0
                  ? absl::OutOfRangeError(absl::StrCat(
                        "revision ", start_revision, " compacted (now ",
                        response.compact_revision(), ")"))
                  : absl::UnavailableError(absl::StrCat(
                        "watch cancelled by etcd: ", response.cancel_reason()));
      break;
    }
    if (response.events_size() == 0) continue;  // created, progress
    std::vector<EtcdEvent> events;
    events.reserve(response.events_size());
    for (const pb::Event& e : response.events()) {
      events.push_back({e.type() == pb::Event::DELETE, e.kv().key(),
                        e.kv().value(), e.kv().mod_revision()});
    }
    on_events(std::move(events));
  }
  context.TryCancel();
  grpc::Status status = stream->Finish();
  cancel->Detach();
  if (!ended.ok()) return ended;
  if (cancel->cancelled()) return absl::CancelledError("watch cancelled");
  absl::Status s = FromGrpcStatus(status, "etcd Watch");
  if (s.ok()) s = absl::UnavailableError("etcd closed the watch stream");
  // The next watch (after this one broke) starts at the next endpoint.
  Answered(at, s);
  absl::MutexLock lock(&mu_);
  current_ = (at + 1) % endpoints_.size();
  return s;
}

}  // namespace kvd::cluster
