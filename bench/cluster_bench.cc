// cluster_bench: aggregate data-path throughput of a 3-node cluster against
// one node, under the same total client load (issue "cluster mode").
//
// For N in {1, 3}: starts a real etcd and N kvdepot-node processes in
// cluster mode on loopback (UCX over --ucx-tls, default tcp), then T client
// threads share one ClusterClient (R = 1): each puts its own prompt of C
// SmolLM2-135M chunks (5.6 MiB each) in batches of B, then gets them back
// and checks every byte. Throughput is bytes over the wall time of each
// phase, all threads together. Prints one JSON line:
//   {"bench":"cluster","params":{...},"metrics":{"one_node_put_gbps",..},
//    "ratio":{"three_nodes_vs_one":..,"put":..,"get":..}}
// where three_nodes_vs_one compares put+get bytes per second.
//
//   cluster_bench [--quick] [--threads T] [--chunks C] [--batch B]
//                 [--ucx-tls TLS] [--node-bin PATH]
#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "bench/transfer/internal/subprocess.h"
#include "cluster/cluster_client.h"
#include "core/model_spec.h"
#include "core/test_chunks.h"
#include "nlohmann/json.hpp"

namespace kvd {
namespace {

struct Flags {
  bool quick = false;
  int threads = 4;
  int chunks = 16;
  int batch = 4;
  std::string ucx_tls = "tcp";
  std::string node_bin = KVD_NODE_BIN;
};

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "cluster_bench: %s\n", what.c_str());
  std::exit(1);
}

// etcd and N nodes in a fresh directory; everything stops with it.
class Cluster {
 public:
  Cluster(const Flags& flags, int nodes) {
    absl::StatusOr<std::unique_ptr<bench::TempDir>> dir =
        bench::TempDir::Create("kvdepot-cluster-bench.");
    if (!dir.ok()) Die(dir.status().ToString());
    dir_ = *std::move(dir);
    absl::StatusOr<int> client_port = bench::PickFreePort();
    absl::StatusOr<int> peer_port = bench::PickFreePort();
    if (!client_port.ok() || !peer_port.ok()) Die("no free port");
    etcd_endpoint_ = absl::StrCat("127.0.0.1:", *client_port);
    const std::string client = "http://" + etcd_endpoint_;
    const std::string peer = absl::StrCat("http://127.0.0.1:", *peer_port);
    Spawn({"/usr/bin/etcd", "--name", "bench", "--data-dir",
           dir_->path() + "/etcd", "--listen-client-urls", client,
           "--advertise-client-urls", client, "--listen-peer-urls", peer,
           "--initial-advertise-peer-urls", peer, "--initial-cluster",
           "bench=" + peer},
          "etcd");
    for (int i = 0; i < nodes; ++i) {
      Spawn({flags.node_bin, "--set", absl::StrCat("node.id=b", i), "--set",
             "cluster.name=bench", "--set", "cluster.etcd=" + etcd_endpoint_,
             "--set", "auth.allow_no_token=true", "--set",
             "transfer.ucx_tls=" + flags.ucx_tls, "--set", "host.capacity=2GiB",
             "--set", "host.huge_pages=false", "--set",
             "metrics.listen=", "--listen", "127.0.0.1:0"},
            absl::StrCat("node", i));
    }
  }
  ~Cluster() {
    while (!children_.empty()) children_.pop_back();  // nodes, then etcd
  }
  const std::string& etcd_endpoint() const { return etcd_endpoint_; }
  std::string log(size_t i) const { return children_[i + 1]->Output(); }

 private:
  void Spawn(std::vector<std::string> argv, const std::string& name) {
    absl::StatusOr<std::unique_ptr<bench::Subprocess>> child =
        bench::Subprocess::Start(
            {.argv = std::move(argv),
             .output_path = absl::StrCat(dir_->path(), "/", name, ".log")});
    if (!child.ok()) Die(child.status().ToString());
    children_.push_back(*std::move(child));
  }

  std::unique_ptr<bench::TempDir> dir_;  // outlives the children
  std::string etcd_endpoint_;
  std::vector<std::unique_ptr<bench::Subprocess>> children_;
};

struct Phase {
  double put_gbps = 0;
  double get_gbps = 0;
  uint64_t chunk_bytes = 0;
};

