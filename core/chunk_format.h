// The chunk object format (DESIGN.md §3.2).
//
//   object = header | layer 0 | layer 1 | ... | layer L-1
//   layer  = K | V (or one latent tensor), each [kv_head][token][head_dim]
//            in the namespace dtype before codecs; after codecs, opaque bytes.
//
// Header, little-endian:
//   0   u32  magic "KVDC"
//   4   u16  version (kChunkFormatVersion)
//   6   u16  flags (must be 0 in version 1)
//   8   u32  header_size (bytes; layer 0 starts here)
//   12  u32  token_count
//   16  u32  num_layers
//   20  u32  kv_heads
//   24  u32  head_dim
//   28  u8   dtype, u8 layout, u16 reserved (0)
//   32  [32] namespace fingerprint
//   64  [32] chunk key
//   96  [32] parent chunk key (zeros for the first chunk of a prompt)
//   128 u32  codec_len, then codec_len bytes of codec chain text, zero padded
//            to a multiple of 8
//   ... num_layers x {u64 offset, u64 size, u64 xxh3-64 of the layer bytes}
//   ... u64  xxh3-64 of every header byte before it
//
// Layers are contiguous and in order; the object ends where the last layer
// ends. Readers verify the header checksum, sizes and version, and each layer
// checksum before handing bytes out: a corrupt chunk is kDataLoss (a miss).
#ifndef KVDEPOT_CORE_CHUNK_FORMAT_H_
#define KVDEPOT_CORE_CHUNK_FORMAT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/chunk_key.h"
#include "core/model_spec.h"

namespace kvd {

inline constexpr uint32_t kChunkMagic = 0x4344564b;  // "KVDC" little-endian
inline constexpr uint16_t kChunkFormatVersion = 1;
inline constexpr uint32_t kMaxCodecChainBytes = 1024;
inline constexpr uint32_t kMaxChunkLayers = 1024;
// Bytes before the codec text (fixed part of the header).
inline constexpr uint32_t kChunkHeaderFixedBytes = 132;

struct LayerExtent {
  uint64_t offset = 0;  // from the start of the object
  uint64_t size = 0;
  uint64_t checksum = 0;  // xxh3-64 of the layer bytes
};

struct ChunkHeader {
  uint16_t version = kChunkFormatVersion;
  uint32_t header_size = 0;
  uint32_t token_count = 0;
  uint32_t num_layers = 0;
  uint32_t kv_heads = 0;
  uint32_t head_dim = 0;
  DType dtype = DType::kBf16;
  KvLayout layout = KvLayout::kSeparateKV;
  ChunkKey namespace_fp;
  ChunkKey key;
  ChunkKey parent;
  std::string codec_chain;  // empty: raw canonical layout
  std::vector<LayerExtent> layers;

  // Total object bytes: header plus every layer.
  uint64_t ObjectSize() const;
  // True when layers hold the canonical layout (no codec applied), so head
  // slices can be addressed.
  bool IsRaw() const { return codec_chain.empty(); }
};

// Bytes the encoded header takes for a codec chain and layer count.
uint32_t ChunkHeaderSize(size_t codec_chain_bytes, uint32_t num_layers);

// Decodes and validates a header from the first bytes of an object. `bytes`
// may be the whole object or just a prefix that holds the header.
// kDataLoss: bad magic, checksum or inconsistent extents; kInvalidArgument:
// unsupported version, bad enum or out-of-range count; kOutOfRange: `bytes`
// is shorter than the header claims (read more and retry).
absl::StatusOr<ChunkHeader> DecodeChunkHeader(absl::Span<const uint8_t> bytes);

// Decodes the header of a whole object and checks that the object is exactly
// header plus layers long and that every layer checksum matches.
absl::StatusOr<ChunkHeader> VerifyChunkObject(absl::Span<const uint8_t> object);

// Checks the checksums of layers [layer_begin, layer_end) of `object`.
// REQUIRES: header came from DecodeChunkHeader of the same object.
absl::Status VerifyLayers(const ChunkHeader& header,
                          absl::Span<const uint8_t> object,
                          uint32_t layer_begin, uint32_t layer_end);

// Copies a whole object whose header was decoded from `src` to `dst` (which
// must hold header.ObjectSize() bytes), checking every layer checksum in the
// same pass (CopyWithChecksum64). kDataLoss names the first bad layer; `dst`
// then holds a partial copy. REQUIRES: `src` does not change during the call.
absl::Status CopyVerifiedObject(const ChunkHeader& header, const uint8_t* src,
                                uint8_t* dst);

// Builds a complete object. `layers[i]` holds layer i's bytes; for a raw
// chunk (empty codec chain) each must be exactly spec.LayerBytes(tokens).
struct ChunkIdentity {
  ChunkKey namespace_fp;
  ChunkKey key;
  ChunkKey parent;
  uint32_t token_count = 0;
  std::string codec_chain;
};
absl::StatusOr<std::vector<uint8_t>> EncodeChunkObject(
    const ModelSpec& spec, const ChunkIdentity& id,
    absl::Span<const absl::Span<const uint8_t>> layers);

// The same in place: `object` is ChunkHeaderSize(codec chain, layers) bytes
// of header to write, then the layers (layer_sizes[i] bytes each) already
// back to back; writes the header, checksums included. kInvalidArgument as
// EncodeChunkObject, or when object.size() is not header plus layers.
absl::Status SealChunkObject(const ModelSpec& spec, const ChunkIdentity& id,
                             absl::Span<const uint64_t> layer_sizes,
                             absl::Span<uint8_t> object);

struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
  friend bool operator==(const ByteRange&, const ByteRange&) = default;
};

// A part of a chunk to read: layers [layer_begin, layer_end) and, for raw
// chunks, KV heads [head_begin, head_end) of each of their tensors; preceded
// by the header when `with_header`, so the reader can check the layers
// against their checksums. Or, when `ranges` is not empty, exactly those
// bytes of the object, in that order (a reader recalling single tokens:
// compress/cluster/). The default selects every layer and head.
struct ChunkSelection {
  uint32_t layer_begin = 0;
  uint32_t layer_end = UINT32_MAX;  // clamped to num_layers
  uint32_t head_begin = 0;
  uint32_t head_end = UINT32_MAX;  // clamped to kv_heads
  bool with_header = false;
  std::vector<ByteRange> ranges;  // when set, the fields above are unused

  bool IsWholeLayers(const ChunkHeader& h) const;
};

// The byte ranges of the object that hold `sel`: sel.ranges when set (each
// must be non-empty and inside the object); otherwise the header when
// sel.with_header, then in layer-major order (for each layer: K heads, then V
// heads). Adjacent ranges are merged.
// kInvalidArgument for an empty or out-of-range selection, or a head slice of
// a chunk whose codec chain is not empty.
absl::StatusOr<std::vector<ByteRange>> SelectByteRanges(
    const ChunkHeader& header, const ChunkSelection& sel);

// xxh3-64 of `data`: the checksum used for layers, headers and SSD records.
uint64_t Checksum64(absl::Span<const uint8_t> data);

// Copies n bytes from `src` to `dst` and returns Checksum64 of them, in one
// pass over memory (each block is hashed while in L1, then copied with
// streaming stores). The copy is visible to other threads on return.
// REQUIRES: `src` does not change during the call.
uint64_t CopyWithChecksum64(uint8_t* dst, const uint8_t* src, uint64_t n);

}  // namespace kvd

#endif  // KVDEPOT_CORE_CHUNK_FORMAT_H_
