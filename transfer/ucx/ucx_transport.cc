#include "transfer/ucx/ucx_transport.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <ucp/api/ucp.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "core/check.h"
#include "core/status.h"

namespace kvd {
namespace {

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

// One operation in flight: what to call when UCX completes it.
struct Op {
  Op(int* in_flight, Completion done, std::string header, const char* what)
      : in_flight(in_flight),
        done(std::move(done)),
        header(std::move(header)),
        what(what) {
    ++*in_flight;
  }
  ~Op() { --*in_flight; }

  int* const in_flight;  // the transport's count, on its progress thread
  Completion done;
  std::string header;  // an AM header must outlive its send
  const char* what;
};

void OpDone(void* request, ucs_status_t status, void* user_data) {
  std::unique_ptr<Op> op(static_cast<Op*>(user_data));
  if (request != nullptr) ucp_request_free(request);
  op->done(UcsToStatus(status, op->what));
}

void RecvOpDone(void* request, ucs_status_t status, size_t /*length*/,
                void* user_data) {
  OpDone(request, status, user_data);
}

// Completes `op` now when UCX finished (or failed) the call immediately;
// otherwise the callback will.
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

class UcxTransport;

class UcxRegistration final : public Registration {
 public:
  UcxRegistration(UcxTransport* transport, absl::Span<uint8_t> memory,
                  ucp_mem_h memh, std::string rkey)
      : transport_(transport),
        memory_(memory),
        memh_(memh),
        rkey_(std::move(rkey)) {}
  ~UcxRegistration() override;

  absl::Span<uint8_t> memory() const override { return memory_; }
  const std::string& rkey() const override { return rkey_; }

 private:
  UcxTransport* const transport_;
  const absl::Span<uint8_t> memory_;
  const ucp_mem_h memh_;
  const std::string rkey_;
};

class UcxTransport final : public Transport {
 public:
  UcxTransport(const UcxOptions& options) : options_(options) {}
  ~UcxTransport() override;

  absl::Status Start();

  TransportInfo info() const override { return info_; }
  std::string address() const override { return address_; }
  absl::StatusOr<PeerId> Connect(absl::string_view address,
                                 PeerErrorHandler on_error) override;
  void Disconnect(PeerId peer) override;
  absl::StatusOr<std::unique_ptr<Registration>> Register(
      absl::Span<uint8_t> memory) override;
  void SetHandler(uint16_t type, MessageHandler handler) override;
  void Send(PeerId peer, uint16_t type, std::string header,
            absl::Span<const uint8_t> payload, Completion done) override;
  void Put(PeerId peer, absl::Span<const uint8_t> local,
           uint64_t remote_address, const std::string& rkey,
           Completion done) override;
  void Get(PeerId peer, absl::Span<uint8_t> local, uint64_t remote_address,
           const std::string& rkey, Completion done) override;
  void Flush(PeerId peer, Completion done) override;
  void Post(std::function<void()> task) override;
  void SetTick(absl::Duration period, std::function<void()> tick) override;

  // Runs `task` on the progress thread and waits for it (inline when called
  // from that thread).
  void RunOnLoop(const std::function<void()>& task);
  void Unmap(ucp_mem_h memh);

 private:
  struct Peer {
    ucp_ep_h ep = nullptr;
    PeerErrorHandler on_error;
    absl::flat_hash_map<std::string, ucp_rkey_h> rkeys;
  };

  // A rendezvous payload: UCX keeps the data at the sender until received.
  class RndvSource final : public IncomingPayload::Source {
   public:
    RndvSource(UcxTransport* t, void* desc, size_t size)
        : t_(t), desc_(desc), size_(size) {}
    ~RndvSource() override {
      if (desc_ == nullptr) return;
      UcxTransport* t = t_;
      void* desc = desc_;
      t->Post([t, desc] { ucp_am_data_release(t->worker_, desc); });
    }
    void Receive(absl::Span<uint8_t> dst, Completion done) override {
      KVD_CHECK(dst.size() >= size_, "receive buffer smaller than the payload");
      UcxTransport* t = t_;
      void* desc = std::exchange(desc_, nullptr);
      const size_t size = size_;
      t->Post([t, desc, dst, size, done = std::move(done)]() mutable {
        auto* op = new Op(&t->in_flight_, std::move(done), {}, "am receive");
        ucp_request_param_t param = OpParam(op);
        param.cb.recv_am = RecvOpDone;
        Track(ucp_am_recv_data_nbx(t->worker_, desc, dst.data(), size, &param),
              op);
      });
    }

