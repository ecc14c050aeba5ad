#include "transfer/ucx/ucx_transport.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <initializer_list>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "core/status.h"
#include "transfer/ucx/internal/ucx_transport_impl.h"

namespace kvd {
namespace {

// UCX_TLS names of the transports that move bytes one-sided natively.
constexpr std::initializer_list<absl::string_view> kSharedMemory = {
    "sm", "shm", "posix", "sysv", "cma", "knem", "xpmem"};
constexpr std::initializer_list<absl::string_view> kRdma = {
    "rc", "rc_x", "rc_v", "dc", "dc_x", "ud", "ud_x", "ud_v", "ib"};

// Whether a UCX_TLS list allows any of `names` ("default"/"all" allow all).
bool UcxAllowsAny(const std::vector<std::string>& transports,
                  std::initializer_list<absl::string_view> names) {
  for (const std::string& t : transports) {
    if (t == "default" || t == "all") return true;
    for (absl::string_view n : names) {
      if (t == n) return true;
    }
  }
  return false;
}

}  // namespace

namespace ucx_internal {

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
  info_.native_rma_same_host = UcxAllowsAny(info_.transports, kSharedMemory);
  std::error_code ec;
  auto ib = std::filesystem::directory_iterator("/sys/class/infiniband", ec);
  info_.native_rma_remote = !ec &&
                            ib != std::filesystem::directory_iterator() &&
                            UcxAllowsAny(info_.transports, kRdma);

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

void UcxTransport::SetTick(absl::Duration period, std::function<void()> tick) {
  Post([this, period, tick = std::move(tick)]() mutable {
    tick_ = std::move(tick);
    tick_period_ = period;
    next_tick_ = absl::Now() + period;
  });
}

}  // namespace ucx_internal

bool UcxDetectsPeerFailure(const std::vector<std::string>& transports) {
  // UCX 1.13's shared-memory transports (and self) cannot report a dead
  // peer, and an endpoint that asks for failure reports never uses them. So
  // failure handling is on only when none is allowed (UCX's default list has
  // them).
  return !transports.empty() && !UcxAllowsAny(transports, kSharedMemory) &&
         !UcxAllowsAny(transports, {"self"});
}

absl::StatusOr<std::unique_ptr<Transport>> CreateUcxTransport(
    const UcxOptions& options) {
  auto transport = std::make_unique<ucx_internal::UcxTransport>(options);
  KVD_RETURN_IF_ERROR(transport->Start());
  return transport;
}

}  // namespace kvd
