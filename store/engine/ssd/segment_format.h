// The record format of SSD segment files (DESIGN.md §3.5).
//
// A segment `seg-<id>.kvd` is an append-only sequence of records, each
// starting at a multiple of kIoAlignment (4096). Bytes past the last record
// are zero (never written) or a torn tail that no index entry points to.
//
// Record, little-endian:
//   0   u32  magic "KVDS" (kRecordMagic)
//   4   u16  version (kRecordVersion)
//   6   u16  codec_len (<= kMaxRecordCodecBytes)
//   8   u64  payload_len (<= kMaxRecordPayloadBytes)
//   16  u64  payload checksum (xxh3-64, kvd::Checksum64)
//   24  u64  reserved, must be 0
//   32  [32] chunk key
//   64  [32] parent chunk key (zeros: none)
//   96  codec_len bytes of codec chain text
//   96+codec_len  u64 header checksum (xxh3-64 of every header byte before it)
//   header_len = 104 + codec_len. The payload starts at
//   RecordPayloadOffset(codec_len, payload_len): right after the header for
//   payloads under kAlignedPayloadMinBytes, else at the next 4096 boundary, so
//   large payloads move between disk and aligned caller buffers by O_DIRECT
//   with no copy. Gaps are zero; the record is zero padded to
//   RecordSize(codec_len, payload_len), a multiple of 4096.
//
// Decoders treat every byte as untrusted: they never read out of bounds or
// crash, and return kDataLoss (bad magic, checksum, reserved bytes, padding
// or a length that runs past the bytes given) or kInvalidArgument
// (unsupported version, a length over its bound), naming the field.
#ifndef KVDEPOT_STORE_ENGINE_SSD_SEGMENT_FORMAT_H_
#define KVDEPOT_STORE_ENGINE_SSD_SEGMENT_FORMAT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/chunk_key.h"

namespace kvd {

inline constexpr uint32_t kRecordMagic = 0x5344564b;  // "KVDS" little-endian
inline constexpr uint16_t kRecordVersion = 1;
inline constexpr uint32_t kRecordFixedBytes = 96;  // before the codec text
inline constexpr uint32_t kMaxRecordCodecBytes = 1024;
inline constexpr uint64_t kMaxRecordPayloadBytes = 1ull << 36;  // 64 GiB
inline constexpr uint64_t kAlignedPayloadMinBytes = 64ull << 10;

// Decoded record header. `codec` views the bytes it was decoded from.
struct RecordHeader {
  ChunkKey key;
  ChunkKey parent;
  uint64_t payload_len = 0;
  uint64_t payload_checksum = 0;
  std::string_view codec;
  uint32_t header_len = 0;      // bytes of the header itself
  uint32_t payload_offset = 0;  // of the payload inside the record
  uint64_t record_len = 0;      // padded size, a multiple of kIoAlignment
};

// A decoded and fully verified record; spans view the bytes it came from.
struct RecordView {
  RecordHeader header;
  absl::Span<const uint8_t> payload;
};

inline uint32_t RecordHeaderLen(size_t codec_len) {
  return kRecordFixedBytes + static_cast<uint32_t>(codec_len) + 8;
}
// Where the payload starts inside the record (see above).
uint32_t RecordPayloadOffset(size_t codec_len, uint64_t payload_len);
// Padded bytes a record takes on disk.
uint64_t RecordSize(size_t codec_len, uint64_t payload_len);

// Encodes a header for `payload` into dst[0, RecordHeaderLen(codec.size())).
// kInvalidArgument when codec or payload exceed their bounds or dst is too
// small. Does not touch the payload or padding bytes.
absl::Status EncodeRecordHeader(const ChunkKey& key, const ChunkKey& parent,
                                std::string_view codec, uint64_t payload_len,
                                uint64_t payload_checksum,
                                absl::Span<uint8_t> dst);

// Decodes and verifies the header at the start of `bytes` (header checksum,
// magic, version, bounds); checks that the padded record fits in `bytes`
// unless `allow_short` (then only the header must fit).
absl::StatusOr<RecordHeader> DecodeRecordHeader(absl::Span<const uint8_t> bytes,
                                                bool allow_short = false);

// Decodes the record at the start of `bytes` and verifies everything: header,
// payload checksum and zero padding.
absl::StatusOr<RecordView> DecodeRecord(absl::Span<const uint8_t> bytes);

// Segment file names: "seg-<id>.kvd", id zero-padded to 10 digits.
std::string SegmentFileName(uint32_t id);
// The id of a segment file name (any digit count up to 10, id > 0), or
// std::nullopt for any other name.
std::optional<uint32_t> ParseSegmentFileName(std::string_view name);

// Verifies a record read in pieces: `head` is its first payload_offset bytes,
// `payload` the payload (wherever the caller put it), `tail` the bytes from
// the end of the payload to the end of the record. Same checks and errors as
// DecodeRecord.
absl::StatusOr<RecordHeader> VerifyRecordPieces(
    absl::Span<const uint8_t> head, absl::Span<const uint8_t> payload,
    absl::Span<const uint8_t> tail);

// Walks the records of a segment image in order. Not thread-safe; `segment`
// must outlive the reader.
class SegmentReader {
 public:
  explicit SegmentReader(absl::Span<const uint8_t> segment)
      : segment_(segment) {}

  // The next record, std::nullopt at the clean end of the segment (end of the
  // bytes, or an all-zero block where the next record would start), or an
  // error naming the field and the record offset. After an error the reader
  // stays at the bad record and returns the same error again.
  absl::StatusOr<std::optional<RecordView>> Next();

  // Offset of the next record to decode.
  uint64_t offset() const { return offset_; }

 private:
  absl::Span<const uint8_t> segment_;
  uint64_t offset_ = 0;
};

}  // namespace kvd

#endif  // KVDEPOT_STORE_ENGINE_SSD_SEGMENT_FORMAT_H_
