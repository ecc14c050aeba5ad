// libFuzzer target: SegmentReader and DecodeRecordHeader on arbitrary bytes.
// They must never crash or read out of bounds, and what they accept must be
// self-consistent.
#include <cstddef>
#include <cstdint>

#include "core/check.h"
#include "store/engine/ssd/aligned_buffer.h"
#include "store/engine/ssd/segment_format.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::Span<const uint8_t> bytes(data, size);
  kvd::SegmentReader reader(bytes);
  uint64_t previous = 0;
  while (true) {
    absl::StatusOr<std::optional<kvd::RecordView>> next = reader.Next();
    if (!next.ok() || !next->has_value()) break;
    const kvd::RecordView& view = **next;
    KVD_CHECK(view.header.record_len % kvd::kIoAlignment == 0,
              "record_len not aligned");
    KVD_CHECK(view.header.record_len >=
                  uint64_t{view.header.header_len} + view.payload.size(),
              "record shorter than header + payload");
    KVD_CHECK(view.payload.data() >= data &&
                  view.payload.data() + view.payload.size() <= data + size,
              "payload outside the input");
    KVD_CHECK(view.payload.size() == view.header.payload_len,
              "payload size mismatch");
    KVD_CHECK(view.header.codec.size() <= kvd::kMaxRecordCodecBytes,
              "codec too long");
    KVD_CHECK(reader.offset() > previous && reader.offset() <= size,
              "reader did not advance");
    previous = reader.offset();
  }
  absl::StatusOr<kvd::RecordHeader> header =
      kvd::DecodeRecordHeader(bytes, /*allow_short=*/true);
  if (header.ok()) {
    KVD_CHECK(header->header_len <= size, "header runs past the input");
  }
  return 0;
}
