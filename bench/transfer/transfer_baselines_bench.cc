// transfer_baselines_bench: runs the transfer benchmark's baselines alone
// (bench/transfer/baselines.h) and prints one JSON line
// {"bench":"transfer_baselines","params","metrics","baseline","ratio",
//  "failed"} last on stdout; progress goes to stderr. A development tool:
// bench/run.sh transfer composes these baselines with kvdepot's data path.
//
//   ucx:   ucx_perftest ucp_am_bw / tag_bw / ucp_put_bw / ucp_get over tcp
//          (lo) and shm (posix,cma,self), one message = one chunk object;
//          per test GB/s and the best test per transport.
//   redis: redis-server on loopback TCP and a unix socket; --threads hiredis
//          connections SET then GET distinct chunk-sized values.
//
// Flags: --quick, --model=smollm2|llama3 (default: both), --threads=N
// (redis, default 4), --timeout_s=N (per ucx_perftest run; default 30, 15
// with --quick),
// --outstanding=N (ucx_perftest -O), --skip_ucx, --skip_redis.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"
#include "bench/transfer/baselines.h"
#include "core/model_spec.h"
#include "nlohmann/json.hpp"

namespace kvd::bench {
namespace {

using Json = nlohmann::ordered_json;
constexpr double kGB = 1e9;

struct Args {
  bool quick = false;
  std::vector<std::string> models = {"smollm2", "llama3"};
  uint32_t threads = 4;
  int timeout_s = 0;  // 0: 15 with --quick, else 30
  uint32_t outstanding = 0;
  bool skip_ucx = false;
  bool skip_redis = false;
};

[[noreturn]] void Die(absl::string_view what) {
  std::fprintf(stderr, "transfer_baselines_bench: %.*s\n",
               static_cast<int>(what.size()), what.data());
  std::exit(1);
}

Args ParseArgs(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    absl::string_view v = arg.substr(arg.find('=') + 1);
    if (arg == "--quick") {
      a.quick = true;
    } else if (arg == "--skip_ucx") {
      a.skip_ucx = true;
    } else if (arg == "--skip_redis") {
      a.skip_redis = true;
    } else if (arg == "--model" && i + 1 < argc) {
      a.models = {argv[++i]};
    } else if (absl::StartsWith(arg, "--model=")) {
      a.models = {std::string(v)};
    } else if (absl::StartsWith(arg, "--threads=")) {
      if (!absl::SimpleAtoi(v, &a.threads) || a.threads < 1 || a.threads > 64) {
        Die(absl::StrCat("--threads=", v, " must be in [1, 64]"));
      }
    } else if (absl::StartsWith(arg, "--timeout_s=")) {
      if (!absl::SimpleAtoi(v, &a.timeout_s) || a.timeout_s < 1) {
        Die(absl::StrCat("--timeout_s=", v, " must be >= 1"));
      }
    } else if (absl::StartsWith(arg, "--outstanding=")) {
      if (!absl::SimpleAtoi(v, &a.outstanding)) {
        Die(absl::StrCat("--outstanding=", v, " must be an integer >= 0"));
      }
    } else {
      Die(absl::StrCat("unknown flag ", arg,
                       " (flags: --quick --model=smollm2|llama3 --threads=N "
                       "--timeout_s=N --outstanding=N --skip_ucx "
                       "--skip_redis)"));
    }
  }
  if (a.timeout_s == 0) a.timeout_s = a.quick ? 15 : 30;
  for (const std::string& m : a.models) {
    if (m != "smollm2" && m != "llama3") {
      Die(absl::StrCat("--model=", m, " must be smollm2 or llama3"));
    }
  }
  return a;
}

double Round(double v, int digits = 3) {
  const double f = std::pow(10.0, digits);
  return std::round(v * f) / f;
}

// A status on one JSON-friendly line: newlines become " | ", at most 400
// characters.
std::string OneLine(absl::string_view s) {
  std::string out =
      absl::StrReplaceAll(absl::StripAsciiWhitespace(s), {{"\n", " | "}});
  if (out.size() > 400) out = out.substr(0, 397) + "...";
  return out;
}

struct Shape {
  std::string name;  // JSON suffix, as store_bench: smollm2_135m, llama3_8b
  uint64_t object_bytes;
  uint32_t redis_values;
};

int Main(int argc, char** argv) {
  const Args args = ParseArgs(argc, argv);
  std::vector<Shape> shapes;
  for (const std::string& m : args.models) {
    if (m == "smollm2") {
      shapes.push_back({"smollm2_135m",
                        ChunkObjectBytes(ModelSpec::SmolLM2_135M()),
                        args.quick ? 64u : 192u});
    } else {
      shapes.push_back({"llama3_8b", ChunkObjectBytes(ModelSpec::Llama3_8B()),
                        args.quick ? 16u : 48u});
    }
  }

  Json params, baseline, failed = Json::object();
  params["quick"] = args.quick;
  params["cpus"] = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  for (const Shape& s : shapes) {
    params["chunk_bytes_" + s.name] = s.object_bytes;
  }

  if (!args.skip_ucx) {
    for (const Shape& s : shapes) {
      UcxPerftestOptions o;
      o.message_bytes = s.object_bytes;
      o.bytes_per_test = args.quick ? (1ull << 30) : (4ull << 30);
      o.timeout = absl::Seconds(args.timeout_s);
      o.outstanding = args.outstanding;
      absl::StatusOr<std::unique_ptr<UcxPerftest>> perftest =
          UcxPerftest::Create(o);
      if (!perftest.ok()) {
        failed["ucx"] = perftest.status().ToString();
        std::fprintf(stderr, "ucx: %s\n", perftest.status().ToString().c_str());
        break;
      }
      params["ucx_iterations_" + s.name] = (*perftest)->iterations();
      params["ucx_outstanding"] = args.outstanding;
      for (UcxTransport tr : {UcxTransport::kTcp, UcxTransport::kShm}) {
        const std::string tn(UcxTransportName(tr));
        std::fprintf(stderr, "ucx %s: %s, %d messages of %lu bytes\n",
                     tn.c_str(), s.name.c_str(), (*perftest)->iterations(),
                     s.object_bytes);
        const UcxTransportResult r = (*perftest)->RunAll(tr);
        for (const UcxTestResult& t : r.tests) {
          const std::string key =
              absl::StrCat("ucx_", tn, "_", t.test, "_gbps_", s.name);
          if (t.status.ok()) {
            baseline[key] = Round(t.bytes_per_s / kGB);
            std::fprintf(stderr, "  %-10s %8.3f GB/s  (%.1f us/msg, %.1f s)\n",
                         t.test.c_str(), t.bytes_per_s / kGB, t.latency_avg_us,
                         t.wall_s);
          } else {
            failed[key] = OneLine(t.status.ToString());
            std::fprintf(stderr, "  %-10s FAILED %s\n", t.test.c_str(),
                         t.status.ToString().c_str());
          }
        }
        baseline[absl::StrCat("ucx_", tn, "_best_gbps_", s.name)] =
            Round(r.best_bytes_per_s / kGB);
        baseline[absl::StrCat("ucx_", tn, "_best_test_", s.name)] = r.best_test;
      }
    }
  }

  if (!args.skip_redis && !shapes.empty()) {
    RedisServerOptions ro;
    for (const Shape& s : shapes) {
      ro.max_value_bytes = std::max(ro.max_value_bytes, s.object_bytes);
    }
    absl::StatusOr<std::unique_ptr<RedisBaseline>> redis =
        RedisBaseline::Start(ro);
    if (!redis.ok()) {
      failed["redis"] = redis.status().ToString();
      std::fprintf(stderr, "redis: %s\n", redis.status().ToString().c_str());
    } else {
      params["redis_threads"] = args.threads;
      for (const Shape& s : shapes) {
        params["redis_values_" + s.name] = s.redis_values;
        for (RedisTransport tr :
             {RedisTransport::kTcp, RedisTransport::kUnix}) {
          const std::string tn(RedisTransportName(tr));
          const std::string sfx = absl::StrCat(tn, "_", s.name);
          std::fprintf(stderr, "redis %s: %s, %u values of %lu bytes\n",
                       tn.c_str(), s.name.c_str(), s.redis_values,
                       s.object_bytes);
          absl::StatusOr<RedisResult> r =
              (*redis)->Run(tr, {.value_bytes = s.object_bytes,
                                 .values = s.redis_values,
                                 .threads = args.threads});
          if (!r.ok()) {
            failed["redis_" + sfx] = OneLine(r.status().ToString());
            std::fprintf(stderr, "  FAILED %s\n",
                         r.status().ToString().c_str());
            continue;
          }
          for (const auto& [phase, p] :
               {std::pair{"set", r->set}, std::pair{"get", r->get}}) {
            const std::string pre = absl::StrCat("redis_", tn, "_", phase);
            baseline[absl::StrCat(pre, "_gbps_", s.name)] =
                Round(p.bytes_per_s / kGB);
            baseline[absl::StrCat(pre, "_p50_us_", s.name)] =
                Round(p.latency_p50_us, 1);
            baseline[absl::StrCat(pre, "_p99_us_", s.name)] =
                Round(p.latency_p99_us, 1);
            std::fprintf(stderr,
                         "  %s %8.3f GB/s  p50 %.0f us  p99 %.0f us  "
                         "(%lu ops, %.2f s)\n",
                         phase, p.bytes_per_s / kGB, p.latency_p50_us,
                         p.latency_p99_us, p.ops, p.seconds);
          }
        }
      }
      const absl::Status st = (*redis)->Shutdown();
      if (!st.ok()) failed["redis_shutdown"] = OneLine(st.ToString());
    }
  }

  Json out;
  out["bench"] = "transfer_baselines";
  out["params"] = params;
  out["metrics"] = Json::object();
  out["baseline"] = baseline;
  out["ratio"] = Json::object();
  out["failed"] = failed;
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace
}  // namespace kvd::bench

int main(int argc, char** argv) { return kvd::bench::Main(argc, argv); }
