// transfer_bench: kvdepot's data path through a real kvdepot-node process,
// against baselines measured in the same run on the same machine:
//   - ucx_perftest (best of ucp_am_bw / tag_bw / ucp_put_bw / ucp_get) on the
//     same UCX transport and message size (one 256-token chunk object);
//   - redis-server with hiredis SET/GET of the same chunks from the same
//     number of client threads.
// Prints one JSON line (bench/run.sh transfer). Ratios are ours over theirs,
// throughput (higher is better).
//
//   transfer_bench [--quick] [--chunks=N] [--threads=T]
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "bench/transfer/baselines.h"
#include "bench/transfer/internal/subprocess.h"
#include "core/model_spec.h"
#include "core/status.h"
#include "core/test_chunks.h"
#include "nlohmann/json.hpp"
#include "store/client/client.h"

namespace kvd::bench {
namespace {

using nlohmann::json;

struct Args {
  bool quick = false;
  bool baselines = true;  // --no-baselines: only kvdepot (for profiling)
  int chunks = 0;         // per put/get phase; 0: by mode
  int threads = 4;
};

Args ParseArgs(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--quick") {
      a.quick = true;
    } else if (arg == "--no-baselines") {
      a.baselines = false;
    } else if (absl::ConsumePrefix(&arg, "--chunks=") &&
               absl::SimpleAtoi(arg, &a.chunks) && a.chunks > 0) {
    } else if (absl::ConsumePrefix(&arg, "--threads=") &&
               absl::SimpleAtoi(arg, &a.threads) && a.threads > 0) {
    } else {
      std::fprintf(stderr,
                   "usage: transfer_bench [--quick] [--no-baselines] "
                   "[--chunks=N] [--threads=T]\n");
      std::exit(2);
    }
  }
  if (a.chunks == 0) a.chunks = a.quick ? 32 : 128;
  return a;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

// A kvdepot-node child process with its data path on one UCX transport.
class NodeProcess {
 public:
  static absl::StatusOr<std::unique_ptr<NodeProcess>> Start(
      const std::string& tls, uint64_t host_bytes) {
    auto n = std::unique_ptr<NodeProcess>(new NodeProcess);
    KVD_ASSIGN_OR_RETURN(n->dir_, TempDir::Create("kvd-transfer-bench"));
    const std::string port_file = n->dir_->path() + "/port";
    Subprocess::Options o;
    o.argv = {KVD_NODE_BIN, "--standalone", "--listen", "127.0.0.1:0",
              "--port-file", port_file, "--set",
              absl::StrCat("host.capacity=", host_bytes), "--set",
              "host.huge_pages=false", "--set", "log.level=warn", "--set",
              absl::StrCat("transfer.ucx_tls=", tls),
              // One machine, loopback only: no tokens, no metrics port.
              "--set", "auth.allow_no_token=true", "--set", "metrics.listen="};
    o.output_path = n->dir_->path() + "/node.log";
    KVD_ASSIGN_OR_RETURN(n->process_, Subprocess::Start(o));
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (absl::Now() < deadline) {
      std::ifstream in(port_file);
      int port = 0;
      if (in >> port && port > 0) {
        n->address_ = absl::StrCat("127.0.0.1:", port);
        return n;
      }
      if (!n->process_->Running()) break;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return absl::UnavailableError(absl::StrCat(
        "kvdepot-node did not start: ", TailLines(n->process_->Output(), 10)));
  }
  const std::string& address() const { return address_; }

 private:
  NodeProcess() = default;
  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<Subprocess> process_;
  std::string address_;
};

absl::StatusOr<std::unique_ptr<Client>> ConnectTo(const NodeProcess& node,
                                                  const std::string& tls) {
  ClientOptions o;
  o.address = node.address();
  o.ucx_tls = tls;
  o.timeout = absl::Seconds(60);
  return Client::Connect(o);
}

struct Phase {
  double bytes_per_s = 0;
  double p50_us = 0, p99_us = 0;
};

// Puts then gets `chunks` chunks through one client with `window` batches of
// `batch` chunks in flight; verifies every byte read back.
struct Throughput {
  Phase put, get;
};

absl::StatusOr<Throughput> MeasureThroughput(Client& client,
                                             const ModelSpec& spec,
                                             uint32_t seed, int chunks) {
  const TestPrompt p = MakeTestPrompt(spec, seed, chunks);
  const uint64_t object = p.objects[0].size();
  std::vector<uint8_t> src(object * chunks), dst(object * chunks);
  KVD_ASSIGN_OR_RETURN(auto src_reg,
                       client.RegisterBuffer(absl::MakeSpan(src)));
  KVD_ASSIGN_OR_RETURN(auto dst_reg,
                       client.RegisterBuffer(absl::MakeSpan(dst)));
  std::vector<absl::Span<const uint8_t>> spans;
  for (int i = 0; i < chunks; ++i) {
    std::memcpy(src.data() + i * object, p.objects[i].data(), object);
    spans.emplace_back(src.data() + i * object, object);
  }
  constexpr int kBatch = 2;
  constexpr int kWindow = 8;
  absl::Mutex mu;
  int in_flight = 0;
  absl::Status failure;
  std::vector<double> latencies;

  auto run = [&](bool put) -> absl::StatusOr<Phase> {
    latencies.clear();
    const absl::Time start = absl::Now();
    for (int i = 0; i < chunks; i += kBatch) {
      const int n = std::min(kBatch, chunks - i);
      {
        absl::MutexLock lock(&mu);
        auto room = [&] { return in_flight < kWindow; };
        mu.Await(absl::Condition(&room));
        in_flight++;
      }
      const absl::Time t0 = absl::Now();
      auto finish = [&, t0](absl::Status s) {
        absl::MutexLock lock(&mu);
        if (!s.ok() && failure.ok()) failure = s;
        latencies.push_back(absl::ToDoubleMicroseconds(absl::Now() - t0));
        in_flight--;
      };
      if (put) {
        client.PutAsync(absl::MakeConstSpan(p.keys).subspan(i, n),
                        absl::MakeConstSpan(spans).subspan(i, n),
                        [finish](std::vector<absl::Status> r) {
                          absl::Status s;
                          for (auto& x : r) s.Update(x);
                          finish(s);
                        });
      } else {
        std::vector<GetTarget> targets;
        for (int j = i; j < i + n; ++j) {
          targets.push_back({p.keys[j],
                             true,
                             {},
                             absl::MakeSpan(dst.data() + j * object, object)});
        }
        client.GetAsync(targets,
                        [finish](std::vector<absl::StatusOr<uint64_t>> r) {
                          absl::Status s;
                          for (auto& x : r) s.Update(x.status());
                          finish(s);
                        });
      }
    }
    absl::MutexLock lock(&mu);
    auto drained = [&] { return in_flight == 0; };
    mu.Await(absl::Condition(&drained));
    const double secs = absl::ToDoubleSeconds(absl::Now() - start);
    if (!failure.ok()) return failure;
    return Phase{object * chunks / secs, Percentile(latencies, 0.5),
                 Percentile(latencies, 0.99)};
  };
  Throughput t;
  KVD_ASSIGN_OR_RETURN(t.put, run(true));
  KVD_ASSIGN_OR_RETURN(t.get, run(false));
  if (dst != src) return absl::DataLossError("bytes read back differ");
  return t;
}

// Redis-shaped load: T threads, each its own client, one chunk per call.
struct PerOp {
  Phase put, get;
};

absl::StatusOr<PerOp> MeasurePerOp(const NodeProcess& node,
                                   const std::string& tls,
                                   const ModelSpec& spec, uint32_t seed,
                                   int values, int threads) {
  std::vector<std::thread> workers;
  absl::Mutex mu;
  absl::Status failure;
  std::vector<double> put_lat, get_lat;
  double put_s = 0, get_s = 0;
  uint64_t bytes = 0;
  const int per = values / threads;
  // Start together: each phase's wall time is measured across threads.
  absl::Notification go_put, go_get;
  std::atomic<int> ready{0}, put_done{0};
  std::vector<std::unique_ptr<Client>> clients(threads);
  std::vector<TestPrompt> prompts(threads);
  for (int t = 0; t < threads; ++t) {
    KVD_ASSIGN_OR_RETURN(clients[t], ConnectTo(node, tls));
    prompts[t] = MakeTestPrompt(spec, seed + t, per);
    bytes += per * prompts[t].objects[0].size();
  }
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      Client& c = *clients[t];
      const TestPrompt& p = prompts[t];
      const uint64_t object = p.objects[0].size();
      std::vector<uint8_t> buf(object * 2);
      auto reg = c.RegisterBuffer(absl::MakeSpan(buf));
      std::vector<double> pl, gl;
      absl::Status err = reg.status();
      ready++;
      go_put.WaitForNotification();
      for (int i = 0; i < per && err.ok(); ++i) {
        std::memcpy(buf.data(), p.objects[i].data(), object);
        const absl::Time t0 = absl::Now();
        err = c.Put({p.keys[i]}, {absl::MakeConstSpan(buf.data(), object)})[0];
        pl.push_back(absl::ToDoubleMicroseconds(absl::Now() - t0));
      }
      put_done++;
      go_get.WaitForNotification();
      for (int i = 0; i < per && err.ok(); ++i) {
        const absl::Time t0 = absl::Now();
        GetTarget target{
            p.keys[i], true, {}, absl::MakeSpan(buf.data() + object, object)};
        absl::StatusOr<uint64_t> got = c.Get({target})[0];
        gl.push_back(absl::ToDoubleMicroseconds(absl::Now() - t0));
        err = got.status();
        if (err.ok() && !std::equal(p.objects[i].begin(), p.objects[i].end(),
                                    buf.begin() + object)) {
          err = absl::DataLossError("bytes read back differ");
        }
      }
      if (reg.ok()) reg->reset();
      absl::MutexLock lock(&mu);
      if (!err.ok() && failure.ok()) failure = err;
      put_lat.insert(put_lat.end(), pl.begin(), pl.end());
      get_lat.insert(get_lat.end(), gl.begin(), gl.end());
    });
  }
  while (ready < threads) absl::SleepFor(absl::Milliseconds(1));
  absl::Time t0 = absl::Now();
  go_put.Notify();
  while (put_done < threads) absl::SleepFor(absl::Microseconds(200));
  put_s = absl::ToDoubleSeconds(absl::Now() - t0);
  t0 = absl::Now();
  go_get.Notify();
  for (auto& w : workers) w.join();
  get_s = absl::ToDoubleSeconds(absl::Now() - t0);
  if (!failure.ok()) return failure;
  return PerOp{
      {bytes / put_s, Percentile(put_lat, 0.5), Percentile(put_lat, 0.99)},
      {bytes / get_s, Percentile(get_lat, 0.5), Percentile(get_lat, 0.99)}};
}

