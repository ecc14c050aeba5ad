// Entropy coding of quantized KV symbols: static rANS with one frequency
// model per stream, as CacheGen does per (layer, channel)
// (shared/COMPRESSION.md). Written here because no library in Debian exposes
// an rANS/FSE API (zstd's FSE and huff0 are internal); kept to this header,
// entropy_coder.cc (the rANS lanes, mode choice and layout) and internal/
// (bit I/O, frequency tables).
//
// Encoded layout (bit fields LSB-first, then whole bytes):
//
//   side info  u8 version, u8 alphabet-1, var num_streams, var stream_len
//              (var = 6-bit width w, then w bits; nothing more follows when
//              stream_len is 0), 1 bit has_shared [+ table], then per stream
//              a 2-bit mode [+ symbol | table], then for the rANS streams
//              var base, 6-bit width w, w bits of (payload bytes - base)
//              each; zero bits to a byte boundary.
//   payloads   the rANS ones in stream order (u32 final encoder state, then
//              the renormalization bytes in decoding order), then the raw
//              ones (ceil(stream_len * bit_width(alphabet-1) / 8) bytes of
//              LSB-first codes each).
//   table      4-bit scale (M = 2^scale, 1..12), used range lo < hi
//              (bit_width(alphabet-1) bits each), 4-bit Rice parameter k, the
//              frequencies of lo..hi-1 as Rice(k) codes; freq[hi] = M - sum,
//              every frequency < M.
//
// Stream modes, chosen per stream by estimated size (exact table bits +
// sum(count * log2(M / freq)) + 28 bits of rANS final state, measured):
//   const   one distinct symbol: just the symbol.
//   raw     bit-packing, when no model beats it (short or flat streams).
//   own     a table of its own at the scale M = 2^2..2^12 minimizing table
//           + data bits. Streams of 768 4-bit symbols mostly pick M = 2^6..
//           2^8, whose table costs ~half a 12-bit one for a small precision
//           loss: 1.1% smaller output than always M = 2^12 on the bench data.
//   shared  one table for the whole call, fitted to every modeled stream,
//           then refitted to the streams it wins; sent when their savings
//           exceed its size. On the bench data it saves 0.5% (per-layer
//           bins: spreads differ by channel) to 2.2% (per-channel min-max:
//           all channels alike, 91% of them take it).
// Measured (entropy_coder_bench, 1024 streams x 768 4-bit symbols of
// quantized Gaussians, one core of a 2.3 GHz Xeon): 3.0-4.5% above the
// streams' empirical entropy, 13-17% smaller than zstd -3; encode ~200 MB/s
// and decode ~330-365 MB/s of symbols. 8-bit symbols in streams this short
// gain nothing over zstd (the tables cost what the models save).
//
// rANS: 32-bit state in [2^23, 2^31), byte-wise renormalization, one state
// per stream. The payload sizes let 4 streams be coded in lockstep, their
// dependency chains overlapping (2.5x the decode and 1.7x the encode speed
// of one at a time), and let a decoder start any stream on its own.
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
