#include "compress/quant.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "compress/entropy/entropy_coder.h"
#include "core/status.h"

namespace kvd::compress {
namespace {

constexpr float kFp16Max = 65504.0f;
constexpr float kFp8Max = 448.0f;

// True when any element is NaN or infinite (vectorizes: integer compares).
bool AnyNonFinite(const float* x, size_t n) {
  uint32_t bad = 0;
  for (size_t i = 0; i < n; ++i) {
    const uint32_t u = std::bit_cast<uint32_t>(x[i]);
    bad |= static_cast<uint32_t>((u & 0x7f800000u) == 0x7f800000u);
  }
  return bad != 0;
}

// The fp16 minimum and scale of a range [mn, mx] mapped onto codes
// 0..maxq, and the float values the codes are computed with (the rounded
// ones, so encoder and decoder agree exactly).
struct Affine {
  uint16_t min_h, scale_h;
  float min, inv;
};
Affine MakeAffine(float mn, float mx, float maxq) {
  Affine a;
  a.min_h = FloatToFp16(mn);
  a.min = Fp16ToFloat(a.min_h);
  a.scale_h = FloatToFp16((mx - a.min) / maxq);
  const float scale = Fp16ToFloat(a.scale_h);
  a.inv = scale > 0 ? 1.0f / scale : 0.0f;
  return a;
}

inline uint8_t Code(float x, float min, float inv, float maxq) {
  float q = (x - min) * inv + 0.5f;
  q = q < 0.0f ? 0.0f : q;  // also maps NaN to 0
  q = q > maxq ? maxq : q;
  return static_cast<uint8_t>(static_cast<int>(q));
}

absl::Status CheckRange(float mn, float mx, const char* what) {
  if (mn >= -kFp16Max && mx <= kFp16Max) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("quant: ", what, " value range [", mn, ", ", mx,
                   "] exceeds the fp16 bound 65504 of the scales"));
}

// Min and max of x[0..n), n >= 1. Eight lane-wise accumulators, so the
// loop vectorizes without reassociating a reduction.
inline void MinMax(const float* x, uint32_t n, float* mn_out, float* mx_out) {
  constexpr uint32_t kLanes = 8;
  float mn = x[0], mx = x[0];
  uint32_t i = 0;
  if (n >= kLanes) {
    float lmn[kLanes], lmx[kLanes];
    for (uint32_t j = 0; j < kLanes; ++j) lmn[j] = lmx[j] = x[j];
    for (i = kLanes; i + kLanes <= n; i += kLanes) {
      for (uint32_t j = 0; j < kLanes; ++j) {
        lmn[j] = x[i + j] < lmn[j] ? x[i + j] : lmn[j];
        lmx[j] = x[i + j] > lmx[j] ? x[i + j] : lmx[j];
      }
    }
    for (uint32_t j = 0; j < kLanes; ++j) {
      mn = lmn[j] < mn ? lmn[j] : mn;
      mx = lmx[j] > mx ? lmx[j] : mx;
    }
  }
  for (; i < n; ++i) {
    mn = x[i] < mn ? x[i] : mn;
    mx = x[i] > mx ? x[i] : mx;
  }
  *mn_out = mn;
  *mx_out = mx;
}

// Per channel, per group of `group` tokens. codes: [heads][tokens][dim].
absl::Status EncodePerChannel(const HeadTensor& x, uint32_t tokens,
                              uint32_t group, float maxq, ByteWriter& params,
                              uint8_t* codes) {
  const uint32_t d = x.dim;
  std::vector<float> mn(d), mx(d), min(d), inv(d);
  std::vector<uint16_t> p(2 * size_t{d});
  for (uint32_t h = 0; h < x.heads; ++h) {
    for (uint32_t t0 = 0; t0 < tokens; t0 += group) {
      const uint32_t rows = std::min(group, tokens - t0);
      std::copy_n(x.Row(h, t0), d, mn.begin());
      std::copy_n(x.Row(h, t0), d, mx.begin());
      for (uint32_t r = 1; r < rows; ++r) {
        const float* row = x.Row(h, t0 + r);
        for (uint32_t c = 0; c < d; ++c) {
          mn[c] = row[c] < mn[c] ? row[c] : mn[c];
          mx[c] = row[c] > mx[c] ? row[c] : mx[c];
        }
      }
      for (uint32_t c = 0; c < d; ++c) {
        KVD_RETURN_IF_ERROR(CheckRange(mn[c], mx[c], "channel"));
        const Affine a = MakeAffine(mn[c], mx[c], maxq);
        p[c] = a.min_h;
        p[d + c] = a.scale_h;
        min[c] = a.min;
        inv[c] = a.inv;
      }
      params.PutArray<uint16_t>(p);
      for (uint32_t r = 0; r < rows; ++r) {
        const float* row = x.Row(h, t0 + r);
        uint8_t* out = codes + (size_t{h} * tokens + t0 + r) * d;
        for (uint32_t c = 0; c < d; ++c)
          out[c] = Code(row[c], min[c], inv[c], maxq);
      }
    }
  }
  return absl::OkStatus();
}

// Per token, per group of `group` channels.
absl::Status EncodePerToken(const HeadTensor& x, uint32_t tokens,
                            uint32_t group, float maxq, ByteWriter& params,
                            uint8_t* codes) {
  const uint32_t d = x.dim;
  const uint32_t groups = (d + group - 1) / group;
  std::vector<uint16_t> p(2 * size_t{groups});
  for (uint32_t h = 0; h < x.heads; ++h) {
    for (uint32_t t = 0; t < tokens; ++t) {
      const float* row = x.Row(h, t);
      uint8_t* out = codes + (size_t{h} * tokens + t) * d;
      for (uint32_t g = 0; g < groups; ++g) {
        const uint32_t c0 = g * group, c1 = std::min(d, c0 + group);
        float mn, mx;
        MinMax(row + c0, c1 - c0, &mn, &mx);
        KVD_RETURN_IF_ERROR(CheckRange(mn, mx, "token"));
        const Affine a = MakeAffine(mn, mx, maxq);
        p[2 * g] = a.min_h;
        p[2 * g + 1] = a.scale_h;
        for (uint32_t c = c0; c < c1; ++c)
          out[c] = Code(row[c], a.min, a.inv, maxq);
      }
      params.PutArray<uint16_t>(p);
    }
  }
  return absl::OkStatus();
}

// e4m3 with one fp16 scale per token (amax / 448).
absl::Status EncodeFp8(const HeadTensor& x, uint32_t tokens, ByteWriter& params,
                       uint8_t* codes) {
  const uint32_t d = x.dim;
  for (uint32_t h = 0; h < x.heads; ++h) {
    for (uint32_t t = 0; t < tokens; ++t) {
      const float* row = x.Row(h, t);
      float amax = 0;
      for (uint32_t c = 0; c < d; ++c) amax = std::max(amax, std::fabs(row[c]));
      KVD_RETURN_IF_ERROR(CheckRange(-amax, amax, "fp8 token"));
      const uint16_t scale_h = FloatToFp16(amax / kFp8Max);
      params.Put(scale_h);
      const float scale = Fp16ToFloat(scale_h);
      const float inv = scale > 0 ? 1.0f / scale : 0.0f;
      uint8_t* out = codes + (size_t{h} * tokens + t) * d;
      for (uint32_t c = 0; c < d; ++c) out[c] = FloatToFp8E4M3(row[c] * inv);
    }
  }
  return absl::OkStatus();
}

// Packs 8/bits codes per byte, the first in the low bits.
template <uint32_t kBits>
void PackCodesT(const uint8_t* codes, size_t n, uint8_t* out) {
  constexpr uint32_t kPer = 8 / kBits;
  const size_t full = n / kPer;
  for (size_t i = 0; i < full; ++i) {
    uint8_t b = 0;
    for (uint32_t j = 0; j < kPer; ++j) b |= codes[i * kPer + j] << (j * kBits);
    out[i] = b;
  }
  if (full * kPer < n) {
    uint8_t b = 0;
    for (size_t j = 0; full * kPer + j < n; ++j)
      b |= codes[full * kPer + j] << (j * kBits);
    out[full] = b;
  }
}

template <uint32_t kBits>
void UnpackCodesT(const uint8_t* in, size_t n, uint8_t* codes) {
  constexpr uint32_t kPer = 8 / kBits;
  constexpr uint8_t kMask = (1u << kBits) - 1;
  const size_t full = n / kPer;
  for (size_t i = 0; i < full; ++i) {
    for (uint32_t j = 0; j < kPer; ++j)
      codes[i * kPer + j] = (in[i] >> (j * kBits)) & kMask;
  }
  for (size_t j = full * kPer; j < n; ++j)
    codes[j] = (in[full] >> ((j - full * kPer) * kBits)) & kMask;
}

void PackCodes(const uint8_t* codes, size_t n, uint32_t bits, uint8_t* out) {
  switch (bits) {
    case 2:
      return PackCodesT<2>(codes, n, out);
    case 4:
      return PackCodesT<4>(codes, n, out);
    default:
      std::copy_n(codes, n, out);
  }
}

void UnpackCodes(const uint8_t* in, size_t n, uint32_t bits, uint8_t* codes) {
  switch (bits) {
    case 2:
      return UnpackCodesT<2>(in, n, codes);
    case 4:
      return UnpackCodesT<4>(in, n, codes);
    default:
      std::copy_n(in, n, codes);
  }
}

void DecodeAffine(const uint16_t* min_h, const uint16_t* scale_h, size_t n,
                  float* min, float* scale) {
  for (size_t i = 0; i < n; ++i) {
    min[i] = Fp16ToFloat(min_h[i]);
    scale[i] = Fp16ToFloat(scale_h[i]);
  }
}

// Entropy codes `codes` ([rows][dim]) as one stream per channel (CacheGen
// codes each (layer, channel) with its own distribution): u32 length, then
// the coder's bytes.
absl::Status EntropyCodeChannels(const std::vector<uint8_t>& codes,
                                 uint32_t dim, uint32_t bits, ByteWriter& out) {
  const size_t rows = codes.size() / dim;
  std::vector<uint8_t> streams(codes.size());
  for (size_t r = 0; r < rows; ++r) {
    for (uint32_t c = 0; c < dim; ++c)
      streams[c * rows + r] = codes[r * dim + c];
  }
  KVD_ASSIGN_OR_RETURN(std::vector<uint8_t> coded,
                       EntropyEncode(streams, dim, 1u << bits));
  out.Put(static_cast<uint32_t>(coded.size()));
  out.PutBytes(coded.data(), coded.size());
  return absl::OkStatus();
}

absl::Status EntropyDecodeChannels(ByteReader& in, uint32_t dim, uint32_t bits,
                                   std::vector<uint8_t>& codes) {
  uint32_t size;
  KVD_RETURN_IF_ERROR(in.Get("quant entropy length", &size));
  const uint8_t* coded;
  KVD_RETURN_IF_ERROR(in.Take("quant entropy codes", size, &coded));
  std::vector<uint8_t> streams(codes.size());
  KVD_RETURN_IF_ERROR(EntropyDecode(absl::MakeConstSpan(coded, size), dim,
                                    1u << bits, absl::MakeSpan(streams)));
  const size_t rows = codes.size() / dim;
  for (size_t r = 0; r < rows; ++r) {
    for (uint32_t c = 0; c < dim; ++c)
      codes[r * dim + c] = streams[c * rows + r];
  }
  return absl::OkStatus();
}

absl::StatusOr<QuantFormat> ParseFormat(absl::string_view text) {
  if (text == "fp8") return QuantFormat{QuantMode::kFp8, 8};
  std::vector<std::string> parts = absl::StrSplit(text, '/');
  QuantFormat f;
  if (parts.size() == 2 && (parts[1] == "channel" || parts[1] == "token")) {
    f.mode =
        parts[1] == "channel" ? QuantMode::kPerChannel : QuantMode::kPerToken;
    if (parts[0] == "int8")
      f.bits = 8;
    else if (parts[0] == "int4")
      f.bits = 4;
    else if (parts[0] == "int2")
      f.bits = 2;
    else
      f.bits = 0;
    if (f.bits != 0) return f;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "quant: format ", text,
      " is not one of int8|int4|int2 followed by /channel or /token, or fp8"));
}

}  // namespace

