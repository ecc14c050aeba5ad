// kvdepot-codec: applies a codec chain to KV tensors captured from a model,
// for the quality harness (bench/quality) and for trying chains by hand.
//
//   kvdepot-codec apply --chain SPEC --in DIR --out DIR [--bases FILE]
//   kvdepot-codec fit-lowrank --in DIR --out FILE
//
// DIR holds meta.json {"layers","kv_heads","tokens","head_dim"[,"q_heads",
// "q_tokens"]}, k.f32 and v.f32 ([layers][kv_heads][tokens][head_dim],
// float32 little-endian, keys post-RoPE) and optionally q.f32
// ([layers][q_heads][q_tokens][head_dim], the queries of the last q_tokens
// positions). The input is rounded to bf16 first, the dtype a raw chunk
// stores. `apply` writes k.f32, v.f32 ([layers][kv_heads][kept][head_dim]),
// positions.u32 ([layers][kv_heads][kept], the position each kept token
// stands for) and result.json with the encoded size and timings.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "compress/codec_chain.h"
#include "compress/lowrank.h"
#include "core/status.h"
#include "nlohmann/json.hpp"

namespace kvd::compress {
namespace {

using Clock = std::chrono::steady_clock;

struct Captured {
  uint32_t layers = 0, kv_heads = 0, tokens = 0, head_dim = 0;
  uint32_t q_heads = 0, q_tokens = 0;
  std::vector<LayerKV> kv;        // per layer
  std::vector<HeadTensor> query;  // per layer, empty without q.f32
};

absl::StatusOr<std::vector<uint8_t>> ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

absl::Status WriteFile(const std::string& path, const void* data, size_t n) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
  if (!f) return absl::UnavailableError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

absl::Status ReadTensors(const std::string& path, uint32_t layers,
                         uint32_t heads, uint32_t tokens, uint32_t dim,
                         std::vector<HeadTensor>& out) {
  KVD_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, ReadFile(path));
  const size_t per_layer = size_t{heads} * tokens * dim;
  if (bytes.size() != layers * per_layer * sizeof(float)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " has ", bytes.size(), " bytes, meta.json implies ",
                     layers * per_layer * sizeof(float)));
  }
  out.clear();
  for (uint32_t l = 0; l < layers; ++l) {
    HeadTensor& t = out.emplace_back(heads, tokens, dim);
    std::memcpy(t.data.data(), bytes.data() + l * per_layer * sizeof(float),
                per_layer * sizeof(float));
  }
  return absl::OkStatus();
}