absl::StatusOr<std::pair<double, double>> MeasureLookup(Client& client,
                                                        const ModelSpec& spec,
                                                        int rounds) {
  // A 128k-token prompt: 512 chained keys, the first 64 stored.
  ModelSpec s = spec;
  const TestPrompt stored = MakeTestPrompt(s, 9000, 64);
  std::vector<ChunkKey> keys = stored.keys;
  ChunkKey prev = keys.back();
  for (int i = 64; i < 512; ++i) {
    std::vector<uint32_t> tokens(s.chunk_tokens, static_cast<uint32_t>(i));
    prev = NextChunkKey(prev, tokens);
    keys.push_back(prev);
  }
  const uint64_t object = stored.objects[0].size();
  std::vector<uint8_t> staged(object * stored.objects.size());
  std::vector<absl::Span<const uint8_t>> spans;
  for (size_t i = 0; i < stored.objects.size(); ++i) {
    std::memcpy(staged.data() + i * object, stored.objects[i].data(), object);
    spans.emplace_back(staged.data() + i * object, object);
  }
  KVD_ASSIGN_OR_RETURN(auto reg, client.RegisterBuffer(absl::MakeSpan(staged)));
  for (const absl::Status& st : client.Put(stored.keys, spans)) {
    KVD_RETURN_IF_ERROR(st);
  }
  std::vector<double> lat;
  for (int i = 0; i < rounds; ++i) {
    const absl::Time t0 = absl::Now();
    KVD_ASSIGN_OR_RETURN(size_t n, client.Lookup(keys));
    lat.push_back(absl::ToDoubleMicroseconds(absl::Now() - t0));
    if (n != 64) return absl::InternalError("lookup found a wrong prefix");
  }
  return std::make_pair(Percentile(lat, 0.5), Percentile(lat, 0.99));
}

