// Status helpers shared by every C++ part of kvdepot.
//
// Every fallible function returns absl::Status or absl::StatusOr<T>; the
// codes are retry policy (STYLE.md §4). errno is converted to a Status in
// exactly one place: ErrnoToStatus().
#ifndef KVDEPOT_CORE_STATUS_H_
#define KVDEPOT_CORE_STATUS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

#define KVD_INTERNAL_CONCAT_IMPL(a, b) a##b
#define KVD_INTERNAL_CONCAT(a, b) KVD_INTERNAL_CONCAT_IMPL(a, b)

// Returns from the enclosing function when `expr` is not OK.
#define KVD_RETURN_IF_ERROR(expr)                              \
  do {                                                         \
    ::absl::Status kvd_internal_status = (expr);               \
    if (!kvd_internal_status.ok()) return kvd_internal_status; \
  } while (0)

// `KVD_ASSIGN_OR_RETURN(auto x, F());` declares or assigns `x` from a
// StatusOr, or returns its status from the enclosing function.
#define KVD_ASSIGN_OR_RETURN(lhs, rexpr) \
  KVD_INTERNAL_ASSIGN_OR_RETURN(         \
      KVD_INTERNAL_CONCAT(kvd_internal_statusor_, __LINE__), lhs, rexpr)

#define KVD_INTERNAL_ASSIGN_OR_RETURN(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                  \
  if (!statusor.ok()) return std::move(statusor).status();  \
  lhs = std::move(statusor).value()

namespace kvd {

// Converts an errno value from a failed system call into a Status whose code
// follows the retry policy: EAGAIN/EINTR/ETIMEDOUT -> kUnavailable,
// ENOSPC/ENOMEM -> kResourceExhausted, ENOENT -> kNotFound, EINVAL ->
// kInvalidArgument, EEXIST -> kAlreadyExists, EACCES/EPERM ->
// kPermissionDenied, everything else -> kInternal. `context` names the call
// and its subject, e.g. "open(/var/kvdepot/seg-1)".
absl::Status ErrnoToStatus(int err, absl::string_view context);

// Prepends `context` to a non-OK status's message, keeping its code.
absl::Status Annotate(const absl::Status& status, absl::string_view context);

}  // namespace kvd

#endif  // KVDEPOT_CORE_STATUS_H_
