#include "transfer/nccl/nccl_comm.h"

#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/cuda_status.h"
#include "core/status.h"
#include "transfer/nccl/internal/poll.h"
#include "transfer/nccl/nccl_status.h"

namespace kvd {
namespace {

static_assert(sizeof(ncclUniqueId) == kNcclIdBytes,
              "NcclId must hold exactly an ncclUniqueId");

absl::Status ValidateOptions(const NcclCommOptions& o) {
  if (o.nranks < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("nranks=", o.nranks, " must be >= 1"));
  }
  if (o.rank < 0 || o.rank >= o.nranks) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rank=", o.rank, " is outside [0, nranks=", o.nranks, ")"));
  }
  if (o.device < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("device=", o.device, " is negative"));
  }
  if (o.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "timeout=", absl::FormatDuration(o.timeout), " must be positive"));
  }
  if (o.poll_interval < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("poll_interval=", absl::FormatDuration(o.poll_interval),
                     " is negative"));
  }
  if (o.clock == nullptr) return absl::InvalidArgumentError("clock is null");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<NcclId> CreateNcclId() {
  ncclUniqueId uid;
  KVD_RETURN_IF_ERROR(NcclToStatus(ncclGetUniqueId(&uid), "ncclGetUniqueId"));
  NcclId id;
  std::memcpy(id.bytes.data(), uid.internal, kNcclIdBytes);
  return id;
}

absl::StatusOr<std::unique_ptr<NcclComm>> NcclComm::Create(
    const NcclId& id, const NcclCommOptions& options) {
  KVD_RETURN_IF_ERROR(ValidateOptions(options));
  if (id.IsZero()) {
    return absl::InvalidArgumentError("nccl id is all zero");
  }
  const int devices = CudaDeviceCount();
  if (devices == 0) {
    return absl::FailedPreconditionError(
        "no CUDA device (cudaGetDeviceCount): NCCL needs a GPU");
  }
  if (options.device >= devices) {
    return absl::InvalidArgumentError(absl::StrCat(
        "device=", options.device, " is outside [0, ", devices, ")"));
  }
  KVD_RETURN_IF_ERROR(
      CudaToStatus(cudaSetDevice(options.device),
                   absl::StrCat("cudaSetDevice(", options.device, ")")));
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclUniqueId uid;
  std::memcpy(uid.internal, id.bytes.data(), kNcclIdBytes);
  ncclComm_t comm = nullptr;
  const std::string context =
      absl::StrCat("ncclCommInitRankConfig(nranks=", options.nranks,
                   ", rank=", options.rank, ", device=", options.device, ")");
  const ncclResult_t r =
      ncclCommInitRankConfig(&comm, options.nranks, uid, options.rank, &config);
  if (r != ncclSuccess && r != ncclInProgress) {
    if (comm != nullptr) ncclCommAbort(comm);
    return NcclToStatus(r, context);
  }
  std::unique_ptr<NcclComm> c(new NcclComm(comm, options));
  KVD_RETURN_IF_ERROR(c->WaitReady(context));
  return c;
}

NcclComm::~NcclComm() {
  if (comm_ == nullptr) return;
  cudaSetDevice(options_.device);
  const ncclResult_t r = ncclCommFinalize(comm_);
  if ((r != ncclSuccess && r != ncclInProgress) ||
      !WaitReady("ncclCommFinalize").ok()) {
    Abort();  // WaitReady aborts too; Abort is idempotent
    return;
  }
  ncclCommDestroy(comm_);
  comm_ = nullptr;
}

absl::Status NcclComm::CheckLive() const {
  if (comm_ == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("NCCL communicator of rank ", options_.rank,
                     " was aborted: create a new one with a new id"));
  }
  return absl::OkStatus();
}

void NcclComm::Abort() {
  if (comm_ == nullptr) return;
  ncclCommAbort(comm_);
  comm_ = nullptr;
}

absl::Status NcclComm::CheckAsyncError() {
  KVD_RETURN_IF_ERROR(CheckLive());
  ncclResult_t state = ncclSuccess;
  const ncclResult_t r = ncclCommGetAsyncError(comm_, &state);
  if (r != ncclSuccess) {
    Abort();
    return NcclToStatus(r, "ncclCommGetAsyncError");
  }
  if (state == ncclSuccess || state == ncclInProgress) {
    return absl::OkStatus();
  }
  Abort();
  return NcclToStatus(state, absl::StrCat("NCCL communicator of rank ",
                                          options_.rank, " (aborted)"));
}