absl::StatusOr<Captured> ReadCaptured(const std::string& dir) {
  KVD_ASSIGN_OR_RETURN(std::vector<uint8_t> meta_bytes,
                       ReadFile(dir + "/meta.json"));
  const nlohmann::json meta = nlohmann::json::parse(meta_bytes, nullptr, false);
  if (meta.is_discarded() || !meta.is_object()) {
    return absl::InvalidArgumentError(dir + "/meta.json is not a JSON object");
  }
  Captured c;
  auto field = [&](const char* name, uint32_t* v, uint32_t hi, bool required) {
    if (!meta.contains(name)) {
      return required ? absl::InvalidArgumentError(
                            absl::StrCat("meta.json: ", name, " missing"))
                      : absl::OkStatus();
    }
    const nlohmann::json& x = meta[name];
    if (!x.is_number_unsigned() || x.get<uint64_t>() == 0 ||
        x.get<uint64_t>() > hi) {
      return absl::InvalidArgumentError(absl::StrCat(
          "meta.json: ", name, " is not an integer in [1, ", hi, "]"));
    }
    *v = x.get<uint32_t>();
    return absl::OkStatus();
  };
  KVD_RETURN_IF_ERROR(field("layers", &c.layers, 1024, true));
  KVD_RETURN_IF_ERROR(field("kv_heads", &c.kv_heads, 1024, true));
  KVD_RETURN_IF_ERROR(field("tokens", &c.tokens, 1 << 20, true));
  KVD_RETURN_IF_ERROR(field("head_dim", &c.head_dim, 1024, true));
  KVD_RETURN_IF_ERROR(field("q_heads", &c.q_heads, 4096, false));
  KVD_RETURN_IF_ERROR(field("q_tokens", &c.q_tokens, 1 << 20, false));
  std::vector<HeadTensor> k, v;
  KVD_RETURN_IF_ERROR(ReadTensors(dir + "/k.f32", c.layers, c.kv_heads,
                                  c.tokens, c.head_dim, k));
  KVD_RETURN_IF_ERROR(ReadTensors(dir + "/v.f32", c.layers, c.kv_heads,
                                  c.tokens, c.head_dim, v));
  for (uint32_t l = 0; l < c.layers; ++l) {
    for (HeadTensor* t : {&k[l], &v[l]}) {
      for (float& x : t->data) x = Bf16ToFloat(FloatToBf16(x));
    }
    c.kv.push_back(LayerKV{std::move(k[l]), std::move(v[l]), {}});
  }
  if (c.q_heads != 0 && c.q_tokens != 0) {
    KVD_RETURN_IF_ERROR(ReadTensors(dir + "/q.f32", c.layers, c.q_heads,
                                    c.q_tokens, c.head_dim, c.query));
  }
  return c;
}

absl::StatusOr<std::shared_ptr<const LowRankBases>> LoadBases(
    const std::string& path) {
  if (path.empty()) return std::shared_ptr<const LowRankBases>();
  KVD_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, ReadFile(path));
  return LowRankBases::Parse(bytes);
}

absl::Status Apply(const std::string& spec, const std::string& in_dir,
                   const std::string& out_dir, const std::string& bases_path) {
  KVD_ASSIGN_OR_RETURN(Captured c, ReadCaptured(in_dir));
  KVD_ASSIGN_OR_RETURN(std::shared_ptr<const LowRankBases> bases,
                       LoadBases(bases_path));
  const CodecContext ctx{DType::kBf16, c.layers, c.kv_heads, c.head_dim, bases};
  KVD_ASSIGN_OR_RETURN(std::unique_ptr<const CodecChain> chain,
                       CodecChain::Create(spec, ctx));
  std::vector<float> k_out, v_out;
  std::vector<uint32_t> positions;
  uint64_t encoded_bytes = 0;
  double encode_s = 0, decode_s = 0;
  uint32_t kept = 0;
  for (uint32_t l = 0; l < c.layers; ++l) {
    const CodecInputs in{c.query.empty() ? nullptr : &c.query[l]};
    const auto t0 = Clock::now();
    KVD_ASSIGN_OR_RETURN(std::vector<uint8_t> enc,
                         chain->EncodeLayerKV(l, std::move(c.kv[l]), in));
    const auto t1 = Clock::now();
    KVD_ASSIGN_OR_RETURN(LayerKV kv, chain->DecodeLayerKV(l, c.tokens, enc));
    decode_s += std::chrono::duration<double>(Clock::now() - t1).count();
    encode_s += std::chrono::duration<double>(t1 - t0).count();
    encoded_bytes += enc.size();
    if (l > 0 && kv.k.tokens != kept) {
      return absl::InternalError("kept token counts differ across layers");
    }
    kept = kv.k.tokens;
    k_out.insert(k_out.end(), kv.k.data.begin(), kv.k.data.end());
    v_out.insert(v_out.end(), kv.v.data.begin(), kv.v.data.end());
    for (uint32_t h = 0; h < c.kv_heads; ++h) {
      for (uint32_t i = 0; i < kept; ++i)
        positions.push_back(kv.Reduced() ? kv.maps[h].position[i] : i);
    }
  }
  KVD_RETURN_IF_ERROR(
      WriteFile(out_dir + "/k.f32", k_out.data(), k_out.size() * 4));
  KVD_RETURN_IF_ERROR(
      WriteFile(out_dir + "/v.f32", v_out.data(), v_out.size() * 4));
  KVD_RETURN_IF_ERROR(WriteFile(out_dir + "/positions.u32", positions.data(),
                                positions.size() * 4));
  const uint64_t raw_bytes =
      uint64_t{c.layers} * 2 * c.kv_heads * c.tokens * c.head_dim * 2;
  const nlohmann::json result = {
      {"chain", chain->spec()},
      {"raw_bytes", raw_bytes},
      {"encoded_bytes", encoded_bytes},
      {"bytes_per_token", double(encoded_bytes) / c.tokens / c.layers},
      {"compression", double(raw_bytes) / encoded_bytes},
      {"tokens", c.tokens},
      {"tokens_kept", kept},
      {"encode_seconds", encode_s},
      {"decode_seconds", decode_s}};
  const std::string text = result.dump();
  KVD_RETURN_IF_ERROR(
      WriteFile(out_dir + "/result.json", text.data(), text.size()));
  std::cout << text << "\n";
  return absl::OkStatus();
}

