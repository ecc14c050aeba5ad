// Key-norm eviction (Devoto et al. 2024): `keynorm(keep=F,window=0)`.
//
// Per KV head, keeps the most recent w = min(window, n) tokens and, of the
// others, the n - w with the SMALLEST key L2 norm (low norm correlates with
// high attention); ties go to the lower position. n = KeepCount(keep, T).
// Needs no queries. Immutable; safe to use from any number of threads.
#ifndef KVDEPOT_COMPRESS_REDUCE_KEYNORM_H_
#define KVDEPOT_COMPRESS_REDUCE_KEYNORM_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "compress/token_reducer.h"

namespace kvd::compress::reduce {

class KeyNormReducer final : public TokenReducer {
 public:
  // kInvalidArgument for keep outside (0, 1] or missing, window outside
  // [0, 2^20], or an unknown parameter.
  static absl::StatusOr<std::unique_ptr<TokenReducer>> Create(
      const StageSpec& spec);

  std::string Spec() const override;
  absl::Status Reduce(const CodecInputs& in, LayerKV& kv) const override;

 private:
  KeyNormReducer(double keep, uint32_t window) : keep_(keep), window_(window) {}

  const double keep_;
  const uint32_t window_;
};

}  // namespace kvd::compress::reduce

#endif  // KVDEPOT_COMPRESS_REDUCE_KEYNORM_H_
