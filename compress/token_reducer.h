// Token-reducing codecs (DESIGN.md §3.3): eviction (H2O, SnapKV,
// StreamingLLM, key-norm) and merging (KVMerger, EMS). A reducer keeps the
// same number of tokens in every KV head of a layer so the compact cache is
// a dense [heads][kept][dim] tensor, and records per head which original
// positions each kept token stands for.
#ifndef KVDEPOT_COMPRESS_TOKEN_REDUCER_H_
#define KVDEPOT_COMPRESS_TOKEN_REDUCER_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "compress/codec.h"
#include "compress/codec_spec.h"

namespace kvd::compress {

class TokenReducer {
 public:
  virtual ~TokenReducer() = default;

  // The reducer's text with every parameter, in a fixed order.
  virtual std::string Spec() const = 0;

  // REQUIRES: kv.k and kv.v are [kv_heads][T][head_dim] with every position
  // present (kv.maps empty). Replaces them with [kv_heads][n][head_dim], n
  // the same for every head, and sets kv.maps (one TokenMap per head).
  // kFailedPrecondition when the reducer needs queries and `in` has none;
  // kInvalidArgument for queries of the wrong shape.
  virtual absl::Status Reduce(const CodecInputs& in, LayerKV& kv) const = 0;
};

// The reducer that `spec` names, built with its parameters checked; null
// (and OK) when spec.name is not a token reducer.
absl::StatusOr<std::unique_ptr<TokenReducer>> MakeTokenReducer(
    const StageSpec& spec);

}  // namespace kvd::compress

#endif  // KVDEPOT_COMPRESS_TOKEN_REDUCER_H_
