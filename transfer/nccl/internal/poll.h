// PollUntil: the wait loop behind every NCCL timeout, kept free of NCCL and
// CUDA so its deadline logic is tested on any machine with a FakeClock.
#ifndef KVDEPOT_TRANSFER_NCCL_INTERNAL_POLL_H_
#define KVDEPOT_TRANSFER_NCCL_INTERNAL_POLL_H_

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/clock.h"

namespace kvd::internal {

// Calls `poll` until it returns true (then OK) or an error (returned as is),
// sleeping `interval` of real time between calls. Once `clock` has passed
// the deadline (its time at entry plus `timeout`) and a call has still
// returned false, returns kDeadlineExceeded. `poll` runs at least once.
inline absl::Status PollUntil(Clock* clock, absl::Duration timeout,
                              absl::Duration interval,
                              absl::FunctionRef<absl::StatusOr<bool>()> poll) {
  const absl::Time deadline = clock->Now() + timeout;
  while (true) {
    const bool past = clock->Now() >= deadline;
    absl::StatusOr<bool> done = poll();
    if (!done.ok()) return done.status();
    if (*done) return absl::OkStatus();
    if (past) return absl::DeadlineExceededError("deadline passed");
    absl::SleepFor(interval);
  }
}

}  // namespace kvd::internal

#endif  // KVDEPOT_TRANSFER_NCCL_INTERNAL_POLL_H_
