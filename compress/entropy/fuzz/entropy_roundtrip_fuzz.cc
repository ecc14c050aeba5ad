// Fuzzes EntropyEncode then EntropyDecode. Input: u8 alphabet-1, u8
// num_streams-1, u8 skew, then symbol bytes (byte % alphabet, or with skew
// odd, the count of trailing zero bits capped at alphabet-1, a geometric
// law). Encoding must succeed and decode to the same symbols.
#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "compress/entropy/entropy_coder.h"
#include "core/check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3 || data[0] == 0) return 0;
  const uint32_t alphabet = data[0] + 1u;
  const uint32_t streams = data[1] % 64 + 1u;
  const bool geometric = data[2] & 1;
  const size_t n = (size - 3) / streams * streams;
  std::vector<uint8_t> symbols(n);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t b = data[3 + i];
    symbols[i] = static_cast<uint8_t>(
        geometric
            ? std::min<uint32_t>(std::countr_zero(b | 0x100u), alphabet - 1)
            : b % alphabet);
  }
  auto encoded = kvd::compress::EntropyEncode(symbols, streams, alphabet);
  KVD_CHECK(encoded.ok(), "encode failed");
  std::vector<uint8_t> out(n);
  KVD_CHECK(kvd::compress::EntropyDecode(*encoded, streams, alphabet,
                                         absl::MakeSpan(out))
                .ok(),
            "decode of a fresh encoding failed");
  KVD_CHECK(out == symbols, "round trip changed the symbols");
  return 0;
}
