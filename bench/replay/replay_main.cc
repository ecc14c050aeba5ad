// kvdepot-replay: replays a chat + shared-document workload in the
// SmolLM2-135M geometry through a running kvdepot-node, over its data path
// (the client library, store/client: UCX), and prints hit rate, bytes per
// tier (the node's Stats over gRPC), throughput and data-path throughput
// (a table, then one JSON line).
//
// Per request: Lookup the prompt's chunk keys, Get the cached prefix in
// batches into one registered staging buffer, Put the chunks a prefill would
// have computed in batches from the same buffer. Object bytes are
// synthesized deterministically from the key, so every Get is checked byte
// for byte against a fresh synthesis; a mismatch or a failed call counts as
// an error and makes the exit code 1. Synthesis and verification are
// excluded from the data-path time.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "bench/replay/workload.h"
#include "core/chunk_format.h"
#include "core/chunk_key.h"
#include "core/model_spec.h"
#include "nlohmann/json.hpp"
#include "store/cli/control_client.h"
#include "store/client/client.h"

namespace kvd {
namespace {

using Clock = std::chrono::steady_clock;

// Chunks per Get or Put batch; the staging buffer holds this many objects.
constexpr size_t kBatchChunks = 16;

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

std::string TierLabel(kvdepot::v1::Tier tier) {
  return absl::AsciiStrToLower(
      kvdepot::v1::Tier_Name(tier).substr(sizeof("TIER_") - 1));
}

// Counters the replay caused: `after` minus `before`.
struct Deltas {
  uint64_t demotions = 0, promotions = 0, evictions = 0, dedup_puts = 0;
};

Deltas Diff(const kvdepot::v1::StatsResponse& before,
            const kvdepot::v1::StatsResponse& after) {
  Deltas d;
  for (const auto& t : after.tiers()) {
    if (t.tier() == kvdepot::v1::TIER_HOST) d.demotions += t.demotions();
  }
  for (const auto& t : before.tiers()) {
    if (t.tier() == kvdepot::v1::TIER_HOST) d.demotions -= t.demotions();
  }
  d.promotions = after.promotions() - before.promotions();
  d.evictions = after.evictions() - before.evictions();
  d.dedup_puts = after.dedup_puts() - before.dedup_puts();
  return d;
}

class Replay {
 public:
  Replay(const ModelSpec& spec, Client* client, absl::Span<uint8_t> staging,
         size_t object_bytes)
      : spec_(spec),
        client_(client),
        staging_(staging),
        object_bytes_(object_bytes) {}

  // One request: returns the number of prompt chunks served from the node.
  size_t Serve(const std::vector<ChunkKey>& keys) {
    Clock::time_point t0 = Clock::now();
    absl::StatusOr<size_t> lookup = client_->Lookup(keys);
    lookup_time_ += Clock::now() - t0;
    if (!lookup.ok()) {
      Error(absl::StrCat("lookup failed: ", lookup.status().ToString()));
      return 0;
    }
    size_t hit = 0;
    while (hit < *lookup) {
      const size_t got =
          GetBatch(keys, hit, std::min(*lookup, hit + kBatchChunks));
      hit += got;
      if (got < kBatchChunks) break;  // moved or evicted since the lookup
    }
    for (size_t i = hit; i < keys.size(); i += kBatchChunks) {
      PutBatch(keys, i, std::min(keys.size(), i + kBatchChunks));
    }
    return hit;
  }

  uint64_t got_bytes() const { return got_bytes_; }
  uint64_t put_bytes() const { return put_bytes_; }
  uint64_t verified() const { return verified_; }
  uint64_t errors() const { return errors_; }
  double get_seconds() const { return Seconds(get_time_); }
  double put_seconds() const { return Seconds(put_time_); }
  double data_seconds() const {
    return Seconds(lookup_time_ + get_time_ + put_time_);
  }

 private:
  ChunkKey Parent(const std::vector<ChunkKey>& keys, size_t i) const {
    return i == 0 ? ChunkKey::Zero() : keys[i - 1];
  }

  void Error(const std::string& text) {
    ++errors_;
    if (errors_ <= 10)
      std::fprintf(stderr, "kvdepot-replay: %s\n", text.c_str());
  }

  // Gets keys[begin, end); returns how many leading chunks arrived intact.
  size_t GetBatch(const std::vector<ChunkKey>& keys, size_t begin, size_t end) {
    std::vector<GetTarget> targets;
    for (size_t i = begin; i < end; ++i) {
      targets.push_back(
          {keys[i],
           true,
           {},
           staging_.subspan((i - begin) * object_bytes_, object_bytes_)});
    }
    const Clock::time_point t0 = Clock::now();
    std::vector<absl::StatusOr<uint64_t>> got = client_->Get(targets);
    get_time_ += Clock::now() - t0;
    for (size_t i = begin; i < end; ++i) {
      const absl::StatusOr<uint64_t>& g = got[i - begin];
      if (absl::IsNotFound(g.status())) return i - begin;  // recompute
      if (!g.ok()) {
        Error(absl::StrCat("get of chunk ", keys[i].ShortHex(),
                           " failed: ", g.status().ToString()));
        return i - begin;
      }
      const std::vector<uint8_t> expect =
          SynthesizeChunk(spec_, keys[i], Parent(keys, i));
      if (*g != expect.size() ||
          std::memcmp(targets[i - begin].dst.data(), expect.data(),
                      expect.size()) != 0) {
        Error(absl::StrCat("get of chunk ", keys[i].ShortHex(), " returned ",
                           *g, " bytes that differ from the ", expect.size(),
                           " put"));
        return i - begin;
      }
      got_bytes_ += *g;
      ++verified_;
    }
    return end - begin;
  }

