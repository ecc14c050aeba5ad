#include "compress/entropy/entropy_coder.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <type_traits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "compress/entropy/internal/bit_io.h"
#include "compress/entropy/internal/corrupt.h"
#include "compress/entropy/internal/frequency_table.h"
#include "core/status.h"

namespace kvd::compress {
namespace {

using entropy_internal::BestTable;
using entropy_internal::BitReader;
using entropy_internal::BitWidth;
using entropy_internal::BitWriter;
using entropy_internal::Corrupt;
using entropy_internal::DataBits;
using entropy_internal::Normalize;
using entropy_internal::PutTable;
using entropy_internal::ReadTable;
using entropy_internal::Table;

static_assert(std::endian::native == std::endian::little);

// 1 was written by interim versions of this file, in two layouts.
constexpr uint32_t kVersion = 2;
constexpr uint32_t kRansL = uint32_t{1} << 23;  // state in [L, 256 L)
// rANS bits beyond sum(-log2 p): 23 (the initial state L) + 32 (the final
// state) - log2(final state); measured 28 on average.
constexpr double kFlushBits = 28;
constexpr int kLanes = 4;  // streams coded in lockstep; 8 is no faster
enum Mode : uint32_t { kConst = 0, kRaw = 1, kOwn = 2, kShared = 3 };

// Encoding of one symbol. x / freq is a multiply by a rounded-up
// reciprocal, exact for x < 2^31 (ryg_rans, after Alverson); freq 1 gets
// q = x - 1 and a bias to match.
struct EncSym {
  uint32_t x_max, rcp, bias, cmpl, shift;
};

void InitEncSyms(const Table& t, EncSym* sym) {
  const uint32_t m = uint32_t{1} << t.scale;
  for (uint32_t s = t.lo, start = 0; s <= t.hi; start += t.freq[s++]) {
    const uint32_t f = t.freq[s], shift = BitWidth(f - 1);
    sym[s] = {((kRansL >> t.scale) << 8) * f, ~0u, start + m - 1, m - f, 32};
    if (f >= 2) {
      sym[s].rcp =
          static_cast<uint32_t>(((uint64_t{1} << (shift + 31)) + f - 1) / f);
      sym[s].bias = start, sym[s].shift = 32 + shift - 1;
    }
  }
}

// Calls f(std::integral_constant<int, K>) for K in 0..N-1, unrolled, so
// per-lane locals indexed by K stay in registers.
template <int N, typename F>
void Unroll(F&& f) {
  [&]<int... K>(std::integer_sequence<int, K...>) {
    (f(std::integral_constant<int, K>{}), ...);
  }
  (std::make_integer_sequence<int, N>{});
}

// An rANS stream being encoded backwards from p (which has 2 * len + 8
// bytes of room before it: a symbol emits at most 2 bytes).
struct EncLane {
  const EncSym* sym;
  const uint8_t* in;
  uint8_t* p;
};

// Encodes `len` symbols of N streams in lockstep (their dependency chains
// overlap), then writes each final state.
template <int N>
void EncodeLanes(EncLane* lanes, uint64_t len) {
  uint32_t x[N];  // locals: stores through p would force reloads of lanes
  uint8_t* p[N];
  const EncSym* sym[N];
  const uint8_t* in[N];
  for (int k = 0; k < N; ++k) {
    x[k] = kRansL, p[k] = lanes[k].p, sym[k] = lanes[k].sym,
    in[k] = lanes[k].in;
  }
  for (uint64_t i = len; i-- > 0;) {
    Unroll<N>([&](auto k) {
      const EncSym& e = sym[k][in[k][i]];
      for (int j = 0; j < 2; ++j) {  // no branch: the byte is stored anyway
        const uint32_t r = x[k] >= e.x_max;
        p[k][-1] = static_cast<uint8_t>(x[k]);
        p[k] -= r;
        x[k] >>= 8 * r;
      }
      x[k] += e.bias + e.cmpl * static_cast<uint32_t>(
                                    (uint64_t{x[k]} * e.rcp) >> e.shift);
    });
  }
  for (int k = 0; k < N; ++k) {
    lanes[k].p = p[k] - 4;
    std::memcpy(lanes[k].p, &x[k], 4);
  }
}

// Decoding table: per slot, symbol | (slot - start) << 8 | freq << 20.
// REQUIRES: every freq < 2^12.
void BuildLut(const Table& t, std::vector<uint32_t>& lut) {
  lut.resize(size_t{1} << t.scale);
  for (uint32_t s = t.lo, slot = 0; s <= t.hi; ++s) {
    for (uint32_t j = 0; j < t.freq[s]; ++j) {
      lut[slot++] = s | j << 8 | uint32_t{t.freq[s]} << 20;
    }
  }
}

// An rANS payload [p, end) being decoded into out.
struct Lane {
  const uint32_t* lut;
  uint32_t scale, x;
  const uint8_t *p, *end;
  uint8_t* out;
  uint32_t stream;
};

// Decodes `len` symbols of N payloads in lockstep. A step reads at most 2
// bytes (x >= 2^23 and scale <= 12 give x >= 2^11 before renormalizing),
// so runs of min(bytes left) / 2 steps need no bounds checks and take their
// bytes without branches; the last few steps check.
template <int N>
absl::Status DecodeLanes(const Lane* lanes, uint64_t len) {
  uint32_t x[N], scale[N], mask[N];
  const uint8_t* p[N];
  for (int k = 0; k < N; ++k) {
    x[k] = lanes[k].x, p[k] = lanes[k].p, scale[k] = lanes[k].scale;
    mask[k] = (uint32_t{1} << scale[k]) - 1;
  }
  uint64_t i = 0;
  for (uint64_t run = len; run > 0; i += run) {
    run = len - i;
    for (int k = 0; k < N; ++k) {
      run = std::min<uint64_t>(run, (lanes[k].end - p[k]) / 2);
    }
    for (uint64_t j = i; j < i + run; ++j) {
      Unroll<N>([&](auto k) {
        const uint32_t e = lanes[k].lut[x[k] & mask[k]];
        lanes[k].out[j] = static_cast<uint8_t>(e);
        const uint32_t v = (e >> 20) * (x[k] >> scale[k]) + (e >> 8 & 0xfff);
        // n = 0..2 bytes: the next two big-endian, shifted down to n.
        const uint32_t n = (v < kRansL) + (v < (kRansL >> 8));
        const uint32_t next = uint32_t{p[k][0]} << 8 | p[k][1];
        x[k] = v << (8 * n) | next >> (16 - 8 * n);
        p[k] += n;
      });
    }
  }
  for (int k = 0; k < N; ++k) {
    const Lane& l = lanes[k];
    for (uint64_t j = i; j < len; ++j) {
      const uint32_t e = l.lut[x[k] & mask[k]];
      l.out[j] = static_cast<uint8_t>(e);
      x[k] = (e >> 20) * (x[k] >> scale[k]) + (e >> 8 & 0xfff);
      while (x[k] < kRansL) {
        if (p[k] == l.end) return Corrupt("stream ", l.stream, ": rANS short");
        x[k] = x[k] << 8 | *p[k]++;
      }
    }
    if (x[k] != kRansL || p[k] != l.end) {
      return Corrupt("stream ", l.stream, ": rANS ends in state ", x[k],
                     " with ", l.end - p[k], " bytes left (want ", kRansL,
                     ", 0)");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> CheckArgs(uint64_t size, uint32_t num_streams,
                                   uint32_t alphabet) {
  if (num_streams == 0 || alphabet < 2 || alphabet > 256 ||
      size % num_streams != 0 || size / num_streams > kMaxEntropyStreamLen) {
    return absl::InvalidArgumentError(absl::StrCat(
        "entropy coder: want num_streams=", num_streams, " >= 1 dividing ",
        size, " symbols into streams of <= 2^30, alphabet=", alphabet,
        " in 2..256"));
  }
  return size / num_streams;
}

// What the encoder chose for a stream; own: Normalize(counts, lo, hi, scale).
struct Plan {
  Mode mode = kRaw;
  uint8_t sym = 0, scale = 0, lo = 0, hi = 0;  // sym: const
  double bits = 0;                             // estimated own or raw payload
};

// The shared table: fitted to every modeled stream, then refitted to those
// it beats their plan on. Sets use[s]; returns the bits it saves net of its
// own size (<= 0: not worth sending).
double FitShared(const std::vector<uint32_t>& counts, uint32_t alphabet,
                 int sym_bits, const std::vector<Plan>& plans, Table* shared,
                 std::vector<bool>& use) {
  double net = 0;
  for (int round = 0; round < 2; ++round) {
    std::array<uint64_t, 256> sum{};
    uint64_t total = 0;
    for (size_t s = 0; s < plans.size(); ++s) {
      if (plans[s].mode == kConst || (round > 0 && !use[s])) continue;
      for (uint32_t v = 0; v < alphabet; ++v) {
        sum[v] += counts[s * alphabet + v], total += counts[s * alphabet + v];
      }
    }
    std::array<uint32_t, 256> c{};  // to 32 bits, used symbols kept > 0
    uint32_t lo = 256, hi = 0, used = 0;
    uint64_t n = 0;
    for (uint32_t v = 0; v < alphabet; ++v) {
      if (sum[v] == 0) continue;
      c[v] = static_cast<uint32_t>(
          std::max<uint64_t>(sum[v] / ((total >> 31) + 1), 1));
      lo = std::min(lo, v), hi = v, ++used, n += c[v];
    }
    if (used < 2) break;
    Table t;
    net = -BestTable(c.data(), lo, hi, n, used, sym_bits, &t);
    net += DataBits(c.data(), alphabet, t);  // net = -(table bits)
    for (size_t s = 0; s < plans.size(); ++s) {
      if (plans[s].mode == kConst) continue;
      const double bits =
          DataBits(&counts[s * alphabet], alphabet, t) + kFlushBits;
      use[s] = bits < plans[s].bits;
      if (use[s]) net += plans[s].bits - bits;
    }
    *shared = t;
  }
  return net;
}

}  // namespace

absl::StatusOr<std::vector<uint8_t>> EntropyEncode(
    absl::Span<const uint8_t> symbols, uint32_t num_streams,
    uint32_t alphabet) {
  KVD_ASSIGN_OR_RETURN(const uint64_t len,
                       CheckArgs(symbols.size(), num_streams, alphabet));
  const int sym_bits = BitWidth(alphabet - 1);
  BitWriter w;
  w.Put(kVersion, 8), w.Put(alphabet - 1, 8);
  w.PutVar(num_streams), w.PutVar(static_cast<uint32_t>(len));
  if (len == 0) return std::move(w).Finish();

  if (const auto* bad = std::find_if(symbols.begin(), symbols.end(),
                                     [&](uint8_t v) { return v >= alphabet; });
      bad != symbols.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("entropy coder: symbols[", bad - symbols.begin(),
                     "]=", *bad, " >= alphabet=", alphabet));
  }

  // Histograms ([num_streams][alphabet]) and each stream's best of const,
  // raw and own table.
  std::vector<uint32_t> counts(size_t{num_streams} * alphabet);
  std::vector<Plan> plans(num_streams);
  Table table;
  for (uint32_t s = 0; s < num_streams; ++s) {
    uint32_t* c = &counts[size_t{s} * alphabet];
    for (uint8_t v : symbols.subspan(s * len, len)) ++c[v];
    uint32_t lo = 256, hi = 0, used = 0;
    for (uint32_t v = 0; v < alphabet; ++v) {
      if (c[v] != 0) lo = std::min(lo, v), hi = v, ++used;
    }
    Plan& plan = plans[s];
    plan.lo = static_cast<uint8_t>(lo), plan.hi = static_cast<uint8_t>(hi);
    plan.bits = static_cast<double>(len * sym_bits);
    if (used == 1) {
      plan.mode = kConst, plan.sym = static_cast<uint8_t>(lo);
      continue;
    }
    const double own =
        BestTable(c, lo, hi, len, used, sym_bits, &table) + kFlushBits;
    if (own < plan.bits) {
      plan.mode = kOwn, plan.bits = own;
      plan.scale = static_cast<uint8_t>(table.scale);
    }
  }
  Table shared;
  std::vector<bool> use_shared(num_streams, false);
  const bool has_shared =
      num_streams > 1 &&
      FitShared(counts, alphabet, sym_bits, plans, &shared, use_shared) > 0;
  w.Put(has_shared, 1);
  if (has_shared) PutTable(shared, sym_bits, w);

  // Side info and payloads: rANS ones kLanes at a time, then the raw ones.
  const size_t room = 2 * len + 8;
  std::vector<uint8_t> payloads, scratch(kLanes * room);
  std::vector<uint32_t> sizes;
  BitWriter raw;
  std::vector<EncSym> syms((kLanes + 1) * 256);  // per lane, then shared
  if (has_shared) InitEncSyms(shared, &syms[kLanes * 256]);
  EncLane lanes[kLanes];
  int queued = 0;
  const auto flush = [&] {
    if (queued == kLanes) EncodeLanes<kLanes>(lanes, len);
    for (int k = 0; queued < kLanes && k < queued; ++k) {
      EncodeLanes<1>(&lanes[k], len);
    }
    for (int k = 0; k < queued; ++k) {
      uint8_t* end = scratch.data() + (k + 1) * room;
      sizes.push_back(static_cast<uint32_t>(end - lanes[k].p));
      payloads.insert(payloads.end(), lanes[k].p, end);
    }
    queued = 0;
  };
  for (uint32_t s = 0; s < num_streams; ++s) {
    Plan& plan = plans[s];
    if (has_shared && use_shared[s]) plan.mode = kShared;
    w.Put(plan.mode, 2);
    const uint8_t* in = symbols.data() + s * len;
    if (plan.mode == kConst) {
      w.Put(plan.sym, sym_bits);
    } else if (plan.mode == kRaw) {
      for (uint64_t i = 0; i < len; ++i) raw.Put(in[i], sym_bits);
      raw.Align();
    } else {
      EncSym* sym = &syms[kLanes * 256];
      if (plan.mode == kOwn) {
        Normalize(&counts[size_t{s} * alphabet], plan.lo, plan.hi, len,
                  plan.scale, &table);
        PutTable(table, sym_bits, w);
        InitEncSyms(table, sym = &syms[queued * 256]);
      }
      lanes[queued] = {sym, in, scratch.data() + (queued + 1) * room};
      if (++queued == kLanes) flush();
    }
  }
  flush();
  if (!sizes.empty()) {
    const auto [min, max] = std::minmax_element(sizes.begin(), sizes.end());
    const uint32_t base = *min;
    const int width = BitWidth(*max - base);
    w.PutVar(base), w.Put(width, 6);
    for (uint32_t size : sizes) w.Put(size - base, width);
  }
  std::vector<uint8_t> out = std::move(w).Finish();
  const std::vector<uint8_t> packed = std::move(raw).Finish();
  out.insert(out.end(), payloads.begin(), payloads.end());
  out.insert(out.end(), packed.begin(), packed.end());
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
    return Corrupt("header version=", version, " alphabet=", alphabet_1 + 1,
                   " num_streams=", streams, " stream_len=", stream_len,
                   " (want ", kVersion, ", ", alphabet, ", ", num_streams, ", ",
                   len, ")");
  }

  // Side info: modes, tables (checked now, read again to decode), sizes.
  Table shared, table;
  std::vector<uint32_t> shared_lut;
  if (len > 0 && r.Get(1) != 0) {
    KVD_RETURN_IF_ERROR(ReadTable(r, alphabet, sym_bits, -1, &shared));
    BuildLut(shared, shared_lut);
  }
  struct Info {
    Mode mode;
    uint8_t sym;
    uint64_t table_pos, size;
  };
  std::vector<Info> info(len > 0 ? num_streams : 0);
  const uint64_t raw_size = (len * sym_bits + 7) / 8;
  bool any_rans = false;
  for (uint32_t s = 0; s < info.size(); ++s) {
    Info& i = info[s];
    i.mode = static_cast<Mode>(r.Get(2));
    i.table_pos = r.pos();
    i.size = i.mode == kRaw ? raw_size : 0;
    if (i.mode == kConst) {
      i.sym = static_cast<uint8_t>(r.Get(sym_bits));
      if (i.sym >= alphabet) return Corrupt("stream ", s, ": symbol ", i.sym);
    } else if (i.mode == kOwn) {
      KVD_RETURN_IF_ERROR(ReadTable(r, alphabet, sym_bits, s, &table));
    } else if (i.mode == kShared && shared_lut.empty()) {
      return Corrupt("stream ", s, ": uses the shared table; none sent");
    }
    any_rans |= i.mode >= kOwn;
    if (r.overrun()) return Corrupt("stream ", s, ": side info truncated");
  }
  if (any_rans) {
    const uint64_t base = r.GetVar();
    const uint32_t width = r.Get(6);
    if (width > 32) return Corrupt("payload size width ", width);
    for (Info& i : info) {
      if (i.mode >= kOwn) i.size = base + r.Get(static_cast<int>(width));
    }
  }
  if (r.overrun()) return Corrupt("side info truncated");
  // rANS payloads come first, then raw ones.
  uint64_t offset = (r.pos() + 7) / 8, total = offset;
  for (const Info& i : info) {
    total += i.mode >= kOwn ? i.size : 0;
    if (total > encoded.size()) break;  // no overflow
  }
  uint64_t raw_offset = total;
  for (const Info& i : info) total += i.mode == kRaw ? raw_size : 0;
  if (total != encoded.size()) {
    return Corrupt("encoded is ", encoded.size(),
                   " bytes; side info and payload sizes add up to ", total);
  }

  // Payloads, rANS ones kLanes at a time.
  Lane lanes[kLanes];
  std::vector<uint32_t> luts[kLanes];
  int queued = 0;
  for (uint32_t s = 0; s < info.size(); ++s) {
    const Info& i = info[s];
    uint64_t& at = i.mode == kRaw ? raw_offset : offset;
    const uint8_t* in = encoded.data() + at;
    uint8_t* o = out.data() + size_t{s} * len;
    at += i.size;
    if (i.mode == kConst) {
      std::memset(o, i.sym, len);
    } else if (i.mode == kRaw) {
      BitReader bits(absl::MakeConstSpan(in, raw_size));
      for (uint64_t j = 0; j < len; ++j) {
        const uint32_t code = bits.Get(sym_bits);
        if (code >= alphabet) return Corrupt("stream ", s, ": raw code ", code);
        o[j] = static_cast<uint8_t>(code);
      }
    } else {
      const Table* t = &shared;
      if (i.mode == kOwn) {
        r.Seek(i.table_pos);
        KVD_RETURN_IF_ERROR(ReadTable(r, alphabet, sym_bits, s, &table));
        BuildLut(*(t = &table), luts[queued]);
      }
      if (i.size < 4) return Corrupt("stream ", s, ": rANS payload ", i.size);
      Lane& l = lanes[queued];
      l.lut = i.mode == kOwn ? luts[queued].data() : shared_lut.data();
      l.scale = t->scale, l.p = in + 4, l.end = in + i.size, l.out = o;
      l.stream = s;
      std::memcpy(&l.x, in, 4);
      if (l.x < kRansL || l.x >= kRansL << 8) {
        return Corrupt("stream ", s, ": initial rANS state ", l.x);
      }
      if (++queued == kLanes) {
        KVD_RETURN_IF_ERROR(DecodeLanes<kLanes>(lanes, len));
        queued = 0;
      }
    }
  }
  for (int k = 0; k < queued; ++k) {
    KVD_RETURN_IF_ERROR(DecodeLanes<1>(&lanes[k], len));
  }
  return absl::OkStatus();
}

}  // namespace kvd::compress
