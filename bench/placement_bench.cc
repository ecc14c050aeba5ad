// placement_bench: weighted rendezvous placement (cluster/placement.h) of
// 10 million chunk keys over 1,000 equal nodes. Reports the max/mean load,
// the fraction of keys whose primary owner changes when one node joins and
// when one leaves (times N: 1.0 is the minimum possible), and, as the
// baseline in the same run, the same fractions for modulo hashing
// (key mod N), which moves almost every key.
//
// Flags: --quick (100 nodes, 1 million keys).
#include <algorithm>
#include <chrono>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cluster/placement.h"
#include "nlohmann/json.hpp"

namespace kvd::cluster {
namespace {

// Key i: SHA-256 output is uniform, so splitmix64 bytes stand in for it.
ChunkKey KeyAt(uint64_t i) {
  ChunkKey k;
  for (size_t w = 0; w < ChunkKey::kSize / 8; ++w) {
    uint64_t x = i * 4 + w + 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    x ^= x >> 31;
    std::memcpy(k.bytes.data() + 8 * w, &x, 8);
  }
  return k;
}

std::vector<PlacementNode> Nodes(int first, int last) {
  std::vector<PlacementNode> nodes;
  for (int i = first; i < last; ++i) {
    nodes.push_back({absl::StrCat("node-", i), 1});
  }
  return nodes;
}

Placement Make(std::vector<PlacementNode> nodes) {
  auto p = Placement::Create(std::move(nodes));
  if (!p.ok()) {
    std::cerr << p.status() << "\n";
    std::exit(1);
  }
  return *std::move(p);
}

// index in `from` -> index of the same node id in `to`, or -1.
std::vector<int64_t> IndexMap(const Placement& from, const Placement& to) {
  std::vector<int64_t> map;
  for (const PlacementNode& n : from.nodes()) {
    auto it = std::lower_bound(to.nodes().begin(), to.nodes().end(), n.id,
                               [](const PlacementNode& a,
                                  const std::string& id) { return a.id < id; });
    map.push_back(it != to.nodes().end() && it->id == n.id
                      ? it - to.nodes().begin()
                      : -1);
  }
  return map;
}

struct Counts {
  std::vector<uint64_t> load;
  uint64_t joined_moved = 0, left_moved = 0;
  uint64_t modulo_joined_moved = 0, modulo_left_moved = 0;
};

int Main(int argc, char** argv) {
  const bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  const int n = quick ? 100 : 1000;
  const uint64_t keys = quick ? 1000000 : 10000000;
  const Placement base = Make(Nodes(0, n));
  const Placement joined = Make(Nodes(0, n + 1));
  const Placement left = Make(Nodes(1, n));  // "node-0" leaves
  const std::vector<int64_t> to_joined = IndexMap(base, joined);
  const std::vector<int64_t> to_left = IndexMap(base, left);

  const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  std::vector<Counts> counts(threads);
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      Counts& c = counts[t];
      c.load.assign(n, 0);
      for (uint64_t i = t; i < keys; i += threads) {
        const ChunkKey k = KeyAt(i);
        const uint32_t owner = base.PrimaryOf(k);
        ++c.load[owner];
        c.joined_moved += to_joined[owner] != joined.PrimaryOf(k);
        c.left_moved += to_left[owner] != left.PrimaryOf(k);
        uint64_t h;
        std::memcpy(&h, k.bytes.data(), sizeof(h));
        c.modulo_joined_moved += h % n != h % (n + 1);
        c.modulo_left_moved += h % n != h % (n - 1);
      }
    });
  }
  for (std::thread& th : pool) th.join();
  Counts all;
  all.load.assign(n, 0);
  for (const Counts& c : counts) {
    for (int i = 0; i < n; ++i) all.load[i] += c.load[i];
    all.joined_moved += c.joined_moved;
    all.left_moved += c.left_moved;
    all.modulo_joined_moved += c.modulo_joined_moved;
    all.modulo_left_moved += c.modulo_left_moved;
  }
  // One thread placing keys on the N nodes: the client's cost per key.
  constexpr uint64_t kTimedKeys = 200000;
  std::vector<ChunkKey> timed_keys;
  for (uint64_t i = 0; i < kTimedKeys; ++i) timed_keys.push_back(KeyAt(i));
  volatile uint32_t sink = 0;  // keeps the calls
  const auto start = std::chrono::steady_clock::now();
  for (const ChunkKey& k : timed_keys) sink = base.PrimaryOf(k);
  const double primary_ns = std::chrono::duration<double, std::nano>(
                                std::chrono::steady_clock::now() - start)
                                .count() /
                            kTimedKeys;
  (void)sink;

  const double mean = double(keys) / n;
  const double max_over_mean =
      *std::max_element(all.load.begin(), all.load.end()) / mean;
  auto times_n = [&](uint64_t moved) { return double(moved) / keys * n; };
  const double moved_times_n =
      std::max(times_n(all.joined_moved), times_n(all.left_moved));
  const double modulo_times_n = std::max(times_n(all.modulo_joined_moved),
                                         times_n(all.modulo_left_moved));
  nlohmann::ordered_json j;
  j["bench"] = "placement";
  j["params"] = {{"nodes", n},
                 {"keys", keys},
                 {"replicas", 1},
                 {"weights", "equal"},
                 {"threads", threads}};
  j["metrics"] = {{"max_over_mean", max_over_mean},
                  {"min_over_mean",
                   *std::min_element(all.load.begin(), all.load.end()) / mean},
                  {"moved_fraction_times_n", moved_times_n},
                  {"join_moved_fraction_times_n", times_n(all.joined_moved)},
                  {"leave_moved_fraction_times_n", times_n(all.left_moved)},
                  {"primary_ns_per_key", primary_ns}};
  j["baseline"] = {{"modulo_moved_fraction_times_n", modulo_times_n}};
  j["ratio"] = {{"moved_vs_modulo", moved_times_n / modulo_times_n}};
  std::cout << j.dump() << std::endl;
  return 0;
}

}  // namespace
}  // namespace kvd::cluster

int main(int argc, char** argv) { return kvd::cluster::Main(argc, argv); }