double CombinedBps(const Phase& a, const Phase& b) {
  // Equal bytes each way: total bytes over total time.
  return 2 / (1 / a.bytes_per_s + 1 / b.bytes_per_s);
}

int Main(int argc, char** argv) {
  const Args args = ParseArgs(argc, argv);
  const ModelSpec smol = ModelSpec::SmolLM2_135M();
  const uint64_t object = ChunkObjectBytes(smol);
  json out = {{"bench", "transfer"},
              {"params",
               {{"model", smol.model_id},
                {"object_bytes", object},
                {"chunks", args.chunks},
                {"threads", args.threads},
                {"quick", args.quick}}}};
  json metrics, baseline, ratio, failed;

  // Baselines: ucx_perftest, best test per transport.
  UcxPerftestOptions po;
  po.message_bytes = object;
  po.bytes_per_test = args.quick ? (256ull << 20) : (1ull << 30);
  auto perftest = UcxPerftest::Create(po);
  double best[2] = {0, 0};
  if (!args.baselines) {
  } else if (perftest.ok()) {
    for (UcxTransport t : {UcxTransport::kTcp, UcxTransport::kShm}) {
      UcxTransportResult r = (*perftest)->RunAll(t);
      const std::string name(UcxTransportName(t));
      for (const UcxTestResult& test : r.tests) {
        if (test.status.ok()) {
          baseline[absl::StrCat("ucx_", name, "_", test.test, "_GBps")] =
              test.bytes_per_s / 1e9;
        } else {
          failed[absl::StrCat("ucx_", name, "_", test.test)] =
              std::string(test.status.message().substr(0, 200));
        }
      }
      best[t == UcxTransport::kTcp ? 0 : 1] = r.best_bytes_per_s;
      baseline[absl::StrCat("ucx_", name, "_best_GBps")] =
          r.best_bytes_per_s / 1e9;
      baseline[absl::StrCat("ucx_", name, "_best_test")] = r.best_test;
    }
  } else {
    failed["ucx_perftest"] = std::string(perftest.status().message());
  }

  // Ours, through a kvdepot-node process per transport.
  const struct {
    const char* name;
    const char* tls;
  } transports[] = {{"tcp", "tcp"}, {"shm", "posix,cma,self"}};
  PerOp per_op[2];
  for (int ti = 0; ti < 2; ++ti) {
    const std::string name = transports[ti].name;
    auto node = NodeProcess::Start(transports[ti].tls,
                                   object * (args.chunks * 3 + 256));
    if (!node.ok()) {
      failed[absl::StrCat("node_", name)] =
          std::string(node.status().message());
      continue;
    }
    auto client = ConnectTo(**node, transports[ti].tls);
    if (!client.ok()) {
      failed[absl::StrCat("client_", name)] =
          std::string(client.status().message());
      continue;
    }
    metrics[absl::StrCat("protocol_", name)] =
        kvdepot::v1::DataProtocol_Name((*client)->hello().protocol());
    absl::StatusOr<Throughput> tp =
        MeasureThroughput(**client, smol, 100 + ti, args.chunks);
    if (tp.ok()) {
      metrics[absl::StrCat("put_", name, "_GBps")] = tp->put.bytes_per_s / 1e9;
      metrics[absl::StrCat("get_", name, "_GBps")] = tp->get.bytes_per_s / 1e9;
      if (best[ti] > 0) {
        ratio[absl::StrCat("put_vs_ucx_", name)] =
            tp->put.bytes_per_s / best[ti];
        ratio[absl::StrCat("get_vs_ucx_", name)] =
            tp->get.bytes_per_s / best[ti];
      }
    } else {
      failed[absl::StrCat("throughput_", name)] =
          std::string(tp.status().message());
    }
    {
      auto lookup = MeasureLookup(**client, smol, args.quick ? 300 : 2000);
      // The figure is over loopback tcp; shm is reported beside it.
      const std::string suffix = ti == 0 ? "" : "_shm";
      if (lookup.ok()) {
        metrics["lookup_512_p50_us" + suffix] = lookup->first;
        metrics["lookup_512_p99_us" + suffix] = lookup->second;
      } else {
        failed["lookup" + suffix] = std::string(lookup.status().message());
      }
    }
    client->reset();
    absl::StatusOr<PerOp> po_result =
        MeasurePerOp(**node, transports[ti].tls, smol, 500 + 10 * ti,
                     args.quick ? 32 : 96, args.threads);
    if (po_result.ok()) {
      per_op[ti] = *po_result;
      metrics[absl::StrCat("perop_put_", name, "_GBps")] =
          po_result->put.bytes_per_s / 1e9;
      metrics[absl::StrCat("perop_get_", name, "_GBps")] =
          po_result->get.bytes_per_s / 1e9;
      metrics[absl::StrCat("perop_get_", name, "_p99_us")] =
          po_result->get.p99_us;
      metrics[absl::StrCat("perop_put_", name, "_p99_us")] =
          po_result->put.p99_us;
    } else {
      failed[absl::StrCat("perop_", name)] =
          std::string(po_result.status().message());
    }
  }

  // Redis, same chunks, same client threads; the better of TCP and its unix
  // socket is the baseline for the shared-memory comparison.
  auto redis = args.baselines ? RedisBaseline::Start({})
                              : absl::UnavailableError("--no-baselines");
  if (!args.baselines) {
  } else if (redis.ok()) {
    RedisLoad load{object, static_cast<uint32_t>(args.quick ? 32 : 96),
                   static_cast<uint32_t>(args.threads)};
    double redis_bps[2] = {0, 0};
    double redis_p99[2] = {0, 0};
    for (RedisTransport rt : {RedisTransport::kTcp, RedisTransport::kUnix}) {
      auto r = (*redis)->Run(rt, load);
      const int i = rt == RedisTransport::kTcp ? 0 : 1;
      const char* n = i == 0 ? "tcp" : "unix";
      if (!r.ok()) {
        failed[absl::StrCat("redis_", n)] = std::string(r.status().message());
        continue;
      }
      Phase set{r->set.bytes_per_s, r->set.latency_p50_us,
                r->set.latency_p99_us};
      Phase get{r->get.bytes_per_s, r->get.latency_p50_us,
                r->get.latency_p99_us};
      redis_bps[i] = CombinedBps(set, get);
      redis_p99[i] = std::max(set.p99_us, get.p99_us);
      baseline[absl::StrCat("redis_", n, "_set_GBps")] = set.bytes_per_s / 1e9;
      baseline[absl::StrCat("redis_", n, "_get_GBps")] = get.bytes_per_s / 1e9;
      baseline[absl::StrCat("redis_", n, "_p99_us")] = redis_p99[i];
    }
    const double redis_local = std::max(redis_bps[0], redis_bps[1]);
    for (int ti = 0; ti < 2; ++ti) {
      if (per_op[ti].put.bytes_per_s == 0) continue;
      const double ours = CombinedBps(per_op[ti].put, per_op[ti].get);
      const double ours_p99 =
          std::max(per_op[ti].put.p99_us, per_op[ti].get.p99_us);
      const double theirs = ti == 0 ? redis_bps[0] : redis_local;
      const double theirs_p99 =
          ti == 0 ? redis_p99[0] : std::min(redis_p99[0], redis_p99[1]);
      const std::string name = transports[ti].name;
      if (theirs > 0) ratio[absl::StrCat("vs_redis_", name)] = ours / theirs;
      if (ours_p99 > 0 && theirs_p99 > 0) {
        metrics[absl::StrCat("p99_vs_redis_", name)] = theirs_p99 / ours_p99;
      }
    }
  } else {
    failed["redis"] = std::string(redis.status().message());
  }

  out["metrics"] = metrics;
  out["baseline"] = baseline;
  out["ratio"] = ratio;
  if (!failed.empty()) out["failed"] = failed;
  std::printf("%s\n", out.dump().c_str());
  return failed.contains("throughput_tcp") || failed.contains("throughput_shm")
             ? 1
             : 0;
}

}  // namespace
}  // namespace kvd::bench

int main(int argc, char** argv) { return kvd::bench::Main(argc, argv); }