size_t QuantParamBytes(const QuantFormat& f, uint32_t group, uint32_t heads,
                       uint32_t tokens, uint32_t d) {
  switch (f.mode) {
    case QuantMode::kPerChannel:
      return size_t{heads} * ((tokens + group - 1) / group) * d * 4;
    case QuantMode::kPerToken:
      group = std::min(group, d);
      return size_t{heads} * tokens * ((d + group - 1) / group) * 4;
    case QuantMode::kFp8:
      return size_t{heads} * tokens * 2;
  }
  return 0;
}

size_t QuantizedTensorBytes(const QuantFormat& f, uint32_t group,
                            uint32_t heads, uint32_t tokens, uint32_t dim) {
  return QuantParamBytes(f, group, heads, tokens, dim) +
         (size_t{heads} * tokens * dim * f.bits + 7) / 8;
}

std::string QuantFormat::Name() const {
  if (mode == QuantMode::kFp8) return "fp8";
  return absl::StrCat("int", bits,
                      mode == QuantMode::kPerChannel ? "/channel" : "/token");
}

absl::StatusOr<QuantParams> ParseQuantParams(const StageSpec& spec) {
  StageParams p(spec);
  QuantParams q;
  KVD_ASSIGN_OR_RETURN(std::string k, p.String("k", "int4/channel"));
  KVD_ASSIGN_OR_RETURN(q.k, ParseFormat(k));
  KVD_ASSIGN_OR_RETURN(std::string v, p.String("v", "int4/token"));
  KVD_ASSIGN_OR_RETURN(q.v, ParseFormat(v));
  KVD_ASSIGN_OR_RETURN(int64_t g, p.Int("g", 32, 1, 4096));
  KVD_ASSIGN_OR_RETURN(int64_t w, p.Int("window", 0, 0, 1 << 20));
  q.group = static_cast<uint32_t>(g);
  q.window = static_cast<uint32_t>(w);
  KVD_RETURN_IF_ERROR(p.Finish());
  return q;
}

