#include "transfer/nccl/nccl_status.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace kvd {

absl::Status NcclToStatus(ncclResult_t result, absl::string_view context) {
  if (result == ncclSuccess) return absl::OkStatus();
  std::string msg =
      absl::StrCat(context, ": ", ncclGetErrorString(result), " (ncclResult_t ",
                   static_cast<int>(result), ")");
  const char* last = ncclGetLastError(nullptr);
  if (last != nullptr && last[0] != '\0') absl::StrAppend(&msg, ": ", last);
  switch (result) {
    case ncclSystemError:
    case ncclRemoteError:
    case ncclInProgress:
      return absl::UnavailableError(msg);
    case ncclInvalidArgument:
      return absl::InvalidArgumentError(msg);
    case ncclInvalidUsage:
      return absl::FailedPreconditionError(msg);
    default:
      return absl::InternalError(msg);
  }
}

}  // namespace kvd
