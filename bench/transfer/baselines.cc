// ChunkObjectBytes and the ucx_perftest baseline (redis_baseline.cc has the
// Redis one).
#include "bench/transfer/baselines.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "core/chunk_format.h"
#include "core/status.h"

namespace kvd::bench {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;
constexpr int kPortAttempts = 3;
constexpr int kErrorTailLines = 6;

double SecondsSince(absl::Time t0) {
  return absl::ToDoubleSeconds(absl::Now() - t0);
}

// The one adapter from a failed ucx_perftest run to a Status: the UCX error
// it printed decides the code.
absl::Status PerftestFailure(absl::string_view what, int exit_status,
                             const std::string& output) {
  std::string reason;
  // "... UCX  ERROR Failed to run test: Destination is unreachable"
  for (absl::string_view line : absl::StrSplit(output, '\n')) {
    if (absl::StrContains(line, "Failed to run test:") ||
        (reason.empty() && absl::StrContains(line, "ERROR"))) {
      const size_t at = line.find("ERROR");
      reason = std::string(absl::StripAsciiWhitespace(
          at == absl::string_view::npos ? line : line.substr(at + 5)));
    }
  }
  const std::string msg =
      absl::StrCat(what, ": exit status ", exit_status,
                   reason.empty() ? "" : absl::StrCat(", ", reason),
                   "; output tail:\n", TailLines(output, kErrorTailLines));
  if (absl::StrContains(output, "unreachable") ||
      absl::StrContains(output, "Unsupported") ||
      absl::StrContains(output, "not supported") ||
      absl::StrContains(output, "no active messages transport")) {
    return absl::UnimplementedError(msg);
  }
  if (absl::StrContains(output, "bind() failed") ||
      absl::StrContains(output, "Connection refused")) {
    return absl::UnavailableError(msg);
  }
  return absl::InternalError(msg);
}

}  // namespace

uint64_t ChunkObjectBytes(const ModelSpec& spec) {
  return ChunkHeaderSize(spec.codec_chain.size(), spec.num_layers) +
         spec.ChunkPayloadBytes();
}

absl::string_view UcxTransportName(UcxTransport transport) {
  return transport == UcxTransport::kTcp ? "tcp" : "shm";
}

std::vector<std::pair<std::string, std::string>> UcxTransportEnv(
    UcxTransport transport) {
  if (transport == UcxTransport::kTcp) {
    return {{"UCX_TLS", "tcp"}, {"UCX_NET_DEVICES", "lo"}};
  }
  return {{"UCX_TLS", "posix,cma,self"}};
}

std::vector<std::string> DefaultUcxPerftestTests() {
  return {"ucp_am_bw", "tag_bw", "ucp_put_bw", "ucp_get"};
}

absl::StatusOr<PerftestFinal> ParsePerftestOutput(absl::string_view output) {
  // Plain and -N output end with "Final: <8 numbers>"; -f prints only the
  // numbers, under a header whose first column is "Test" (plain: "Stage").
  const std::vector<absl::string_view> lines = absl::StrSplit(output, '\n');
  absl::string_view final_line;
  bool found = false;
  for (auto it = lines.rbegin(); it != lines.rend() && !found; ++it) {
    absl::string_view line = absl::StripAsciiWhitespace(*it);
    if (absl::ConsumePrefix(&line, "Final:")) {
      final_line = line;
      found = true;
    }
  }
  if (!found && absl::StrContains(output, "|     Test     |")) {
    for (auto it = lines.rbegin(); it != lines.rend() && !found; ++it) {
      absl::string_view line = absl::StripAsciiWhitespace(*it);
      if (!line.empty() && absl::ascii_isdigit(line[0])) {
        final_line = line;
        found = true;
      }
    }
  }
  if (!found) {
    return absl::NotFoundError("ucx_perftest output has no final line");
  }
  const std::string clean = absl::StrReplaceAll(final_line, {{",", ""}});
  const std::vector<absl::string_view> f =
      absl::StrSplit(clean, ' ', absl::SkipEmpty());
  double v[8];
  if (f.size() != 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("ucx_perftest final line has ", f.size(),
                     " fields, want 8: '", final_line, "'"));
  }
  for (int i = 0; i < 8; ++i) {
    if (!absl::SimpleAtod(f[i], &v[i]) || v[i] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("ucx_perftest final line field ", i,
                       " is not a number: '", final_line, "'"));
    }
  }
  // iters | lat 50%ile, average, overall | bw average, overall | rate avg,
  // overall.
  PerftestFinal r;
  r.iterations = static_cast<uint64_t>(v[0]);
  r.latency_p50_us = v[1];
  r.latency_avg_us = v[3];
  r.bandwidth_bytes_per_s = v[5] * kMiB;
  r.msg_per_s = v[7];
  return r;
}

absl::StatusOr<std::unique_ptr<UcxPerftest>> UcxPerftest::Create(
    UcxPerftestOptions options) {
  if (options.message_bytes == 0) {
    return absl::InvalidArgumentError("message_bytes=0 must be > 0");
  }
  if (options.tests.empty()) {
    return absl::InvalidArgumentError("tests is empty");
  }
  if (options.min_iterations == 0 ||
      options.min_iterations > options.max_iterations) {
    return absl::InvalidArgumentError(absl::StrCat(
        "min_iterations=", options.min_iterations,
        " must be in [1, max_iterations=", options.max_iterations, "]"));
  }
  if (access(options.binary.c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        options.binary, " is not executable (install Debian's ucx-utils)"));
  }
  KVD_ASSIGN_OR_RETURN(std::unique_ptr<TempDir> dir,
                       TempDir::Create("kvd-perftest-"));
  return std::unique_ptr<UcxPerftest>(
      new UcxPerftest(std::move(options), std::move(dir)));
}

