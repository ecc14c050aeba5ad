// entropy_coder_bench: EntropyEncode/EntropyDecode on synthetic quantized KV
// channels against zstd on the same symbols, one thread; prints one JSON
// line (STYLE.md §13).
//
//   entropy_coder_bench [--streams N] [--len T] [--bits B] [--data KIND]
//                       [--zstd_level L] [--seconds S]
//
// KIND "layer": each channel is N(mu_c, sigma_c) with log-normal sigma_c,
// quantized with one step for all channels (CacheGen's per-layer bins), so
// channels differ in spread. KIND "channel": each stream min-max quantized
// on its own (KIVI per-channel), so every stream spans all 2^B bins.
// MB/s counts symbols, one byte each.
#include <zstd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "compress/entropy/entropy_coder.h"
#include "nlohmann/json.hpp"

namespace {

std::vector<uint8_t> MakeSymbols(uint32_t streams, uint32_t len, int bits,
                                 const std::string& kind) {
  std::mt19937 rng(42);
  std::normal_distribution<double> unit(0, 1);
  const int levels = 1 << bits;
  std::vector<uint8_t> out(size_t{streams} * len);
  std::vector<double> x(len);
  for (uint32_t s = 0; s < streams; ++s) {
    const double sigma = std::exp(0.5 * unit(rng));
    const double mu = 0.3 * sigma * unit(rng);
    for (double& v : x) v = mu + sigma * unit(rng);
    double lo = -4, step = 8.0 / levels;  // layer: +-4 median sigmas
    if (kind == "channel") {
      lo = *std::min_element(x.begin(), x.end());
      step = (*std::max_element(x.begin(), x.end()) - lo) / (levels - 1);
    }
    for (uint32_t i = 0; i < len; ++i) {
      const double q = std::round((x[i] - lo) / step);
      out[size_t{s} * len + i] =
          static_cast<uint8_t>(std::clamp<double>(q, 0, levels - 1));
    }
  }
  return out;
}

double EntropyBits(const std::vector<uint8_t>& v, uint32_t streams) {
  const size_t len = v.size() / streams;
  double bits = 0;
  for (uint32_t s = 0; s < streams; ++s) {
    std::vector<double> c(256);
    for (size_t i = 0; i < len; ++i) ++c[v[s * len + i]];
    for (double n : c) {
      if (n > 0) bits -= n * std::log2(n / len);
    }
  }
  return bits;
}

// Best seconds per call of fn over repetitions filling about `seconds`.
template <typename F>
double Time(double seconds, F&& fn) {
  using Clock = std::chrono::steady_clock;
  double best = 1e30, spent = 0;
  for (int i = 0; i < 3 || spent < seconds; ++i) {
    const auto t0 = Clock::now();
    fn();
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::min(best, dt);
    spent += dt;
  }
  return best;
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "entropy_coder_bench: %s\n", what.c_str());
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  uint32_t streams = 1024, len = 768;
  int bits = 4, zstd_level = 3;
  double seconds = 1.0;
  std::string kind = "layer";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--streams")
      streams = std::stoul(value);
    else if (flag == "--len")
      len = std::stoul(value);
    else if (flag == "--bits")
      bits = std::stoi(value);
    else if (flag == "--data")
      kind = value;
    else if (flag == "--zstd_level")
      zstd_level = std::stoi(value);
    else if (flag == "--seconds")
      seconds = std::stod(value);
    else
      Die("unknown flag " + flag);
  }
  if (bits < 1 || bits > 8 || (kind != "layer" && kind != "channel")) {
    Die("want --bits 1..8 and --data layer|channel");
  }
  const uint32_t alphabet = 1u << bits;
  const std::vector<uint8_t> symbols = MakeSymbols(streams, len, bits, kind);
  const double n = static_cast<double>(symbols.size());

  std::vector<uint8_t> encoded;
  const double enc_s = Time(seconds, [&] {
    auto e = kvd::compress::EntropyEncode(symbols, streams, alphabet);
    if (!e.ok()) Die(e.status().ToString());
    encoded = std::move(*e);
  });
  std::vector<uint8_t> decoded(symbols.size());
  const double dec_s = Time(seconds, [&] {
    const absl::Status s = kvd::compress::EntropyDecode(
        encoded, streams, alphabet, absl::MakeSpan(decoded));
    if (!s.ok()) Die(s.ToString());
  });
  if (decoded != symbols) Die("round trip mismatch");

  std::vector<uint8_t> z(ZSTD_compressBound(symbols.size()));
  size_t z_size = 0;
  const double zenc_s = Time(seconds, [&] {
    z_size = ZSTD_compress(z.data(), z.size(), symbols.data(), symbols.size(),
                           zstd_level);
    if (ZSTD_isError(z_size)) Die(ZSTD_getErrorName(z_size));
  });
  const double zdec_s = Time(seconds, [&] {
    const size_t r =
        ZSTD_decompress(decoded.data(), decoded.size(), z.data(), z_size);
    if (ZSTD_isError(r) || r != symbols.size()) Die("zstd decompress failed");
  });

  const double entropy = EntropyBits(symbols, streams) / n;
  const double bps = 8.0 * encoded.size() / n, zbps = 8.0 * z_size / n;
  const nlohmann::json line = {
      {"bench", "entropy_coder"},
      {"params",
       {{"streams", streams},
        {"len", len},
        {"bits", bits},
        {"data", kind},
        {"threads", 1}}},
      {"metrics",
       {{"bits_per_symbol", bps},
        {"entropy_bits_per_symbol", entropy},
        {"overhead_vs_entropy_pct", 100 * (bps / entropy - 1)},
        {"encode_mbps", n / enc_s / 1e6},
        {"decode_mbps", n / dec_s / 1e6}}},
      {"baseline",
       {{"name", "zstd -" + std::to_string(zstd_level) + " on 1 byte/symbol"},
        {"bits_per_symbol", zbps},
        {"encode_mbps", n / zenc_s / 1e6},
        {"decode_mbps", n / zdec_s / 1e6}}},
      {"ratio",
       {{"size_vs_baseline", bps / zbps},
        {"encode_speed_vs_baseline", zenc_s / enc_s},
        {"decode_speed_vs_baseline", zdec_s / dec_s}}}};
  std::printf("%s\n", line.dump().c_str());
  return 0;
}
