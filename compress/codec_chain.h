// A namespace's codec chain (DESIGN.md §3.3), built once from its text and
// applied layer by layer:
//
//   chain = [reducer] [lowrank] [quant [rans]] [zstd]
//
// reducer: a token-reducing codec (token_reducer.h); lowrank: lowrank.h;
// quant: quant.h (without one, tensors are stored in the namespace dtype);
// rans: entropy coding of quant's codes per channel; zstd: zstd over the
// whole encoded layer. Any other order or name is refused when the chain is
// built, as is a stage that cannot apply to the namespace (lowrank without
// bases).
//
// Encoded layer: u8 version (1), u8 flags (bit 0: zstd), u16 section count,
// then the body, zstd-compressed (u64 size, frame) when flagged:
// u32 section sizes, then the sections. The reducer's section holds its
// TokenMaps; every other stage's is its own (codec.h).
//
// Thread-safe: a chain is immutable once built.
#ifndef KVDEPOT_COMPRESS_CODEC_CHAIN_H_
#define KVDEPOT_COMPRESS_CODEC_CHAIN_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "compress/codec.h"
#include "compress/kv_tensor.h"
#include "compress/token_reducer.h"
#include "core/model_spec.h"

namespace kvd::compress {

class CodecChain {
 public:
  // kInvalidArgument for grammar, unknown names, bad parameters or order;
  // kFailedPrecondition for a stage the namespace cannot support.
  static absl::StatusOr<std::unique_ptr<const CodecChain>> Create(
      absl::string_view spec, const CodecContext& ctx);

  // The context of a namespace (dtype and geometry from its ModelSpec).
  static CodecContext ContextFor(const ModelSpec& spec,
                                 std::shared_ptr<const LowRankBases> bases);

  // Canonical text with every parameter ("" for the raw chain); what chunk
  // headers record.
  const std::string& spec() const { return spec_; }
  bool ReducesTokens() const { return reducer_ != nullptr; }
  const CodecContext& context() const { return ctx_; }

  // Encodes layer `layer` of `tokens` tokens from the canonical layout
  // (K | V, each [kv_heads][tokens][head_dim] in the namespace dtype).
  absl::StatusOr<std::vector<uint8_t>> EncodeLayer(
      uint32_t layer, uint32_t tokens, absl::Span<const uint8_t> raw,
      const CodecInputs& in = {}) const;
  // The same from float tensors [kv_heads][tokens][head_dim] (maps empty).
  absl::StatusOr<std::vector<uint8_t>> EncodeLayerKV(
      uint32_t layer, LayerKV kv, const CodecInputs& in = {}) const;

  // Decodes an encoded layer to float tensors: [kv_heads][tokens][head_dim]
  // for shape-preserving chains, the compact cache with maps otherwise.
  // kDataLoss for anything that does not decode to the namespace's shape.
  absl::StatusOr<LayerKV> DecodeLayerKV(
      uint32_t layer, uint32_t tokens, absl::Span<const uint8_t> encoded) const;
  // Decodes into the canonical layout; `raw` must hold the layer's bytes.
  // kFailedPrecondition for a token-reducing chain (no canonical layout).
  absl::Status DecodeLayer(uint32_t layer, uint32_t tokens,
                           absl::Span<const uint8_t> encoded,
                           absl::Span<uint8_t> raw) const;

 private:
  CodecChain() = default;
  absl::Status EncodeStages(uint32_t layer, LayerKV& kv, const CodecInputs& in,
                            std::vector<ByteWriter>& sections) const;
  uint64_t MaxBodyBytes(uint32_t tokens) const;

  CodecContext ctx_;
  std::string spec_;
  std::unique_ptr<TokenReducer> reducer_;
  std::vector<std::unique_ptr<TensorStage>> stages_;  // last one is terminal
  bool zstd_ = false;
};

// Whole chunk objects (core/chunk_format.h). CompressChunk encodes every
// layer of a raw object with `chain` and records chain.spec() in the header;
// `inputs` is empty or one CodecInputs per layer. DecompressChunk verifies
// the object and that its header names chain.spec(), and returns the raw
// object (same key, parent and tokens). kFailedPrecondition when the chain
// does not match or reduces tokens; kDataLoss for corrupt objects.
absl::StatusOr<std::vector<uint8_t>> CompressChunk(
    const ModelSpec& spec, const CodecChain& chain,
    absl::Span<const uint8_t> raw_object,
    absl::Span<const CodecInputs> inputs = {});
absl::StatusOr<std::vector<uint8_t>> DecompressChunk(
    const ModelSpec& spec, const CodecChain& chain,
    absl::Span<const uint8_t> object);

}  // namespace kvd::compress

#endif  // KVDEPOT_COMPRESS_CODEC_CHAIN_H_
