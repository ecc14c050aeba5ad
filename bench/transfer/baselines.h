// The baselines of the transfer benchmark (STYLE.md §13): what moving one
// chunk object costs with off-the-shelf tools on the same machine, measured
// in the same run as kvdepot's own data path.
//
//   UcxPerftest:   Debian's ucx_perftest (ucx-utils) as a server and a client
//                  process on 127.0.0.1, one UCX transport at a time (tcp:
//                  UCX_TLS=tcp over lo; shm: UCX_TLS=posix,cma,self), for the
//                  UCP bandwidth tests ucp_am_bw, tag_bw, ucp_put_bw and
//                  ucp_get at the chunk object's size.
//   RedisBaseline: a real redis-server (no persistence) on loopback TCP and
//                  on a unix socket; T client threads (hiredis, one
//                  connection each) SET N distinct values, then GET them back
//                  and check every byte.
//
// Every child process runs in its own process group with a deadline; on a
// timeout or any error it is killed, so no call here hangs or leaks a
// process. Failures of one test are recorded in its result, not returned,
// so one unsupported test does not hide the others.
//
// Thread safety: none; use each object from one thread. The calls fork, so
// make them while the process runs no other threads that hold locks.
#ifndef KVDEPOT_BENCH_TRANSFER_BASELINES_H_
#define KVDEPOT_BENCH_TRANSFER_BASELINES_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "bench/transfer/internal/subprocess.h"
#include "core/model_spec.h"

namespace kvd::bench {

// Bytes of one raw (codec-free) 256-token chunk object of `spec`: header plus
// payload, exactly what EncodeChunkObject produces. REQUIRES:
// spec.Validate().ok().
uint64_t ChunkObjectBytes(const ModelSpec& spec);

// ---------------------------------------------------------------- UCX ----

enum class UcxTransport { kTcp, kShm };

// "tcp" or "shm".
absl::string_view UcxTransportName(UcxTransport transport);

// The environment that restricts UCX to `transport`:
//   kTcp: UCX_TLS=tcp, UCX_NET_DEVICES=lo
//   kShm: UCX_TLS=posix,cma,self (posix shared memory for messages, CMA
//         process_vm_readv/writev for zero-copy rendezvous)
std::vector<std::pair<std::string, std::string>> UcxTransportEnv(
    UcxTransport transport);

// The UCP bandwidth tests run by default: ucp_am_bw, tag_bw, ucp_put_bw,
// ucp_get.
std::vector<std::string> DefaultUcxPerftestTests();

struct UcxPerftestOptions {
  std::string binary = "/usr/bin/ucx_perftest";
  uint64_t message_bytes = 0;  // REQUIRED: > 0; one message = one chunk
  // Iterations per test: enough messages to move `bytes_per_test`, clamped
  // to [min_iterations, max_iterations]; plus `warmup` untimed ones.
  uint64_t bytes_per_test = 1ull << 30;
  uint32_t min_iterations = 8;
  uint32_t max_iterations = 100000;
  uint32_t warmup = 4;
  uint32_t outstanding = 0;  // -O: outstanding sends; 0 = perftest default
  // Wall-clock limit for one test, server and client together; both are
  // killed when it passes.
  absl::Duration timeout = absl::Seconds(30);
  std::vector<std::string> tests = DefaultUcxPerftestTests();
};

// The final line of a ucx_perftest client's output.
struct PerftestFinal {
  uint64_t iterations = 0;
  double latency_p50_us = 0;         // "50.0%ile" column (typical)
  double latency_avg_us = 0;         // "overall" latency / overhead column
  double bandwidth_bytes_per_s = 0;  // overall; perftest prints MiB/s
  double msg_per_s = 0;              // overall message rate
};

// Parses ucx_perftest's table output (plain, -N or -f form) and returns its
// final numbers. kNotFound when there is no final line; kInvalidArgument when
// one is malformed.
absl::StatusOr<PerftestFinal> ParsePerftestOutput(absl::string_view output);

struct UcxTestResult {
  std::string test;  // e.g. "tag_bw"
  // OK, or why it produced no number: kUnimplemented when UCX cannot run the
  // test over the transport ("Destination is unreachable", unsupported
  // operation), kUnavailable on timeout or a port clash, kInternal otherwise.
  // The message carries the tail of the client's output.
  absl::Status status;
  uint64_t iterations = 0;
  double bytes_per_s = 0;
  double latency_avg_us = 0;  // per message, overall
  double wall_s = 0;          // server start to client exit
};

struct UcxTransportResult {
  UcxTransport transport = UcxTransport::kTcp;
  uint64_t message_bytes = 0;
  std::vector<UcxTestResult> tests;  // in UcxPerftestOptions::tests order
  std::string best_test;             // "" when every test failed
  double best_bytes_per_s = 0;
};

class UcxPerftest {
 public:
  // kInvalidArgument: message_bytes == 0 or an empty test list;
  // kFailedPrecondition: `binary` is not executable (install ucx-utils).
  static absl::StatusOr<std::unique_ptr<UcxPerftest>> Create(
      UcxPerftestOptions options);

