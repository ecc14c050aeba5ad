// StreamingLLM eviction (Xiao et al. 2023): `streaming(keep=F,sinks=4)`.
//
// Keeps, in every KV head, the first min(sinks, n) tokens (attention sinks)
// and the most recent n - min(sinks, n), n = KeepCount(keep, T). Needs no
// queries. Immutable; safe to use from any number of threads.
#ifndef KVDEPOT_COMPRESS_REDUCE_STREAMING_H_
#define KVDEPOT_COMPRESS_REDUCE_STREAMING_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "compress/token_reducer.h"

namespace kvd::compress::reduce {

class StreamingReducer final : public TokenReducer {
 public:
  // kInvalidArgument for keep outside (0, 1] or missing, sinks outside
  // [0, 2^20], or an unknown parameter.
  static absl::StatusOr<std::unique_ptr<TokenReducer>> Create(
      const StageSpec& spec);

  std::string Spec() const override;
  absl::Status Reduce(const CodecInputs& in, LayerKV& kv) const override;

 private:
  StreamingReducer(double keep, uint32_t sinks) : keep_(keep), sinks_(sinks) {}

  const double keep_;
  const uint32_t sinks_;
};

}  // namespace kvd::compress::reduce

#endif  // KVDEPOT_COMPRESS_REDUCE_STREAMING_H_
