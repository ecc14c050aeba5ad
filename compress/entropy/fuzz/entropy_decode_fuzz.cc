// Fuzzes EntropyDecode. Input: u8 alphabet-1, u8 num_streams-1, u16
// stream_len (little-endian, taken mod 4097), then the encoded bytes. Any
// input must give OK or kDataLoss, never a crash or an out-of-bounds access;
// what decodes must re-encode and decode to the same symbols.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "compress/entropy/entropy_coder.h"
#include "core/check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  const uint32_t alphabet = data[0] + 1u;
  const uint32_t streams = data[1] + 1u;
  const uint32_t len = (data[2] | data[3] << 8) % 4097;
  if (alphabet < 2) return 0;
  std::vector<uint8_t> out(size_t{streams} * len);
  const absl::Span<const uint8_t> encoded(data + 4, size - 4);
  const absl::Status s = kvd::compress::EntropyDecode(
      encoded, streams, alphabet, absl::MakeSpan(out));
  if (!s.ok()) {
    KVD_CHECK(s.code() == absl::StatusCode::kDataLoss,
              "decode error not kDataLoss");
    return 0;
  }
  for (uint8_t v : out)
    KVD_CHECK(v < alphabet, "decoded symbol outside alphabet");
  auto again = kvd::compress::EntropyEncode(out, streams, alphabet);
  KVD_CHECK(again.ok(), "re-encoding decoded symbols failed");
  std::vector<uint8_t> back(out.size());
  KVD_CHECK(kvd::compress::EntropyDecode(*again, streams, alphabet,
                                         absl::MakeSpan(back))
                .ok(),
            "re-encoded symbols do not decode");
  KVD_CHECK(back == out, "re-encoded symbols decode differently");
  return 0;
}
