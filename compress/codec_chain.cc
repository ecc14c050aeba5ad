#include "compress/codec_chain.h"

#include <zstd.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "compress/codec_spec.h"
#include "compress/lowrank.h"
#include "compress/quant.h"
#include "core/chunk_format.h"
#include "core/status.h"

namespace kvd::compress {
namespace {

constexpr uint8_t kLayerVersion = 1;
constexpr uint8_t kFlagZstd = 1;

// Order of stage kinds in a chain; a stage may not follow a later kind.
enum Rank { kReducer, kLowRank, kQuant, kRans, kZstd };

void PutMaps(const std::vector<TokenMap>& maps, ByteWriter& out) {
  out.Put(static_cast<uint32_t>(maps.empty() ? 0 : maps[0].kept()));
  for (const TokenMap& m : maps) {
    out.PutArray<uint32_t>(m.position);
    out.PutArray<uint32_t>(absl::MakeConstSpan(m.offsets).subspan(1));
    out.PutArray<uint32_t>(m.members);
  }
}

absl::Status GetMaps(ByteReader& in, uint32_t heads, uint32_t tokens,
                     std::vector<TokenMap>& maps, uint32_t* kept) {
  KVD_RETURN_IF_ERROR(in.Get("kept tokens", kept));
  if (*kept == 0 || *kept > tokens) {
    return absl::DataLossError(
        absl::StrCat("kept tokens=", *kept, " is outside [1, ", tokens, "]"));
  }
  maps.resize(heads);
  for (TokenMap& m : maps) {
    KVD_RETURN_IF_ERROR(in.GetArray("kept positions", *kept, &m.position));
    std::vector<uint32_t> ends;
    KVD_RETURN_IF_ERROR(in.GetArray("member offsets", *kept, &ends));
    if (ends.back() > tokens) {
      return absl::DataLossError(absl::StrCat(
          "token map: ", ends.back(), " members for ", tokens, " tokens"));
    }
    m.offsets.assign(1, 0);
    m.offsets.insert(m.offsets.end(), ends.begin(), ends.end());
    KVD_RETURN_IF_ERROR(in.GetArray("members", ends.back(), &m.members));
    KVD_RETURN_IF_ERROR(m.Validate(tokens));
  }
  return absl::OkStatus();
}

}  // namespace

CodecContext CodecChain::ContextFor(const ModelSpec& spec,
                                    std::shared_ptr<const LowRankBases> bases) {
  return CodecContext{spec.dtype, spec.num_layers, spec.kv_heads, spec.head_dim,
                      std::move(bases)};
}

absl::StatusOr<std::unique_ptr<const CodecChain>> CodecChain::Create(
    absl::string_view text, const CodecContext& ctx) {
  KVD_ASSIGN_OR_RETURN(std::vector<StageSpec> specs, ParseChainSpec(text));
  std::unique_ptr<CodecChain> chain(new CodecChain());
  chain->ctx_ = ctx;
  std::vector<std::string> parts;
  int last = -1;
  QuantParams quant;
  bool has_quant = false;
  for (const StageSpec& s : specs) {
    int rank;
    KVD_ASSIGN_OR_RETURN(std::unique_ptr<TokenReducer> reducer,
                         MakeTokenReducer(s));
    if (reducer != nullptr) {
      rank = kReducer;
      parts.push_back(reducer->Spec());
      chain->reducer_ = std::move(reducer);
    } else if (s.name == "lowrank") {
      rank = kLowRank;
      KVD_ASSIGN_OR_RETURN(std::unique_ptr<TensorStage> stage,
                           MakeLowRankStage(s, ctx));
      parts.push_back(stage->Spec());
      chain->stages_.push_back(std::move(stage));
    } else if (s.name == "quant") {
      rank = kQuant;
      KVD_ASSIGN_OR_RETURN(quant, ParseQuantParams(s));
      has_quant = true;
    } else if (s.name == "rans" || s.name == "zstd") {
      rank = s.name == "rans" ? kRans : kZstd;
      StageParams p(s);
      if (rank == kRans && last != kQuant) {
        return absl::InvalidArgumentError(
            "codec chain: rans codes quant's symbols and must follow quant");
      }
      KVD_RETURN_IF_ERROR(p.Finish());
      parts.push_back(s.name);
      if (rank == kRans) quant.entropy = true;
      chain->zstd_ |= rank == kZstd;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "codec chain: unknown codec ", s.name,
          " (known: a token reducer, lowrank, quant, rans, zstd)"));
    }
    if (rank <= last) {
      return absl::InvalidArgumentError(
          absl::StrCat("codec chain: ", s.name,
                       " is out of order or repeated; the order is "
                       "[reducer] [lowrank] [quant [rans]] [zstd]"));
    }
    last = rank;
  }
  if (has_quant) {
    auto stage = MakeQuantStage(quant, ctx);
    // quant's text goes before rans/zstd, after reducer and lowrank.
    const size_t at = (chain->reducer_ ? 1 : 0) + chain->stages_.size();
    parts.insert(parts.begin() + at, stage->Spec());
    chain->stages_.push_back(std::move(stage));
  } else {
    chain->stages_.push_back(MakeRawStage(ctx));
  }
  for (size_t i = 0; i < parts.size(); ++i) {
    absl::StrAppend(&chain->spec_, i ? "|" : "", parts[i]);
  }
  if (chain->spec_.size() > kMaxCodecChainBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("codec chain: canonical text has ", chain->spec_.size(),
                     " bytes, more than ", kMaxCodecChainBytes));
  }
  return chain;
}

