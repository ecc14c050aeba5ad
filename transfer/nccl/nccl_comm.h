// NcclComm: point-to-point transfers of chunk bytes between GPUs (a prefill
// and a decode worker) over one NCCL communicator.
//
// Setup: one rank calls CreateNcclId(), sends SerializeNcclId() of it to the
// others out of band, and every rank (each on its own thread or process)
// calls NcclComm::Create with the parsed id, the world size and its rank.
//
// The communicator runs in NCCL's non-blocking mode, so nothing here can
// hang: initialization, group launches and Wait() poll
// ncclCommGetAsyncError and give up after `timeout`, aborting the
// communicator (ncclCommAbort) and returning kUnavailable. An asynchronous
// NCCL error (a peer died, the network failed) also aborts it. Once aborted
// every call returns kFailedPrecondition: create a new communicator with a
// new id.
//
// Send/Recv/Transfer only enqueue work on `stream`; Wait() (or any other
// stream synchronization) completes it. Matching sends and receives of two
// ranks must be enqueued in the same order on both sides, as NCCL requires;
// batching them in one Transfer (one ncclGroupStart/End) lets a pair of
// ranks exchange in both directions without deadlock.
//
// Thread-compatible: calls on one NcclComm must not overlap. Every call
// makes options.device the calling thread's current CUDA device. Built only
// with KVD_WITH_NCCL (target kvd::nccl_comm defines KVD_HAVE_NCCL=1; without
// NCCL it is an empty target defining KVD_HAVE_NCCL=0).
#ifndef KVDEPOT_TRANSFER_NCCL_NCCL_COMM_H_
#define KVDEPOT_TRANSFER_NCCL_NCCL_COMM_H_

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "core/clock.h"
#include "transfer/nccl/nccl_id.h"

namespace kvd {

// A fresh id from ncclGetUniqueId (it opens the bootstrap listening socket
// of this process, which must outlive the ranks' Create calls).
// kUnavailable/kInternal as NcclToStatus maps NCCL's failure.
absl::StatusOr<NcclId> CreateNcclId();

struct NcclCommOptions {
  int nranks = 0;  // world size, >= 1
  int rank = -1;   // this rank, in [0, nranks)
  int device = 0;  // CUDA device ordinal of this rank
  // Bounds Create and every wait (group launch, Wait).
  absl::Duration timeout = absl::Seconds(60);
  absl::Duration poll_interval = absl::Microseconds(100);
  Clock* clock = Clock::Real();  // not owned
};

enum class NcclOpKind { kSend, kRecv };

// One send or receive of `bytes` bytes of device memory with rank `peer`.
struct NcclOp {
  NcclOpKind kind = NcclOpKind::kSend;
  void* buffer = nullptr;  // device memory; read for kSend, written for kRecv
  uint64_t bytes = 0;
  int peer = -1;
};

class NcclComm {
 public:
  // Joins the communicator named by `id` as options.rank of options.nranks;
  // returns once every rank has joined. kInvalidArgument for bad options (the
  // message names the field and bound) or an all-zero id;
  // kFailedPrecondition without a CUDA device; kUnavailable when the ranks
  // do not all join within options.timeout or a peer fails; other NCCL and
  // CUDA failures as NcclToStatus and CudaToStatus map them.
  static absl::StatusOr<std::unique_ptr<NcclComm>> Create(
      const NcclId& id, const NcclCommOptions& options);

  // Finalizes and destroys the communicator (aborts it when finalizing
  // fails or takes longer than the timeout). REQUIRES: no work of this
  // communicator is still needed on any stream.
  ~NcclComm();
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  // Enqueues every op in one group on `stream`. kInvalidArgument for an
  // empty span, a null buffer with bytes > 0, or a peer outside
  // [0, nranks) (nothing is enqueued then); kFailedPrecondition once
  // aborted; NCCL errors as NcclToStatus maps them (asynchronous ones abort
  // the communicator).
  absl::Status Transfer(absl::Span<const NcclOp> ops, cudaStream_t stream);
  absl::Status Send(const void* buffer, uint64_t bytes, int peer,
                    cudaStream_t stream);
  absl::Status Recv(void* buffer, uint64_t bytes, int peer,
                    cudaStream_t stream);

  // Waits until all work enqueued on `stream` so far has completed, polling
  // for asynchronous NCCL errors. kUnavailable (and the communicator
  // aborted) when it does not complete within the timeout or a peer fails;
  // the CUDA error when the stream fails.
  absl::Status Wait(cudaStream_t stream);

  // OK while no asynchronous error has been reported; otherwise aborts the
  // communicator and returns the error.
  absl::Status CheckAsyncError();

  // Aborts the communicator: pending operations end, every later call
  // returns kFailedPrecondition. Idempotent.
  void Abort();

  bool aborted() const { return comm_ == nullptr; }
  int rank() const { return options_.rank; }
  int nranks() const { return options_.nranks; }
  int device() const { return options_.device; }

 private:
  NcclComm(ncclComm_t comm, const NcclCommOptions& options)
      : comm_(comm), options_(options) {}

  // Polls the communicator's async state until it leaves ncclInProgress.
  // Aborts and returns an error on failure or timeout.
  absl::Status WaitReady(absl::string_view context);
  absl::Status CheckLive() const;

  ncclComm_t comm_;  // nullptr once aborted
  NcclCommOptions options_;
};

}  // namespace kvd

#endif  // KVDEPOT_TRANSFER_NCCL_NCCL_COMM_H_
