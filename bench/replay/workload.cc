#include "bench/replay/workload.h"

#include <algorithm>
#include <cmath>

namespace kvd {

Workload::Workload(const WorkloadOptions& options)
    : options_(options), rng_(options.seed) {
  for (uint32_t s = 0; s < options_.system_prompts; ++s) {
    system_.push_back(Tokens(100 + s, options_.system_chunks));
  }
  double total = 0;
  for (uint32_t d = 0; d < options_.documents; ++d) {
    const uint32_t span = options_.doc_max_chunks - options_.doc_min_chunks + 1;
    documents_.push_back(
        Tokens(1000 + d, options_.doc_min_chunks + rng_() % span));
    total += 1.0 / std::pow(d + 1, options_.doc_zipf_s);
    doc_cdf_.push_back(total);
  }
  for (double& c : doc_cdf_) c /= total;
  sessions_.resize(options_.sessions);
  for (uint32_t i = 0; i < options_.sessions; ++i)
    sessions_[i].system = i % options_.system_prompts;
}

std::vector<uint32_t> Workload::Tokens(uint64_t stream, uint32_t chunks) {
  std::mt19937_64 gen(options_.seed * 0x9e3779b97f4a7c15ull + stream);
  std::vector<uint32_t> out(uint64_t{chunks} * options_.chunk_tokens);
  for (uint32_t& t : out)
    t = static_cast<uint32_t>(gen() % 49152);  // SmolLM2 vocabulary
  return out;
}

uint32_t Workload::PickDocument() {
  const double u = std::uniform_real_distribution<double>(0, 1)(rng_);
  return static_cast<uint32_t>(
      std::lower_bound(doc_cdf_.begin(), doc_cdf_.end(), u) - doc_cdf_.begin());
}

WorkloadRequest Workload::Next() {
  WorkloadRequest r;
  const bool chat = std::uniform_real_distribution<double>(0, 1)(rng_) <
                    options_.chat_fraction;
  if (chat && !sessions_.empty()) {
    Session& s = sessions_[rng_() % sessions_.size()];
    if (s.turns >= options_.max_turns)
      s = Session{s.system, 0, s.generation + 1, {}};
    r.kind = "chat";
    r.tokens = system_[s.system];
    r.tokens.insert(r.tokens.end(), s.history.begin(), s.history.end());
    std::vector<uint32_t> user = Tokens(next_stream_++, options_.turn_chunks);
    r.tokens.insert(r.tokens.end(), user.begin(), user.end());
    // The next request of this session carries this turn and the reply.
    std::vector<uint32_t> reply = Tokens(next_stream_++, options_.turn_chunks);
    s.history.insert(s.history.end(), user.begin(), user.end());
    s.history.insert(s.history.end(), reply.begin(), reply.end());
    s.turns++;
    return r;
  }
  r.kind = "doc";
  r.tokens = system_[0];
  const std::vector<uint32_t>& doc = documents_[PickDocument()];
  r.tokens.insert(r.tokens.end(), doc.begin(), doc.end());
  std::vector<uint32_t> question = Tokens(next_stream_++, 1);
  r.tokens.insert(r.tokens.end(), question.begin(), question.end());
  return r;
}

}  // namespace kvd
