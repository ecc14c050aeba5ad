// The UCX transport's messages and one-sided operations; the lifecycle and
// progress loop are in ucx_transport.cc.
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "transfer/ucx/internal/ucx_transport_impl.h"

namespace kvd::ucx_internal {

absl::Status UcsToStatus(ucs_status_t status, absl::string_view what) {
  if (status == UCS_OK) return absl::OkStatus();
  const std::string msg =
      absl::StrCat("ucx ", what, ": ", ucs_status_string(status));
  switch (status) {
    case UCS_ERR_CANCELED:
      return absl::CancelledError(msg);
    case UCS_ERR_TIMED_OUT:
    case UCS_ERR_ENDPOINT_TIMEOUT:
      return absl::DeadlineExceededError(msg);
    case UCS_ERR_INVALID_PARAM:
      return absl::InvalidArgumentError(msg);
    case UCS_ERR_NO_MEMORY:
    case UCS_ERR_EXCEEDS_LIMIT:
      return absl::ResourceExhaustedError(msg);
    default:
      return absl::UnavailableError(msg);
  }
}

void OpDone(void* request, ucs_status_t status, void* user_data) {
  std::unique_ptr<Op> op(static_cast<Op*>(user_data));
  if (request != nullptr) ucp_request_free(request);
  op->done(UcsToStatus(status, op->what));
}

void RecvOpDone(void* request, ucs_status_t status, size_t /*length*/,
                void* user_data) {
  OpDone(request, status, user_data);
}

void Track(ucs_status_ptr_t request, Op* op) {
  if (request == nullptr) {
    OpDone(nullptr, UCS_OK, op);
  } else if (UCS_PTR_IS_ERR(request)) {
    OpDone(nullptr, UCS_PTR_STATUS(request), op);
  }
}

ucp_request_param_t OpParam(Op* op) {
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  param.cb.send = OpDone;
  param.user_data = op;
  return param;
}

ucs_status_t UcxTransport::OnMessage(void* arg, const void* header,
                                     size_t header_length, void* data,
                                     size_t length,
                                     const ucp_am_recv_param_t* param) {
  auto* t = static_cast<UcxTransport*>(arg);
  const bool rndv = (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0;
  IncomingPayload payload;
  if (rndv) {
    payload =
        IncomingPayload(length, std::make_unique<RndvSource>(t, data, length));
  } else if (length > 0) {
    payload =
        IncomingPayload(length, std::make_unique<CopiedSource>(data, length));
  }
  // The message type travels as the first header byte (see Send).
  if (header_length < 1) return UCS_OK;  // malformed: dropped with its payload
  const auto* h = static_cast<const uint8_t*>(header);
  const uint8_t type = h[0];
  if (type < kMaxMessageTypes && t->handlers_[type]) {
    t->handlers_[type](absl::MakeConstSpan(h + 1, header_length - 1),
                       std::move(payload));
  }
  // A rendezvous descriptor is now owned by its RndvSource (received or
  // released through the queue).
  return rndv ? UCS_INPROGRESS : UCS_OK;
}
ucp_mem_h UcxTransport::MemhFor(const void* address, size_t length) const {
  const auto a = reinterpret_cast<uintptr_t>(address);
  auto it = regions_.upper_bound(a);
  if (it == regions_.begin()) return nullptr;
  --it;
  return a + length <= it->first + it->second.first ? it->second.second
                                                    : nullptr;
}
void UcxTransport::SetHandler(uint16_t type, MessageHandler handler) {
  KVD_CHECK(type < kMaxMessageTypes, "message type out of range");
  RunOnLoop([&] { handlers_[type] = std::move(handler); });
}
UcxTransport::Peer* UcxTransport::FindPeer(PeerId peer,
                                           const Completion& done) {
  auto it = peers_.find(peer);
  if (it != peers_.end()) return &it->second;
  done(absl::UnavailableError(
      absl::StrCat("peer ", peer, " is disconnected or failed")));
  return nullptr;
}
absl::StatusOr<ucp_rkey_h> UcxTransport::RkeyFor(Peer& peer,
                                                 const std::string& rkey) {
  auto it = peer.rkeys.find(rkey);
  if (it != peer.rkeys.end()) return it->second;
  // Clients register a few buffers once; a peer cycling through thousands of
  // keys gets its cache reset rather than growing it without bound.
  constexpr size_t kMaxRkeysPerPeer = 1024;
  if (peer.rkeys.size() >= kMaxRkeysPerPeer) {
    for (auto& [bytes, handle] : peer.rkeys) ucp_rkey_destroy(handle);
    peer.rkeys.clear();
  }
  ucp_rkey_h handle = nullptr;
  KVD_RETURN_IF_ERROR(UcsToStatus(
      ucp_ep_rkey_unpack(peer.ep, rkey.data(), &handle), "rkey unpack"));
  peer.rkeys.emplace(rkey, handle);
  return handle;
}
void UcxTransport::Send(PeerId peer, uint16_t type, std::string header,
                        absl::Span<const uint8_t> payload, Completion done) {
  KVD_CHECK(type < kMaxMessageTypes, "message type out of range");
  header.insert(header.begin(), static_cast<char>(type));
  Post([this, peer, header = std::move(header), payload,
        done = std::move(done)]() mutable {
    Peer* p = FindPeer(peer, done);
    if (p == nullptr) return;
    auto* op =
        new Op(&in_flight_, std::move(done), std::move(header), "am send");
    ucp_request_param_t param = OpParam(op);
    Track(ucp_am_send_nbx(p->ep, 0, op->header.data(), op->header.size(),
                          payload.data(), payload.size(), &param),
          op);
  });
}
void UcxTransport::Put(PeerId peer, absl::Span<const uint8_t> local,
                       uint64_t remote_address, const std::string& rkey,
                       Completion done) {
  // UCX reads `local` for a put; the span type only differs for the API.
  Rma(/*write=*/true, peer,
      absl::MakeSpan(const_cast<uint8_t*>(local.data()), local.size()),
      remote_address, rkey, std::move(done));
}

void UcxTransport::Get(PeerId peer, absl::Span<uint8_t> local,
                       uint64_t remote_address, const std::string& rkey,
                       Completion done) {
  Rma(/*write=*/false, peer, local, remote_address, rkey, std::move(done));
}

void UcxTransport::Rma(bool write, PeerId peer, absl::Span<uint8_t> local,
                       uint64_t remote_address, const std::string& rkey,
                       Completion done) {
  Post([this, write, peer, local, remote_address, rkey,
        done = std::move(done)]() mutable {
    Peer* p = FindPeer(peer, done);
    if (p == nullptr) return;
    absl::StatusOr<ucp_rkey_h> handle = RkeyFor(*p, rkey);
    if (!handle.ok()) return done(handle.status());
    auto* op = new Op(&in_flight_, std::move(done), {}, write ? "put" : "get");
    ucp_request_param_t param = OpParam(op);
    if (ucp_mem_h memh = MemhFor(local.data(), local.size())) {
      param.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
      param.memh = memh;
    }
    Track(write ? ucp_put_nbx(p->ep, local.data(), local.size(), remote_address,
                              *handle, &param)
                : ucp_get_nbx(p->ep, local.data(), local.size(), remote_address,
                              *handle, &param),
          op);
  });
}

void UcxTransport::Flush(PeerId peer, Completion done) {
  Post([this, peer, done = std::move(done)]() mutable {
    Peer* p = FindPeer(peer, done);
    if (p == nullptr) return;
    auto* op = new Op(&in_flight_, std::move(done), {}, "flush");
    ucp_request_param_t param = OpParam(op);
    Track(ucp_ep_flush_nbx(p->ep, &param), op);
  });
}

}  // namespace kvd::ucx_internal
