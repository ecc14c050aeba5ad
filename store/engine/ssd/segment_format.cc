#include "store/engine/ssd/segment_format.h"

#include <bit>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/chunk_format.h"
#include "core/status.h"
#include "store/engine/ssd/aligned_buffer.h"

namespace kvd {
namespace {

template <typename T>
T Load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;  // the format is little-endian, like every host we build for
}

template <typename T>
void Store(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

static_assert(std::endian::native == std::endian::little,
              "segment format assumes little-endian");

}  // namespace

uint32_t RecordPayloadOffset(size_t codec_len, uint64_t payload_len) {
  const uint32_t header_len = RecordHeaderLen(codec_len);
  return payload_len < kAlignedPayloadMinBytes
             ? header_len
             : static_cast<uint32_t>(AlignUp(header_len));
}

uint64_t RecordSize(size_t codec_len, uint64_t payload_len) {
  return AlignUp(RecordPayloadOffset(codec_len, payload_len) + payload_len);
}

absl::Status EncodeRecordHeader(const ChunkKey& key, const ChunkKey& parent,
                                std::string_view codec, uint64_t payload_len,
                                uint64_t payload_checksum,
                                absl::Span<uint8_t> dst) {
  if (codec.size() > kMaxRecordCodecBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "codec length=", codec.size(), " exceeds max=", kMaxRecordCodecBytes));
  }
  if (payload_len > kMaxRecordPayloadBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "payload_len=", payload_len, " exceeds max=", kMaxRecordPayloadBytes));
  }
  const uint32_t header_len = RecordHeaderLen(codec.size());
  if (dst.size() < header_len) {
    return absl::InvalidArgumentError(
        absl::StrCat("record header buffer size=", dst.size(),
                     " < header_len=", header_len));
  }
  uint8_t* p = dst.data();
  Store<uint32_t>(p + 0, kRecordMagic);
  Store<uint16_t>(p + 4, kRecordVersion);
  Store<uint16_t>(p + 6, static_cast<uint16_t>(codec.size()));
  Store<uint64_t>(p + 8, payload_len);
  Store<uint64_t>(p + 16, payload_checksum);
  Store<uint64_t>(p + 24, 0);
  std::memcpy(p + 32, key.bytes.data(), ChunkKey::kSize);
  std::memcpy(p + 64, parent.bytes.data(), ChunkKey::kSize);
  if (!codec.empty())
    std::memcpy(p + kRecordFixedBytes, codec.data(), codec.size());
  const uint32_t sum_at =
      kRecordFixedBytes + static_cast<uint32_t>(codec.size());
  Store<uint64_t>(p + sum_at, Checksum64(absl::MakeConstSpan(p, sum_at)));
  return absl::OkStatus();
}

absl::StatusOr<RecordHeader> DecodeRecordHeader(absl::Span<const uint8_t> bytes,
                                                bool allow_short) {
  if (bytes.size() < kRecordFixedBytes + 8) {
    return absl::DataLossError(
        absl::StrCat("record header: only ", bytes.size(),
                     " bytes, need at least ", kRecordFixedBytes + 8));
  }
  const uint8_t* p = bytes.data();
  const uint32_t magic = Load<uint32_t>(p);
  if (magic != kRecordMagic) {
    return absl::DataLossError(absl::StrCat("record magic=0x", absl::Hex(magic),
                                            ", expected 0x",
                                            absl::Hex(kRecordMagic)));
  }
  const uint16_t codec_len = Load<uint16_t>(p + 6);
  if (codec_len > kMaxRecordCodecBytes) {
    return absl::DataLossError(absl::StrCat(
        "record codec_len=", codec_len, " exceeds max=", kMaxRecordCodecBytes));
  }
  const uint32_t header_len = RecordHeaderLen(codec_len);
  if (bytes.size() < header_len) {
    return absl::DataLossError(absl::StrCat("record header_len=", header_len,
                                            " runs past the ", bytes.size(),
                                            " bytes available"));
  }
  const uint32_t sum_at = header_len - 8;
  const uint64_t stored_sum = Load<uint64_t>(p + sum_at);
  const uint64_t actual_sum = Checksum64(absl::MakeConstSpan(p, sum_at));
  if (stored_sum != actual_sum) {
    return absl::DataLossError(
        absl::StrCat("record header checksum=0x", absl::Hex(stored_sum),
                     " does not match computed 0x", absl::Hex(actual_sum)));
  }
  // The checksum holds, so the fields below are what the writer wrote.
  const uint16_t version = Load<uint16_t>(p + 4);
  if (version != kRecordVersion) {
    return absl::InvalidArgumentError(absl::StrCat("record version=", version,
                                                   " is not supported (want ",
                                                   kRecordVersion, ")"));
  }
  if (Load<uint64_t>(p + 24) != 0) {
    return absl::DataLossError("record reserved field is not 0");
  }
  RecordHeader h;
  h.payload_len = Load<uint64_t>(p + 8);
  if (h.payload_len > kMaxRecordPayloadBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("record payload_len=", h.payload_len,
                     " exceeds max=", kMaxRecordPayloadBytes));
  }
  h.payload_checksum = Load<uint64_t>(p + 16);
  h.key = ChunkKey::FromBytes(p + 32);
  h.parent = ChunkKey::FromBytes(p + 64);
  h.codec = std::string_view(
      reinterpret_cast<const char*>(p + kRecordFixedBytes), codec_len);
  h.header_len = header_len;
  h.payload_offset = RecordPayloadOffset(codec_len, h.payload_len);
  h.record_len = RecordSize(codec_len, h.payload_len);
  if (!allow_short && h.record_len > bytes.size()) {
    return absl::DataLossError(absl::StrCat(
        "record length=", h.record_len, " (payload_len=", h.payload_len,
        ") runs past the ", bytes.size(), " bytes available"));
  }
  return h;
}

