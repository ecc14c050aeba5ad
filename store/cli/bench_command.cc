#include "store/cli/bench_command.h"

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/model_spec.h"
#include "core/test_chunks.h"
#include "nlohmann/json.hpp"
#include "store/client/client.h"

namespace kvd {
namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUnreachable = 3;

struct BenchFlags {
  std::string op;  // "put" or "get"
  std::string model = "smollm2";
  int chunks = 64;
  int batch = 8;
  int threads = 1;
  uint32_t seed = 1;
  std::string ucx_tls;
  std::string protocol = "auto";
};

// The prompt's objects laid out back to back in one buffer, so each
// thread's client can register all of them at once.
struct Objects {
  std::vector<ChunkKey> keys;
  std::vector<uint8_t> arena;
  std::vector<size_t> offsets;  // of object i in `arena`
  std::vector<size_t> sizes;
  size_t max_size = 0;

  absl::Span<const uint8_t> object(size_t i) const {
    return {arena.data() + offsets[i], sizes[i]};
  }
};

Objects MakeObjects(const ModelSpec& spec, uint32_t seed, int chunks) {
  TestPrompt prompt = MakeTestPrompt(spec, seed, chunks);
  Objects o;
  o.keys = std::move(prompt.keys);
  size_t total = 0;
  for (const auto& obj : prompt.objects) {
    o.offsets.push_back(total);
    o.sizes.push_back(obj.size());
    o.max_size = std::max(o.max_size, obj.size());
    total += obj.size();
  }
  o.arena.resize(total);
  for (size_t i = 0; i < prompt.objects.size(); ++i) {
    std::memcpy(o.arena.data() + o.offsets[i], prompt.objects[i].data(),
                o.sizes[i]);
    std::vector<uint8_t>().swap(prompt.objects[i]);  // keep one copy alive
  }
  return o;
}

// What one thread saw; merged after all threads join.
struct ThreadResult {
  absl::Status connect;  // Connect or RegisterBuffer failure
  std::vector<double> batch_ms;
  uint64_t bytes = 0;
  uint64_t chunks_ok = 0, misses = 0, mismatches = 0, errors = 0;
  std::string first_problem;
  kvdepot::v1::DataProtocol protocol = kvdepot::v1::DATA_PROTOCOL_UNSPECIFIED;