   private:
    UcxTransport* const t_;
    void* desc_;
    const size_t size_;
  };

  // An eager payload, copied out of UCX's buffer during the callback.
  class CopiedSource final : public IncomingPayload::Source {
   public:
    CopiedSource(const void* data, size_t size)
        : bytes_(static_cast<const uint8_t*>(data),
                 static_cast<const uint8_t*>(data) + size) {}
    void Receive(absl::Span<uint8_t> dst, Completion done) override {
      KVD_CHECK(dst.size() >= bytes_.size(),
                "receive buffer smaller than the payload");
      if (!bytes_.empty())
        std::memcpy(dst.data(), bytes_.data(), bytes_.size());
      done(absl::OkStatus());
    }

   private:
    std::vector<uint8_t> bytes_;
  };

  static ucs_status_t OnMessage(void* arg, const void* header,
                                size_t header_length, void* data, size_t length,
                                const ucp_am_recv_param_t* param);
  static void OnPeerError(void* arg, ucp_ep_h ep, ucs_status_t status);

  bool OnLoopThread() const {
    return std::this_thread::get_id() == thread_.get_id();
  }
  void Loop();
  bool RunQueue();  // false once stopping
  // The peer's endpoint, or null (after failing `done`) when it is gone.
  Peer* FindPeer(PeerId peer, const Completion& done);
  absl::StatusOr<ucp_rkey_h> RkeyFor(Peer& peer, const std::string& rkey);
  ucp_mem_h MemhFor(const void* address, size_t length) const;
  void ClosePeer(PeerId id);

  const UcxOptions options_;
  TransportInfo info_;
  std::string address_;
  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: Post wakes the loop through it
  std::thread thread_;

  absl::Mutex mu_;
  std::vector<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  // Progress-thread state.
  MessageHandler handlers_[kMaxMessageTypes];
  PeerId next_peer_ = 1;
  absl::flat_hash_map<PeerId, Peer> peers_;
  absl::flat_hash_map<ucp_ep_h, PeerId> peer_of_ep_;
  std::map<uintptr_t, std::pair<size_t, ucp_mem_h>> regions_;  // by address
  absl::Duration tick_period_ = absl::InfiniteDuration();
  absl::Time next_tick_ = absl::InfiniteFuture();
  std::function<void()> tick_;
  int in_flight_ = 0;  // UCX operations started and not yet completed
  // Endpoint-close requests still in progress.
  std::vector<void*> closing_;
};

UcxRegistration::~UcxRegistration() { transport_->Unmap(memh_); }

absl::Status UcxTransport::Start() {
  ucp_config_t* config = nullptr;
  KVD_RETURN_IF_ERROR(
      UcsToStatus(ucp_config_read(nullptr, nullptr, &config), "config"));
  absl::Status configured;
  if (!options_.tls.empty()) {
    configured = UcsToStatus(
        ucp_config_modify(config, "TLS", options_.tls.c_str()), "UCX_TLS");
  }
  if (configured.ok() && !options_.net_devices.empty()) {
    configured = UcsToStatus(
        ucp_config_modify(config, "NET_DEVICES", options_.net_devices.c_str()),
        "UCX_NET_DEVICES");
  }
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_NAME;
  params.features = UCP_FEATURE_AM | UCP_FEATURE_RMA | UCP_FEATURE_WAKEUP;
  params.name = options_.name.c_str();
  if (configured.ok()) {
    configured = UcsToStatus(ucp_init(&params, config, &context_),
                             "init (UCX_TLS=" + options_.tls + ")");
  }
  ucp_config_release(config);
  KVD_RETURN_IF_ERROR(configured);

  ucp_worker_params_t wp{};
  wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  wp.thread_mode = UCS_THREAD_MODE_SINGLE;
  KVD_RETURN_IF_ERROR(
      UcsToStatus(ucp_worker_create(context_, &wp, &worker_), "worker create"));
  ucp_address_t* address = nullptr;
  size_t address_length = 0;
  KVD_RETURN_IF_ERROR(UcsToStatus(
      ucp_worker_get_address(worker_, &address, &address_length), "address"));
  address_.assign(reinterpret_cast<const char*>(address), address_length);
  ucp_worker_release_address(worker_, address);

  int ucx_fd = -1;
  KVD_RETURN_IF_ERROR(
      UcsToStatus(ucp_worker_get_efd(worker_, &ucx_fd), "wake-up fd"));
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epoll_fd_ < 0 || wake_fd_ < 0) {
    return ErrnoToStatus(errno, "epoll/eventfd for the UCX progress thread");
  }
  for (int fd : {ucx_fd, wake_fd_}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      return ErrnoToStatus(errno, "epoll_ctl");
    }
  }