uint32_t UcxPerftest::iterations() const {
  const uint64_t n = options_.bytes_per_test / options_.message_bytes;
  return static_cast<uint32_t>(std::clamp<uint64_t>(n, options_.min_iterations,
                                                    options_.max_iterations));
}

UcxTestResult UcxPerftest::RunTest(UcxTransport transport,
                                   absl::string_view test) {
  UcxTestResult r;
  for (int attempt = 0; attempt < kPortAttempts; ++attempt) {
    absl::StatusOr<int> port = PickFreePort();
    if (!port.ok()) {
      r.test = std::string(test);
      r.status = port.status();
      return r;
    }
    r = RunOnce(transport, test, *port);
    // A port taken between PickFreePort and the server's bind: try another.
    if (!absl::IsUnavailable(r.status) ||
        !absl::StrContains(r.status.message(), "bind() failed")) {
      break;
    }
  }
  return r;
}

UcxTestResult UcxPerftest::RunOnce(UcxTransport transport,
                                   absl::string_view test, int port) {
  UcxTestResult r;
  r.test = std::string(test);
  const std::string what = absl::StrCat("ucx_perftest -t ", test, " over ",
                                        UcxTransportName(transport));
  const std::string log_prefix =
      absl::StrCat(work_dir_->path(), "/", runs_++, "-", test, "-",
                   UcxTransportName(transport));
  const absl::Time t0 = absl::Now();
  const absl::Time deadline = t0 + options_.timeout;

  Subprocess::Options so;
  so.argv = {options_.binary, "-p", absl::StrCat(port)};
  so.env = UcxTransportEnv(transport);
  so.output_path = log_prefix + "-server.log";
  absl::StatusOr<std::unique_ptr<Subprocess>> server = Subprocess::Start(so);
  if (!server.ok()) {
    r.status = Annotate(server.status(), what);
    return r;
  }
  // The server accepts one connection, so wait for its listening socket
  // without connecting to it.
  while (!PortListening(port)) {
    if (!(*server)->Running()) {
      const int rc = (*server)->Kill();
      r.status = PerftestFailure(absl::StrCat(what, " (server)"), rc,
                                 (*server)->Output());
      return r;
    }
    if (absl::Now() >= deadline) {
      (*server)->Kill();
      r.status = absl::UnavailableError(
          absl::StrCat(what, ": server did not listen on port ", port,
                       " within ", absl::FormatDuration(options_.timeout)));
      return r;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }

  Subprocess::Options co = so;
  co.argv = {options_.binary,
             "127.0.0.1",
             "-p",
             absl::StrCat(port),
             "-t",
             std::string(test),
             "-s",
             absl::StrCat(options_.message_bytes),
             "-n",
             absl::StrCat(iterations()),
             "-w",
             absl::StrCat(options_.warmup)};
  if (options_.outstanding > 0) {
    co.argv.insert(co.argv.end(), {"-O", absl::StrCat(options_.outstanding)});
  }
  co.output_path = log_prefix + "-client.log";
  absl::StatusOr<std::unique_ptr<Subprocess>> client = Subprocess::Start(co);
  if (!client.ok()) {
    (*server)->Kill();
    r.status = Annotate(client.status(), what);
    return r;
  }
  absl::StatusOr<int> rc = (*client)->Wait(deadline - absl::Now());
  if (!rc.ok()) {
    (*client)->Kill();
    (*server)->Kill();
    r.wall_s = SecondsSince(t0);
    r.status = absl::UnavailableError(absl::StrCat(
        what, ": timed out after ", absl::FormatDuration(options_.timeout),
        "; client output tail:\n",
        TailLines((*client)->Output(), kErrorTailLines)));
    return r;
  }
  // The server exits once the test is over; give it a moment, then kill.
  const absl::Duration left =
      std::max(absl::ZeroDuration(), deadline - absl::Now());
  if (!(*server)->Wait(std::min(left, absl::Seconds(2))).ok()) {
    (*server)->Kill();
  }
  r.wall_s = SecondsSince(t0);
  const std::string out = (*client)->Output();
  absl::StatusOr<PerftestFinal> fin = ParsePerftestOutput(out);
  if (*rc != 0 || absl::StrContains(out, "Failed to run test")) {
    r.status = PerftestFailure(what, *rc, out);
    return r;
  }
  if (!fin.ok()) {
    r.status = Annotate(fin.status(),
                        absl::StrCat(what, " (output tail:\n",
                                     TailLines(out, kErrorTailLines), ")"));
    return r;
  }
  if (fin->bandwidth_bytes_per_s <= 0) {
    r.status =
        absl::InternalError(absl::StrCat(what, ": reported zero bandwidth"));
    return r;
  }
  r.iterations = fin->iterations;
  r.bytes_per_s = fin->bandwidth_bytes_per_s;
  r.latency_avg_us = fin->latency_avg_us;
  return r;
}

UcxTransportResult UcxPerftest::RunAll(UcxTransport transport) {
  UcxTransportResult r;
  r.transport = transport;
  r.message_bytes = options_.message_bytes;
  for (const std::string& test : options_.tests) {
    r.tests.push_back(RunTest(transport, test));
    const UcxTestResult& t = r.tests.back();
    if (t.status.ok() && t.bytes_per_s > r.best_bytes_per_s) {
      r.best_bytes_per_s = t.bytes_per_s;
      r.best_test = t.test;
    }
  }
  return r;
}

}  // namespace kvd::bench