  void Problem(const std::string& text) {
    if (first_problem.empty()) first_problem = text;
  }
};

double Ms(SteadyClock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

// Nearest-rank percentile of sorted values; 0 for none.
double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(p * sorted.size()));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

void PutBatch(Client& client, const Objects& objects, size_t begin, size_t end,
              ThreadResult& r) {
  std::vector<absl::Span<const uint8_t>> spans;
  for (size_t i = begin; i < end; ++i) spans.push_back(objects.object(i));
  absl::Span<const ChunkKey> keys =
      absl::MakeConstSpan(objects.keys).subspan(begin, end - begin);
  const SteadyClock::time_point t0 = SteadyClock::now();
  std::vector<absl::Status> statuses = client.Put(keys, spans);
  r.batch_ms.push_back(Ms(SteadyClock::now() - t0));
  for (size_t i = begin; i < end; ++i) {
    const absl::Status& s = statuses[i - begin];
    if (s.ok()) {
      ++r.chunks_ok;
      r.bytes += objects.sizes[i];
    } else {
      ++r.errors;
      r.Problem(absl::StrCat("put of chunk ", i, " (",
                             objects.keys[i].ShortHex(),
                             ") failed: ", s.ToString()));
    }
  }
}

void GetBatch(Client& client, const Objects& objects, size_t begin, size_t end,
              absl::Span<uint8_t> staging, ThreadResult& r) {
  std::memset(staging.data(), 0, staging.size());
  std::vector<GetTarget> targets;
  for (size_t i = begin; i < end; ++i) {
    targets.push_back(
        {objects.keys[i],
         true,
         {},
         staging.subspan((i - begin) * objects.max_size, objects.max_size)});
  }
  const SteadyClock::time_point t0 = SteadyClock::now();
  std::vector<absl::StatusOr<uint64_t>> got = client.Get(targets);
  r.batch_ms.push_back(Ms(SteadyClock::now() - t0));
  for (size_t i = begin; i < end; ++i) {
    const absl::StatusOr<uint64_t>& g = got[i - begin];
    const std::string name =
        absl::StrCat("chunk ", i, " (", objects.keys[i].ShortHex(), ")");
    if (absl::IsNotFound(g.status())) {
      ++r.misses;
      r.Problem(absl::StrCat(name, " is not on the node"));
    } else if (!g.ok()) {
      ++r.errors;
      r.Problem(
          absl::StrCat("get of ", name, " failed: ", g.status().ToString()));
    } else if (*g != objects.sizes[i] ||
               std::memcmp(targets[i - begin].dst.data(),
                           objects.object(i).data(), objects.sizes[i]) != 0) {
      ++r.mismatches;
      r.Problem(absl::StrCat(name, ": ", *g, " bytes differ from the ",
                             objects.sizes[i], " expected"));
    } else {
      ++r.chunks_ok;
      r.bytes += *g;
    }
  }
}

// Stamps the start of the timed phase once every thread has connected.
struct StartStamp {
  SteadyClock::time_point* start;
  void operator()() noexcept { *start = SteadyClock::now(); }
};

// One thread: its own client, the batches b with b % threads == index.
void RunThread(const BenchFlags& flags, const ClientOptions& options,
               Objects& objects, int index, std::barrier<StartStamp>& connected,
               ThreadResult& r) {
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(options);
  std::unique_ptr<Registration> registration;
  std::vector<uint8_t> staging;
  if (!client.ok()) {
    r.connect = client.status();
  } else if (flags.op == "put") {
    absl::StatusOr<std::unique_ptr<Registration>> reg =
        (*client)->RegisterBuffer(absl::MakeSpan(objects.arena));
    if (reg.ok()) registration = *std::move(reg);
    r.connect = reg.status();
  } else {
    staging.resize(objects.max_size * flags.batch);
    absl::StatusOr<std::unique_ptr<Registration>> reg =
        (*client)->RegisterBuffer(absl::MakeSpan(staging));
    if (reg.ok()) registration = *std::move(reg);
    r.connect = reg.status();
  }
  connected.arrive_and_wait();
  if (!r.connect.ok()) return;
  r.protocol = (*client)->hello().protocol();
  const size_t n = objects.keys.size();
  const size_t batch = flags.batch;
  for (size_t b = index; b * batch < n; b += flags.threads) {
    const size_t begin = b * batch, end = std::min(n, begin + batch);
    if (flags.op == "put") {
      PutBatch(**client, objects, begin, end, r);
    } else {
      GetBatch(**client, objects, begin, end, absl::MakeSpan(staging), r);
    }
  }
  registration.reset();  // before the client
}

int RunBench(const BenchFlags& flags, const std::string& node,
             const std::string& token, bool json) {
  const std::string tag = absl::StrCat("kvdepotctl: bench ", flags.op);
  ModelSpec spec;
  if (flags.model == "smollm2") {
    spec = ModelSpec::SmolLM2_135M();
  } else if (flags.model == "llama3") {
    spec = ModelSpec::Llama3_8B();
  } else {
    std::fprintf(stderr, "%s: --model=%s is not smollm2 or llama3\n",
                 tag.c_str(), flags.model.c_str());
    return kExitUsage;
  }
  ClientOptions options;
  options.address = node;
  options.token = token;
  if (options.token.empty()) {
    const char* env = std::getenv("KVDEPOT_TOKEN");
    if (env != nullptr) options.token = env;
  }
  options.ucx_tls = flags.ucx_tls;
  if (flags.protocol == "rma") {
    options.protocol = kvdepot::v1::DATA_PROTOCOL_RMA;
  } else if (flags.protocol == "am") {
    options.protocol = kvdepot::v1::DATA_PROTOCOL_AM;
  } else if (flags.protocol != "auto") {
    std::fprintf(stderr, "%s: --protocol=%s is not auto, rma or am\n",
                 tag.c_str(), flags.protocol.c_str());
    return kExitUsage;
  }

  Objects objects = MakeObjects(spec, flags.seed, flags.chunks);
  std::vector<ThreadResult> results(flags.threads);
  SteadyClock::time_point start = SteadyClock::now();
  std::barrier connected(flags.threads, StartStamp{&start});
  std::vector<std::thread> threads;
  for (int t = 0; t < flags.threads; ++t) {
    threads.emplace_back([&, t] {
      RunThread(flags, options, objects, t, connected, results[t]);
    });
  }
  for (std::thread& t : threads) t.join();
  const double seconds =
      std::chrono::duration<double>(SteadyClock::now() - start).count();

  ThreadResult all;
  for (ThreadResult& r : results) {
    if (!r.connect.ok() && all.connect.ok()) all.connect = r.connect;
    all.batch_ms.insert(all.batch_ms.end(), r.batch_ms.begin(),
                        r.batch_ms.end());
    all.bytes += r.bytes;
    all.chunks_ok += r.chunks_ok;
    all.misses += r.misses;
    all.mismatches += r.mismatches;
    all.errors += r.errors;
    if (!r.first_problem.empty()) all.Problem(r.first_problem);
    if (r.protocol != kvdepot::v1::DATA_PROTOCOL_UNSPECIFIED) {
      all.protocol = r.protocol;
    }
  }
  std::sort(all.batch_ms.begin(), all.batch_ms.end());
  const double gbps = seconds > 0 ? all.bytes / seconds / 1e9 : 0;
  const double p50 = Percentile(all.batch_ms, 0.50);
  const double p99 = Percentile(all.batch_ms, 0.99);

  std::string error;
  int rc = 0;
  if (!all.connect.ok()) {
    const absl::StatusCode code = all.connect.code();
    const bool unreachable = code == absl::StatusCode::kUnavailable ||
                             code == absl::StatusCode::kDeadlineExceeded;
    error = absl::StrCat(unreachable ? "node unreachable: " : "",
                         all.connect.ToString());
    rc = unreachable ? kExitUnreachable : kExitFailed;
  } else if (all.chunks_ok != objects.keys.size()) {
    error = absl::StrCat(objects.keys.size() - all.chunks_ok, " of ",
                         objects.keys.size(), " chunks failed (", all.misses,
                         " missing, ", all.mismatches, " with wrong bytes, ",
                         all.errors, " errors); first: ", all.first_problem);
    rc = kExitFailed;
  }
  if (!error.empty())
    std::fprintf(stderr, "%s: %s\n", tag.c_str(), error.c_str());

  const std::string protocol =
      all.protocol == kvdepot::v1::DATA_PROTOCOL_UNSPECIFIED
          ? flags.protocol
          : absl::AsciiStrToLower(kvdepot::v1::DataProtocol_Name(all.protocol)
                                      .substr(sizeof("DATA_PROTOCOL_") - 1));
  if (json) {
    nlohmann::ordered_json out = {
        {"bench", absl::StrCat("kvdepotctl_bench_", flags.op)},
        {"ok", rc == 0},
        {"params",
         {{"node", node},
          {"model", spec.model_id},
          {"object_bytes", objects.max_size},
          {"chunks", flags.chunks},
          {"batch", flags.batch},
          {"threads", flags.threads},
          {"seed", flags.seed},
          {"ucx_tls", flags.ucx_tls},
          {"protocol", protocol}}},
        {"metrics",
         {{"bytes", all.bytes},
          {"seconds", seconds},
          {"gb_per_s", gbps},
          {"batch_p50_ms", p50},
          {"batch_p99_ms", p99},
          {"batches", all.batch_ms.size()},
          {"chunks_ok", all.chunks_ok},
          {"misses", all.misses},
          {"mismatches", all.mismatches},
          {"errors", all.errors}}}};
    if (rc != 0) out["error"] = error;
    std::printf("%s\n", out.dump().c_str());
    return rc;
  }
  if (!all.connect.ok()) return rc;
  std::printf(
      "bench %s: %d chunks of %s (%.1f MiB each), batch %d, %d thread%s, "
      "protocol %s, node %s\n",
      flags.op.c_str(), flags.chunks, spec.model_id.c_str(),
      objects.max_size / 1048576.0, flags.batch, flags.threads,
      flags.threads == 1 ? "" : "s", protocol.c_str(), node.c_str());
  std::printf(
      "  %.1f MiB in %.3f s: %.2f GB/s; batch latency p50 %.2f ms, p99 "
      "%.2f ms\n",
      all.bytes / 1048576.0, seconds, gbps, p50, p99);
  std::printf("  %lu of %d chunks %s\n", all.chunks_ok, flags.chunks,
              flags.op == "put" ? "stored" : "fetched and verified");
  return rc;
}

}  // namespace

