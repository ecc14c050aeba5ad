// Fuzzes the chunk-object decoder: any input must yield a Status or a header
// whose extents lie inside the input, never a crash or an out-of-bounds read.
#include <cstddef>
#include <cstdint>

#include "core/check.h"
#include "core/chunk_format.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::Span<const uint8_t> bytes(data, size);
  auto header = kvd::DecodeChunkHeader(bytes);
  auto object = kvd::VerifyChunkObject(bytes);
  if (object.ok()) {
    KVD_CHECK(object->ObjectSize() == size, "verified object size mismatch");
    auto ranges = kvd::SelectByteRanges(*object, kvd::ChunkSelection{});
    KVD_CHECK(ranges.ok(), "whole selection of a verified object failed");
    for (const kvd::ByteRange& r : *ranges) {
      KVD_CHECK(r.offset + r.length <= size, "range outside object");
    }
  }
  if (header.ok()) {
    kvd::ChunkSelection sel;
    sel.layer_begin = header->num_layers / 2;
    sel.head_end = 1;
    (void)kvd::SelectByteRanges(*header, sel);
  }
  return 0;
}
