#include "transfer/inproc/inproc_transport.h"

#include <cstring>
#include <map>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "core/check.h"

namespace kvd {
namespace {

// The shared part of one transport: its progress thread, handlers and
// registered regions. Peers hold it by shared_ptr, so a message or copy in
// flight never touches a destroyed object; `closed` turns late work away.
class Core : public std::enable_shared_from_this<Core> {
 public:
  explicit Core(std::string address) : address_(std::move(address)) {}

  void Start() {
    thread_ = std::thread([this] { Loop(); });
  }

  // Stops the loop after running what is queued. Called once, by the owner.
  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      closed_ = true;
    }
    thread_.join();
  }

  // False (and `task` dropped) once the core is closed.
  bool Post(std::function<void()> task) {
    absl::MutexLock lock(&mu_);
    if (closed_) return false;
    queue_.push_back(std::move(task));
    return true;
  }

  void SetTick(absl::Duration period, std::function<void()> tick) {
    absl::MutexLock lock(&mu_);
    tick_period_ = period;
    next_tick_ = absl::Now() + period;
    tick_ = std::move(tick);
    tick_changed_ = true;  // the loop waits for the old deadline: wake it
  }

  bool OnLoopThread() const {
    return std::this_thread::get_id() == thread_.get_id();
  }

  const std::string& address() const { return address_; }

  // Handlers: set and read on the loop thread only.
  MessageHandler handlers[Transport::kMaxMessageTypes];

  // Registered regions, by base address. Guarded so a peer's copy into or out
  // of one cannot race with its unregistration.
  absl::Mutex regions_mu;
  std::map<uintptr_t, size_t> regions ABSL_GUARDED_BY(regions_mu);

  // Copies between `local` and [remote, remote + n) of this core's registered
  // memory. kInvalidArgument when the range is not inside one region.
  absl::Status Access(uint64_t remote, uint8_t* local, size_t n, bool write)
      ABSL_LOCKS_EXCLUDED(regions_mu) {
    absl::MutexLock lock(&regions_mu);
    auto it = regions.upper_bound(remote);
    if (it == regions.begin() || remote + n < remote) {
      return absl::InvalidArgumentError(
          absl::StrCat("remote range at ", remote, " is not registered"));
    }
    --it;
    if (remote + n > it->first + it->second) {
      return absl::InvalidArgumentError(
          absl::StrCat("remote range [", remote, ", +", n,
                       ") leaves its registered region"));
    }
    auto* mem = reinterpret_cast<uint8_t*>(remote);
    if (write) {
      std::memcpy(mem, local, n);
    } else {
      std::memcpy(local, mem, n);
    }
    return absl::OkStatus();
  }

  // Peers watching this core: told when it goes away.
  absl::Mutex watchers_mu;
  std::vector<std::pair<std::weak_ptr<Core>, std::function<void()>>> watchers
      ABSL_GUARDED_BY(watchers_mu);

 private:
  void Loop() {
    for (;;) {
      std::vector<std::function<void()>> tasks;
      std::function<void()> tick;
      bool closed;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return !queue_.empty() || closed_ || tick_changed_ ||
                 absl::Now() >= next_tick_;
        };
        mu_.AwaitWithDeadline(absl::Condition(&ready), next_tick_);
        tick_changed_ = false;
        tasks.swap(queue_);
        closed = closed_;
        if (absl::Now() >= next_tick_) {
          next_tick_ = absl::Now() + tick_period_;
          tick = tick_;
        }
      }
      for (auto& task : tasks) task();
      if (tick) tick();
      if (closed && tasks.empty()) return;
    }
  }

  const std::string address_;
  std::thread thread_;
  absl::Mutex mu_;
  std::vector<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Duration tick_period_ ABSL_GUARDED_BY(mu_) = absl::InfiniteDuration();
  absl::Time next_tick_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  std::function<void()> tick_ ABSL_GUARDED_BY(mu_);
  bool tick_changed_ ABSL_GUARDED_BY(mu_) = false;
};

// Every live core of the process, by address.
struct Fabric {
  absl::Mutex mu;
  absl::flat_hash_map<std::string, std::weak_ptr<Core>> cores
      ABSL_GUARDED_BY(mu);
  uint64_t next_id ABSL_GUARDED_BY(mu) = 1;

  static Fabric& Get() {
    static Fabric* fabric = new Fabric;
    return *fabric;
  }
};