void AddBenchCommand(CLI::App& app, const std::string* node,
                     const std::string* token, const bool* json,
                     int* exit_code) {
  auto flags = std::make_shared<BenchFlags>();
  CLI::App* bench = app.add_subcommand(
      "bench", "Data-path benchmark against a live node (put, then get).");
  bench->require_subcommand(1);
  bench->fallthrough();
  // The same options on both, so `bench put --help` lists them.
  auto add_options = [&flags](CLI::App* sub) {
    sub->fallthrough();
    sub->add_option("--model", flags->model, "smollm2 or llama3 geometry.")
        ->check(CLI::IsMember({"smollm2", "llama3"}))
        ->capture_default_str();
    sub->add_option("--chunks", flags->chunks, "Chunks of the prompt.")
        ->check(CLI::Range(1, 1 << 20))
        ->capture_default_str();
    sub->add_option("--batch", flags->batch, "Keys per batch.")
        ->check(CLI::Range(1, 4096))
        ->capture_default_str();
    sub->add_option("--threads", flags->threads,
                    "Threads, each with its own client.")
        ->check(CLI::Range(1, 256))
        ->capture_default_str();
    sub->add_option("--seed", flags->seed, "Prompt seed (keys and bytes).")
        ->capture_default_str();
    sub->add_option("--ucx-tls", flags->ucx_tls,
                    "UCX_TLS of the client (default: UCX's choice); use the "
                    "node's transfer.ucx_tls.");
    sub->add_option("--protocol", flags->protocol, "auto, rma or am.")
        ->check(CLI::IsMember({"auto", "rma", "am"}))
        ->capture_default_str();
  };
  CLI::App* put = bench->add_subcommand("put", "Store the prompt's chunks.");
  add_options(put);
  put->callback([flags] { flags->op = "put"; });
  CLI::App* get = bench->add_subcommand(
      "get", "Fetch the prompt's chunks and verify every byte.");
  add_options(get);
  get->callback([flags] { flags->op = "get"; });
  bench->callback([flags, node, token, json, exit_code] {
    *exit_code = RunBench(*flags, *node, *token, *json);
  });
}

}  // namespace kvd