absl::Status NcclComm::WaitReady(absl::string_view context) {
  KVD_RETURN_IF_ERROR(CheckLive());
  absl::Status s = internal::PollUntil(
      options_.clock, options_.timeout, options_.poll_interval,
      [&]() -> absl::StatusOr<bool> {
        ncclResult_t state = ncclSuccess;
        KVD_RETURN_IF_ERROR(NcclToStatus(ncclCommGetAsyncError(comm_, &state),
                                         "ncclCommGetAsyncError"));
        if (state == ncclInProgress) return false;
        KVD_RETURN_IF_ERROR(NcclToStatus(state, context));
        return true;
      });
  if (s.ok()) return s;
  Abort();
  if (absl::IsDeadlineExceeded(s)) {
    return absl::UnavailableError(
        absl::StrCat(context, " did not finish within ",
                     absl::FormatDuration(options_.timeout),
                     "; the communicator was aborted"));
  }
  return Annotate(s, "the communicator was aborted");
}

absl::Status NcclComm::Transfer(absl::Span<const NcclOp> ops,
                                cudaStream_t stream) {
  KVD_RETURN_IF_ERROR(CheckLive());
  if (ops.empty()) return absl::InvalidArgumentError("ops is empty");
  for (size_t i = 0; i < ops.size(); ++i) {
    const NcclOp& op = ops[i];
    if (op.kind != NcclOpKind::kSend && op.kind != NcclOpKind::kRecv) {
      return absl::InvalidArgumentError(
          absl::StrCat("ops[", i, "].kind=", static_cast<int>(op.kind),
                       " is neither kSend nor kRecv"));
    }
    if (op.buffer == nullptr && op.bytes > 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("ops[", i, "].buffer is null with bytes=", op.bytes));
    }
    if (op.peer < 0 || op.peer >= options_.nranks) {
      return absl::InvalidArgumentError(
          absl::StrCat("ops[", i, "].peer=", op.peer,
                       " is outside [0, nranks=", options_.nranks, ")"));
    }
  }
  KVD_RETURN_IF_ERROR(
      CudaToStatus(cudaSetDevice(options_.device),
                   absl::StrCat("cudaSetDevice(", options_.device, ")")));
  KVD_RETURN_IF_ERROR(NcclToStatus(ncclGroupStart(), "ncclGroupStart"));
  absl::Status enqueue = absl::OkStatus();
  for (size_t i = 0; i < ops.size() && enqueue.ok(); ++i) {
    const NcclOp& op = ops[i];
    const size_t count = static_cast<size_t>(op.bytes);
    if (op.kind == NcclOpKind::kSend) {
      enqueue = NcclToStatus(
          ncclSend(op.buffer, count, ncclUint8, op.peer, comm_, stream),
          absl::StrCat("ncclSend(ops[", i, "]: bytes=", op.bytes,
                       ", peer=", op.peer, ")"));
    } else {
      enqueue = NcclToStatus(
          ncclRecv(op.buffer, count, ncclUint8, op.peer, comm_, stream),
          absl::StrCat("ncclRecv(ops[", i, "]: bytes=", op.bytes,
                       ", peer=", op.peer, ")"));
    }
  }
  // The group must be closed even when an op failed to enqueue.
  const ncclResult_t end = ncclGroupEnd();
  if (end == ncclInProgress) {
    KVD_RETURN_IF_ERROR(WaitReady("ncclGroupEnd"));
  } else if (end != ncclSuccess) {
    const absl::Status s = NcclToStatus(end, "ncclGroupEnd");
    KVD_RETURN_IF_ERROR(CheckAsyncError());
    if (enqueue.ok()) return s;
  }
  if (!enqueue.ok()) {
    KVD_RETURN_IF_ERROR(CheckAsyncError());
    return enqueue;
  }
  return CheckAsyncError();
}

absl::Status NcclComm::Send(const void* buffer, uint64_t bytes, int peer,
                            cudaStream_t stream) {
  const NcclOp op{NcclOpKind::kSend, const_cast<void*>(buffer), bytes, peer};
  return Transfer({&op, 1}, stream);
}

absl::Status NcclComm::Recv(void* buffer, uint64_t bytes, int peer,
                            cudaStream_t stream) {
  const NcclOp op{NcclOpKind::kRecv, buffer, bytes, peer};
  return Transfer({&op, 1}, stream);
}

absl::Status NcclComm::Wait(cudaStream_t stream) {
  KVD_RETURN_IF_ERROR(CheckLive());
  KVD_RETURN_IF_ERROR(
      CudaToStatus(cudaSetDevice(options_.device),
                   absl::StrCat("cudaSetDevice(", options_.device, ")")));
  absl::Status s = internal::PollUntil(
      options_.clock, options_.timeout, options_.poll_interval,
      [&]() -> absl::StatusOr<bool> {
        const cudaError_t q = cudaStreamQuery(stream);
        if (q == cudaSuccess) return true;
        if (q != cudaErrorNotReady) {
          return CudaToStatus(q, "cudaStreamQuery");
        }
        KVD_RETURN_IF_ERROR(CheckAsyncError());
        return false;
      });
  if (absl::IsDeadlineExceeded(s)) {
    Abort();
    return absl::UnavailableError(absl::StrCat(
        "NCCL transfers of rank ", options_.rank, " did not complete within ",
        absl::FormatDuration(options_.timeout),
        "; the communicator was aborted"));
  }
  return s;
}

}  // namespace kvd
