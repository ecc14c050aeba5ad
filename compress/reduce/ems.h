// EMS evict-then-merge (2024): `ems(keep=F,window=32,evict=0.5)`.
//
// Global-local score per KV head and token j:
//   s_j = A_j / mean(A) + L_j / mean(L),
// A = attention accumulated over every given query, L = over the last
// min(window, q_tokens) of them (attention.h; means over all T tokens, so
// each term averages 1 — the "mean-aligned" combination; a zero mean drops
// its term). A favours early tokens, L recent ones.
// Per head, with n = KeepCount(keep, T) (nothing happens when n == T):
//  - centers: the w = min(window, n) most recent tokens, and the n - w others
//    with the largest s (ties to the lower position);
//  - of the T - n other tokens, the e = ShareOf(evict, T - n) with the
//    smallest s are evicted (ties: the higher position goes first) and the
//    rest are merged, each into the center whose key has the largest cosine
//    with its own (ties to the earlier center; zero keys have cosine 0);
//  - a center with merged tokens becomes sum_i w_i x_i over itself and them,
//    for x = k and x = v, with w_i = s_i / sum(s) (the center weighs its own
//    score). Its position is the center's; members the center and its merged
//    tokens.
// EMS's "zero class" (an all-zero center for tokens close to no center) is a
// device for batching heads on a GPU; here eviction is explicit instead.
// Needs queries. Immutable; safe to use from any number of threads.
#ifndef KVDEPOT_COMPRESS_REDUCE_EMS_H_
#define KVDEPOT_COMPRESS_REDUCE_EMS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "compress/token_reducer.h"

namespace kvd::compress::reduce {

class EmsReducer final : public TokenReducer {
 public:
  // kInvalidArgument for keep outside (0, 1] or missing, window outside
  // [1, 2^20], evict outside [0, 1], or an unknown parameter.
  static absl::StatusOr<std::unique_ptr<TokenReducer>> Create(
      const StageSpec& spec);

  std::string Spec() const override;
  absl::Status Reduce(const CodecInputs& in, LayerKV& kv) const override;

 private:
  EmsReducer(double keep, uint32_t window, double evict)
      : keep_(keep), window_(window), evict_(evict) {}

  const double keep_;
  const uint32_t window_;
  const double evict_;
};

}  // namespace kvd::compress::reduce

#endif  // KVDEPOT_COMPRESS_REDUCE_EMS_H_
