// Internals of the UCX transport (transfer/ucx/ucx_transport.h), shared by
// its two sources: ucx_transport.cc (lifecycle, progress loop, peers,
// registration) and ucx_operations.cc (messages, one-sided operations).
#ifndef KVDEPOT_TRANSFER_UCX_INTERNAL_UCX_TRANSPORT_IMPL_H_
#define KVDEPOT_TRANSFER_UCX_INTERNAL_UCX_TRANSPORT_IMPL_H_

#include <ucp/api/ucp.h>

#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "core/check.h"
#include "transfer/ucx/ucx_transport.h"

namespace kvd::ucx_internal {

// A UCS status as an absl::Status; `what` names the operation.
absl::Status UcsToStatus(ucs_status_t status, absl::string_view what);

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

// Completion callbacks for UCX requests carrying an Op as user data.
void OpDone(void* request, ucs_status_t status, void* user_data);
void RecvOpDone(void* request, ucs_status_t status, size_t length,
                void* user_data);
// Completes `op` now when UCX finished (or failed) the call immediately;
// otherwise the callback will.
void Track(ucs_status_ptr_t request, Op* op);
ucp_request_param_t OpParam(Op* op);

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
  // One-sided write (local -> remote) or read (remote -> local).
  void Rma(bool write, PeerId peer, absl::Span<uint8_t> local,
           uint64_t remote_address, const std::string& rkey, Completion done);
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

}  // namespace kvd::ucx_internal

#endif  // KVDEPOT_TRANSFER_UCX_INTERNAL_UCX_TRANSPORT_IMPL_H_
