// Entropy coding of quantized KV symbols: static rANS with one frequency
// model per stream, as CacheGen does per (layer, channel)
// (shared/COMPRESSION.md). Written here because no library in Debian exposes
// an rANS/FSE API (zstd's FSE and huff0 are internal); kept to this header
// and one .cc.
//
// Encoded layout (bit fields LSB-first, then whole bytes):
//
//   side info  u8 version, u8 alphabet-1, var num_streams, var stream_len
//              (var = 6-bit width w, then w bits; nothing more follows when
//              stream_len is 0), 1 bit has_shared [+ table], then per stream
//              a 2-bit mode [+ symbol | table], then for the rANS streams
//              var base, 6-bit width w, w bits of (payload bytes - base) each;
//              zero bits to a byte boundary.
//   payloads   per stream in order: nothing (const), ceil(stream_len *
//              bit_width(alphabet-1) / 8) bytes of LSB-first codes (raw), or
//              an rANS payload (own or shared table): u32 final state, then
//              renormalization bytes in decoding order.
//   table      4-bit scale (M = 2^scale, 1..12), used range lo..hi
//              (bit_width(alphabet-1) bits each), 4-bit Rice parameter k, the
//              frequencies of lo..hi-1 as Rice(k) codes; freq[hi] = M - sum.
//
// Stream modes, chosen per stream by estimated size (exact table bits plus
// sum(count * log2(M / freq)) plus the 32-bit final state):
//   const   one distinct symbol: just the symbol.
//   raw     bit-packing, when no model beats it (short or flat streams).
//   own     a table of its own at the scale 2^1..2^12 that minimizes
//           table + data: short streams pick small M (768 4-bit symbols
//           mostly pick M = 2^7), which halves the table cost of a fixed
//           12-bit table at a negligible precision loss.
//   shared  one table for the whole call, fitted to the streams that gain
//           from it (two rounds: fit on all, refit on those that chose it);
//           shipped only when the streams' savings exceed its size.
// rANS: 32-bit state in [2^23, 2^31), byte-wise renormalization, one state
// per stream; per-stream payload sizes are shipped so streams can be decoded
// independently (the decoder runs pairs of streams in lockstep).
#ifndef KVDEPOT_COMPRESS_ENTROPY_ENTROPY_CODER_H_
#define KVDEPOT_COMPRESS_ENTROPY_ENTROPY_CODER_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace kvd::compress {

// Largest stream_len the coder takes (keeps every payload size in a u32).
inline constexpr uint64_t kMaxEntropyStreamLen = uint64_t{1} << 30;

// Encodes `num_streams` symbol streams of equal length: stream s is
// symbols[s * stream_len, (s + 1) * stream_len) with stream_len =
// symbols.size() / num_streams, every symbol < alphabet. Each stream gets its
// own frequency model (or the shared one, see above). The output is
// self-describing except for the three arguments, which it records and
// EntropyDecode checks.
// kInvalidArgument: num_streams == 0, alphabet outside 2..256, symbols.size()
// not a multiple of num_streams, stream_len > kMaxEntropyStreamLen, or a
// symbol >= alphabet (the message names its index).
// Thread-safe; no state is kept between calls.
absl::StatusOr<std::vector<uint8_t>> EntropyEncode(
    absl::Span<const uint8_t> symbols, uint32_t num_streams, uint32_t alphabet);

// Decodes what EntropyEncode(symbols, num_streams, alphabet) returned into
// `out`, which must hold exactly symbols.size() bytes ([num_streams]
// [stream_len]).
// kInvalidArgument: the arguments themselves are bad (as for EntropyEncode,
// or out.size() not a multiple of num_streams).
// kDataLoss: `encoded` is not a valid encoding for these arguments: a header
// field disagrees with them, a table is malformed (scale, range, sum), a raw
// code is >= alphabet, sizes do not add up to encoded.size(), or an rANS
// payload is short, has bytes left over, or ends in a state other than the
// initial one; the message names the stream and the field. `out` is then
// partly written. Never reads outside `encoded` or writes outside `out`.
// Thread-safe; no state is kept between calls.
absl::Status EntropyDecode(absl::Span<const uint8_t> encoded,
                           uint32_t num_streams, uint32_t alphabet,
                           absl::Span<uint8_t> out);

}  // namespace kvd::compress

#endif  // KVDEPOT_COMPRESS_ENTROPY_ENTROPY_CODER_H_