absl::Status FitLowRank(const std::string& in_dir,
                        const std::string& out_path) {
  KVD_ASSIGN_OR_RETURN(Captured c, ReadCaptured(in_dir));
  KVD_ASSIGN_OR_RETURN(std::shared_ptr<const LowRankBases> bases,
                       LowRankBases::Fit(c.kv));
  const std::vector<uint8_t> bytes = bases->Serialize();
  KVD_RETURN_IF_ERROR(WriteFile(out_path, bytes.data(), bytes.size()));
  nlohmann::json explained = nlohmann::json::object();
  for (uint32_t r : {8u, 16u, 32u, 48u}) {
    if (r > c.head_dim) continue;
    double k = 0, v = 0;
    for (uint32_t l = 0; l < c.layers; ++l) {
      for (uint32_t h = 0; h < c.kv_heads; ++h) {
        k += bases->ExplainedVariance(l, h, 0, r);
        v += bases->ExplainedVariance(l, h, 1, r);
      }
    }
    const double n = double(c.layers) * c.kv_heads;
    explained[std::to_string(r)] = {{"k", k / n}, {"v", v / n}};
  }
  std::cout << nlohmann::json{{"bases", out_path},
                              {"fingerprint",
                               absl::StrCat(absl::Hex(bases->fingerprint(),
                                                      absl::kZeroPad16))},
                              {"mean_explained_variance", explained}}
                   .dump()
            << "\n";
  return absl::OkStatus();
}

}  // namespace
}  // namespace kvd::compress

int main(int argc, char** argv) {
  CLI::App app{"kvdepot-codec: apply codec chains to captured KV tensors"};
  app.require_subcommand(1);
  std::string spec, in_dir, out, bases;
  CLI::App* apply =
      app.add_subcommand("apply", "encode and decode every layer with a chain");
  apply->add_option("--chain", spec, "codec chain text")->required();
  apply->add_option("--in", in_dir, "captured tensors")->required();
  apply->add_option("--out", out, "output directory (exists)")->required();
  apply->add_option("--bases", bases, "low-rank bases file");
  CLI::App* fit =
      app.add_subcommand("fit-lowrank", "fit low-rank bases from captured K/V");
  fit->add_option("--in", in_dir, "captured calibration tensors")->required();
  fit->add_option("--out", out, "bases file to write")->required();
  CLI11_PARSE(app, argc, argv);
  const absl::Status s = apply->parsed()
                             ? kvd::compress::Apply(spec, in_dir, out, bases)
                             : kvd::compress::FitLowRank(in_dir, out);
  if (!s.ok()) {
    std::cerr << "kvdepot-codec: " << s << "\n";
    return 1;
  }
  return 0;
}
