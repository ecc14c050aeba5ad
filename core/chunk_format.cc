#include "core/chunk_format.h"

#include <xxh_x86dispatch.h>  // runtime SSE2/AVX2/AVX-512 selection
#include <xxhash.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <bit>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "core/check.h"
#include "core/status.h"

namespace kvd {
namespace {

constexpr uint64_t kMaxObjectBytes = uint64_t{1} << 40;

uint32_t Pad8(uint32_t n) { return (n + 7) & ~uint32_t{7}; }

// Little-endian field access on byte buffers (unaligned).
template <typename T>
T Load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;  // kvdepot targets little-endian hosts only (static_assert below)
}
template <typename T>
void Store(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}
static_assert(
    std::endian::native == std::endian::little,
    "the chunk format is little-endian; big-endian hosts are unsupported");

absl::Status DataLoss(absl::string_view what) {
  return absl::DataLossError(absl::StrCat("chunk object: ", what));
}

// memcpy with non-temporal stores where the CPU has them (SSE2): the copy
// does not pull destination lines into the cache. REQUIRES: a
// StreamingCopyFence() before the destination is published to other threads.
void StreamingCopy(uint8_t* dst, const uint8_t* src, uint64_t n) {
#if defined(__SSE2__)
  const uint64_t head =
      std::min<uint64_t>(n, (16 - reinterpret_cast<uintptr_t>(dst) % 16) % 16);
  std::memcpy(dst, src, head);
  uint64_t i = head;
  for (; i + 64 <= n; i += 64) {
    const __m128i a =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    const __m128i b =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 16));
    const __m128i c =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 32));
    const __m128i d =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 48));
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i), a);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i + 16), b);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i + 32), c);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i + 48), d);
  }
  std::memcpy(dst + i, src + i, n - i);
#else
  std::memcpy(dst, src, n);
#endif
}

void StreamingCopyFence() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

}  // namespace

uint64_t Checksum64(absl::Span<const uint8_t> data) {
  return XXH3_64bits_dispatch(data.data(), data.size());
}

uint64_t CopyWithChecksum64(uint8_t* dst, const uint8_t* src, uint64_t n) {
  // Each block is hashed from the source, which leaves it in L1, then copied
  // from there with streaming stores: one read of the source and one write of
  // the destination per byte, no read-for-ownership of destination lines.
  constexpr uint64_t kBlock = 32 << 10;
  std::unique_ptr<XXH3_state_t, XXH_errorcode (*)(XXH3_state_t*)> state(
      XXH3_createState(), &XXH3_freeState);
  KVD_CHECK(state != nullptr, "XXH3_createState failed");
  XXH3_64bits_reset(state.get());
  for (uint64_t off = 0; off < n; off += kBlock) {
    const uint64_t len = std::min(kBlock, n - off);
    XXH3_64bits_update_dispatch(state.get(), src + off, len);
    StreamingCopy(dst + off, src + off, len);
  }
  StreamingCopyFence();
  return XXH3_64bits_digest(state.get());
}

absl::Status CopyVerifiedObject(const ChunkHeader& header, const uint8_t* src,
                                uint8_t* dst) {
  std::memcpy(dst, src, header.header_size);
  for (uint32_t i = 0; i < header.num_layers; ++i) {
    const LayerExtent& l = header.layers[i];
    if (CopyWithChecksum64(dst + l.offset, src + l.offset, l.size) !=
        l.checksum) {
      return DataLoss(absl::StrCat("layer ", i, " checksum mismatch"));
    }
  }
  return absl::OkStatus();
}

uint32_t ChunkHeaderSize(size_t codec_chain_bytes, uint32_t num_layers) {
  return kChunkHeaderFixedBytes +
         Pad8(static_cast<uint32_t>(codec_chain_bytes)) + num_layers * 24 + 8;
}

uint64_t ChunkHeader::ObjectSize() const {
  return layers.empty() ? header_size
                        : layers.back().offset + layers.back().size;
}

