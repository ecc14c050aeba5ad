// ModelSpec: everything that must match for two KV caches to be
// interchangeable (DESIGN.md §3.1), and its namespace fingerprint.
#ifndef KVDEPOT_CORE_MODEL_SPEC_H_
#define KVDEPOT_CORE_MODEL_SPEC_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/chunk_key.h"

namespace kvd {

enum class DType : uint8_t { kBf16 = 1, kFp16 = 2, kFp32 = 3, kFp8E4M3 = 4 };

// Bytes of one element; REQUIRES: a valid DType.
uint32_t DTypeSize(DType dtype);
absl::string_view DTypeName(DType dtype);
absl::StatusOr<DType> ParseDType(absl::string_view name);

// How a layer's cache is laid out in a chunk (DESIGN.md §3.2).
enum class KvLayout : uint8_t {
  kSeparateKV = 1,  // layer = K | V, each [kv_head][token][head_dim]
  kLatent = 2,      // MLA: layer = one latent tensor [1][token][head_dim]
};

struct ModelSpec {
  std::string model_id;  // e.g. "HuggingFaceTB/SmolLM2-135M-Instruct"
  std::string revision;  // weight revision (commit or file digest)
  DType dtype = DType::kBf16;
  KvLayout layout = KvLayout::kSeparateKV;
  uint32_t num_layers = 0;
  uint32_t kv_heads = 0;     // 1 for kLatent
  uint32_t head_dim = 0;     // latent width for kLatent
  double rope_theta = 0;     // 0: no rotary embedding
  std::string rope_scaling;  // canonical text of the scaling config, or ""
  uint32_t chunk_tokens = 256;
  std::string
      codec_chain;  // e.g. "quant(k=int4/channel,v=int4/token,g=32)|zstd"
  std::string tenant_salt;  // makes chunks unfindable across tenants

  // Checks every field; the error names the field and its bound.
  absl::Status Validate() const;

  // Number of tensors per layer: 2 (K and V) or 1 (latent).
  uint32_t TensorsPerLayer() const {
    return layout == KvLayout::kLatent ? 1 : 2;
  }
  // Bytes of one [kv_head][tokens][head_dim] tensor for `tokens` tokens.
  uint64_t TensorBytes(uint32_t tokens) const;
  // Bytes of one layer / one full chunk before codecs.
  uint64_t LayerBytes(uint32_t tokens) const {
    return TensorsPerLayer() * TensorBytes(tokens);
  }
  uint64_t ChunkPayloadBytes() const {
    return num_layers * LayerBytes(chunk_tokens);
  }

  // SHA-256 of the canonical encoding of every field above.
  // REQUIRES: Validate().ok().
  ChunkKey Fingerprint() const;

  // The geometries the benchmarks and the workload replay use.
  static ModelSpec SmolLM2_135M();  // 30 layers, 3 KV heads, dim 64, bf16
  static ModelSpec Llama3_8B();     // 32 layers, 8 KV heads, dim 128, bf16
};

}  // namespace kvd

#endif  // KVDEPOT_CORE_MODEL_SPEC_H_
