// Low-rank channel shrinking (CSKV, COMPRESSION.md): per layer, KV head and
// tensor, keys and values are projected on the top principal components of
// calibration K/V, with the most recent tokens kept whole (CSKV's bi-branch
// cache):
//
//   lowrank(rk=32,rv=48,window=32,bases=<16 hex digits>)
//
// codes = (x - mean) · P[:, :r]; x̂ = mean + codes · P[:, :r]ᵀ. The codes go
// on to the next stage (typically quant), the window tokens are kept in the
// namespace dtype in this stage's section. `bases` is the fingerprint of the
// fitted bases the chunk was encoded with; a chain naming other bases, or
// none on a namespace without bases, is refused when it is built.
#ifndef KVDEPOT_COMPRESS_LOWRANK_H_
#define KVDEPOT_COMPRESS_LOWRANK_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "compress/codec.h"
#include "compress/codec_spec.h"

namespace kvd::compress {

// Principal components of one namespace's K and V, per layer and KV head.
// Immutable once built; shared by every chain of the namespace.
class LowRankBases {
 public:
  // Fits bases from calibration layers: calibration[l] holds layer l's K
  // and V, [kv_heads][tokens][head_dim] (tokens >= 1, the same heads and
  // dim in every layer). Eigen decomposition of each covariance matrix.
  static absl::StatusOr<std::shared_ptr<const LowRankBases>> Fit(
      absl::Span<const LayerKV> calibration);

  // The serialized form: "KVDB", u32 version, layers, heads, dim, then per
  // (layer, head, tensor) the mean [dim], the variances [dim] (decreasing)
  // and the components [dim][dim] as f32 (component j is column j), then
  // xxh3-64 of all bytes before it. kDataLoss for a corrupt or truncated file.
  static absl::StatusOr<std::shared_ptr<const LowRankBases>> Parse(
      absl::Span<const uint8_t> bytes);
  std::vector<uint8_t> Serialize() const;

  uint32_t layers() const { return layers_; }
  uint32_t heads() const { return heads_; }
  uint32_t dim() const { return dim_; }
  // xxh3-64 of the serialized form.
  uint64_t fingerprint() const { return fingerprint_; }

  // tensor: 0 = K, 1 = V. REQUIRES: indices in range.
  const float* Mean(uint32_t layer, uint32_t head, uint32_t tensor) const;
  const float* Components(uint32_t layer, uint32_t head, uint32_t tensor) const;
  // Fraction of the calibration variance the first r components explain.
  double ExplainedVariance(uint32_t layer, uint32_t head, uint32_t tensor,
                           uint32_t r) const;

 private:
  LowRankBases(uint32_t layers, uint32_t heads, uint32_t dim);
  size_t Block(uint32_t layer, uint32_t head, uint32_t tensor) const;

  uint32_t layers_, heads_, dim_;
  // Per block: mean [dim], variance [dim], components [dim][dim].
  std::vector<float> data_;
  uint64_t fingerprint_ = 0;
};

// The stage; kFailedPrecondition when ctx has no bases, they do not match
// the namespace's geometry, or the spec names other bases.
absl::StatusOr<std::unique_ptr<TensorStage>> MakeLowRankStage(
    const StageSpec& spec, const CodecContext& ctx);

}  // namespace kvd::compress

#endif  // KVDEPOT_COMPRESS_LOWRANK_H_