  // Runs one test (a ucx_perftest -t name) over `transport`: a server on a
  // free port, then the client against it. Never fails as a call: the
  // outcome is in the result's status.
  UcxTestResult RunTest(UcxTransport transport, absl::string_view test);

  // Runs every test in options().tests over `transport`, one after another.
  UcxTransportResult RunAll(UcxTransport transport);

  const UcxPerftestOptions& options() const { return options_; }
  // Iterations each test runs (from bytes_per_test and the clamps).
  uint32_t iterations() const;

 private:
  UcxPerftest(UcxPerftestOptions options, std::unique_ptr<TempDir> work_dir)
      : options_(std::move(options)), work_dir_(std::move(work_dir)) {}

  // One attempt on one port; kUnavailable when the server could not bind.
  UcxTestResult RunOnce(UcxTransport transport, absl::string_view test,
                        int port);

  UcxPerftestOptions options_;
  std::unique_ptr<TempDir> work_dir_;  // logs of the children
  int runs_ = 0;                       // numbers the log files
};

// -------------------------------------------------------------- Redis ----

enum class RedisTransport { kTcp, kUnix };

// "tcp" or "unix".
absl::string_view RedisTransportName(RedisTransport transport);

struct RedisServerOptions {
  std::string binary = "/usr/bin/redis-server";
  // Largest value the server must accept; raises proto-max-bulk-len and
  // client-query-buffer-limit when above their defaults.
  uint64_t max_value_bytes = 64ull << 20;
  absl::Duration start_timeout = absl::Seconds(10);
  // Per-command socket timeout of every client connection.
  absl::Duration command_timeout = absl::Seconds(30);
};

struct RedisLoad {
  uint64_t value_bytes = 0;  // REQUIRED: > 0
  uint32_t values = 64;      // N distinct keys, split across the threads
  uint32_t threads = 4;      // T client threads, one connection each
};

struct RedisPhaseResult {
  uint64_t ops = 0;
  uint64_t bytes = 0;  // value bytes moved
  double seconds = 0;  // wall time of the phase, all threads
  double bytes_per_s = 0;
  double latency_p50_us = 0;  // per command, from all threads
  double latency_p99_us = 0;
};

struct RedisResult {
  RedisTransport transport = RedisTransport::kTcp;
  RedisLoad load;
  RedisPhaseResult set;
  RedisPhaseResult get;
};

// A running redis-server on 127.0.0.1:port() and unix_socket(), in a private
// temporary directory, without persistence. The destructor shuts it down
// (SHUTDOWN NOSAVE, then SIGTERM/SIGKILL) and removes the directory.
class RedisBaseline {
 public:
  // Starts the server and waits until it answers PING on both endpoints.
  // kFailedPrecondition: `binary` missing; kUnavailable: it did not come up
  // within start_timeout (the message carries its log's tail).
  static absl::StatusOr<std::unique_ptr<RedisBaseline>> Start(
      RedisServerOptions options);

  ~RedisBaseline();
  RedisBaseline(const RedisBaseline&) = delete;
  RedisBaseline& operator=(const RedisBaseline&) = delete;

  int port() const { return port_; }
  const std::string& unix_socket() const { return unix_socket_; }

  // FLUSHALL, then the SET phase and the GET phase of `load` over
  // `transport`; each hiredis reply is freed as soon as it is checked. The
  // timed GET pass checks each reply's length and per-key tags; a second,
  // untimed GET pass compares every byte with what was set. Ends with
  // FLUSHALL. kInvalidArgument: bad load or
  // value_bytes above max_value_bytes; kUnavailable: connection or command
  // failure or timeout; kDataLoss: a GET returned other bytes.
  // REQUIRES: no other call on this object runs concurrently.
  absl::StatusOr<RedisResult> Run(RedisTransport transport,
                                  const RedisLoad& load);

  // SHUTDOWN NOSAVE and wait; kills the server if that fails. Idempotent.
  absl::Status Shutdown();

 private:
  struct Impl;
  explicit RedisBaseline(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
  int port_ = 0;
  std::string unix_socket_;
};

}  // namespace kvd::bench

#endif  // KVDEPOT_BENCH_TRANSFER_BASELINES_H_