namespace {

absl::Status CheckZero(absl::Span<const uint8_t> bytes, uint64_t base,
                       const char* what) {
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (bytes[i] != 0) {
      return absl::DataLossError(absl::StrCat(
          "record ", what, " byte at offset=", base + i, " is not 0"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<RecordHeader> VerifyRecordPieces(
    absl::Span<const uint8_t> head, absl::Span<const uint8_t> payload,
    absl::Span<const uint8_t> tail) {
  absl::StatusOr<RecordHeader> h =
      DecodeRecordHeader(head, /*allow_short=*/true);
  if (!h.ok()) return h.status();
  const uint64_t tail_len = h->record_len - h->payload_offset - h->payload_len;
  if (head.size() != h->payload_offset || payload.size() != h->payload_len ||
      tail.size() != tail_len) {
    return absl::DataLossError(absl::StrCat(
        "record pieces (", head.size(), ", ", payload.size(), ", ", tail.size(),
        " bytes) do not match payload_offset=", h->payload_offset,
        " payload_len=", h->payload_len, " record_len=", h->record_len));
  }
  const uint64_t sum = Checksum64(payload);
  if (sum != h->payload_checksum) {
    return absl::DataLossError(
        absl::StrCat("record payload checksum=0x", absl::Hex(sum),
                     " does not match header payload_checksum=0x",
                     absl::Hex(h->payload_checksum)));
  }
  KVD_RETURN_IF_ERROR(
      CheckZero(head.subspan(h->header_len), h->header_len, "gap"));
  KVD_RETURN_IF_ERROR(
      CheckZero(tail, h->payload_offset + h->payload_len, "padding"));
  return h;
}

absl::StatusOr<RecordView> DecodeRecord(absl::Span<const uint8_t> bytes) {
  absl::StatusOr<RecordHeader> h = DecodeRecordHeader(bytes);
  if (!h.ok()) return h.status();
  const uint64_t payload_end = h->payload_offset + h->payload_len;
  RecordView view;
  view.payload = bytes.subspan(h->payload_offset, h->payload_len);
  absl::StatusOr<RecordHeader> verified = VerifyRecordPieces(
      bytes.first(h->payload_offset), view.payload,
      bytes.subspan(payload_end, h->record_len - payload_end));
  if (!verified.ok()) return verified.status();
  view.header = *verified;
  return view;
}

std::string SegmentFileName(uint32_t id) {
  return absl::StrFormat("seg-%010u.kvd", id);
}

std::optional<uint32_t> ParseSegmentFileName(std::string_view name) {
  constexpr std::string_view kPrefix = "seg-", kSuffix = ".kvd";
  if (name.size() <= kPrefix.size() + kSuffix.size() ||
      !name.starts_with(kPrefix) || !name.ends_with(kSuffix)) {
    return {};
  }
  name = name.substr(kPrefix.size(),
                     name.size() - kPrefix.size() - kSuffix.size());
  if (name.size() > 10) return {};
  uint64_t id = 0;
  for (char c : name) {
    if (c < '0' || c > '9') return {};
    id = id * 10 + static_cast<uint64_t>(c - '0');
  }
  if (id == 0 || id > UINT32_MAX) return {};
  return static_cast<uint32_t>(id);
}

absl::StatusOr<std::optional<RecordView>> SegmentReader::Next() {
  if (offset_ >= segment_.size()) return std::optional<RecordView>();
  absl::Span<const uint8_t> rest = segment_.subspan(offset_);
  // An all-zero first block is where the writer stopped.
  const size_t probe = std::min<size_t>(rest.size(), kIoAlignment);
  bool zero = true;
  for (size_t i = 0; i < probe && zero; ++i) zero = rest[i] == 0;
  if (zero) return std::optional<RecordView>();
  absl::StatusOr<RecordView> view = DecodeRecord(rest);
  if (!view.ok()) {
    return absl::Status(view.status().code(),
                        absl::StrCat("segment offset=", offset_, ": ",
                                     view.status().message()));
  }
  offset_ += view->header.record_len;
  return std::optional<RecordView>(*view);
}

}  // namespace kvd