absl::Status QuantizeTensor(const QuantFormat& f, uint32_t group, bool entropy,
                            const HeadTensor& x, uint32_t tokens,
                            ByteWriter& out) {
  const uint32_t d = x.dim;
  for (uint32_t h = 0; h < x.heads; ++h) {
    if (AnyNonFinite(x.Row(h, 0), size_t{tokens} * d)) {
      return absl::InvalidArgumentError(
          absl::StrCat("quant: head ", h, " holds a NaN or infinite value"));
    }
  }
  const size_t n = size_t{x.heads} * tokens * d;
  std::vector<uint8_t> codes(n);
  const float maxq = static_cast<float>((1u << f.bits) - 1);
  switch (f.mode) {
    case QuantMode::kPerChannel:
      KVD_RETURN_IF_ERROR(
          EncodePerChannel(x, tokens, group, maxq, out, codes.data()));
      break;
    case QuantMode::kPerToken:
      KVD_RETURN_IF_ERROR(EncodePerToken(x, tokens, std::min(group, d), maxq,
                                         out, codes.data()));
      break;
    case QuantMode::kFp8:
      KVD_RETURN_IF_ERROR(EncodeFp8(x, tokens, out, codes.data()));
      break;
  }
  if (!entropy) {
    PackCodes(codes.data(), n, f.bits, out.Extend((n * f.bits + 7) / 8));
    return absl::OkStatus();
  }
  return EntropyCodeChannels(codes, d, f.bits, out);
}