  ucp_context_attr_t attr{};
  attr.field_mask = UCP_ATTR_FIELD_MEMORY_TYPES;
  if (ucp_context_query(context_, &attr) == UCS_OK) {
    info_.cuda_memory =
        (attr.memory_types & UCS_BIT(UCS_MEMORY_TYPE_CUDA)) != 0;
  }
  info_.backend = "ucx";
  info_.transports = absl::StrSplit(
      options_.tls.empty() ? std::string("default") : options_.tls, ',',
      absl::SkipEmpty());
  info_.detects_peer_failure = UcxDetectsPeerFailure(info_.transports);

  {  // one UCP handler; the message type is the header's first byte
    ucp_am_handler_param_t hp{};
    hp.field_mask =
        UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
        UCP_AM_HANDLER_PARAM_FIELD_ARG | UCP_AM_HANDLER_PARAM_FIELD_FLAGS;
    hp.id = 0;
    hp.cb = &UcxTransport::OnMessage;
    hp.arg = this;
    hp.flags = UCP_AM_FLAG_WHOLE_MSG;
    KVD_RETURN_IF_ERROR(UcsToStatus(
        ucp_worker_set_am_recv_handler(worker_, &hp), "am handler"));
  }
  thread_ = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

UcxTransport::~UcxTransport() {
  if (thread_.joinable()) {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    const uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof(one));
    thread_.join();
  }
  KVD_CHECK(regions_.empty(), "a Registration outlived its UcxTransport");
  if (worker_ != nullptr) ucp_worker_destroy(worker_);
  if (context_ != nullptr) ucp_cleanup(context_);
  if (epoll_fd_ >= 0) close(epoll_fd_);
  if (wake_fd_ >= 0) close(wake_fd_);
}

void UcxTransport::Post(std::function<void()> task) {
  bool wake;
  {
    absl::MutexLock lock(&mu_);
    wake = queue_.empty();
    queue_.push_back(std::move(task));
  }
  if (wake && !OnLoopThread()) {
    const uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof(one));
  }
}

void UcxTransport::RunOnLoop(const std::function<void()>& task) {
  if (OnLoopThread()) {
    task();
    return;
  }
  absl::Notification done;
  Post([&] {
    task();
    done.Notify();
  });
  done.WaitForNotification();
}

bool UcxTransport::RunQueue() {
  std::vector<std::function<void()>> tasks;
  bool stopping;
  {
    absl::MutexLock lock(&mu_);
    tasks.swap(queue_);
    stopping = stopping_;
  }
  for (auto& task : tasks) task();
  return !stopping;
}

