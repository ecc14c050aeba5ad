// The one place an ncclResult_t becomes a Status (STYLE.md §3).
// Built only with KVD_WITH_NCCL.
#ifndef KVDEPOT_TRANSFER_NCCL_NCCL_STATUS_H_
#define KVDEPOT_TRANSFER_NCCL_NCCL_STATUS_H_

#include <nccl.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace kvd {

// OK for ncclSuccess; otherwise "context: <ncclGetErrorString> (ncclResult_t
// N)", followed by NCCL's last error message when it has one. Codes follow
// the retry policy: ncclSystemError and ncclRemoteError (a peer or the
// network failed) and ncclInProgress (not done in time) -> kUnavailable;
// ncclInvalidArgument -> kInvalidArgument; ncclInvalidUsage ->
// kFailedPrecondition; ncclUnhandledCudaError, ncclInternalError and
// unknown values -> kInternal.
absl::Status NcclToStatus(ncclResult_t result, absl::string_view context);

}  // namespace kvd

#endif  // KVDEPOT_TRANSFER_NCCL_NCCL_STATUS_H_
