// Test helper: load on a ClusterClient and what it saw. Prompts of test
// chunks laid out in one registered buffer (Arena), and Put/Get of a whole
// prompt that tallies errors, misses and the slowest call; every hit's
// bytes are checked.
#ifndef KVDEPOT_TESTS_CLUSTER_CLUSTER_LOAD_H_
#define KVDEPOT_TESTS_CLUSTER_CLUSTER_LOAD_H_

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "cluster/cluster_client.h"
#include "core/test_chunks.h"

namespace kvd {

// What a client saw during a run.
struct Tally {
  std::atomic<int> ops{0};
  std::atomic<int> errors{0};  // anything but OK or a miss
  std::atomic<int> misses{0};
  std::atomic<int64_t> slowest_ms{0};
  std::string first_error;  // written by one thread
};

// A prompt's objects laid out in one registered buffer, plus room to read
// them back.
struct Arena {
  explicit Arena(const TestPrompt& prompt) : prompt(prompt) {
    size_t total = 0;
    for (const auto& o : prompt.objects) total += 2 * o.size();
    memory.resize(total);
    size_t at = 0;
    for (const auto& o : prompt.objects) {
      std::memcpy(memory.data() + at, o.data(), o.size());
      objects.emplace_back(memory.data() + at, o.size());
      at += o.size();
      dsts.emplace_back(memory.data() + at, o.size());
      at += o.size();
    }
  }
  std::vector<GetTarget> Targets() const {
    std::vector<GetTarget> t;
    for (size_t i = 0; i < prompt.keys.size(); ++i) {
      t.push_back({.key = prompt.keys[i], .dst = dsts[i]});
    }
    return t;
  }
  bool Intact(size_t i) const {
    return std::equal(dsts[i].begin(), dsts[i].end(),
                      prompt.objects[i].begin());
  }

  TestPrompt prompt;
  std::vector<uint8_t> memory;
  std::vector<absl::Span<const uint8_t>> objects;
  std::vector<absl::Span<uint8_t>> dsts;
};

inline void Record(Tally& tally, absl::Duration took, const absl::Status& s) {
  tally.ops++;
  int64_t ms = absl::ToInt64Milliseconds(took);
  int64_t prev = tally.slowest_ms.load();
  while (ms > prev && !tally.slowest_ms.compare_exchange_weak(prev, ms)) {
  }
  if (s.ok()) return;
  if (absl::IsNotFound(s)) {
    tally.misses++;
  } else if (tally.errors++ == 0) {
    tally.first_error = s.ToString();
  }
}

// Gets every chunk of `arena`; checks the bytes of every hit.
inline void GetAll(cluster::ClusterClient& client, Arena& arena, Tally& tally) {
  const absl::Time start = absl::Now();
  std::vector<absl::StatusOr<uint64_t>> got = client.Get(arena.Targets());
  const absl::Duration took = absl::Now() - start;
  for (size_t i = 0; i < got.size(); ++i) {
    absl::Status s = got[i].status();
    if (s.ok() && !arena.Intact(i)) s = absl::DataLossError("bytes differ");
    Record(tally, took, s);
  }
}

inline void PutAll(cluster::ClusterClient& client, Arena& arena, Tally& tally) {
  const absl::Time start = absl::Now();
  std::vector<absl::Status> put = client.Put(arena.prompt.keys, arena.objects);
  for (const absl::Status& s : put) Record(tally, absl::Now() - start, s);
}

}  // namespace kvd

#endif  // KVDEPOT_TESTS_CLUSTER_CLUSTER_LOAD_H_