uint64_t CodecChain::MaxBodyBytes(uint32_t tokens) const {
  // Generous: per-token int8 with group 1 costs 2.5x the bf16 bytes.
  return 8 * uint64_t{2} * ctx_.kv_heads * tokens * ctx_.head_dim *
             DTypeSize(ctx_.dtype) +
         (64 << 10);
}

absl::Status CodecChain::EncodeStages(uint32_t layer, LayerKV& kv,
                                      const CodecInputs& in,
                                      std::vector<ByteWriter>& sections) const {
  if (layer >= ctx_.num_layers || kv.Reduced()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "encode: layer ", layer, " of ", ctx_.num_layers, " layers",
        kv.Reduced() ? " is already token-reduced" : ""));
  }
  for (const HeadTensor* t : {&kv.k, &kv.v}) {
    if (t->heads != ctx_.kv_heads || t->dim != ctx_.head_dim ||
        t->tokens == 0 || t->tokens != kv.k.tokens ||
        t->size() != size_t{t->heads} * t->tokens * t->dim) {
      return absl::InvalidArgumentError(absl::StrCat(
          "encode: tensor [", t->heads, "][", t->tokens, "][", t->dim,
          "] is not [kv_heads=", ctx_.kv_heads,
          "][tokens>0][head_dim=", ctx_.head_dim, "] with K and V alike"));
    }
  }
  if (reducer_ != nullptr) {
    KVD_RETURN_IF_ERROR(reducer_->Reduce(in, kv));
    PutMaps(kv.maps, sections.emplace_back());
  }
  const LayerShape shape{layer, kv.k.tokens};
  for (const auto& stage : stages_) {
    KVD_RETURN_IF_ERROR(stage->Encode(shape, in, kv, sections.emplace_back()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint8_t>> CodecChain::EncodeLayerKV(
    uint32_t layer, LayerKV kv, const CodecInputs& in) const {
  std::vector<ByteWriter> sections;
  KVD_RETURN_IF_ERROR(EncodeStages(layer, kv, in, sections));
  // The 4-byte prefix, then the body: section sizes and sections.
  constexpr size_t kPrefix = 4;
  size_t body_size = 4 * sections.size();
  for (ByteWriter& s : sections) body_size += s.bytes().size();
  std::vector<uint8_t> body(kPrefix + body_size);
  body[0] = kLayerVersion;
  body[1] = zstd_ ? kFlagZstd : 0;
  const uint16_t count = static_cast<uint16_t>(sections.size());
  std::memcpy(&body[2], &count, 2);
  size_t at = kPrefix + 4 * sections.size();
  for (size_t i = 0; i < sections.size(); ++i) {
    const std::vector<uint8_t>& s = sections[i].bytes();
    const uint32_t size = static_cast<uint32_t>(s.size());
    std::memcpy(&body[kPrefix + 4 * i], &size, 4);
    if (!s.empty()) std::memcpy(&body[at], s.data(), s.size());
    at += s.size();
  }
  if (!zstd_) return body;
  // zstd: prefix, u64 body size, frame.
  const size_t header = kPrefix + 8;
  const size_t bound = ZSTD_compressBound(body_size);
  std::vector<uint8_t> out(header + bound);
  std::memcpy(out.data(), body.data(), kPrefix);
  const uint64_t n = body_size;
  std::memcpy(out.data() + kPrefix, &n, 8);
  const size_t z = ZSTD_compress(out.data() + header, bound,
                                 body.data() + kPrefix, body_size, 3);
  if (ZSTD_isError(z)) {
    return absl::InternalError(absl::StrCat("zstd: ", ZSTD_getErrorName(z)));
  }
  out.resize(header + z);
  return out;
}

absl::StatusOr<std::vector<uint8_t>> CodecChain::EncodeLayer(
    uint32_t layer, uint32_t tokens, absl::Span<const uint8_t> raw,
    const CodecInputs& in) const {
  const size_t count = size_t{ctx_.kv_heads} * tokens * ctx_.head_dim;
  if (raw.size() != 2 * count * DTypeSize(ctx_.dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat("encode: layer has ", raw.size(), " bytes, ", tokens,
                     " tokens need ", 2 * count * DTypeSize(ctx_.dtype)));
  }
  LayerKV kv{HeadTensor(ctx_.kv_heads, tokens, ctx_.head_dim),
             HeadTensor(ctx_.kv_heads, tokens, ctx_.head_dim),
             {}};
  DTypeToFloat(ctx_.dtype, raw.data(), count, kv.k.data.data());
  DTypeToFloat(ctx_.dtype, raw.data() + count * DTypeSize(ctx_.dtype), count,
               kv.v.data.data());
  return EncodeLayerKV(layer, std::move(kv), in);
}

absl::StatusOr<LayerKV> CodecChain::DecodeLayerKV(
    uint32_t layer, uint32_t tokens, absl::Span<const uint8_t> encoded) const {
  if (layer >= ctx_.num_layers || tokens == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "decode: layer ", layer, " of ", ctx_.num_layers, ", tokens=", tokens));
  }
  ByteReader r(encoded);
  uint8_t version, flags;
  uint16_t count;
  KVD_RETURN_IF_ERROR(r.Get("layer version", &version));
  KVD_RETURN_IF_ERROR(r.Get("layer flags", &flags));
  KVD_RETURN_IF_ERROR(r.Get("section count", &count));
  const size_t expected = stages_.size() + (reducer_ ? 1 : 0);
  if (version != kLayerVersion || flags != (zstd_ ? kFlagZstd : 0) ||
      count != expected) {
    return absl::DataLossError(absl::StrCat(
        "encoded layer: version ", version, ", flags ", flags, ", ", count,
        " sections; chain ", spec_, " writes version ", kLayerVersion, ", ",
        expected, " sections"));
  }
  std::vector<uint8_t> inflated;
  absl::Span<const uint8_t> body;
  if (zstd_) {
    uint64_t n;
    KVD_RETURN_IF_ERROR(r.Get("zstd size", &n));
    if (n > MaxBodyBytes(tokens)) {
      return absl::DataLossError(
          absl::StrCat("zstd size ", n, " exceeds ", MaxBodyBytes(tokens)));
    }
    const uint8_t* frame;
    const size_t frame_size = r.remaining();
    KVD_RETURN_IF_ERROR(r.Take("zstd frame", frame_size, &frame));
    inflated.resize(n);
    const size_t got = ZSTD_decompress(inflated.data(), n, frame, frame_size);
    if (ZSTD_isError(got) || got != n) {
      return absl::DataLossError(
          absl::StrCat("zstd frame: ",
                       ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short"));
    }
    body = inflated;
  } else {
    const uint8_t* p;
    const size_t n = r.remaining();
    KVD_RETURN_IF_ERROR(r.Take("layer body", n, &p));
    body = absl::MakeConstSpan(p, n);
  }
  ByteReader b(body);
  std::vector<uint32_t> sizes;
  KVD_RETURN_IF_ERROR(b.GetArray("section sizes", count, &sizes));
  std::vector<absl::Span<const uint8_t>> sections;
  for (uint32_t size : sizes) {
    const uint8_t* p;
    KVD_RETURN_IF_ERROR(b.Take("section", size, &p));
    sections.push_back(absl::MakeConstSpan(p, size));
  }
  KVD_RETURN_IF_ERROR(b.ExpectEnd("encoded layer"));

  LayerKV kv;
  LayerShape shape{layer, tokens};
  size_t next = 0;
  if (reducer_ != nullptr) {
    ByteReader s(sections[next++]);
    KVD_RETURN_IF_ERROR(
        GetMaps(s, ctx_.kv_heads, tokens, kv.maps, &shape.tokens));
    KVD_RETURN_IF_ERROR(s.ExpectEnd("token maps"));
  }
  for (size_t i = stages_.size(); i-- > 0;) {
    ByteReader s(sections[next + i]);
    KVD_RETURN_IF_ERROR(stages_[i]->Decode(shape, s, kv));
    KVD_RETURN_IF_ERROR(s.ExpectEnd(stages_[i]->Spec()));
  }
  KVD_RETURN_IF_ERROR(ExpectShape(kv.k, ctx_.kv_heads, shape.tokens,
                                  ctx_.head_dim, "decoded K"));
  KVD_RETURN_IF_ERROR(ExpectShape(kv.v, ctx_.kv_heads, shape.tokens,
                                  ctx_.head_dim, "decoded V"));
  return kv;
}

absl::Status CodecChain::DecodeLayer(uint32_t layer, uint32_t tokens,
                                     absl::Span<const uint8_t> encoded,
                                     absl::Span<uint8_t> raw) const {
  if (reducer_ != nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("chain ", spec_,
                     " reduces tokens: it decodes to a compact cache only"));
  }
  const size_t count = size_t{ctx_.kv_heads} * tokens * ctx_.head_dim;
  const size_t tensor_bytes = count * DTypeSize(ctx_.dtype);
  if (raw.size() != 2 * tensor_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("decode: output has ", raw.size(), " bytes, the layer ",
                     2 * tensor_bytes));
  }
  KVD_ASSIGN_OR_RETURN(LayerKV kv, DecodeLayerKV(layer, tokens, encoded));
  FloatToDType(ctx_.dtype, kv.k.data.data(), count, raw.data());
  FloatToDType(ctx_.dtype, kv.v.data.data(), count, raw.data() + tensor_bytes);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint8_t>> CompressChunk(
    const ModelSpec& spec, const CodecChain& chain,
    absl::Span<const uint8_t> raw_object,
    absl::Span<const CodecInputs> inputs) {
  KVD_ASSIGN_OR_RETURN(ChunkHeader h, VerifyChunkObject(raw_object));
  if (!h.IsRaw() || h.namespace_fp != spec.Fingerprint()) {
    return absl::FailedPreconditionError(
        "compress: the chunk is already encoded or of another namespace");
  }
  if (chain.ReducesTokens()) {
    return absl::FailedPreconditionError(
        absl::StrCat("compress: chain ", chain.spec(),
                     " reduces tokens; chunks keep every token"));
  }
  if (!inputs.empty() && inputs.size() != h.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat(
        "compress: ", inputs.size(), " inputs for ", h.num_layers, " layers"));
  }
  std::vector<std::vector<uint8_t>> layers(h.num_layers);
  for (uint32_t l = 0; l < h.num_layers; ++l) {
    const LayerExtent& e = h.layers[l];
    KVD_ASSIGN_OR_RETURN(
        layers[l], chain.EncodeLayer(
                       l, h.token_count, raw_object.subspan(e.offset, e.size),
                       inputs.empty() ? CodecInputs{} : inputs[l]));
  }
  std::vector<absl::Span<const uint8_t>> spans(layers.begin(), layers.end());
  return EncodeChunkObject(spec,
                           ChunkIdentity{h.namespace_fp, h.key, h.parent,
                                         h.token_count, chain.spec()},
                           spans);
}

absl::StatusOr<std::vector<uint8_t>> DecompressChunk(
    const ModelSpec& spec, const CodecChain& chain,
    absl::Span<const uint8_t> object) {
  KVD_ASSIGN_OR_RETURN(ChunkHeader h, VerifyChunkObject(object));
  if (h.codec_chain != chain.spec() || h.namespace_fp != spec.Fingerprint()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "decompress: chunk encoded with \"", h.codec_chain,
        "\" for another namespace or chain than \"", chain.spec(), "\""));
  }
  std::vector<std::vector<uint8_t>> layers(h.num_layers);
  for (uint32_t l = 0; l < h.num_layers; ++l) {
    const LayerExtent& e = h.layers[l];
    layers[l].resize(spec.LayerBytes(h.token_count));
    KVD_RETURN_IF_ERROR(Annotate(
        chain.DecodeLayer(l, h.token_count, object.subspan(e.offset, e.size),
                          absl::MakeSpan(layers[l])),
        absl::StrCat("layer ", l)));
  }
  std::vector<absl::Span<const uint8_t>> spans(layers.begin(), layers.end());
  return EncodeChunkObject(
      spec, ChunkIdentity{h.namespace_fp, h.key, h.parent, h.token_count, ""},
      spans);
}

}  // namespace kvd::compress