absl::StatusOr<ChunkHeader> DecodeChunkHeader(absl::Span<const uint8_t> bytes) {
  if (bytes.size() < kChunkHeaderFixedBytes) {
    return absl::OutOfRangeError(
        absl::StrCat("chunk object: ", bytes.size(),
                     " bytes is shorter than the fixed header (",
                     kChunkHeaderFixedBytes, ")"));
  }
  const uint8_t* p = bytes.data();
  if (Load<uint32_t>(p) != kChunkMagic) return DataLoss("bad magic");
  ChunkHeader h;
  h.version = Load<uint16_t>(p + 4);
  if (h.version != kChunkFormatVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk object: version=", h.version,
                     " is not supported (want ", kChunkFormatVersion, ")"));
  }
  if (Load<uint16_t>(p + 6) != 0)
    return DataLoss("flags must be 0 in version 1");
  h.header_size = Load<uint32_t>(p + 8);
  h.token_count = Load<uint32_t>(p + 12);
  h.num_layers = Load<uint32_t>(p + 16);
  h.kv_heads = Load<uint32_t>(p + 20);
  h.head_dim = Load<uint32_t>(p + 24);
  const uint8_t dtype = p[28];
  const uint8_t layout = p[29];
  if (Load<uint16_t>(p + 30) != 0) return DataLoss("reserved bytes must be 0");
  h.namespace_fp = ChunkKey::FromBytes(p + 32);
  h.key = ChunkKey::FromBytes(p + 64);
  h.parent = ChunkKey::FromBytes(p + 96);
  const uint32_t codec_len = Load<uint32_t>(p + 128);
  if (codec_len > kMaxCodecChainBytes) {
    return DataLoss(absl::StrCat("codec_len=", codec_len, " exceeds ",
                                 kMaxCodecChainBytes));
  }
  if (h.num_layers == 0 || h.num_layers > kMaxChunkLayers) {
    return DataLoss(absl::StrCat("num_layers=", h.num_layers,
                                 " is outside [1, ", kMaxChunkLayers, "]"));
  }
  const uint32_t expected_size = ChunkHeaderSize(codec_len, h.num_layers);
  if (h.header_size != expected_size) {
    return DataLoss(absl::StrCat("header_size=", h.header_size,
                                 " but codec_len and num_layers", " imply ",
                                 expected_size));
  }
  if (bytes.size() < h.header_size) {
    return absl::OutOfRangeError(
        absl::StrCat("chunk object: ", bytes.size(),
                     " bytes is shorter than header_size=", h.header_size));
  }
  const uint64_t stored_sum = Load<uint64_t>(p + h.header_size - 8);
  if (Checksum64(bytes.subspan(0, h.header_size - 8)) != stored_sum) {
    return DataLoss("header checksum mismatch");
  }
  // The checksum matched, so what follows is what a writer produced; still
  // validate it, since a writer can be buggy or hostile.
  if (dtype < static_cast<uint8_t>(DType::kBf16) ||
      dtype > static_cast<uint8_t>(DType::kFp8E4M3)) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk object: dtype=", dtype, " is unknown"));
  }
  if (layout != static_cast<uint8_t>(KvLayout::kSeparateKV) &&
      layout != static_cast<uint8_t>(KvLayout::kLatent)) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk object: layout=", layout, " is unknown"));
  }
  h.dtype = static_cast<DType>(dtype);
  h.layout = static_cast<KvLayout>(layout);
  h.codec_chain.assign(
      reinterpret_cast<const char*>(p + kChunkHeaderFixedBytes), codec_len);
  const uint8_t* ext = p + kChunkHeaderFixedBytes + Pad8(codec_len);
  h.layers.resize(h.num_layers);
  uint64_t expected_offset = h.header_size;
  for (uint32_t i = 0; i < h.num_layers; ++i) {
    LayerExtent& l = h.layers[i];
    l.offset = Load<uint64_t>(ext + 24 * i);
    l.size = Load<uint64_t>(ext + 24 * i + 8);
    l.checksum = Load<uint64_t>(ext + 24 * i + 16);
    if (l.offset != expected_offset) {
      return DataLoss(absl::StrCat("layer ", i, " offset=", l.offset,
                                   ", expected ", expected_offset,
                                   " (layers are contiguous)"));
    }
    if (l.size > kMaxObjectBytes || l.offset + l.size > kMaxObjectBytes) {
      return DataLoss(absl::StrCat("layer ", i, " size=", l.size, " exceeds ",
                                   kMaxObjectBytes));
    }
    expected_offset = l.offset + l.size;
  }
  if (h.IsRaw()) {
    if (h.kv_heads == 0 || h.head_dim == 0 || h.token_count == 0 ||
        (h.layout == KvLayout::kLatent && h.kv_heads != 1)) {
      return DataLoss(absl::StrCat("raw chunk geometry kv_heads=", h.kv_heads,
                                   " head_dim=", h.head_dim,
                                   " tokens=", h.token_count, " is invalid"));
    }
    const uint64_t tensors = h.layout == KvLayout::kLatent ? 1 : 2;
    const uint64_t layer_bytes = tensors * h.kv_heads *
                                 uint64_t{h.token_count} * h.head_dim *
                                 DTypeSize(h.dtype);
    for (uint32_t i = 0; i < h.num_layers; ++i) {
      if (h.layers[i].size != layer_bytes) {
        return DataLoss(absl::StrCat("raw layer ", i,
                                     " size=", h.layers[i].size,
                                     ", geometry implies ", layer_bytes));
      }
    }
  }
  return h;
}

