// H2O heavy-hitter eviction (Zhang et al. 2023): `h2o(keep=F,recent=0.5)`.
//
// Per KV head, with n = KeepCount(keep, T) and r = ShareOf(recent, n): keeps
// the r most recent tokens and, of the others, the n - r with the largest
// attention accumulated over every given query (attention.h; ties to the
// lower position). `recent` is the fraction of the budget given to the recent
// window (the paper's 20% budget = 10% heavy + 10% recent is recent=0.5).
// Needs queries. Immutable; safe to use from any number of threads.
#ifndef KVDEPOT_COMPRESS_REDUCE_H2O_H_
#define KVDEPOT_COMPRESS_REDUCE_H2O_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "compress/token_reducer.h"

namespace kvd::compress::reduce {

class H2oReducer final : public TokenReducer {
 public:
  // kInvalidArgument for keep outside (0, 1] or missing, recent outside
  // [0, 1], or an unknown parameter.
  static absl::StatusOr<std::unique_ptr<TokenReducer>> Create(
      const StageSpec& spec);

  std::string Spec() const override;
  absl::Status Reduce(const CodecInputs& in, LayerKV& kv) const override;

 private:
  H2oReducer(double keep, double recent) : keep_(keep), recent_(recent) {}

  const double keep_;
  const double recent_;
};

}  // namespace kvd::compress::reduce

#endif  // KVDEPOT_COMPRESS_REDUCE_H2O_H_
