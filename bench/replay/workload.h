// A synthetic serving workload for replay through the store: many requests
// that share long prefixes, as multi-turn chat and shared-document QA do.
//
//   chat:  system prompt | turn 1 | ... | turn n | new user turn
//          (each session grows by a user and an assistant turn per request)
//   doc:   system prompt | document (Zipf-popular) | a fresh question
//
// Token ids are deterministic functions of (seed, role, index), so two runs
// with one seed produce the same keys. Thread-compatible.
#ifndef KVDEPOT_BENCH_REPLAY_WORKLOAD_H_
#define KVDEPOT_BENCH_REPLAY_WORKLOAD_H_

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace kvd {

struct WorkloadOptions {
  uint32_t seed = 1;
  uint32_t chunk_tokens = 256;
  uint32_t system_prompts = 3;
  uint32_t system_chunks = 2;  // per system prompt
  uint32_t documents = 24;
  uint32_t doc_min_chunks = 4;   // 1k tokens
  uint32_t doc_max_chunks = 24;  // 6k tokens
  double doc_zipf_s = 1.1;
  uint32_t sessions = 24;    // concurrent chat sessions
  uint32_t max_turns = 10;   // a session restarts after this many
  uint32_t turn_chunks = 1;  // user and assistant turns, each
  double chat_fraction = 0.5;
};

struct WorkloadRequest {
  std::string kind;              // "chat" or "doc"
  std::vector<uint32_t> tokens;  // the whole prompt
};

class Workload {
 public:
  explicit Workload(const WorkloadOptions& options);
  WorkloadRequest Next();

 private:
  std::vector<uint32_t> Tokens(uint64_t stream, uint32_t chunks);
  uint32_t PickDocument();

  WorkloadOptions options_;
  std::mt19937_64 rng_;
  std::vector<std::vector<uint32_t>> system_;
  std::vector<std::vector<uint32_t>> documents_;
  std::vector<double> doc_cdf_;
  struct Session {
    uint32_t system = 0;
    uint32_t turns = 0;
    uint64_t generation = 0;
    std::vector<uint32_t> history;
  };
  std::vector<Session> sessions_;
  uint64_t next_stream_ = 1 << 20;
};

}  // namespace kvd

#endif  // KVDEPOT_BENCH_REPLAY_WORKLOAD_H_