// Completes `done` on `core`'s loop (dropped when the core is closed: its
// owner is gone and nobody waits).
void CompleteOn(const std::shared_ptr<Core>& core, Completion done,
                absl::Status status) {
  core->Post([done = std::move(done), status] { done(status); });
}

class InProcRegistration final : public Registration {
 public:
  InProcRegistration(std::shared_ptr<Core> core, absl::Span<uint8_t> memory)
      : core_(std::move(core)),
        memory_(memory),
        rkey_(absl::StrCat(reinterpret_cast<uintptr_t>(memory.data()))) {}
  ~InProcRegistration() override {
    absl::MutexLock lock(&core_->regions_mu);
    core_->regions.erase(reinterpret_cast<uintptr_t>(memory_.data()));
  }
  absl::Span<uint8_t> memory() const override { return memory_; }
  const std::string& rkey() const override { return rkey_; }

 private:
  std::shared_ptr<Core> core_;
  absl::Span<uint8_t> memory_;
  std::string rkey_;
};

// A payload still in the sender's buffer; the sender's Send completes when
// it is received or dropped.
class InProcSource final : public IncomingPayload::Source {
 public:
  InProcSource(std::shared_ptr<Core> sender, absl::Span<const uint8_t> bytes,
               Completion sent)
      : sender_(std::move(sender)), bytes_(bytes), sent_(std::move(sent)) {}
  ~InProcSource() override {
    if (sent_) CompleteOn(sender_, std::move(sent_), absl::OkStatus());
  }
  void Receive(absl::Span<uint8_t> dst, Completion done) override {
    KVD_CHECK(dst.size() >= bytes_.size(),
              "receive buffer smaller than the payload");
    if (!bytes_.empty()) std::memcpy(dst.data(), bytes_.data(), bytes_.size());
    CompleteOn(sender_, std::move(sent_), absl::OkStatus());
    sent_ = nullptr;
    done(absl::OkStatus());
  }

 private:
  std::shared_ptr<Core> sender_;
  absl::Span<const uint8_t> bytes_;
  Completion sent_;
};

class InProcTransport final : public Transport {
 public:
  InProcTransport() {
    Fabric& fabric = Fabric::Get();
    absl::MutexLock lock(&fabric.mu);
    core_ = std::make_shared<Core>(absl::StrCat("inproc:", fabric.next_id++));
    fabric.cores[core_->address()] = core_;
    core_->Start();
  }

  ~InProcTransport() override {
    {
      Fabric& fabric = Fabric::Get();
      absl::MutexLock lock(&fabric.mu);
      fabric.cores.erase(core_->address());
    }
    core_->Stop();
    absl::MutexLock lock(&core_->watchers_mu);
    for (auto& [watcher, notify] : core_->watchers) {
      if (auto w = watcher.lock()) w->Post(std::move(notify));
    }
  }

  TransportInfo info() const override {
    TransportInfo info;
    info.backend = "inproc";
    info.transports = {"memcpy"};
    info.native_rma_same_host = true;  // a memcpy is what RMA would be
    return info;
  }
  std::string address() const override { return core_->address(); }

  absl::StatusOr<PeerId> Connect(absl::string_view address,
                                 PeerErrorHandler on_error) override {
    std::shared_ptr<Core> target;
    {
      Fabric& fabric = Fabric::Get();
      absl::MutexLock lock(&fabric.mu);
      auto it = fabric.cores.find(address);
      if (it != fabric.cores.end()) target = it->second.lock();
    }
    if (target == nullptr) {
      return absl::UnavailableError(
          absl::StrCat("no in-process transport at ", address));
    }
    absl::MutexLock lock(&peers_mu_);
    const PeerId id = next_peer_++;
    peers_[id] = target;
    absl::MutexLock watch(&target->watchers_mu);
    target->watchers.emplace_back(
        core_, [this, id, on_error = std::move(on_error)] {
          bool known;
          {
            absl::MutexLock lock(&peers_mu_);
            known = peers_.erase(id) > 0;
          }
          if (known && on_error) {
            on_error(id, absl::UnavailableError(absl::StrCat(
                             "in-process peer ", id, " went away")));
          }
        });
    return id;
  }

  void Disconnect(PeerId peer) override {
    absl::MutexLock lock(&peers_mu_);
    peers_.erase(peer);
  }

