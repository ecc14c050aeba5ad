#include "compress/entropy/internal/frequency_table.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include "compress/entropy/internal/corrupt.h"

namespace kvd::compress::entropy_internal {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

}  // namespace

double DataBits(const uint32_t* counts, uint32_t alphabet, const Table& t) {
  static const auto* log2 = [] {
    auto* l = new std::array<float, (1 << kMaxScale) + 1>{};
    for (int f = 1; f <= (1 << kMaxScale); ++f) (*l)[f] = std::log2(f);
    return l;
  }();
  double bits = 0;
  for (uint32_t s = 0; s < alphabet; ++s) {
    if (counts[s] == 0) continue;
    if (s < t.lo || s > t.hi || t.freq[s] == 0) return kInf;
    bits += counts[s] * double(t.scale - (*log2)[t.freq[s]]);
  }
  return bits;
}

double TableBits(const Table& t, int sym_bits, int* k) {
  uint32_t sum = 0;
  for (uint32_t s = t.lo; s < t.hi; ++s) sum += t.freq[s];
  const int k0 = std::max(0, BitWidth(sum / (t.hi - t.lo)) - 1);
  double best = kInf;
  for (int c = std::max(0, k0 - 1); c <= std::min(k0 + 1, t.scale); ++c) {
    double bits = 0;
    for (uint32_t s = t.lo; s < t.hi; ++s) bits += (t.freq[s] >> c) + 1 + c;
    if (bits < best) best = bits, *k = c;
  }
  return 8 + 2 * sym_bits + best;
}

void PutTable(const Table& t, int sym_bits, BitWriter& w) {
  int k = 0;
  TableBits(t, sym_bits, &k);
  w.Put(t.scale, 4), w.Put(t.lo, sym_bits), w.Put(t.hi, sym_bits), w.Put(k, 4);
  for (uint32_t s = t.lo; s < t.hi; ++s) w.PutRice(t.freq[s], k);
}

absl::Status ReadTable(BitReader& r, uint32_t alphabet, int sym_bits,
                       int64_t stream, Table* t) {
  const auto fail = [&](const auto&... a) {
    return stream < 0 ? Corrupt("shared table: ", a...)
                      : Corrupt("stream ", stream, " table: ", a...);
  };
  t->scale = static_cast<int>(r.Get(4));
  t->lo = r.Get(sym_bits), t->hi = r.Get(sym_bits);
  const int k = static_cast<int>(r.Get(4));
  if (t->scale < 1 || t->scale > kMaxScale || t->lo >= t->hi ||
      t->hi >= alphabet || k > t->scale) {
    return fail("bad header scale=", t->scale, " lo=", t->lo, " hi=", t->hi,
                " k=", k);
  }
  const uint32_t m = uint32_t{1} << t->scale;
  uint32_t sum = 0;
  for (uint32_t s = t->lo; s < t->hi; ++s) {
    uint32_t q = 0;
    while (q <= (m >> k) && r.Get(1) != 0) ++q;
    const uint32_t f = (q << k) | r.Get(k);
    if (f >= m - sum) {  // leaves freq[hi] >= 1
      return fail("frequencies reach 2^scale=", m, " before symbol ", t->hi);
    }
    t->freq[s] = static_cast<uint16_t>(f);
    sum += f;
  }
  if (sum == 0) {  // BuildLut needs every frequency < 2^scale
    return fail("symbol ", t->hi, " has all of 2^scale");
  }
  t->freq[t->hi] = static_cast<uint16_t>(m - sum);
  if (r.overrun()) return fail("truncated");
  return absl::OkStatus();
}

void Normalize(const uint32_t* counts, uint32_t lo, uint32_t hi, uint64_t n,
               int scale, Table* t) {
  *t = {scale, lo, hi, {}};
  const uint64_t m = uint64_t{1} << scale;
  // Symbols that would round to 0 get 1; the others share what is left in
  // proportion, so the sum is within #symbols / 2 of 2^scale. The largest
  // frequency absorbs the difference (at most half of it at a time; it is
  // >= 2 while the sum exceeds 2^scale >= #symbols).
  uint64_t spare = m, n_big = n;
  for (uint32_t s = lo; s <= hi; ++s) {
    if (counts[s] > 0 && uint64_t{counts[s]} * m * 2 < n)
      --spare, n_big -= counts[s];
  }
  int64_t delta = static_cast<int64_t>(m);                 // 2^scale - sum
  const double per_count = double(spare) / double(n_big);  // no divisions
  for (uint32_t s = lo; s <= hi; ++s) {
    if (counts[s] == 0) continue;
    const uint64_t f = static_cast<uint64_t>(counts[s] * per_count + 0.5);
    t->freq[s] = static_cast<uint16_t>(
        uint64_t{counts[s]} * m * 2 < n ? 1 : std::max<uint64_t>(f, 1));
    delta -= t->freq[s];
  }
  do {
    const auto* big = std::max_element(&t->freq[lo], &t->freq[hi] + 1);
    const int64_t add = std::max<int64_t>(delta, -(*big / 2));
    t->freq[big - t->freq.data()] = static_cast<uint16_t>(*big + add);
    delta -= add;
  } while (delta < 0);
}

double BestTable(const uint32_t* counts, uint32_t lo, uint32_t hi, uint64_t n,
                 uint32_t used, int sym_bits, Table* best) {
  double best_bits = kInf;
  Table t;
  int k;
  for (int s = BitWidth(used - 1) + 1; s <= kMaxScale; ++s) {
    Normalize(counts, lo, hi, n, s, &t);
    const double bits =
        DataBits(counts, hi + 1, t) + TableBits(t, sym_bits, &k);
    if (bits < best_bits) {
      best_bits = bits, *best = t;
    } else if (s >= best->scale + 2) {
      break;
    }
  }
  return best_bits;
}

}  // namespace kvd::compress::entropy_internal