  void PutBatch(const std::vector<ChunkKey>& keys, size_t begin, size_t end) {
    std::vector<absl::Span<const uint8_t>> objects;
    for (size_t i = begin; i < end; ++i) {
      const std::vector<uint8_t> object =
          SynthesizeChunk(spec_, keys[i], Parent(keys, i));
      uint8_t* slot = staging_.data() + (i - begin) * object_bytes_;
      std::memcpy(slot, object.data(), object.size());
      objects.emplace_back(slot, object.size());
    }
    const Clock::time_point t0 = Clock::now();
    std::vector<absl::Status> put = client_->Put(
        absl::MakeConstSpan(keys).subspan(begin, end - begin), objects);
    put_time_ += Clock::now() - t0;
    for (size_t i = begin; i < end; ++i) {
      if (put[i - begin].ok()) {
        put_bytes_ += objects[i - begin].size();
      } else {
        Error(absl::StrCat("put of chunk ", keys[i].ShortHex(),
                           " failed: ", put[i - begin].ToString()));
      }
    }
  }

  const ModelSpec spec_;
  Client* const client_;
  const absl::Span<uint8_t> staging_;
  const size_t object_bytes_;
  uint64_t got_bytes_ = 0, put_bytes_ = 0, verified_ = 0, errors_ = 0;
  Clock::duration lookup_time_{}, get_time_{}, put_time_{};
};

int Run(int argc, char** argv) {
  CLI::App app{
      "Replays a shared-prefix serving workload through a kvdepot-node's "
      "data path"};
  std::string node = "127.0.0.1:7400";
  ClientOptions options;
  std::string protocol = "auto";
  uint32_t requests = 300;
  WorkloadOptions wo;
  app.add_option("--node", node, "the node's control address HOST:PORT")
      ->capture_default_str();
  app.add_option("--ucx-tls", options.ucx_tls,
                 "UCX_TLS of the client (default: UCX's choice)");
  app.add_option("--protocol", protocol, "auto, rma or am")
      ->check(CLI::IsMember({"auto", "rma", "am"}))
      ->capture_default_str();
  app.add_option("--token", options.token,
                 "the node's data token (default: $KVDEPOT_TOKEN)");
  app.add_option("--requests", requests, "requests to replay")
      ->check(CLI::Range(1u, 1000000u));
  app.add_option("--seed", wo.seed, "workload seed");
  app.add_option("--sessions", wo.sessions, "concurrent chat sessions");
  app.add_option("--documents", wo.documents, "shared documents");
  CLI11_PARSE(app, argc, argv);
  options.address = node;
  if (const char* env = std::getenv("KVDEPOT_TOKEN");
      options.token.empty() && env != nullptr) {
    options.token = env;
  }
  if (protocol == "rma") options.protocol = kvdepot::v1::DATA_PROTOCOL_RMA;
  if (protocol == "am") options.protocol = kvdepot::v1::DATA_PROTOCOL_AM;

  absl::StatusOr<std::unique_ptr<ControlClient>> control =
      ControlClient::Create(node, absl::Seconds(10));
  absl::StatusOr<kvdepot::v1::StatsResponse> before =
      control.ok() ? (*control)->Stats() : control.status();
  if (!before.ok()) {
    std::fprintf(stderr, "kvdepot-replay: %s\n",
                 before.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(options);
  if (!client.ok()) {
    std::fprintf(stderr, "kvdepot-replay: connect to %s: %s\n", node.c_str(),
                 client.status().ToString().c_str());
    return 1;
  }
  const ModelSpec spec = ModelSpec::SmolLM2_135M();
  const ChunkKey fp = spec.Fingerprint();
  const size_t object_bytes =
      SynthesizeChunk(spec, fp, ChunkKey::Zero()).size();
  std::vector<uint8_t> staging(kBatchChunks * object_bytes);
  absl::StatusOr<std::unique_ptr<Registration>> registration =
      (*client)->RegisterBuffer(absl::MakeSpan(staging));
  if (!registration.ok()) {
    std::fprintf(stderr, "kvdepot-replay: register the staging buffer: %s\n",
                 registration.status().ToString().c_str());
    return 1;
  }
  const std::string session_protocol = absl::AsciiStrToLower(
      kvdepot::v1::DataProtocol_Name((*client)->hello().protocol())
          .substr(sizeof("DATA_PROTOCOL_") - 1));

  wo.chunk_tokens = spec.chunk_tokens;
  Workload workload(wo);
  Replay replay(spec, client->get(), absl::MakeSpan(staging), object_bytes);
  uint64_t prompt_tokens = 0, hit_tokens = 0, chat = 0, doc = 0;
  const Clock::time_point start = Clock::now();
  for (uint32_t n = 0; n < requests; ++n) {
    WorkloadRequest req = workload.Next();
    (req.kind == "chat" ? chat : doc)++;
    const std::vector<ChunkKey> keys =
        ChainChunkKeys(fp, req.tokens, spec.chunk_tokens);
    prompt_tokens += keys.size() * spec.chunk_tokens;
    hit_tokens += replay.Serve(keys) * spec.chunk_tokens;
  }
  const double wall = Seconds(Clock::now() - start);
  registration->reset();

  uint64_t errors = replay.errors();
  absl::StatusOr<kvdepot::v1::StatsResponse> after = (*control)->Stats();
  if (!after.ok()) {
    std::fprintf(stderr, "kvdepot-replay: %s\n",
                 after.status().ToString().c_str());
    after = kvdepot::v1::StatsResponse();
    ++errors;
  }
  const Deltas d = Diff(*before, *after);
  const double hit_rate =
      prompt_tokens ? double(hit_tokens) / prompt_tokens : 0;
  auto rate = [](uint64_t bytes, double s) {
    return s > 0 ? bytes / s / 1e9 : 0;
  };
  const double data_gbps =
      rate(replay.got_bytes() + replay.put_bytes(), replay.data_seconds());
  const double get_gbps = rate(replay.got_bytes(), replay.get_seconds());
  const double put_gbps = rate(replay.put_bytes(), replay.put_seconds());

  std::printf(
      "replay: %u requests (%lu chat, %lu doc), SmolLM2-135M geometry, "
      "%u-token chunks, through node %s (protocol %s)\n",
      requests, chat, doc, spec.chunk_tokens, node.c_str(),
      session_protocol.c_str());
  std::printf(
      "  prompt tokens %lu, served from the node %lu: hit rate %.1f%%\n",
      prompt_tokens, hit_tokens, 100 * hit_rate);
  std::printf(
      "  data path %.2f GB/s (get %.2f GB at %.2f GB/s, %lu chunks verified; "
      "put %.2f GB at %.2f GB/s; %.2f s in client calls)\n",
      data_gbps, replay.got_bytes() / 1e9, get_gbps, replay.verified(),
      replay.put_bytes() / 1e9, put_gbps, replay.data_seconds());
  std::printf("  throughput %.1f requests/s (wall %.2f s)\n", requests / wall,
              wall);
  nlohmann::json tiers = nlohmann::json::object();
  for (const kvdepot::v1::TierStats& t : after->tiers()) {
    if (!t.enabled()) continue;
    const std::string name = TierLabel(t.tier());
    std::printf(
        "  %-5s tier: %lu chunks, %.1f MiB stored / %.1f MiB capacity\n",
        name.c_str(), t.objects(), t.stored_bytes() / 1048576.0,
        t.capacity_bytes() / 1048576.0);
    tiers[name] = {{"chunks", t.objects()},
                   {"stored_bytes", t.stored_bytes()},
                   {"allocated_bytes", t.allocated_bytes()},
                   {"capacity_bytes", t.capacity_bytes()}};
  }
  std::printf(
      "  demotions host->ssd %lu, promotions %lu, evictions %lu, dedup puts "
      "%lu, errors %lu\n",
      d.demotions, d.promotions, d.evictions, d.dedup_puts, errors);
  nlohmann::json out = {{"bench", "replay"},
                        {"params",
                         {{"requests", requests},
                          {"seed", wo.seed},
                          {"sessions", wo.sessions},
                          {"documents", wo.documents},
                          {"model", spec.model_id},
                          {"chunk_tokens", spec.chunk_tokens},
                          {"node", node},
                          {"ucx_tls", options.ucx_tls},
                          {"protocol", session_protocol}}},
                        {"metrics",
                         {{"hit_rate", hit_rate},
                          {"data_path_gb_per_s", data_gbps},
                          {"get_gb_per_s", get_gbps},
                          {"put_gb_per_s", put_gbps},
                          {"requests_per_s", requests / wall},
                          {"get_bytes", replay.got_bytes()},
                          {"put_bytes", replay.put_bytes()},
                          {"verified_chunks", replay.verified()},
                          {"errors", errors},
                          {"tiers", tiers},
                          {"demotions", d.demotions},
                          {"promotions", d.promotions},
                          {"evictions", d.evictions},
                          {"dedup_puts", d.dedup_puts}}}};
  std::printf("%s\n", out.dump().c_str());
  return errors == 0 ? 0 : 1;
}

}  // namespace
}  // namespace kvd

int main(int argc, char** argv) { return kvd::Run(argc, argv); }