  absl::StatusOr<std::unique_ptr<Registration>> Register(
      absl::Span<uint8_t> memory) override {
    absl::MutexLock lock(&core_->regions_mu);
    core_->regions[reinterpret_cast<uintptr_t>(memory.data())] = memory.size();
    return std::make_unique<InProcRegistration>(core_, memory);
  }

  void SetHandler(uint16_t type, MessageHandler handler) override {
    KVD_CHECK(type < kMaxMessageTypes, "message type out of range");
    RunOnLoop([&] { core_->handlers[type] = std::move(handler); });
  }

  void Send(PeerId peer, uint16_t type, std::string header,
            absl::Span<const uint8_t> payload, Completion done) override {
    std::shared_ptr<Core> target = Target(peer);
    if (target == nullptr) return Unavailable(peer, std::move(done));
    auto sent = std::make_shared<Completion>(std::move(done));
    const bool posted = target->Post([target, type, header = std::move(header),
                                      payload, sender = core_, sent] {
      IncomingPayload incoming;
      if (!payload.empty()) {
        incoming = IncomingPayload(
            payload.size(),
            std::make_unique<InProcSource>(sender, payload, std::move(*sent)));
      } else {
        CompleteOn(sender, std::move(*sent), absl::OkStatus());
      }
      const auto* h = reinterpret_cast<const uint8_t*>(header.data());
      if (target->handlers[type]) {
        target->handlers[type](absl::MakeConstSpan(h, header.size()),
                               std::move(incoming));
      }
    });
    if (!posted) Unavailable(peer, std::move(*sent));
  }

  void Put(PeerId peer, absl::Span<const uint8_t> local,
           uint64_t remote_address, const std::string& rkey,
           Completion done) override {
    Copy(peer, const_cast<uint8_t*>(local.data()), local.size(), remote_address,
         rkey, /*write=*/true, std::move(done));
  }

  void Get(PeerId peer, absl::Span<uint8_t> local, uint64_t remote_address,
           const std::string& rkey, Completion done) override {
    Copy(peer, local.data(), local.size(), remote_address, rkey,
         /*write=*/false, std::move(done));
  }

  void Flush(PeerId peer, Completion done) override {
    // Copies complete synchronously: ordering after them is all flush means.
    if (Target(peer) == nullptr) return Unavailable(peer, std::move(done));
    CompleteOn(core_, std::move(done), absl::OkStatus());
  }

  void Post(std::function<void()> task) override {
    core_->Post(std::move(task));
  }

  void SetTick(absl::Duration period, std::function<void()> tick) override {
    core_->SetTick(period, std::move(tick));
  }

 private:
  void RunOnLoop(const std::function<void()>& task) {
    if (core_->OnLoopThread()) return task();
    absl::Notification done;
    core_->Post([&] {
      task();
      done.Notify();
    });
    done.WaitForNotification();
  }

  std::shared_ptr<Core> Target(PeerId peer) {
    absl::MutexLock lock(&peers_mu_);
    auto it = peers_.find(peer);
    return it == peers_.end() ? nullptr : it->second;
  }

  void Unavailable(PeerId peer, Completion done) {
    CompleteOn(core_, std::move(done),
               absl::UnavailableError(
                   absl::StrCat("peer ", peer, " is disconnected or failed")));
  }

  void Copy(PeerId peer, uint8_t* local, size_t n, uint64_t remote,
            const std::string& rkey, bool write, Completion done) {
    std::shared_ptr<Core> target = Target(peer);
    if (target == nullptr) return Unavailable(peer, std::move(done));
    uint64_t base = 0;
    absl::Status status;
    if (!absl::SimpleAtoi(rkey, &base)) {
      status = absl::InvalidArgumentError("malformed in-process rkey");
    } else {
      status = target->Access(remote, local, n, write);
    }
    CompleteOn(core_, std::move(done), status);
  }

  std::shared_ptr<Core> core_;
  absl::Mutex peers_mu_;
  PeerId next_peer_ ABSL_GUARDED_BY(peers_mu_) = 1;
  absl::flat_hash_map<PeerId, std::shared_ptr<Core>> peers_
      ABSL_GUARDED_BY(peers_mu_);
};

}  // namespace

std::unique_ptr<Transport> CreateInProcTransport() {
  return std::make_unique<InProcTransport>();
}

}  // namespace kvd