Phase Measure(const Flags& flags, int nodes) {
  Cluster cluster(flags, nodes);
  ClientOptions node;
  node.ucx_tls = flags.ucx_tls;
  node.timeout = absl::Seconds(30);
  absl::StatusOr<std::unique_ptr<cluster::ClusterClient>> client =
      cluster::ClusterClient::Connect(
          {.cluster = "bench",
           .etcd = {cluster.etcd_endpoint()},
           .node = node,
           .membership_timeout = absl::Seconds(30)});
  if (!client.ok()) Die(client.status().ToString());
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while ((*client)->membership()->nodes.size() < static_cast<size_t>(nodes)) {
    if (absl::Now() > deadline)
      Die("nodes did not register: " + cluster.log(0));
    absl::SleepFor(absl::Milliseconds(50));
  }
  // Per thread: its prompt in one registered buffer, with room to read back.
  struct Work {
    TestPrompt prompt;
    std::vector<uint8_t> memory;
    std::unique_ptr<Registration> registration;
    std::vector<absl::Span<const uint8_t>> objects;
    std::vector<GetTarget> targets;
  };
  std::vector<Work> work(flags.threads);
  uint64_t bytes = 0;
  for (int t = 0; t < flags.threads; ++t) {
    Work& w = work[t];
    w.prompt = MakeTestPrompt(ModelSpec::SmolLM2_135M(), 1000 * nodes + t,
                              flags.chunks);
    size_t total = 0;
    for (const auto& o : w.prompt.objects) total += 2 * o.size();
    w.memory.resize(total);
    size_t at = 0;
    for (size_t i = 0; i < w.prompt.objects.size(); ++i) {
      const auto& o = w.prompt.objects[i];
      std::memcpy(w.memory.data() + at, o.data(), o.size());
      w.objects.emplace_back(w.memory.data() + at, o.size());
      w.targets.push_back({.key = w.prompt.keys[i],
                           .dst = {w.memory.data() + at + o.size(), o.size()}});
      at += 2 * o.size();
      bytes += o.size();
    }
    auto reg = (*client)->RegisterBuffer(absl::MakeSpan(w.memory));
    if (!reg.ok()) Die(reg.status().ToString());
    w.registration = *std::move(reg);
  }
  std::atomic<int> failures{0};
  auto run = [&](bool put) {
    const absl::Time start = absl::Now();
    std::vector<std::thread> threads;
    for (Work& w : work) {
      threads.emplace_back([&, put] {
        for (size_t b = 0; b < w.objects.size(); b += flags.batch) {
          const size_t n = std::min<size_t>(flags.batch, w.objects.size() - b);
          if (put) {
            for (const absl::Status& s : (*client)->Put(
                     absl::MakeConstSpan(w.prompt.keys).subspan(b, n),
                     absl::MakeConstSpan(w.objects).subspan(b, n))) {
              if (!s.ok()) failures++;
            }
          } else {
            for (const auto& s :
                 (*client)->Get(absl::MakeConstSpan(w.targets).subspan(b, n))) {
              if (!s.ok()) failures++;
            }
          }
        }
      });
    }
    for (std::thread& t : threads) t.join();
    return bytes / absl::ToDoubleSeconds(absl::Now() - start) / 1e9;
  };
  Phase p;
  p.chunk_bytes = work[0].prompt.objects[0].size();
  p.put_gbps = run(true);
  p.get_gbps = run(false);
  for (Work& w : work) {
    for (size_t i = 0; i < w.targets.size(); ++i) {
      if (!std::equal(w.targets[i].dst.begin(), w.targets[i].dst.end(),
                      w.prompt.objects[i].begin())) {
        failures++;
      }
    }
  }
  if (failures > 0)
    Die(absl::StrCat(failures.load(), " failed or wrong chunks"));
  for (Work& w : work) w.registration.reset();
  return p;
}

}  // namespace
}  // namespace kvd

int main(int argc, char** argv) {
  kvd::Flags flags;
  CLI::App app{"cluster_bench: 3 nodes vs 1 under the same client load."};
  app.add_flag("--quick", flags.quick, "Fewer chunks (CI smoke run).");
  app.add_option("--threads", flags.threads, "Client threads.")
      ->check(CLI::Range(1, 64));
  app.add_option("--chunks", flags.chunks, "Chunks per thread.")
      ->check(CLI::Range(1, 4096));
  app.add_option("--batch", flags.batch, "Keys per call.")
      ->check(CLI::Range(1, 1024));
  app.add_option("--ucx-tls", flags.ucx_tls, "UCX_TLS of nodes and client.");
  app.add_option("--node-bin", flags.node_bin, "kvdepot-node binary.");
  CLI11_PARSE(app, argc, argv);
  if (flags.quick) flags.chunks = std::min(flags.chunks, 4);
  const kvd::Phase one = kvd::Measure(flags, 1);
  const kvd::Phase three = kvd::Measure(flags, 3);
  const double combined_one =
      2 / (1 / one.put_gbps + 1 / one.get_gbps);  // put+get bytes per second
  const double combined_three = 2 / (1 / three.put_gbps + 1 / three.get_gbps);
  nlohmann::ordered_json out = {
      {"bench", "cluster"},
      {"params",
       {{"threads", flags.threads},
        {"chunks_per_thread", flags.chunks},
        {"batch", flags.batch},
        {"chunk_bytes", one.chunk_bytes},
        {"ucx_tls", flags.ucx_tls},
        {"replicas", 1},
        {"cpus", std::thread::hardware_concurrency()}}},
      {"metrics",
       {{"one_node_put_gbps", one.put_gbps},
        {"one_node_get_gbps", one.get_gbps},
        {"three_nodes_put_gbps", three.put_gbps},
        {"three_nodes_get_gbps", three.get_gbps}}},
      {"ratio",
       {{"three_nodes_vs_one", combined_three / combined_one},
        {"put", three.put_gbps / one.put_gbps},
        {"get", three.get_gbps / one.get_gbps}}}};
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
