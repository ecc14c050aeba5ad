// KVMerger adjacent-token merging (Wang et al. 2024):
// `kvmerger(keep=F,window=32,heavy=0.25)`.
//
// Per KV head, with n = KeepCount(keep, T) (nothing happens when n == T):
//  1. Protected tokens are never merged: the w = min(window, n - 1) most
//     recent tokens, and the h = min(ShareOf(heavy, n), n - w - 1) heavy
//     hitters with the largest attention accumulated over every given query
//     (attention.h) among the others. `heavy` is the fraction of the budget
//     given to heavy hitters. If the protected tokens cut the unprotected
//     ones into more runs than the n - w - h kept tokens left for them, the
//     lowest-scored heavy hitters are unprotected one at a time until the
//     runs fit (with none protected there is one run, so this ends).
//  2. Merging sets: of the adjacent pairs (i, i+1) of unprotected tokens, the
//     T - n with the largest cos(k_i, k_{i+1}) are joined (ties to the lower
//     i; cos is 1 for two zero keys and 0 for one). That is the paper's rule
//     "consecutive tokens with cos >= eps form a set" with eps chosen per head
//     so that exactly n tokens remain. A set is a run of joined tokens.
//  3. Each set of two or more becomes one token at its pivot's position: the
//     pivot p is the member with the largest accumulated attention (ties to
//     the lower position); g_i = exp(-|k_p - k_i|^2 / (2 sigma^2)) with
//     sigma = (mean over the non-pivot members of |k_p - k_i|) / sqrt(2),
//     i.e. g_i = exp(-(|k_p - k_i| / mean distance)^2); weights g / sum(g)
//     (uniform when every member equals the pivot); k* = sum w_i k_i and
//     v* = sum w_i v_i with the same weights. Its members are the whole set.
// Protected and unjoined tokens are kept unchanged, standing for themselves.
// Needs queries. Immutable; safe to use from any number of threads.
#ifndef KVDEPOT_COMPRESS_REDUCE_KVMERGER_H_
#define KVDEPOT_COMPRESS_REDUCE_KVMERGER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "compress/token_reducer.h"

namespace kvd::compress::reduce {

class KvMergerReducer final : public TokenReducer {
 public:
  // kInvalidArgument for keep outside (0, 1] or missing, window outside
  // [0, 2^20], heavy outside [0, 1], or an unknown parameter.
  static absl::StatusOr<std::unique_ptr<TokenReducer>> Create(
      const StageSpec& spec);

  std::string Spec() const override;
  absl::Status Reduce(const CodecInputs& in, LayerKV& kv) const override;

 private:
  KvMergerReducer(double keep, uint32_t window, double heavy)
      : keep_(keep), window_(window), heavy_(heavy) {}

  const double keep_;
  const uint32_t window_;
  const double heavy_;
};

}  // namespace kvd::compress::reduce

#endif  // KVDEPOT_COMPRESS_REDUCE_KVMERGER_H_
