// Frequency tables of the entropy coder (compress/entropy/entropy_coder.h):
// fitting one to symbol counts, costing it, and its bit layout ("table"
// there). All functions are thread-safe; none keeps state between calls.
#ifndef KVDEPOT_COMPRESS_ENTROPY_INTERNAL_FREQUENCY_TABLE_H_
#define KVDEPOT_COMPRESS_ENTROPY_INTERNAL_FREQUENCY_TABLE_H_

#include <array>
#include <cstdint>

#include "absl/status/status.h"
#include "compress/entropy/internal/bit_io.h"

namespace kvd::compress::entropy_internal {

inline constexpr int kMaxScale = 12;  // tables sum to 2^1..2^kMaxScale

// Frequencies of symbols lo..hi, summing to 2^scale. Entries outside lo..hi
// are meaningless (ReadTable leaves them as they were).
struct Table {
  int scale = 0;
  uint32_t lo = 0, hi = 0;
  std::array<uint16_t, 256> freq{};
};

// sum(counts[s] * log2(2^scale / freq[s])) over s < alphabet: the ideal
// size of the data; infinite if a counted symbol has no frequency.
// REQUIRES: counts holds `alphabet` entries; t.scale <= kMaxScale.
double DataBits(const uint32_t* counts, uint32_t alphabet, const Table& t);

// Bits PutTable writes; *k gets the Rice parameter.
// REQUIRES: t.lo < t.hi.
double TableBits(const Table& t, int sym_bits, int* k);

// Appends t to w: 4-bit scale, lo and hi in sym_bits bits each, 4-bit Rice
// parameter k, Rice(k) codes of freq[lo..hi-1] (freq[hi] is implied).
// REQUIRES: t.lo < t.hi < 2^sym_bits; t.scale <= kMaxScale.
void PutTable(const Table& t, int sym_bits, BitWriter& w);

// Reads and checks a table that PutTable wrote; stream < 0 names the shared
// one in error messages.
// OK: *t has 1 <= scale <= kMaxScale, lo < hi < alphabet, and frequencies
// of lo..hi summing to 2^scale, each < 2^scale.
// kDataLoss (naming the stream): a bad header field, frequencies reaching
// 2^scale before hi or leaving it all to hi, or r overran its bytes. *t is
// then partly written.
absl::Status ReadTable(BitReader& r, uint32_t alphabet, int sym_bits,
                       int64_t stream, Table* t);

// Scales counts to frequencies summing to 2^scale, each counted symbol >= 1.
// REQUIRES: the counted symbols lie in lo..hi, number at most 2^scale and
// sum to n.
void Normalize(const uint32_t* counts, uint32_t lo, uint32_t hi, uint64_t n,
               int scale, Table* t);

// The table of least table + data bits, M from the power of 2 >= 2 *
// #symbols up to 2^12 (the cost is near convex in the scale: the search
// stops two past the best). Sets *best and returns its table + data bits.
// REQUIRES: as Normalize, with `used` counted symbols, 2 <= used <= 256.
double BestTable(const uint32_t* counts, uint32_t lo, uint32_t hi, uint64_t n,
                 uint32_t used, int sym_bits, Table* best);

}  // namespace kvd::compress::entropy_internal

#endif  // KVDEPOT_COMPRESS_ENTROPY_INTERNAL_FREQUENCY_TABLE_H_
