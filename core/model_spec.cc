#include "core/model_spec.h"

#include <bit>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/check.h"
#include "core/sha256.h"
#include "core/status.h"

namespace kvd {
namespace {

constexpr uint32_t kMaxLayers = 1024;
constexpr uint32_t kMaxHeads = 1024;
constexpr uint32_t kMaxHeadDim = 8192;
constexpr uint32_t kMaxChunkTokens = 1 << 16;
constexpr size_t kMaxTextField = 1024;

// Canonical encoding: a version tag, then each field as
// u8 tag | u32 LE length | bytes, in a fixed order.
class CanonicalEncoder {
 public:
  explicit CanonicalEncoder(Sha256* sha) : sha_(sha) {
    static constexpr absl::string_view kTag = "kvdepot.namespace.v1";
    sha_->Update(kTag.data(), kTag.size());
  }
  void Field(uint8_t tag, absl::string_view bytes) {
    const uint32_t n = static_cast<uint32_t>(bytes.size());
    uint8_t head[5] = {
        tag, static_cast<uint8_t>(n), static_cast<uint8_t>(n >> 8),
        static_cast<uint8_t>(n >> 16), static_cast<uint8_t>(n >> 24)};
    sha_->Update(head, sizeof(head));
    sha_->Update(bytes.data(), bytes.size());
  }
  void Field(uint8_t tag, uint64_t v) {
    uint8_t le[8];
    for (int i = 0; i < 8; ++i) le[i] = static_cast<uint8_t>(v >> (8 * i));
    Field(tag,
          absl::string_view(reinterpret_cast<const char*>(le), sizeof(le)));
  }

 private:
  Sha256* sha_;
};

absl::Status CheckRange(absl::string_view field, uint64_t value, uint64_t lo,
                        uint64_t hi) {
  if (value < lo || value > hi) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, "=", value, " is outside [", lo, ", ", hi, "]"));
  }
  return absl::OkStatus();
}

}  // namespace

uint32_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kBf16:
    case DType::kFp16:
      return 2;
    case DType::kFp32:
      return 4;
    case DType::kFp8E4M3:
      return 1;
  }
  KVD_CHECK(false, "invalid DType");
  return 0;
}

absl::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kBf16:
      return "bf16";
    case DType::kFp16:
      return "fp16";
    case DType::kFp32:
      return "fp32";
    case DType::kFp8E4M3:
      return "fp8_e4m3";
  }
  return "invalid";
}

absl::StatusOr<DType> ParseDType(absl::string_view name) {
  for (DType d : {DType::kBf16, DType::kFp16, DType::kFp32, DType::kFp8E4M3}) {
    if (name == DTypeName(d)) return d;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "dtype='", name, "' is not one of bf16, fp16, fp32, fp8_e4m3"));
}

absl::Status ModelSpec::Validate() const {
  if (model_id.empty() || model_id.size() > kMaxTextField) {
    return absl::InvalidArgumentError(
        absl::StrCat("model_id has ", model_id.size(), " bytes, expected 1..",
                     kMaxTextField));
  }
  for (auto [name, text] :
       {std::pair<absl::string_view, const std::string&>{"revision", revision},
        {"rope_scaling", rope_scaling},
        {"codec_chain", codec_chain},
        {"tenant_salt", tenant_salt}}) {
    if (text.size() > kMaxTextField) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, " has ", text.size(), " bytes, limit ", kMaxTextField));
    }
  }
  if (dtype != DType::kBf16 && dtype != DType::kFp16 && dtype != DType::kFp32 &&
      dtype != DType::kFp8E4M3) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dtype=", static_cast<int>(dtype), " is not a known dtype"));
  }
  if (layout != KvLayout::kSeparateKV && layout != KvLayout::kLatent) {
    return absl::InvalidArgumentError(absl::StrCat(
        "layout=", static_cast<int>(layout), " is not a known layout"));
  }
  if (layout == KvLayout::kLatent && kv_heads != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "kv_heads=", kv_heads, " must be 1 for the latent (MLA) layout"));
  }
  KVD_RETURN_IF_ERROR(CheckRange("num_layers", num_layers, 1, kMaxLayers));
  KVD_RETURN_IF_ERROR(CheckRange("kv_heads", kv_heads, 1, kMaxHeads));
  KVD_RETURN_IF_ERROR(CheckRange("head_dim", head_dim, 1, kMaxHeadDim));
  KVD_RETURN_IF_ERROR(
      CheckRange("chunk_tokens", chunk_tokens, 1, kMaxChunkTokens));
  if (!std::isfinite(rope_theta) || rope_theta < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("rope_theta=", rope_theta, " must be finite and >= 0"));
  }
  return absl::OkStatus();
}

uint64_t ModelSpec::TensorBytes(uint32_t tokens) const {
  return uint64_t{kv_heads} * tokens * head_dim * DTypeSize(dtype);
}

ChunkKey ModelSpec::Fingerprint() const {
  Sha256 sha;
  CanonicalEncoder enc(&sha);
  enc.Field(1, model_id);
  enc.Field(2, revision);
  enc.Field(3, uint64_t{static_cast<uint8_t>(dtype)});
  enc.Field(4, uint64_t{static_cast<uint8_t>(layout)});
  enc.Field(5, uint64_t{num_layers});
  enc.Field(6, uint64_t{kv_heads});
  enc.Field(7, uint64_t{head_dim});
  enc.Field(8, std::bit_cast<uint64_t>(rope_theta));
  enc.Field(9, rope_scaling);
  enc.Field(10, uint64_t{chunk_tokens});
  enc.Field(11, codec_chain);
  enc.Field(12, tenant_salt);
  return sha.Finish();
}

ModelSpec ModelSpec::SmolLM2_135M() {
  ModelSpec s;
  s.model_id = "HuggingFaceTB/SmolLM2-135M-Instruct";
  s.revision = "q4_1-gguf";
  s.dtype = DType::kBf16;
  s.num_layers = 30;
  s.kv_heads = 3;
  s.head_dim = 64;
  s.rope_theta = 100000;
  s.chunk_tokens = 256;
  return s;
}

ModelSpec ModelSpec::Llama3_8B() {
  ModelSpec s;
  s.model_id = "meta-llama/Meta-Llama-3-8B";
  s.revision = "main";
  s.dtype = DType::kBf16;
  s.num_layers = 32;
  s.kv_heads = 8;
  s.head_dim = 128;
  s.rope_theta = 500000;
  s.chunk_tokens = 256;
  return s;
}

}  // namespace kvd