absl::Status VerifyLayers(const ChunkHeader& header,
                          absl::Span<const uint8_t> object,
                          uint32_t layer_begin, uint32_t layer_end) {
  for (uint32_t i = layer_begin; i < layer_end && i < header.num_layers; ++i) {
    const LayerExtent& l = header.layers[i];
    if (l.offset + l.size > object.size()) {
      return DataLoss(absl::StrCat("layer ", i, " ends at ", l.offset + l.size,
                                   " past the object's ", object.size(),
                                   " bytes"));
    }
    if (Checksum64(object.subspan(l.offset, l.size)) != l.checksum) {
      return DataLoss(absl::StrCat("layer ", i, " checksum mismatch"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ChunkHeader> VerifyChunkObject(
    absl::Span<const uint8_t> object) {
  auto header = DecodeChunkHeader(object);
  if (!header.ok()) {
    if (absl::IsOutOfRange(header.status()))
      return DataLoss(header.status().message());
    return header.status();
  }
  if (header->ObjectSize() != object.size()) {
    return DataLoss(absl::StrCat("object is ", object.size(),
                                 " bytes but its header describes ",
                                 header->ObjectSize()));
  }
  KVD_RETURN_IF_ERROR(VerifyLayers(*header, object, 0, header->num_layers));
  return header;
}

absl::Status SealChunkObject(const ModelSpec& spec, const ChunkIdentity& id,
                             absl::Span<const uint64_t> layer_sizes,
                             absl::Span<uint8_t> object) {
  KVD_RETURN_IF_ERROR(spec.Validate());
  if (layer_sizes.size() != spec.num_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("layers has ", layer_sizes.size(),
                     " entries, spec.num_layers=", spec.num_layers));
  }
  if (id.codec_chain.size() > kMaxCodecChainBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("codec_chain has ", id.codec_chain.size(),
                     " bytes, limit ", kMaxCodecChainBytes));
  }
  if (id.token_count == 0 || id.token_count > spec.chunk_tokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("token_count=", id.token_count,
                     " is outside [1, chunk_tokens=", spec.chunk_tokens, "]"));
  }
  if (id.codec_chain.empty()) {
    for (size_t i = 0; i < layer_sizes.size(); ++i) {
      if (layer_sizes[i] != spec.LayerBytes(id.token_count)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "layer ", i, " has ", layer_sizes[i], " bytes, a raw layer of ",
            id.token_count, " tokens has ", spec.LayerBytes(id.token_count)));
      }
    }
  }
  const uint32_t header_size =
      ChunkHeaderSize(id.codec_chain.size(), spec.num_layers);
  uint64_t total = header_size;
  for (uint64_t size : layer_sizes) total += size;
  if (object.size() != total) {
    return absl::InvalidArgumentError(absl::StrCat("object has ", object.size(),
                                                   " bytes, its header and ",
                                                   "layers take ", total));
  }
  uint8_t* p = object.data();
  Store<uint32_t>(p, kChunkMagic);
  Store<uint16_t>(p + 4, kChunkFormatVersion);
  Store<uint32_t>(p + 8, header_size);
  Store<uint32_t>(p + 12, id.token_count);
  Store<uint32_t>(p + 16, spec.num_layers);
  Store<uint32_t>(p + 20, spec.kv_heads);
  Store<uint32_t>(p + 24, spec.head_dim);
  p[28] = static_cast<uint8_t>(spec.dtype);
  p[29] = static_cast<uint8_t>(spec.layout);
  std::memcpy(p + 32, id.namespace_fp.bytes.data(), ChunkKey::kSize);
  std::memcpy(p + 64, id.key.bytes.data(), ChunkKey::kSize);
  std::memcpy(p + 96, id.parent.bytes.data(), ChunkKey::kSize);
  Store<uint32_t>(p + 128, static_cast<uint32_t>(id.codec_chain.size()));
  std::memcpy(p + kChunkHeaderFixedBytes, id.codec_chain.data(),
              id.codec_chain.size());
  uint8_t* ext = p + kChunkHeaderFixedBytes +
                 Pad8(static_cast<uint32_t>(id.codec_chain.size()));
  uint64_t offset = header_size;
  for (size_t i = 0; i < layer_sizes.size(); ++i) {
    Store<uint64_t>(ext + 24 * i, offset);
    Store<uint64_t>(ext + 24 * i + 8, layer_sizes[i]);
    Store<uint64_t>(ext + 24 * i + 16,
                    Checksum64(object.subspan(offset, layer_sizes[i])));
    offset += layer_sizes[i];
  }
  Store<uint64_t>(p + header_size - 8,
                  Checksum64(absl::Span<const uint8_t>(p, header_size - 8)));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint8_t>> EncodeChunkObject(
    const ModelSpec& spec, const ChunkIdentity& id,
    absl::Span<const absl::Span<const uint8_t>> layers) {
  // SealChunkObject checks everything (the codec chain's size first).
  const uint64_t header_size = ChunkHeaderSize(
      std::min<size_t>(id.codec_chain.size(), kMaxCodecChainBytes),
      layers.size());
  std::vector<uint64_t> sizes;
  uint64_t total = header_size;
  for (const auto& l : layers) {
    sizes.push_back(l.size());
    total += l.size();
  }
  std::vector<uint8_t> out(total);
  uint64_t offset = header_size;
  for (const auto& l : layers) {
    if (!l.empty()) std::memcpy(out.data() + offset, l.data(), l.size());
    offset += l.size();
  }
  KVD_RETURN_IF_ERROR(SealChunkObject(spec, id, sizes, absl::MakeSpan(out)));
  return out;
}

bool ChunkSelection::IsWholeLayers(const ChunkHeader& h) const {
  return head_begin == 0 && std::min(head_end, h.kv_heads) == h.kv_heads;
}

absl::StatusOr<std::vector<ByteRange>> SelectByteRanges(
    const ChunkHeader& h, const ChunkSelection& sel) {
  std::vector<ByteRange> out;
  auto append = [&out](uint64_t offset, uint64_t length) {
    if (!out.empty() && out.back().offset + out.back().length == offset) {
      out.back().length += length;
    } else {
      out.push_back({offset, length});
    }
  };
  if (!sel.ranges.empty()) {
    const uint64_t size = h.ObjectSize();
    for (const ByteRange& r : sel.ranges) {
      if (r.length == 0 || r.offset > size || r.length > size - r.offset) {
        return absl::InvalidArgumentError(
            absl::StrCat("byte range [", r.offset, ", +", r.length,
                         ") is empty or outside the ", size, "-byte object"));
      }
      append(r.offset, r.length);
    }
    return out;
  }
  const uint32_t layer_end = std::min(sel.layer_end, h.num_layers);
  const uint32_t head_end = std::min(sel.head_end, h.kv_heads);
  if (sel.layer_begin >= layer_end) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer range [", sel.layer_begin, ", ", sel.layer_end,
                     ") is empty for num_layers=", h.num_layers));
  }
  if (sel.head_begin >= head_end) {
    return absl::InvalidArgumentError(
        absl::StrCat("head range [", sel.head_begin, ", ", sel.head_end,
                     ") is empty for kv_heads=", h.kv_heads));
  }
  if (sel.with_header) append(0, h.header_size);
  if (sel.IsWholeLayers(h)) {
    for (uint32_t i = sel.layer_begin; i < layer_end; ++i) {
      append(h.layers[i].offset, h.layers[i].size);
    }
    return out;
  }
  if (!h.IsRaw()) {
    return absl::InvalidArgumentError(
        absl::StrCat("head slice [", sel.head_begin, ", ", head_end,
                     ") needs a raw chunk; codec_chain='", h.codec_chain, "'"));
  }
  const uint64_t head_bytes =
      uint64_t{h.token_count} * h.head_dim * DTypeSize(h.dtype);
  const uint64_t tensor_bytes = head_bytes * h.kv_heads;
  const uint32_t tensors = h.layout == KvLayout::kLatent ? 1 : 2;
  for (uint32_t i = sel.layer_begin; i < layer_end; ++i) {
    for (uint32_t t = 0; t < tensors; ++t) {
      append(
          h.layers[i].offset + t * tensor_bytes + sel.head_begin * head_bytes,
          (head_end - sel.head_begin) * head_bytes);
    }
  }
  return out;
}

}  // namespace kvd
