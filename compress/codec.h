// The stage interface of a codec chain (DESIGN.md §3.3).
//
// A chain runs its stages in order on one layer at a time. Each stage
// transforms the layer's float tensors in place and writes what its Decode
// needs into a section of its own; the last tensor stage (the quantizer, or
// the raw store when the chain has none) writes the tensors themselves.
// Decoding runs the stages in reverse, each reading its own section.
//
// Stages are immutable after construction and safe to use from any number
// of threads at once.
#ifndef KVDEPOT_COMPRESS_CODEC_H_
#define KVDEPOT_COMPRESS_CODEC_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "compress/byte_io.h"
#include "compress/kv_tensor.h"
#include "core/model_spec.h"

namespace kvd::compress {

class LowRankBases;

// What a namespace gives the stages when its chain is built.
struct CodecContext {
  DType dtype = DType::kBf16;  // the namespace dtype (raw and window tokens)
  uint32_t num_layers = 0;
  uint32_t kv_heads = 0;
  uint32_t head_dim = 0;
  // Low-rank projection bases fitted for this namespace, or null.
  std::shared_ptr<const LowRankBases> bases;
};

// Per-call inputs of stages that score tokens (eviction, merging).
struct CodecInputs {
  // [q_heads][q_tokens][head_dim] post-RoPE queries of the last q_tokens
  // positions of the layer's sequence, q_heads a multiple of kv_heads; null
  // when the caller has none (scorers that need them then fail).
  const HeadTensor* queries = nullptr;
};

// The shape a stage's Decode must restore.
struct LayerShape {
  uint32_t layer = 0;
  uint32_t tokens = 0;  // original positions in the layer
};

class TensorStage {
 public:
  virtual ~TensorStage() = default;

  // The stage's text with every parameter, in a fixed order.
  virtual std::string Spec() const = 0;

  // Transforms `kv` in place and appends what Decode needs to `section`.
  // kInvalidArgument for input the stage cannot take (shape, values).
  virtual absl::Status Encode(const LayerShape& shape, const CodecInputs& in,
                              LayerKV& kv, ByteWriter& section) const = 0;

  // Inverts Encode: `kv` holds what the later stages decoded and `section`
  // this stage's bytes. kDataLoss when they do not fit together.
  virtual absl::Status Decode(const LayerShape& shape, ByteReader& section,
                              LayerKV& kv) const = 0;
};

// Checks that `t` is [heads][tokens][dim] with the given sizes; kDataLoss
// naming `what` otherwise (decoders use it on what later stages restored).
absl::Status ExpectShape(const HeadTensor& t, uint32_t heads, uint32_t tokens,
                         uint32_t dim, const char* what);

// Appends / reads `count` rows of `t` starting at token `begin`, every head,
// as the namespace dtype (the full-precision window of quant and lowrank).
void PutTokens(DType dtype, const HeadTensor& t, uint32_t begin, uint32_t count,
               ByteWriter& out);
absl::Status GetTokens(DType dtype, ByteReader& in, uint32_t begin,
                       uint32_t count, HeadTensor& t, const char* what);

}  // namespace kvd::compress

#endif  // KVDEPOT_COMPRESS_CODEC_H_
