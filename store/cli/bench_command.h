// `kvdepotctl bench put|get`: drives a live node's data path with the client
// library (store/client) and reports throughput and batch latency.
//
//   kvdepotctl --node HOST:PORT [--token T] [--json] bench put
//       [--model smollm2|llama3] [--chunks N] [--batch B] [--threads T]
//       [--seed S] [--ucx-tls TLS] [--protocol auto|rma|am]
//   kvdepotctl --node HOST:PORT bench get  (the same options)
//
// The data token is the global --token, else $KVDEPOT_TOKEN. --ucx-tls must
// match the node's transfer.ucx_tls. gRPC TLS is not wired to the bench yet.
//
// `put` stores the N chunk objects of one synthetic prompt (MakeTestPrompt in
// core/test_chunks.h, so the keys and bytes are a function of the model and
// the seed) in batches of B keys from T threads, each thread with its own
// client and registered buffer. `get` regenerates the same objects, fetches
// them in batches and compares every byte; any miss, per-key error or
// mismatch fails the command. Object synthesis and verification are outside
// the timed batches.
//
// Output: a human summary, or with --json one object
//   {"bench": "kvdepotctl_bench_put"|"kvdepotctl_bench_get", "ok": bool,
//    "params": {...}, "metrics": {"bytes", "seconds", "gb_per_s",
//    "batch_p50_ms", "batch_p99_ms", "batches", "chunks_ok", "misses",
//    "mismatches", "errors"}, "error": "..." (only when !ok)}.
// Exit codes: 0 every chunk stored (put) or fetched and verified (get);
// 1 any miss, mismatch or per-key error; 2 usage error; 3 the node is
// unreachable (Connect failed with kUnavailable or kDeadlineExceeded).
#ifndef KVDEPOT_STORE_CLI_BENCH_COMMAND_H_
#define KVDEPOT_STORE_CLI_BENCH_COMMAND_H_

#include <string>

#include "CLI/CLI.hpp"

namespace kvd {

// Adds the `bench` subcommand (with `put` and `get`) to `app`. `node`,
// `token` and `json` are the app's global --node, --token and --json values,
// read when the subcommand runs. The subcommand runs from its parse callback
// and stores its exit code in `*exit_code`, which the caller initializes to -1
// (left unchanged when `bench` was not invoked). REQUIRES: the pointers outlive
// app.parse().
void AddBenchCommand(CLI::App& app, const std::string* node,
                     const std::string* token, const bool* json,
                     int* exit_code);

}  // namespace kvd

#endif  // KVDEPOT_STORE_CLI_BENCH_COMMAND_H_
