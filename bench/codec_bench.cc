// codec_bench: CPU throughput of the quantizer on 256-token chunks, against
// memcpy of the same bytes (STYLE.md §13), one core.
//
// A layer is SmolLM2-135M's (3 KV heads, head dim 64, bf16; K and V of 256
// tokens: 192 KiB). Encode is canonical bf16 layer -> encoded bytes
// (CodecChain::EncodeLayer), decode the reverse (DecodeLayer); GB/s counts
// the bf16 bytes. Besides the headline int4 KIVI chain it reports the
// other quantizer formats and the two entropy stages (rans, zstd), whose
// sizes here are for random tensors: compression ratios on real KV are the
// quality harness's (bench/quality).
//
// Flags: --quick (fewer rounds).
#include <chrono>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "compress/codec_chain.h"
#include "compress/codec_test_util.h"
#include "nlohmann/json.hpp"

namespace kvd::compress {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint32_t kHeads = 3, kDim = 64, kTokens = 256, kLayers = 30;

struct Speed {
  double encode_gbps = 0, decode_gbps = 0, bytes_ratio = 0;
};

// Best of `rounds` passes over every layer, in GB/s of raw bytes.
template <typename F>
double BestGbps(int rounds, size_t bytes_per_pass, F&& pass) {
  double best = 0;
  for (int r = 0; r < rounds; ++r) {
    const auto t0 = Clock::now();
    pass();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::max(best, bytes_per_pass / s / 1e9);
  }
  return best;
}

Speed Measure(const std::string& spec,
              const std::vector<std::vector<uint8_t>>& raw, int rounds) {
  const CodecContext ctx{DType::kBf16, kLayers, kHeads, kDim, nullptr};
  auto chain = CodecChain::Create(spec, ctx);
  if (!chain.ok()) {
    std::cerr << chain.status() << "\n";
    std::exit(1);
  }
  std::vector<std::vector<uint8_t>> enc(raw.size());
  std::vector<uint8_t> out(raw[0].size());
  const size_t total = raw.size() * raw[0].size();
  Speed s;
  s.encode_gbps = BestGbps(rounds, total, [&] {
    for (uint32_t l = 0; l < raw.size(); ++l)
      enc[l] = *(*chain)->EncodeLayer(l, kTokens, raw[l]);
  });
  s.decode_gbps = BestGbps(rounds, total, [&] {
    for (uint32_t l = 0; l < raw.size(); ++l) {
      if (!(*chain)->DecodeLayer(l, kTokens, enc[l], absl::MakeSpan(out)).ok())
        std::exit(1);
    }
  });
  size_t encoded = 0;
  for (const auto& e : enc) encoded += e.size();
  s.bytes_ratio = double(total) / encoded;
  return s;
}

int Main(int argc, char** argv) {
  const bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  const int rounds = quick ? 3 : 10;
  std::vector<std::vector<uint8_t>> raw;
  for (uint32_t l = 0; l < kLayers; ++l) {
    const LayerKV kv = RandomLayer(kHeads, kTokens, kDim, 100 + l);
    auto& bytes = raw.emplace_back(2 * kv.k.size() * 2);
    FloatToDType(DType::kBf16, kv.k.data.data(), kv.k.size(), bytes.data());
    FloatToDType(DType::kBf16, kv.v.data.data(), kv.v.size(),
                 bytes.data() + bytes.size() / 2);
  }
  std::vector<std::vector<uint8_t>> copy(raw.size(),
                                         std::vector<uint8_t>(raw[0].size()));
  const size_t total = raw.size() * raw[0].size();
  const double memcpy_gbps = BestGbps(rounds * 10, total, [&] {
    for (size_t l = 0; l < raw.size(); ++l)
      std::memcpy(copy[l].data(), raw[l].data(), raw[l].size());
  });

  const std::string headline = "quant(k=int4/channel,v=int4/token,g=32)";
  nlohmann::ordered_json variants = nlohmann::ordered_json::object();
  Speed main;
  for (const std::string& spec :
       {headline, std::string("quant(k=int8/channel,v=int8/token,g=32)"),
        std::string("quant(k=int2/channel,v=int2/token,g=32)"),
        std::string("quant(k=fp8,v=fp8)"), headline + "|rans",
        headline + "|zstd"}) {
    const Speed s = Measure(spec, raw, rounds);
    if (spec == headline) main = s;
    variants[spec] = {{"encode_gbps", s.encode_gbps},
                      {"decode_gbps", s.decode_gbps},
                      {"bytes_ratio_random_data", s.bytes_ratio}};
  }
  nlohmann::ordered_json j;
  j["bench"] = "codec";
  j["params"] = {{"chain", headline}, {"layers", kLayers}, {"kv_heads", kHeads},
                 {"head_dim", kDim},  {"tokens", kTokens}, {"dtype", "bf16"},
                 {"threads", 1},      {"rounds", rounds}};
  j["metrics"] = {{"quant_encode_gbps_per_core", main.encode_gbps},
                  {"quant_decode_gbps_per_core", main.decode_gbps},
                  {"variants", variants}};
  j["baseline"] = {{"memcpy_gbps", memcpy_gbps}};
  j["ratio"] = {{"quant_encode_vs_memcpy", main.encode_gbps / memcpy_gbps},
                {"quant_decode_vs_memcpy", main.decode_gbps / memcpy_gbps}};
  std::cout << j.dump() << std::endl;
  return 0;
}

}  // namespace
}  // namespace kvd::compress

int main(int argc, char** argv) { return kvd::compress::Main(argc, argv); }