absl::Status DequantizeTensor(const QuantFormat& f, uint32_t group,
                              bool entropy, ByteReader& in, uint32_t tokens,
                              HeadTensor& x) {
  const uint32_t d = x.dim;
  const uint32_t heads = x.heads;
  const size_t n = size_t{heads} * tokens * d;
  if (f.mode == QuantMode::kPerToken) group = std::min(group, d);
  std::vector<uint16_t> params;
  KVD_RETURN_IF_ERROR(
      in.GetArray("quant params",
                  QuantParamBytes(f, group, heads, tokens, d) / 2, &params));
  std::vector<uint8_t> codes(n);
  if (!entropy) {
    const uint8_t* packed;
    KVD_RETURN_IF_ERROR(in.Take("quant codes", (n * f.bits + 7) / 8, &packed));
    UnpackCodes(packed, n, f.bits, codes.data());
  } else {
    KVD_RETURN_IF_ERROR(EntropyDecodeChannels(in, d, f.bits, codes));
  }
  const uint16_t* p = params.data();
  std::vector<float> min(d), scale(d);
  for (uint32_t h = 0; h < heads; ++h) {
    switch (f.mode) {
      case QuantMode::kPerChannel:
        for (uint32_t t0 = 0; t0 < tokens; t0 += group, p += 2 * size_t{d}) {
          DecodeAffine(p, p + d, d, min.data(), scale.data());
          const uint32_t rows = std::min(group, tokens - t0);
          for (uint32_t r = 0; r < rows; ++r) {
            const uint8_t* c = codes.data() + (size_t{h} * tokens + t0 + r) * d;
            float* row = x.Row(h, t0 + r);
            for (uint32_t j = 0; j < d; ++j) row[j] = c[j] * scale[j] + min[j];
          }
        }
        break;
      case QuantMode::kPerToken:
        for (uint32_t t = 0; t < tokens; ++t) {
          const uint8_t* c = codes.data() + (size_t{h} * tokens + t) * d;
          float* row = x.Row(h, t);
          for (uint32_t c0 = 0; c0 < d; c0 += group, p += 2) {
            const float mn = Fp16ToFloat(p[0]), s = Fp16ToFloat(p[1]);
            const uint32_t c1 = std::min(d, c0 + group);
            for (uint32_t j = c0; j < c1; ++j) row[j] = c[j] * s + mn;
          }
        }
        break;
      case QuantMode::kFp8:
        for (uint32_t t = 0; t < tokens; ++t, ++p) {
          const float s = Fp16ToFloat(*p);
          const uint8_t* c = codes.data() + (size_t{h} * tokens + t) * d;
          float* row = x.Row(h, t);
          for (uint32_t j = 0; j < d; ++j) row[j] = Fp8E4M3ToFloat(c[j]) * s;
        }
        break;
    }
  }
  return absl::OkStatus();
}