void UcxTransport::Loop() {
  // After activity the loop keeps polling for a short while before it arms
  // the wake-up fd and sleeps: a reply usually follows within microseconds,
  // and not every transport wakes the fd promptly (shared memory). While
  // operations are in flight it sleeps at most 1 ms at a time.
  constexpr absl::Duration kSpin = absl::Microseconds(50);
  absl::Time last_activity = absl::Now();
  for (;;) {
    if (!RunQueue()) break;
    bool active = false;
    while (ucp_worker_progress(worker_) != 0) active = true;
    const absl::Time now = absl::Now();
    if (active) last_activity = now;
    if (now >= next_tick_) {
      next_tick_ = now + tick_period_;
      tick_();
    }
    {
      absl::MutexLock lock(&mu_);
      if (!queue_.empty()) last_activity = now;
      if (!queue_.empty() || stopping_) continue;
    }
    if (now - last_activity < kSpin) continue;
    if (ucp_worker_arm(worker_) == UCS_ERR_BUSY) continue;
    int timeout_ms = in_flight_ > 0 ? 1 : -1;
    if (next_tick_ != absl::InfiniteFuture()) {
      const int64_t to_tick =
          std::max<int64_t>(0, absl::ToInt64Milliseconds(next_tick_ - now) + 1);
      if (timeout_ms < 0 || to_tick < timeout_ms) {
        timeout_ms = static_cast<int>(to_tick);
      }
    }
    epoll_event events[2];
    const int n = epoll_wait(epoll_fd_, events, 2, timeout_ms);
    for (int i = 0; i < n; ++i) {
      if (events[i].data.fd == wake_fd_) {
        uint64_t count;
        (void)!read(wake_fd_, &count, sizeof(count));
      }
    }
    last_activity = absl::Now();
  }
  // Shutting down: close every endpoint and let the closes finish.
  std::vector<PeerId> ids;
  for (const auto& [id, peer] : peers_) ids.push_back(id);
  for (PeerId id : ids) ClosePeer(id);
  while (!closing_.empty()) {
    ucp_worker_progress(worker_);
    std::erase_if(closing_, [](void* request) {
      if (ucp_request_check_status(request) == UCS_INPROGRESS) return false;
      ucp_request_free(request);
      return true;
    });
  }
  RunQueue();  // releases of payloads dropped during the closes
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

void UcxTransport::OnPeerError(void* arg, ucp_ep_h ep, ucs_status_t status) {
  auto* t = static_cast<UcxTransport*>(arg);
  auto it = t->peer_of_ep_.find(ep);
  if (it == t->peer_of_ep_.end()) return;
  const PeerId id = it->second;
  PeerErrorHandler on_error = std::move(t->peers_[id].on_error);
  t->ClosePeer(id);
  if (on_error) on_error(id, UcsToStatus(status, "peer failed"));
}

void UcxTransport::ClosePeer(PeerId id) {
  auto it = peers_.find(id);
  if (it == peers_.end()) return;
  Peer peer = std::move(it->second);
  peers_.erase(it);
  peer_of_ep_.erase(peer.ep);
  for (auto& [bytes, rkey] : peer.rkeys) ucp_rkey_destroy(rkey);
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  param.flags = UCP_EP_CLOSE_FLAG_FORCE;
  ucs_status_ptr_t request = ucp_ep_close_nbx(peer.ep, &param);
  if (request != nullptr && !UCS_PTR_IS_ERR(request)) {
    closing_.push_back(request);
  }
}

absl::StatusOr<PeerId> UcxTransport::Connect(absl::string_view address,
                                             PeerErrorHandler on_error) {
  absl::StatusOr<PeerId> result;
  const std::string addr(address);
  RunOnLoop([&] {
    ucp_ep_params_t ep{};
    ep.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS |
                    UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                    UCP_EP_PARAM_FIELD_ERR_HANDLER;
    ep.address = reinterpret_cast<const ucp_address_t*>(addr.data());
    ep.err_mode = UCP_ERR_HANDLING_MODE_PEER;
    ep.err_handler.cb = &UcxTransport::OnPeerError;
    ep.err_handler.arg = this;
    if (!info_.detects_peer_failure) {
      ep.field_mask &= ~(UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                         UCP_EP_PARAM_FIELD_ERR_HANDLER);
    }
    ucp_ep_h handle = nullptr;
    ucs_status_t status = ucp_ep_create(worker_, &ep, &handle);
    if (status == UCS_ERR_UNREACHABLE) {
      // Shared-memory transports cannot detect a dead peer in UCX 1.13 and
      // refuse the mode that asks them to; connect without it. The data
      // path's own deadlines then bound every operation.
      ep.field_mask &= ~(UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                         UCP_EP_PARAM_FIELD_ERR_HANDLER);
      status = ucp_ep_create(worker_, &ep, &handle);
    }
    absl::Status created = UcsToStatus(status, "connect");
    if (!created.ok()) {
      result = created;
      return;
    }
    const PeerId id = next_peer_++;
    peers_[id] = Peer{handle, std::move(on_error), {}};
    peer_of_ep_[handle] = id;
    result = id;
  });
  return result;
}

void UcxTransport::Disconnect(PeerId peer) {
  Post([this, peer] { ClosePeer(peer); });
}

absl::StatusOr<std::unique_ptr<Registration>> UcxTransport::Register(
    absl::Span<uint8_t> memory) {
  absl::StatusOr<std::unique_ptr<Registration>> result;
  RunOnLoop([&] {
    ucp_mem_map_params_t mp{};
    mp.field_mask =
        UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
    mp.address = memory.data();
    mp.length = memory.size();
    ucp_mem_h memh = nullptr;
    absl::Status mapped =
        UcsToStatus(ucp_mem_map(context_, &mp, &memh), "mem map");
    if (!mapped.ok()) {
      result = mapped;
      return;
    }
    void* packed = nullptr;
    size_t packed_size = 0;
    absl::Status packed_ok = UcsToStatus(
        ucp_rkey_pack(context_, memh, &packed, &packed_size), "rkey pack");
    if (!packed_ok.ok()) {
      ucp_mem_unmap(context_, memh);
      result = packed_ok;
      return;
    }
    std::string rkey(static_cast<const char*>(packed), packed_size);
    ucp_rkey_buffer_release(packed);
    regions_[reinterpret_cast<uintptr_t>(memory.data())] = {memory.size(),
                                                            memh};
    result =
        std::make_unique<UcxRegistration>(this, memory, memh, std::move(rkey));
  });
  return result;
}

void UcxTransport::Unmap(ucp_mem_h memh) {
  RunOnLoop([&] {
    std::erase_if(regions_, [memh](const auto& entry) {
      return entry.second.second == memh;
    });
    ucp_mem_unmap(context_, memh);
  });
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

void UcxTransport::SetTick(absl::Duration period, std::function<void()> tick) {
  Post([this, period, tick = std::move(tick)]() mutable {
    tick_ = std::move(tick);
    tick_period_ = period;
    next_tick_ = absl::Now() + period;
  });
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
  Post([this, peer, local, remote_address, rkey,
        done = std::move(done)]() mutable {
    Peer* p = FindPeer(peer, done);
    if (p == nullptr) return;
    absl::StatusOr<ucp_rkey_h> handle = RkeyFor(*p, rkey);
    if (!handle.ok()) return done(handle.status());
    auto* op = new Op(&in_flight_, std::move(done), {}, "put");
    ucp_request_param_t param = OpParam(op);
    if (ucp_mem_h memh = MemhFor(local.data(), local.size())) {
      param.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
      param.memh = memh;
    }
    Track(ucp_put_nbx(p->ep, local.data(), local.size(), remote_address,
                      *handle, &param),
          op);
  });
}

void UcxTransport::Get(PeerId peer, absl::Span<uint8_t> local,
                       uint64_t remote_address, const std::string& rkey,
                       Completion done) {
  Post([this, peer, local, remote_address, rkey,
        done = std::move(done)]() mutable {
    Peer* p = FindPeer(peer, done);
    if (p == nullptr) return;
    absl::StatusOr<ucp_rkey_h> handle = RkeyFor(*p, rkey);
    if (!handle.ok()) return done(handle.status());
    auto* op = new Op(&in_flight_, std::move(done), {}, "get");
    ucp_request_param_t param = OpParam(op);
    if (ucp_mem_h memh = MemhFor(local.data(), local.size())) {
      param.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
      param.memh = memh;
    }
    Track(ucp_get_nbx(p->ep, local.data(), local.size(), remote_address,
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

}  // namespace

bool UcxDetectsPeerFailure(const std::vector<std::string>& transports) {
  // UCX 1.13's shared-memory transports cannot report a dead peer, and an
  // endpoint that asks for failure reports never uses them. So failure
  // handling is on only when no shared-memory transport is allowed (UCX's
  // default list has them).
  if (transports.empty()) return false;
  for (const std::string& tl : transports) {
    for (absl::string_view shm : {"default", "all", "sm", "shm", "posix",
                                  "sysv", "cma", "knem", "xpmem", "self"}) {
      if (tl == shm) return false;
    }
  }
  return true;
}

absl::StatusOr<std::unique_ptr<Transport>> CreateUcxTransport(
    const UcxOptions& options) {
  auto transport = std::make_unique<UcxTransport>(options);
  KVD_RETURN_IF_ERROR(transport->Start());
  return transport;
}

}  // namespace kvd
