// SnapKV eviction (Li et al. 2024):
// `snapkv(keep=F,window=32,kernel=5,pool=max)`.
//
// Per KV head, with n = KeepCount(keep, T) and w = min(window, n): the last
// min(window, q_tokens) given queries score every token by the attention
// they give it (attention.h: summed over those queries, mean over the GQA
// group); over the prefix [0, T - w) the scores are pooled with a centred
// 1-D window of `kernel` tokens (pool=max as in the reference code, or
// pool=avg; the window is clipped at the prefix ends, avg divides by the
// tokens inside it). Keeps the n - w prefix tokens with the largest pooled
// score (ties to the lower position) plus the w most recent tokens.
// Needs queries. Immutable; safe to use from any number of threads.
#ifndef KVDEPOT_COMPRESS_REDUCE_SNAPKV_H_
#define KVDEPOT_COMPRESS_REDUCE_SNAPKV_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "compress/token_reducer.h"

namespace kvd::compress::reduce {

class SnapKvReducer final : public TokenReducer {
 public:
  // kInvalidArgument for keep outside (0, 1] or missing, window outside
  // [1, 2^20], kernel not odd in [1, 255], pool not max|avg, or an unknown
  // parameter.
  static absl::StatusOr<std::unique_ptr<TokenReducer>> Create(
      const StageSpec& spec);

  std::string Spec() const override;
  absl::Status Reduce(const CodecInputs& in, LayerKV& kv) const override;

 private:
  SnapKvReducer(double keep, uint32_t window, uint32_t kernel, bool max_pool)
      : keep_(keep), window_(window), kernel_(kernel), max_pool_(max_pool) {}

  const double keep_;
  const uint32_t window_;
  const uint32_t kernel_;
  const bool max_pool_;
};

}  // namespace kvd::compress::reduce

#endif  // KVDEPOT_COMPRESS_REDUCE_SNAPKV_H_