namespace {

// u32 {heads, tokens, dim} of K then V: the terminal stages record the shape
// they stored, and check it against the namespace on decode.
void PutShapes(const LayerKV& kv, ByteWriter& out) {
  for (const HeadTensor* t : {&kv.k, &kv.v}) {
    out.Put(t->heads);
    out.Put(t->tokens);
    out.Put(t->dim);
  }
}

absl::Status GetShapes(ByteReader& in, const LayerShape& shape,
                       uint32_t kv_heads, uint32_t head_dim, LayerKV& kv) {
  for (HeadTensor* t : {&kv.k, &kv.v}) {
    uint32_t s[3];
    for (uint32_t& x : s) KVD_RETURN_IF_ERROR(in.Get("tensor shape", &x));
    if (s[0] != kv_heads || s[1] > shape.tokens || s[2] == 0 ||
        s[2] > head_dim) {
      return absl::DataLossError(
          absl::StrCat("stored tensor shape [", s[0], "][", s[1], "][", s[2],
                       "] does not fit kv_heads=", kv_heads,
                       ", tokens<=", shape.tokens, ", head_dim<=", head_dim));
    }
    *t = HeadTensor(s[0], s[1], s[2]);
  }
  return absl::OkStatus();
}

class QuantStage : public TensorStage {
 public:
  QuantStage(const QuantParams& p, const CodecContext& ctx)
      : p_(p), ctx_(ctx) {}

