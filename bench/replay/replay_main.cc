// kvdepot-replay: replays a chat + shared-document workload in the
// SmolLM2-135M geometry through a store engine configured like a node, and
// prints hit rate, bytes per tier and throughput (a table, then one JSON line).
//
// Per request: Lookup the prompt's chunk keys, Get the cached prefix, Put the
// chunks a prefill would have computed. Object bytes are synthesized
// deterministically from the key; synthesis time is excluded from the store
// throughput.
#include <chrono>
#include <cstdio>
#include <random>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/replay/workload.h"
#include "core/chunk_format.h"
#include "core/config.h"
#include "nlohmann/json.hpp"
#include "store/engine/store_engine.h"
#include "store/server/node_config.h"

namespace kvd {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

std::vector<uint8_t> SynthesizeChunk(const ModelSpec& spec, const ChunkKey& key,
                                     const ChunkKey& parent) {
  std::vector<std::vector<uint8_t>> layers(spec.num_layers);
  std::vector<absl::Span<const uint8_t>> spans;
  uint64_t x;
  std::memcpy(&x, key.bytes.data(), sizeof(x));
  for (auto& layer : layers) {
    layer.resize(spec.LayerBytes(spec.chunk_tokens));
    for (size_t i = 0; i + 8 <= layer.size(); i += 8) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      std::memcpy(layer.data() + i, &x, 8);
    }
    spans.emplace_back(layer);
  }
  ChunkIdentity id{spec.Fingerprint(), key, parent, spec.chunk_tokens, ""};
  return *EncodeChunkObject(spec, id, spans);
}

