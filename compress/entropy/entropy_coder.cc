#include "compress/entropy/entropy_coder.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "core/check.h"
#include "core/status.h"

namespace kvd::compress {
namespace {

static_assert(std::endian::native == std::endian::little);

constexpr uint32_t kVersion = 1;
constexpr int kMaxScale = 12;
constexpr uint32_t kRansL = uint32_t{1} << 23;  // state in [L, 256 L)
constexpr double kFlushBits = 32;
enum Mode : uint32_t { kConst = 0, kRaw = 1, kOwn = 2, kShared = 3 };

int BitWidth(uint32_t v) { return static_cast<int>(std::bit_width(v)); }

// LSB-first bit packing.
class BitWriter {
 public:
  void Put(uint64_t value, int bits) {  // REQUIRES: bits <= 32
    acc_ |= (value & ((uint64_t{1} << bits) - 1)) << fill_;
    fill_ += bits;
    for (; fill_ >= 8; fill_ -= 8, acc_ >>= 8) bytes_.push_back(acc_ & 0xff);
  }
  void PutVar(uint32_t v) {
    Put(BitWidth(v), 6);
    Put(v, BitWidth(v));
  }
  void PutRice(uint32_t v, int k) {
    for (uint32_t q = v >> k; q > 0; q -= std::min(q, 31u)) {
      Put((uint64_t{1} << std::min(q, 31u)) - 1, std::min(q, 31u));
    }
    Put(0, 1);
    Put(v, k);
  }
  std::vector<uint8_t> Finish() && {
    if (fill_ > 0) bytes_.push_back(acc_ & 0xff);
    return std::move(bytes_);
  }

 private:
  std::vector<uint8_t> bytes_;
  uint64_t acc_ = 0;
  int fill_ = 0;
};

// Reads past the end give zero bits and set overrun().
class BitReader {
 public:
  explicit BitReader(absl::Span<const uint8_t> b) : b_(b) {}
  uint32_t Get(int bits) {  // REQUIRES: bits <= 32
    uint64_t v = 0;
    const uint64_t byte = pos_ >> 3;
    if (byte + 8 <= b_.size()) {
      std::memcpy(&v, b_.data() + byte, 8);
    } else {
      for (uint64_t i = 0; i < 5 && byte + i < b_.size(); ++i) {
        v |= uint64_t{b_[byte + i]} << (8 * i);
      }
    }
    v >>= pos_ & 7;
    pos_ += bits;
    return static_cast<uint32_t>(v & ((uint64_t{1} << bits) - 1));
  }
  uint32_t GetVar() {
    const uint32_t w = Get(6);
    if (w > 32) pos_ = b_.size() * 8 + 1;  // marks the stream bad
    return Get(std::min(w, 32u));
  }
  uint64_t pos() const { return pos_; }
  void Seek(uint64_t pos) { pos_ = pos; }
  bool overrun() const { return pos_ > b_.size() * 8; }

