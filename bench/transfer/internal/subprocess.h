// Subprocess: a child process for benchmark baselines (ucx_perftest,
// redis-server), run in its own process group with stdout and stderr going to
// one file, so that a hung child can always be killed with everything it
// started and its output read afterwards for diagnostics.
//
// Thread safety: none; one thread owns a Subprocess. Start() forks, so call
// it while no other thread holds a lock that the child could need (the child
// only calls async-signal-safe functions before exec).
#ifndef KVDEPOT_BENCH_TRANSFER_INTERNAL_SUBPROCESS_H_
#define KVDEPOT_BENCH_TRANSFER_INTERNAL_SUBPROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kvd::bench {

class Subprocess {
 public:
  struct Options {
    std::vector<std::string> argv;  // argv[0] is the path of the binary
    // Set in the child's environment on top of this process's environment
    // (an entry replaces the variable of the same name).
    std::vector<std::pair<std::string, std::string>> env;
    std::string output_path;  // stdout and stderr; created or truncated
  };

  // Starts the child. The child gets SIGKILL when the thread that started
  // it exits (PR_SET_PDEATHSIG), so start children from a long-lived thread.
  // kInvalidArgument: empty argv or output_path; errno statuses from
  // open/fork. An exec failure shows as exit status 127 with the reason in
  // the output file.
  static absl::StatusOr<std::unique_ptr<Subprocess>> Start(
      const Options& options);

  // Kills the process group if the child is still running (Kill()).
  ~Subprocess();

  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t pid() const { return pid_; }

  // True while the child has not exited (reaps it when it has).
  bool Running();

  // Waits up to `timeout` for the child to exit and returns its exit status,
  // or 128 + signal number if a signal ended it. kUnavailable when it is
  // still running at the deadline (the child is left running).
  absl::StatusOr<int> Wait(absl::Duration timeout);

  // SIGTERM to the child's process group, up to `grace` to exit, then
  // SIGKILL; reaps the child. Idempotent. Returns the exit status as Wait().
  int Kill(absl::Duration grace = absl::Seconds(1));

  // What the child wrote so far (the output file), or "" when unreadable.
  std::string Output() const;

 private:
  Subprocess(pid_t pid, std::string output_path)
      : pid_(pid), output_path_(std::move(output_path)) {}

  // Non-blocking reap; true when the child has exited.
  bool Reap();

  pid_t pid_;
  std::string output_path_;
  bool exited_ = false;
  int exit_status_ = 0;
};

// A TCP port on 127.0.0.1 that was free a moment ago (bound with port 0 and
// released); racy by nature, so callers retry with a new port on EADDRINUSE.
absl::StatusOr<int> PickFreePort();

// True when a socket listens on `port` (any local address, IPv4 or IPv6),
// read from /proc/net/tcp{,6}; does not connect, so a single-accept server
// is not disturbed.
bool PortListening(int port);

// The last `max_lines` lines of `text`, for error messages.
std::string TailLines(const std::string& text, int max_lines);

// A directory under $TMPDIR (default /tmp) named `prefix`XXXXXX, removed with
// everything in it when the object is destroyed.
class TempDir {
 public:
  static absl::StatusOr<std::unique_ptr<TempDir>> Create(
      const std::string& prefix);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  explicit TempDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

}  // namespace kvd::bench

#endif  // KVDEPOT_BENCH_TRANSFER_INTERNAL_SUBPROCESS_H_