int Run(int argc, char** argv) {
  CLI::App app{
      "Replays a shared-prefix serving workload through the kvdepot store "
      "engine"};
  std::string config_path;
  std::vector<std::string> overrides;
  uint32_t requests = 300;
  WorkloadOptions wo;
  app.add_option("--config", config_path,
                 "node config file (YAML), as for kvdepot-node");
  app.add_option("--set", overrides,
                 "config override section.key=value (repeatable)");
  app.add_option("--requests", requests, "requests to replay")
      ->check(CLI::Range(1u, 1000000u));
  app.add_option("--seed", wo.seed, "workload seed");
  app.add_option("--sessions", wo.sessions, "concurrent chat sessions");
  app.add_option("--documents", wo.documents, "shared documents");
  CLI11_PARSE(app, argc, argv);

  absl::StatusOr<Config> config =
      Config::Load(NodeConfigSchema(), config_path, overrides);
  if (!config.ok()) {
    std::fprintf(stderr, "kvdepot-replay: %s\n",
                 config.status().ToString().c_str());
    return 2;
  }
  absl::StatusOr<NodeSettings> settings = NodeSettingsFromConfig(*config);
  if (!settings.ok()) {
    std::fprintf(stderr, "kvdepot-replay: %s\n",
                 settings.status().ToString().c_str());
    return 2;
  }
  absl::StatusOr<std::unique_ptr<StoreEngine>> engine =
      StoreEngine::Create(settings->store);
  if (!engine.ok()) {
    std::fprintf(stderr, "kvdepot-replay: %s\n",
                 engine.status().ToString().c_str());
    return 1;
  }
  StoreEngine& store = **engine;
  const ModelSpec spec = ModelSpec::SmolLM2_135M();
  const ChunkKey fp = spec.Fingerprint();
  wo.chunk_tokens = spec.chunk_tokens;
  Workload workload(wo);

  uint64_t prompt_tokens = 0, hit_tokens = 0, got_bytes = 0, put_bytes = 0,
           errors = 0;
  uint64_t chat = 0, doc = 0;
  Clock::duration store_time{};
  const Clock::time_point start = Clock::now();
  std::vector<uint8_t> buffer;
  for (uint32_t n = 0; n < requests; ++n) {
    WorkloadRequest req = workload.Next();
    (req.kind == "chat" ? chat : doc)++;
    const std::vector<ChunkKey> keys =
        ChainChunkKeys(fp, req.tokens, spec.chunk_tokens);
    prompt_tokens += keys.size() * spec.chunk_tokens;
    Clock::time_point t0 = Clock::now();
    size_t hit = store.Lookup(keys);
    for (size_t i = 0; i < hit; ++i) {
      absl::StatusOr<uint64_t> size = store.SelectedSize(keys[i], true, {});
      if (!size.ok()) {  // moved or evicted since the lookup: recompute from
                         // here
        hit = i;
        break;
      }
      buffer.resize(*size);
      absl::StatusOr<uint64_t> got =
          store.Get({{.key = keys[i], .dst = absl::MakeSpan(buffer)}})[0];
      if (!got.ok()) {
        hit = i;
        break;
      }
      got_bytes += *got;
    }
    store_time += Clock::now() - t0;
    hit_tokens += hit * spec.chunk_tokens;
    for (size_t i = hit; i < keys.size(); ++i) {
      std::vector<uint8_t> object = SynthesizeChunk(
          spec, keys[i], i == 0 ? ChunkKey::Zero() : keys[i - 1]);
      t0 = Clock::now();
      absl::Status s =
          store.Put({keys[i]}, {absl::Span<const uint8_t>(object)})[0];
      store_time += Clock::now() - t0;
      if (!s.ok()) {
        ++errors;
        std::fprintf(stderr, "put failed: %s\n", s.ToString().c_str());
      } else {
        put_bytes += object.size();
      }
    }
  }
  const double wall = Seconds(Clock::now() - start);
  if (absl::Status s = store.Sync(); !s.ok()) {
    std::fprintf(stderr, "sync failed: %s\n", s.ToString().c_str());
    ++errors;
  }
  const StoreStats st = store.Stats();
  const double hit_rate =
      prompt_tokens ? double(hit_tokens) / prompt_tokens : 0;
  const double store_s = Seconds(store_time);
  const double gbps = store_s > 0 ? (got_bytes + put_bytes) / store_s / 1e9 : 0;

  std::printf(
      "replay: %u requests (%lu chat, %lu doc), SmolLM2-135M geometry, "
      "%u-token chunks\n",
      requests, chat, doc, spec.chunk_tokens);
  std::printf("  prompt tokens %lu, served from store %lu: hit rate %.1f%%\n",
              prompt_tokens, hit_tokens, 100 * hit_rate);
  std::printf(
      "  store throughput %.2f GB/s (get %.2f GB + put %.2f GB in %.2f s of "
      "store time; "
      "wall %.2f s)\n",
      gbps, got_bytes / 1e9, put_bytes / 1e9, store_s, wall);
  nlohmann::json tiers = nlohmann::json::object();
  for (int t = 0; t < kNumTiers; ++t) {
    if (!st.tier_enabled[t]) continue;
    const TierUsage& u = st.tiers[t];
    const auto name = std::string(TierName(static_cast<TierKind>(t)));
    std::printf(
        "  %-5s tier: %lu chunks, %.1f MiB stored / %.1f MiB capacity\n",
        name.c_str(), u.objects, u.stored_bytes / 1048576.0,
        u.capacity_bytes / 1048576.0);
    tiers[name] = {{"chunks", u.objects},
                   {"stored_bytes", u.stored_bytes},
                   {"allocated_bytes", u.allocated_bytes},
                   {"capacity_bytes", u.capacity_bytes}};
  }
  std::printf(
      "  demotions host->ssd %lu, promotions %lu, evictions %lu, dedup puts "
      "%lu, "
      "errors %lu\n",
      st.demotions[static_cast<int>(TierKind::kHost)], st.promotions,
      st.evictions, st.dedup_puts, errors);
  nlohmann::json out = {
      {"bench", "replay"},
      {"params",
       {{"requests", requests},
        {"seed", wo.seed},
        {"sessions", wo.sessions},
        {"documents", wo.documents},
        {"model", spec.model_id},
        {"chunk_tokens", spec.chunk_tokens}}},
      {"metrics",
       {{"hit_rate", hit_rate},
        {"store_gb_per_s", gbps},
        {"requests_per_s", requests / wall},
        {"get_bytes", got_bytes},
        {"put_bytes", put_bytes},
        {"errors", errors},
        {"tiers", tiers},
        {"demotions", st.demotions[static_cast<int>(TierKind::kHost)]},
        {"promotions", st.promotions},
        {"evictions", st.evictions}}}};
  std::printf("%s\n", out.dump().c_str());
  return errors == 0 ? 0 : 1;
}

}  // namespace
}  // namespace kvd

int main(int argc, char** argv) { return kvd::Run(argc, argv); }