  std::string Spec() const override {
    return absl::StrCat("quant(k=", p_.k.Name(), ",v=", p_.v.Name(),
                        ",g=", p_.group, ",window=", p_.window, ")");
  }

  absl::Status Encode(const LayerShape& shape, const CodecInputs& in,
                      LayerKV& kv, ByteWriter& out) const override {
    PutShapes(kv, out);
    for (auto [t, f] : {std::pair{&kv.k, p_.k}, std::pair{&kv.v, p_.v}}) {
      const uint32_t window = std::min(p_.window, t->tokens);
      const uint32_t quantized = t->tokens - window;
      KVD_RETURN_IF_ERROR(
          QuantizeTensor(f, p_.group, p_.entropy, *t, quantized, out));
      PutTokens(ctx_.dtype, *t, quantized, window, out);
    }
    return absl::OkStatus();
  }

  absl::Status Decode(const LayerShape& shape, ByteReader& in,
                      LayerKV& kv) const override {
    KVD_RETURN_IF_ERROR(GetShapes(in, shape, ctx_.kv_heads, ctx_.head_dim, kv));
    for (auto [t, f] : {std::pair{&kv.k, p_.k}, std::pair{&kv.v, p_.v}}) {
      const uint32_t window = std::min(p_.window, t->tokens);
      const uint32_t quantized = t->tokens - window;
      KVD_RETURN_IF_ERROR(
          DequantizeTensor(f, p_.group, p_.entropy, in, quantized, *t));
      KVD_RETURN_IF_ERROR(
          GetTokens(ctx_.dtype, in, quantized, window, *t, "quant window"));
    }
    return absl::OkStatus();
  }

 private:
  const QuantParams p_;
  const CodecContext ctx_;
};

class RawStage : public TensorStage {
 public:
  explicit RawStage(const CodecContext& ctx) : ctx_(ctx) {}

  std::string Spec() const override { return ""; }

  absl::Status Encode(const LayerShape& shape, const CodecInputs& in,
                      LayerKV& kv, ByteWriter& out) const override {
    PutShapes(kv, out);
    PutTokens(ctx_.dtype, kv.k, 0, kv.k.tokens, out);
    PutTokens(ctx_.dtype, kv.v, 0, kv.v.tokens, out);
    return absl::OkStatus();
  }

  absl::Status Decode(const LayerShape& shape, ByteReader& in,
                      LayerKV& kv) const override {
    KVD_RETURN_IF_ERROR(GetShapes(in, shape, ctx_.kv_heads, ctx_.head_dim, kv));
    KVD_RETURN_IF_ERROR(
        GetTokens(ctx_.dtype, in, 0, kv.k.tokens, kv.k, "raw K"));
    return GetTokens(ctx_.dtype, in, 0, kv.v.tokens, kv.v, "raw V");
  }

 private:
  const CodecContext ctx_;
};

}  // namespace

std::unique_ptr<TensorStage> MakeQuantStage(const QuantParams& params,
                                            const CodecContext& ctx) {
  return std::make_unique<QuantStage>(params, ctx);
}

std::unique_ptr<TensorStage> MakeRawStage(const CodecContext& ctx) {
  return std::make_unique<RawStage>(ctx);
}

}  // namespace kvd::compress