 private:
  absl::Span<const uint8_t> b_;
  uint64_t pos_ = 0;
};

// A frequency table over symbols lo..hi summing to 2^scale.
struct Table {
  int scale = 0;
  uint32_t lo = 0, hi = 0;
  std::array<uint16_t, 256> freq{};
};

const float* Log2Table() {  // log2(f) for f in 0..2^kMaxScale
  static const auto* table = [] {
    auto* t = new std::array<float, (1 << kMaxScale) + 1>;
    (*t)[0] = 0;
    for (int f = 1; f <= (1 << kMaxScale); ++f) (*t)[f] = std::log2(f);
    return t;
  }();
  return table->data();
}

// Bits of sum(counts[0..alphabet) * log2(M / freq)); infinity if a counted
// symbol has no frequency.
double DataBits(const uint32_t* counts, uint32_t alphabet, const Table& t) {
  const float* lg = Log2Table();
  double bits = 0;
  for (uint32_t s = 0; s < alphabet; ++s) {
    if (counts[s] == 0) continue;
    if (s < t.lo || s > t.hi || t.freq[s] == 0) {
      return std::numeric_limits<double>::infinity();
    }
    bits += counts[s] * double(t.scale - lg[t.freq[s]]);
  }
  return bits;
}

// Bits the table takes; sets *k to the Rice parameter that gives them.
double TableBits(const Table& t, int sym_bits, int* k) {
  uint32_t sum = 0;
  for (uint32_t s = t.lo; s < t.hi; ++s) sum += t.freq[s];
  const uint32_t n = t.hi - t.lo;
  const int k0 = n == 0 ? 0 : std::max(0, BitWidth(sum / n) - 1);
  double best = std::numeric_limits<double>::infinity();
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
  w.Put(t.scale, 4);
  w.Put(t.lo, sym_bits);
  w.Put(t.hi, sym_bits);
  w.Put(k, 4);
  for (uint32_t s = t.lo; s < t.hi; ++s) w.PutRice(t.freq[s], k);
}

absl::Status ReadTable(BitReader& r, uint32_t alphabet, int sym_bits,
                       absl::string_view what, Table* t) {
  t->scale = static_cast<int>(r.Get(4));
  t->lo = r.Get(sym_bits);
  t->hi = r.Get(sym_bits);
  const int k = static_cast<int>(r.Get(4));
  if (t->scale < 1 || t->scale > kMaxScale || t->lo > t->hi ||
      t->hi >= alphabet || k > t->scale) {
    return absl::DataLossError(
        absl::StrCat(what, ": bad table header scale=", t->scale, " lo=",
                     t->lo, " hi=", t->hi, " k=", k, " alphabet=", alphabet));
  }
  const uint32_t m = uint32_t{1} << t->scale;
  uint32_t sum = 0;
  for (uint32_t s = t->lo; s < t->hi; ++s) {
    uint32_t q = 0;
    while (r.Get(1) != 0 && q <= (m >> k)) ++q;
    const uint32_t f = (q << k) | r.Get(k);
    if (q > (m >> k) || f >= m - sum) {
      return absl::DataLossError(absl::StrCat(
          what, ": frequencies reach 2^scale=", m, " before symbol ", t->hi));
    }
    t->freq[s] = static_cast<uint16_t>(f);
    sum += f;
  }
  t->freq[t->hi] = static_cast<uint16_t>(m - sum);
  if (r.overrun()) return absl::DataLossError(absl::StrCat(what, ": truncated"));
  return absl::OkStatus();
}

// Scales counts to frequencies summing to 2^scale, each counted symbol >= 1.
// REQUIRES: used symbols in lo..hi, 2^scale >= their number, n = their sum.
void Normalize(const uint32_t* counts, uint32_t lo, uint32_t hi, uint64_t n,
               int scale, Table* t) {
  const uint64_t m = uint64_t{1} << scale;
  t->scale = scale, t->lo = lo, t->hi = hi;
  int64_t sum = 0;
  uint32_t top = lo;
  for (uint32_t s = lo; s <= hi; ++s) {
    const uint64_t f = (uint64_t{counts[s]} * m + n / 2) / n;
    t->freq[s] = static_cast<uint16_t>(counts[s] == 0 ? 0 : std::max<uint64_t>(f, 1));
    sum += t->freq[s];
    if (counts[s] > counts[top]) top = s;
  }
  int64_t delta = static_cast<int64_t>(m) - sum;
  if (delta >= 0 || t->freq[top] + delta >= (t->freq[top] + 1) / 2) {
    t->freq[top] = static_cast<uint16_t>(t->freq[top] + delta);
    return;
  }
  // Rare symbols rounded up to 1 overshoot M: take one at a time from the
  // largest frequencies.
  std::array<uint8_t, 256> order;
  const uint32_t used = hi - lo + 1;
  for (uint32_t i = 0; i < used; ++i) order[i] = static_cast<uint8_t>(lo + i);
  std::sort(order.begin(), order.begin() + used,
            [&](uint8_t a, uint8_t b) { return t->freq[a] > t->freq[b]; });
  while (delta < 0) {  // ends: sum > M >= used means some freq > 1
    for (uint32_t i = 0; i < used && delta < 0; ++i) {
      if (t->freq[order[i]] > 1) --t->freq[order[i]], ++delta;
    }
  }
}

// Picks the scale minimizing table + data bits (the cost is near convex in
// the scale, so the search stops two steps past the best).
double BestTable(const uint32_t* counts, uint32_t lo, uint32_t hi, uint64_t n,
                 uint32_t used, int sym_bits, Table* best) {
  double best_bits = std::numeric_limits<double>::infinity();
  Table t;
  int k;
  for (int scale = std::max(1, BitWidth(used - 1)); scale <= kMaxScale;
       ++scale) {
    Normalize(counts, lo, hi, n, scale, &t);
    const double bits = DataBits(counts, hi + 1, t) + TableBits(t, sym_bits, &k);
    if (bits < best_bits) {
      best_bits = bits, *best = t;
    } else if (scale >= best->scale + 2) {
      break;
    }
  }
  return best_bits;
}

// Encodes `in` backwards into the bytes before `end`; returns the start.
uint8_t* RansEncode(absl::Span<const uint8_t> in, const Table& t,
                    uint8_t* end) {
  std::array<uint32_t, 256> start;
  for (uint32_t s = t.lo, c = 0; s <= t.hi; ++s) start[s] = c, c += t.freq[s];
  const uint32_t x_max_unit = (kRansL >> t.scale) << 8;
  uint32_t x = kRansL;
  uint8_t* p = end;
  for (size_t i = in.size(); i-- > 0;) {
    const uint32_t f = t.freq[in[i]];
    while (x >= x_max_unit * f) *--p = static_cast<uint8_t>(x), x >>= 8;
    x = ((x / f) << t.scale) + x % f + start[in[i]];
  }
  p -= 4;
  std::memcpy(p, &x, 4);
  return p;
}

// Decoding table: per slot, symbol | (freq - 1) << 8 | (slot - start) << 20.
void BuildLut(const Table& t, std::vector<uint32_t>& lut) {
  lut.resize(size_t{1} << t.scale);
  uint32_t slot = 0;
  for (uint32_t s = t.lo; s <= t.hi; ++s) {
    for (uint32_t j = 0; j < t.freq[s]; ++j) {
      lut[slot++] = s | (uint32_t{t.freq[s]} - 1) << 8 | j << 20;
    }
  }
}

absl::Status RansDecode(absl::Span<const uint8_t> in, const uint32_t* lut,
                        int scale, uint32_t stream, absl::Span<uint8_t> out) {
  if (in.size() < 4) {
    return absl::DataLossError(absl::StrCat(
        "stream ", stream, ": rANS payload of ", in.size(), " bytes"));
  }
  const uint8_t* p = in.data() + 4;
  const uint8_t* const end = in.data() + in.size();
  uint32_t x;
  std::memcpy(&x, in.data(), 4);
  if (x < kRansL || x >= kRansL << 8) {
    return absl::DataLossError(
        absl::StrCat("stream ", stream, ": initial rANS state ", x));
  }
  const uint32_t mask = (uint32_t{1} << scale) - 1;
  for (uint8_t& o : out) {
    const uint32_t e = lut[x & mask];
    o = static_cast<uint8_t>(e);
    x = ((e >> 8 & 0xfff) + 1) * (x >> scale) + (e >> 20);
    while (x < kRansL) {
      if (p == end) {
        return absl::DataLossError(
            absl::StrCat("stream ", stream, ": rANS payload ends early"));
      }
      x = x << 8 | *p++;
    }
  }
  if (x != kRansL || p != end) {
    return absl::DataLossError(absl::StrCat(
        "stream ", stream, ": rANS ends in state ", x, " with ", end - p,
        " bytes left (want state ", kRansL, ", 0 bytes)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> CheckArgs(uint64_t size, uint32_t num_streams,
                                   uint32_t alphabet) {
  if (num_streams == 0 || alphabet < 2 || alphabet > 256 ||
      size % num_streams != 0 || size / num_streams > kMaxEntropyStreamLen) {
    return absl::InvalidArgumentError(absl::StrCat(
        "entropy coder: num_streams=", num_streams, " alphabet=", alphabet,
        " symbols=", size, " (want num_streams >= 1 dividing symbols, ",
        "alphabet 2..256, stream_len <= ", kMaxEntropyStreamLen, ")"));
  }
  return size / num_streams;
}

// What the encoder chose for a stream.
struct Plan {
  Mode mode = kRaw;
  uint8_t sym = 0;                  // const
  uint8_t scale = 0, lo = 0, hi = 0;  // own: Normalize(counts, lo, hi, scale)
  double bits = 0;                  // estimated size of the own or raw payload
};

}  // namespace

absl::StatusOr<std::vector<uint8_t>> EntropyEncode(
    absl::Span<const uint8_t> symbols, uint32_t num_streams,
    uint32_t alphabet) {
  KVD_ASSIGN_OR_RETURN(const uint64_t len,
                       CheckArgs(symbols.size(), num_streams, alphabet));
  const int sym_bits = BitWidth(alphabet - 1);
  BitWriter w;
  w.Put(kVersion, 8);
  w.Put(alphabet - 1, 8);
  w.PutVar(num_streams);
  w.PutVar(static_cast<uint32_t>(len));
  if (len == 0) return std::move(w).Finish();

  // Histograms ([num_streams][alphabet]), then each stream's best plan of
  // const, raw and own table.
  std::vector<uint32_t> counts(size_t{num_streams} * alphabet);
  std::vector<Plan> plans(num_streams);
  Table table;
  for (uint32_t s = 0; s < num_streams; ++s) {
    std::array<uint32_t, 256> c{};
    for (uint8_t v : symbols.subspan(s * len, len)) ++c[v];
    uint32_t lo = 256, hi = 0, used = 0;
    for (uint32_t v = 0; v < 256; ++v) {
      if (c[v] == 0) continue;
      if (v >= alphabet) {
        const auto* bad =
            std::find_if(symbols.begin() + s * len, symbols.end(),
                         [&](uint8_t x) { return x >= alphabet; });
        return absl::InvalidArgumentError(
            absl::StrCat("entropy coder: symbols[", bad - symbols.begin(),
                         "]=", *bad, " >= alphabet=", alphabet));
      }
      lo = std::min(lo, v), hi = v, ++used;
    }
    std::copy_n(c.begin(), alphabet, &counts[size_t{s} * alphabet]);
    Plan& plan = plans[s];
    plan.bits = static_cast<double>(len * sym_bits);
    plan.lo = static_cast<uint8_t>(lo), plan.hi = static_cast<uint8_t>(hi);
    if (used == 1) {
      plan.mode = kConst, plan.sym = static_cast<uint8_t>(lo);
      continue;
    }
    const double own =
        BestTable(c.data(), lo, hi, len, used, sym_bits, &table) + kFlushBits;
    if (own < plan.bits) {
      plan.mode = kOwn, plan.bits = own;
      plan.scale = static_cast<uint8_t>(table.scale);
    }
  }

  // The shared table: fitted to every non-const stream, then refitted to
  // the streams it wins; sent when their savings exceed its size.
  Table shared;
  std::vector<bool> use_shared(num_streams, false);
  double shared_bits = 0, saved = 0;
  for (int round = 0; round < 2 && num_streams > 1; ++round) {
    std::array<uint64_t, 256> agg{};
    for (uint32_t s = 0; s < num_streams; ++s) {
      if (plans[s].mode == kConst || (round > 0 && !use_shared[s])) continue;
      const uint32_t* c = &counts[size_t{s} * alphabet];
      for (uint32_t v = 0; v < alphabet; ++v) agg[v] += c[v];
    }
    // To 32-bit counts, every used symbol kept nonzero.
    uint64_t total = 0, n = 0;
    for (uint64_t a : agg) total += a;
    std::array<uint32_t, 256> c{};
    uint32_t lo = 256, hi = 0, used = 0;
    for (uint32_t v = 0; v < alphabet; ++v) {
      if (agg[v] == 0) continue;
      c[v] = static_cast<uint32_t>(
          std::max<uint64_t>(agg[v] / (total >> 31 | 1), 1));
      lo = std::min(lo, v), hi = v, ++used, n += c[v];
    }
    if (used < 2) break;
    shared_bits = BestTable(c.data(), lo, hi, n, used, sym_bits, &shared) -
                  DataBits(c.data(), alphabet, shared);
    saved = 0;
    for (uint32_t s = 0; s < num_streams; ++s) {
      if (plans[s].mode == kConst) continue;
      const double bits =
          DataBits(&counts[size_t{s} * alphabet], alphabet, shared) +
          kFlushBits;
      use_shared[s] = bits < plans[s].bits;
      if (use_shared[s]) saved += plans[s].bits - bits;
    }
  }
  const bool has_shared = saved > shared_bits;
  w.Put(has_shared, 1);
  if (has_shared) PutTable(shared, sym_bits, w);

  // Side info and payloads.
  std::vector<uint8_t> payloads;
  std::vector<uint32_t> sizes;
  std::vector<uint8_t> scratch(2 * len + 8);
  for (uint32_t s = 0; s < num_streams; ++s) {
    Plan& plan = plans[s];
    if (has_shared && use_shared[s]) plan.mode = kShared;
    w.Put(plan.mode, 2);
    const auto in = symbols.subspan(s * len, len);
    if (plan.mode == kConst) {
      w.Put(plan.sym, sym_bits);
    } else if (plan.mode == kRaw) {
      BitWriter raw;
      for (uint8_t v : in) raw.Put(v, sym_bits);
      const std::vector<uint8_t> packed = std::move(raw).Finish();
      payloads.insert(payloads.end(), packed.begin(), packed.end());
    } else {
      if (plan.mode == kOwn) {
        std::array<uint32_t, 256> c{};
        std::copy_n(&counts[size_t{s} * alphabet], alphabet, c.begin());
        Normalize(c.data(), plan.lo, plan.hi, len, plan.scale, &table);
        PutTable(table, sym_bits, w);
      }
      uint8_t* end = scratch.data() + scratch.size();
      const uint8_t* begin =
          RansEncode(in, plan.mode == kOwn ? table : shared, end);
      sizes.push_back(static_cast<uint32_t>(end - begin));
      payloads.insert(payloads.end(), begin, static_cast<const uint8_t*>(end));
    }
  }
  if (!sizes.empty()) {
    const uint32_t base = *std::min_element(sizes.begin(), sizes.end());
    const int width =
        BitWidth(*std::max_element(sizes.begin(), sizes.end()) - base);
    w.PutVar(base);
    w.Put(width, 6);
    for (uint32_t size : sizes) w.Put(size - base, width);
  }
  std::vector<uint8_t> out = std::move(w).Finish();
  out.insert(out.end(), payloads.begin(), payloads.end());
  return out;
}

absl::Status EntropyDecode(absl::Span<const uint8_t> encoded,
                           uint32_t num_streams, uint32_t alphabet,
                           absl::Span<uint8_t> out) {
  KVD_ASSIGN_OR_RETURN(const uint64_t len,
                       CheckArgs(out.size(), num_streams, alphabet));
  const int sym_bits = BitWidth(alphabet - 1);
  BitReader r(encoded);
  const uint32_t version = r.Get(8), alphabet_1 = r.Get(8);
  const uint32_t streams = r.GetVar(), stream_len = r.GetVar();
  if (r.overrun() || version != kVersion || alphabet_1 + 1 != alphabet ||
      streams != num_streams || stream_len != len) {
    return absl::DataLossError(absl::StrCat(
        "entropy header: version=", version, " alphabet=", alphabet_1 + 1,
        " num_streams=", streams, " stream_len=", stream_len, " (want ",
        kVersion, ", ", alphabet, ", ", num_streams, ", ", len, ")"));
  }

  // Side info: modes, tables (validated now, re-read when decoding), sizes.
  Table shared, table;
  std::vector<uint32_t> shared_lut, lut;
  if (len > 0 && r.Get(1) != 0) {
    KVD_RETURN_IF_ERROR(ReadTable(r, alphabet, sym_bits, "shared table", &shared));
    BuildLut(shared, shared_lut);
  }
  struct Info {
    Mode mode;
    uint8_t sym;
    uint64_t table_pos;
    uint64_t size;
  };
  std::vector<Info> info(len > 0 ? num_streams : 0);
  const uint64_t raw_size = (len * sym_bits + 7) / 8;
  uint32_t num_rans = 0;
  for (uint32_t s = 0; s < info.size(); ++s) {
    Info& i = info[s];
    i.mode = static_cast<Mode>(r.Get(2));
    i.table_pos = r.pos();
    i.size = i.mode == kRaw ? raw_size : 0;
    if (i.mode == kConst) {
      i.sym = static_cast<uint8_t>(r.Get(sym_bits));
      if (i.sym >= alphabet) {
        return absl::DataLossError(absl::StrCat("stream ", s, ": const symbol ",
                                                i.sym, " >= alphabet"));
      }
    } else if (i.mode == kOwn) {
      KVD_RETURN_IF_ERROR(ReadTable(r, alphabet, sym_bits,
                                    absl::StrCat("stream ", s, " table"), &table));
    } else if (i.mode == kShared && shared_lut.empty()) {
      return absl::DataLossError(
          absl::StrCat("stream ", s, ": uses the shared table; none sent"));
    }
    num_rans += i.mode >= kOwn;
    if (r.overrun()) {
      return absl::DataLossError(absl::StrCat("stream ", s, ": side info truncated"));
    }
  }
  if (num_rans > 0) {
    const uint64_t base = r.GetVar();
    const uint32_t width = r.Get(6);
    if (width > 32) return absl::DataLossError("entropy: payload size width > 32");
    for (Info& i : info) {
      if (i.mode >= kOwn) i.size = base + r.Get(static_cast<int>(width));
    }
  }
  if (r.overrun()) return absl::DataLossError("entropy: side info truncated");
  uint64_t offset = (r.pos() + 7) / 8, total = offset;
  for (const Info& i : info) {
    total += i.size;
    if (total > encoded.size()) break;  // no overflow
  }
  if (total != encoded.size()) {
    return absl::DataLossError(
        absl::StrCat("entropy: encoded is ", encoded.size(),
                     " bytes; its side info and payload sizes add up to ", total));
  }

  // Payloads.
  for (uint32_t s = 0; s < info.size(); ++s) {
    const Info& i = info[s];
    const auto in = encoded.subspan(offset, i.size);
    const auto o = out.subspan(size_t{s} * len, len);
    offset += i.size;
    if (i.mode == kConst) {
      std::memset(o.data(), i.sym, len);
    } else if (i.mode == kRaw) {
      BitReader raw(in);
      for (uint8_t& v : o) {
        const uint32_t code = raw.Get(sym_bits);
        if (code >= alphabet) {
          return absl::DataLossError(absl::StrCat("stream ", s, ": raw code ",
                                                  code, " >= alphabet"));
        }
        v = static_cast<uint8_t>(code);
      }
    } else if (i.mode == kShared) {
      KVD_RETURN_IF_ERROR(RansDecode(in, shared_lut.data(), shared.scale, s, o));
    } else {
      r.Seek(i.table_pos);
      KVD_RETURN_IF_ERROR(ReadTable(r, alphabet, sym_bits, "table", &table));
      BuildLut(table, lut);
      KVD_RETURN_IF_ERROR(RansDecode(in, lut.data(), table.scale, s, o));
    }
  }
  return absl::OkStatus();
}

}  // namespace kvd::compress
