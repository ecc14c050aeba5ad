// Transport: moves bytes between processes (DESIGN.md §3.4). A transport owns
// one progress thread; every completion, message handler and posted task runs
// on it, in order, so a user that keeps its own state on that thread needs no
// locks. Methods may be called from any thread.
//
// What a transport offers:
//   - peers: Connect(address) gives a PeerId for a peer's address(); a peer
//     that fails (dies, resets) is reported once to the Connect callback and
//     every operation on it then completes with kUnavailable;
//   - registered memory: Register(span) once, then hand Registration::rkey()
//     to peers so they can read and write that span one-sided;
//   - one-sided Put/Get between a local span and a peer's registered memory,
//     and Flush, after which every earlier Put to that peer is remotely
//     complete (a completed Put is only locally complete);
//   - messages: Send(peer, type, header, payload) to a handler registered for
//     `type` on the peer's transport; a payload of any size moves without an
//     intermediate copy where the backend can (UCX rendezvous), into memory
//     the receiver picks after seeing the header (Receive).
//
// Lifetimes: a span handed to Put/Get/Send/Receive must stay valid until its
// completion runs. Completions always run (with an error when the operation
// failed or the peer was disconnected), exactly once.
#ifndef KVDEPOT_TRANSFER_TRANSPORT_H_
#define KVDEPOT_TRANSFER_TRANSPORT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace kvd {

using PeerId = uint64_t;
using Completion = std::function<void(absl::Status)>;
using PeerErrorHandler = std::function<void(PeerId, absl::Status)>;

// A span of local memory registered with a transport.
class Registration {
 public:
  virtual ~Registration() = default;
  virtual absl::Span<uint8_t> memory() const = 0;
  // What a peer needs to access this memory (opaque, a few hundred bytes).
  virtual const std::string& rkey() const = 0;
};

// The payload of an incoming message, not yet received. Move-only; hand it
// to Transport::Receive exactly once, or drop it (the bytes are discarded
// and the sender's Send still completes).
class IncomingPayload {
 public:
  class Source {
   public:
    virtual ~Source() = default;
    virtual void Receive(absl::Span<uint8_t> dst, Completion done) = 0;
  };

  IncomingPayload() = default;
  IncomingPayload(uint64_t size, std::unique_ptr<Source> source)
      : size_(size), source_(std::move(source)) {}
  IncomingPayload(IncomingPayload&&) = default;
  IncomingPayload& operator=(IncomingPayload&&) = default;

  uint64_t size() const { return size_; }
  bool empty() const { return source_ == nullptr; }
  // Receives exactly size() bytes into dst (REQUIRES dst.size() >= size()).
  void Receive(absl::Span<uint8_t> dst, Completion done) && {
    std::unique_ptr<Source> source = std::move(source_);
    source->Receive(dst, std::move(done));
  }

 private:
  uint64_t size_ = 0;
  std::unique_ptr<Source> source_;
};

// A message handler: the header is valid only during the call.
using MessageHandler =
    std::function<void(absl::Span<const uint8_t> header, IncomingPayload)>;

struct TransportInfo {
  std::string backend;                  // "ucx", "inproc"
  std::vector<std::string> transports;  // e.g. {"tcp"}, {"posix", "cma"}
  bool cuda_memory = false;             // can move CUDA device memory
  // Whether one-sided operations can run natively: between processes of one
  // host (shared memory), or across hosts (an RDMA NIC is present and
  // allowed). Where neither, RMA is emulated and messages move bytes faster.
  bool native_rma_same_host = false;
  bool native_rma_remote = false;
  // Whether a dead peer is reported (PeerErrorHandler, failed operations).
  // Where not (UCX shared memory), callers bound operations with deadlines.
  bool detects_peer_failure = true;
};

class Transport {
 public:
  virtual ~Transport() = default;

  virtual TransportInfo info() const = 0;
  // This transport's address, for a peer's Connect.
  virtual std::string address() const = 0;

  // Connects to a peer's address(). `on_error` (may be empty) runs once on
  // the progress thread if the peer later fails.
  virtual absl::StatusOr<PeerId> Connect(absl::string_view address,
                                         PeerErrorHandler on_error) = 0;
  // Closes the connection; operations in flight complete with kCancelled.
  virtual void Disconnect(PeerId peer) = 0;

  virtual absl::StatusOr<std::unique_ptr<Registration>> Register(
      absl::Span<uint8_t> memory) = 0;

  // Handlers are set before any peer connects; `type` < kMaxMessageTypes.
  static constexpr uint16_t kMaxMessageTypes = 16;
  virtual void SetHandler(uint16_t type, MessageHandler handler) = 0;

  virtual void Send(PeerId peer, uint16_t type, std::string header,
                    absl::Span<const uint8_t> payload, Completion done) = 0;
  virtual void Put(PeerId peer, absl::Span<const uint8_t> local,
                   uint64_t remote_address, const std::string& rkey,
                   Completion done) = 0;
  virtual void Get(PeerId peer, absl::Span<uint8_t> local,
                   uint64_t remote_address, const std::string& rkey,
                   Completion done) = 0;
  virtual void Flush(PeerId peer, Completion done) = 0;

  // Runs `task` on the progress thread.
  virtual void Post(std::function<void()> task) = 0;
  // Runs `tick` on the progress thread about every `period` (one per
  // transport; replaces the previous one).
  virtual void SetTick(absl::Duration period, std::function<void()> tick) = 0;
};

}  // namespace kvd

#endif  // KVDEPOT_TRANSFER_TRANSPORT_H_
