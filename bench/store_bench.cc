// store_bench: the node's storage path against its raw baselines, measured in
// the same run (STYLE.md §13). Prints progress on stderr and one JSON line
// {"bench":"store","params","metrics","baseline","ratio"} last on stdout.
//
//   host:  StoreEngine::Put / Get of whole 256-token chunk objects (host DRAM
//          tier only) vs memcpy of the same bytes into / out of a pre-faulted
//          buffer; SmolLM2-135M (~5.6 MiB) and Llama-3-8B (32 MiB) shapes.
//          Best of --rounds rounds; between rounds the chunks are removed.
//   ssd:   SsdTier::Put (one durable Put per chunk) and Read of the same
//          chunks vs O_DIRECT pwrite + fdatasync / pread of the same bytes
//          into a file in the same directory.
//   index: StoreEngine::Lookup of one present key, --index_keys chunks of a
//          tiny model stored, vs absl::flat_hash_set::contains on the same
//          keys; DRAM metadata per chunk from StoreStats::index_meta_bytes.
//
// Flags: --quick, --rounds=N, --index_keys=N, --ssd_dir=DIR (default
// /var/tmp/kvdepot-store-bench; removed afterwards), --skip_ssd, --skip_index.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/chunk_format.h"
#include "core/chunk_key.h"
#include "core/model_spec.h"
#include "nlohmann/json.hpp"
#include "store/engine/ssd/aligned_buffer.h"
#include "store/engine/ssd/ssd_tier.h"
#include "store/engine/store_engine.h"

namespace kvd {
namespace {

using Json = nlohmann::ordered_json;
constexpr double kGB = 1e9;

struct Args {
  bool quick = false;
  int rounds = 3;
  uint64_t index_keys = 10'000'000;
  uint64_t lookups = 2'000'000;
  std::string ssd_dir = "/var/tmp/kvdepot-store-bench";
  bool skip_ssd = false;
  bool skip_index = false;
};

[[noreturn]] void Die(absl::string_view what) {
  std::fprintf(stderr, "store_bench: %.*s\n", static_cast<int>(what.size()),
               what.data());
  std::exit(1);
}

void DieIf(const absl::Status& s, absl::string_view what) {
  if (!s.ok()) Die(absl::StrCat(what, ": ", s.ToString()));
}

Args ParseArgs(int argc, char** argv) {
  Args a;
  bool rounds_set = false, keys_set = false;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    auto value = [&](absl::string_view flag) -> absl::string_view {
      return arg.substr(flag.size());
    };
    if (arg == "--quick") {
      a.quick = true;
    } else if (arg == "--skip_ssd") {
      a.skip_ssd = true;
    } else if (arg == "--skip_index") {
      a.skip_index = true;
    } else if (absl::StartsWith(arg, "--rounds=")) {
      if (!absl::SimpleAtoi(value("--rounds="), &a.rounds) || a.rounds < 1) {
        Die(absl::StrCat("--rounds=", value("--rounds="),
                         " must be an integer >= 1"));
      }
      rounds_set = true;
    } else if (absl::StartsWith(arg, "--index_keys=")) {
      if (!absl::SimpleAtoi(value("--index_keys="), &a.index_keys) ||
          a.index_keys < 1000) {
        Die(absl::StrCat("--index_keys=", value("--index_keys="),
                         " must be >= 1000"));
      }
      keys_set = true;
    } else if (absl::StartsWith(arg, "--ssd_dir=")) {
      a.ssd_dir = std::string(value("--ssd_dir="));
    } else {
      Die(absl::StrCat(
          "unknown flag ", arg,
          " (flags: --quick --rounds=N --index_keys=N --ssd_dir=DIR "
          "--skip_ssd --skip_index)"));
    }
  }
  if (a.quick) {
    if (!rounds_set) a.rounds = 2;
    if (!keys_set) a.index_keys = 1'000'000;
  }
  a.lookups =
      std::min<uint64_t>(a.quick ? 500'000 : 2'000'000, a.index_keys * 4);
  return a;
}

double Now() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// splitmix64: fast deterministic bytes for payloads and keys.
struct Rng {
  uint64_t s;
  uint64_t Next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  void Fill(uint8_t* p, uint64_t n) {
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      const uint64_t v = Next();
      std::memcpy(p + i, &v, 8);
    }
    for (; i < n; ++i) p[i] = static_cast<uint8_t>(Next());
  }
  ChunkKey Key() {
    ChunkKey k;
    Fill(k.bytes.data(), ChunkKey::kSize);
    return k;
  }
};

// A chunk object of `spec` with random payload, in the canonical format.
std::vector<uint8_t> MakeObject(const ModelSpec& spec, const ChunkKey& fp,
                                const ChunkKey& key, Rng& rng,
                                std::vector<uint8_t>& payload) {
  const uint64_t layer_bytes = spec.LayerBytes(spec.chunk_tokens);
  payload.resize(layer_bytes * spec.num_layers);
  rng.Fill(payload.data(), payload.size());
  std::vector<absl::Span<const uint8_t>> layers;
  for (uint32_t l = 0; l < spec.num_layers; ++l) {
    layers.emplace_back(payload.data() + l * layer_bytes, layer_bytes);
  }
  absl::StatusOr<std::vector<uint8_t>> obj = EncodeChunkObject(
      spec, {.namespace_fp = fp, .key = key, .token_count = spec.chunk_tokens},
      layers);
  DieIf(obj.status(), "EncodeChunkObject");
  return std::move(obj).value();
}

struct Shape {
  std::string name;
  ModelSpec spec;
  int chunks;
  std::vector<ChunkKey> keys;
  std::vector<std::vector<uint8_t>> objects;
  uint64_t object_bytes = 0;
};

Shape MakeShape(std::string name, ModelSpec spec, int chunks, Rng& rng) {
  Shape s{std::move(name), std::move(spec), chunks};
  const ChunkKey fp = s.spec.Fingerprint();
  std::vector<uint8_t> payload;
  for (int i = 0; i < chunks; ++i) {
    s.keys.push_back(rng.Key());
    s.objects.push_back(MakeObject(s.spec, fp, s.keys.back(), rng, payload));
  }
  s.object_bytes = s.objects[0].size();
  return s;
}

std::vector<absl::Span<const uint8_t>> Spans(const Shape& s) {
  std::vector<absl::Span<const uint8_t>> v;
  for (const auto& o : s.objects) v.emplace_back(o);
  return v;
}

// Engine put/get vs memcpy; returns seconds of the best round of each.
struct HostResult {
  double put_s, get_s, memcpy_put_s, memcpy_get_s;
  std::string huge_pages;
};

HostResult RunHost(const Shape& s, int rounds) {
  const uint64_t n = s.objects.size();
  const uint64_t total = n * s.object_bytes;
  StoreOptions opts;
  opts.host_capacity_bytes = total + total / 4 + (256ull << 20);
  absl::StatusOr<std::unique_ptr<StoreEngine>> engine =
      StoreEngine::Create(opts);
  DieIf(engine.status(), "StoreEngine::Create");
  const auto spans = Spans(s);
  // Destination buffers (two, alternating) and the memcpy baseline's pool,
  // pre-faulted like the host tier.
  std::vector<std::vector<uint8_t>> dst(
      2, std::vector<uint8_t>(s.object_bytes, 1));
  std::vector<uint8_t> pool(total, 1);
  HostResult r{1e30, 1e30, 1e30, 1e30, ""};
  for (int round = 0; round < rounds; ++round) {
    double t0 = Now();
    std::vector<absl::Status> put = (*engine)->Put(s.keys, spans);
    r.put_s = std::min(r.put_s, Now() - t0);
    for (const auto& st : put) DieIf(st, "StoreEngine::Put");
    std::vector<GetRequest> reqs(n);
    for (uint64_t i = 0; i < n; ++i) {
      reqs[i] = {.key = s.keys[i], .dst = absl::MakeSpan(dst[i % 2])};
    }
    t0 = Now();
    std::vector<absl::StatusOr<uint64_t>> got = (*engine)->Get(reqs);
    r.get_s = std::min(r.get_s, Now() - t0);
    for (const auto& g : got) DieIf(g.status(), "StoreEngine::Get");
    if (dst[(n - 1) % 2] != s.objects[n - 1])
      Die("StoreEngine::Get returned other bytes");
    for (const auto& st : (*engine)->Remove(s.keys))
      DieIf(st, "StoreEngine::Remove");

    t0 = Now();
    for (uint64_t i = 0; i < n; ++i) {
      std::memcpy(pool.data() + i * s.object_bytes, s.objects[i].data(),
                  s.object_bytes);
    }
    r.memcpy_put_s = std::min(r.memcpy_put_s, Now() - t0);
    t0 = Now();
    for (uint64_t i = 0; i < n; ++i) {
      std::memcpy(dst[i % 2].data(), pool.data() + i * s.object_bytes,
                  s.object_bytes);
    }
    r.memcpy_get_s = std::min(r.memcpy_get_s, Now() - t0);
  }
  r.huge_pages = (*engine)->Stats().host_huge_pages ? "yes" : "no";
  return r;
}

struct SsdResult {
  double write_s = 0, read_s = 0, raw_write_s = 0, raw_read_s = 0;
  bool tier_direct = false, raw_direct = false;
  double map_bytes_per_entry = 0;
};

SsdResult RunSsd(const Shape& s, const std::string& dir) {
  SsdResult r;
  const uint64_t n = s.objects.size();
  const uint64_t padded = AlignUp(s.object_bytes);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) Die(absl::StrCat("create_directories(", dir, "): ", ec.message()));
  // Both sides write from 4 KiB-aligned buffers, as the engine's demotions
  // do (they write straight from the host pool).
  std::vector<AlignedBuffer> src;
  for (uint64_t i = 0; i < n; ++i) {
    src.emplace_back(padded);
    std::memcpy(src.back().data(), s.objects[i].data(), s.object_bytes);
  }
  const std::string tier_dir = dir + "/tier-" + s.name;
  std::filesystem::remove_all(tier_dir, ec);
  {
    SsdTierOptions o;
    o.dir = tier_dir;
    o.segment_bytes = 256ull << 20;
    o.capacity_bytes = 2 * n * padded + 4 * o.segment_bytes;
    absl::StatusOr<std::unique_ptr<SsdTier>> tier = SsdTier::Open(o);
    DieIf(tier.status(), "SsdTier::Open");
    r.tier_direct = (*tier)->direct_io_active();
    double t0 = Now();
    for (uint64_t i = 0; i < n; ++i) {
      SsdWriteItem item{
          .key = s.keys[i], .codec = "", .object = src[i].span(s.object_bytes)};
      DieIf((*tier)->Put(absl::MakeConstSpan(&item, 1)), "SsdTier::Put");
    }
    r.write_s = Now() - t0;
    AlignedBuffer dst(padded);
    t0 = Now();
    for (uint64_t i = 0; i < n; ++i) {
      DieIf((*tier)->Read(s.keys[i], dst.span(s.object_bytes)),
            "SsdTier::Read");
    }
    r.read_s = Now() - t0;
    if (std::memcmp(dst.data(), s.objects[n - 1].data(), s.object_bytes) != 0) {
      Die("SsdTier::Read returned other bytes");
    }
    r.map_bytes_per_entry =
        static_cast<double>((*tier)->IndexMemoryBytes()) / n;
  }
  std::filesystem::remove_all(tier_dir, ec);

  // Raw baseline: the same bytes from the same aligned buffers, 4 KiB padded.
  const std::string raw_path = dir + "/raw-" + s.name + ".bin";
  int fd = open(raw_path.c_str(), O_CREAT | O_TRUNC | O_RDWR | O_DIRECT, 0644);
  r.raw_direct = fd >= 0;
  if (fd < 0) fd = open(raw_path.c_str(), O_CREAT | O_TRUNC | O_RDWR, 0644);
  if (fd < 0) Die(absl::StrCat("open(", raw_path, "): ", std::strerror(errno)));
  double t0 = Now();
  for (uint64_t i = 0; i < n; ++i) {
    if (pwrite(fd, src[i].data(), padded, i * padded) !=
        static_cast<ssize_t>(padded)) {
      Die(absl::StrCat("pwrite(", raw_path, "): ", std::strerror(errno)));
    }
    if (fdatasync(fd) != 0)
      Die(absl::StrCat("fdatasync: ", std::strerror(errno)));
  }
  r.raw_write_s = Now() - t0;
  AlignedBuffer dst(padded);
  t0 = Now();
  for (uint64_t i = 0; i < n; ++i) {
    if (pread(fd, dst.data(), padded, i * padded) !=
        static_cast<ssize_t>(padded)) {
      Die(absl::StrCat("pread(", raw_path, "): ", std::strerror(errno)));
    }
  }
  r.raw_read_s = Now() - t0;
  close(fd);
  unlink(raw_path.c_str());
  return r;
}

struct IndexResult {
  double put_per_s = 0, lookups_per_s = 0, miss_lookups_per_s = 0,
         hash_set_per_s = 0;
  double meta_bytes_per_chunk = 0;
  uint64_t object_bytes = 0;
  uint64_t chunks = 0;
};

IndexResult RunIndex(uint64_t num_keys, uint64_t lookups) {
  IndexResult r;
  ModelSpec tiny;
  tiny.model_id = "kvdepot/bench-tiny";
  tiny.num_layers = 1;
  tiny.kv_heads = 1;
  tiny.head_dim = 4;
  tiny.chunk_tokens = 4;
  DieIf(tiny.Validate(), "tiny ModelSpec");
  const ChunkKey fp = tiny.Fingerprint();
  Rng rng{42};
  std::vector<uint8_t> payload;
  r.object_bytes = MakeObject(tiny, fp, rng.Key(), rng, payload).size();

  StoreOptions opts;
  opts.host_capacity_bytes = num_keys * (r.object_bytes + 64) + (512ull << 20);
  absl::StatusOr<std::unique_ptr<StoreEngine>> engine =
      StoreEngine::Create(opts);
  DieIf(engine.status(), "StoreEngine::Create (index)");

  std::vector<ChunkKey> keys(num_keys);
  constexpr uint64_t kBatch = 1024;
  std::vector<std::vector<uint8_t>> objects(kBatch);
  std::vector<absl::Span<const uint8_t>> spans(kBatch);
  double put_time = 0;
  for (uint64_t base = 0; base < num_keys; base += kBatch) {
    const uint64_t m = std::min(kBatch, num_keys - base);
    for (uint64_t i = 0; i < m; ++i) {
      keys[base + i] = rng.Key();
      objects[i] = MakeObject(tiny, fp, keys[base + i], rng, payload);
      spans[i] = objects[i];
    }
    const double t0 = Now();
    std::vector<absl::Status> st =
        (*engine)->Put(absl::MakeConstSpan(keys).subspan(base, m),
                       absl::MakeConstSpan(spans).subspan(0, m));
    put_time += Now() - t0;
    for (const auto& s : st) DieIf(s, "StoreEngine::Put (index)");
    if (base % (1 << 20) == 0)
      std::fprintf(stderr, "  index: %lu keys stored\n", base);
  }
  r.put_per_s = num_keys / put_time;
  const StoreStats stats = (*engine)->Stats();
  r.chunks = stats.chunks;
  if (stats.chunks != num_keys) {
    Die(absl::StrCat(
        "engine holds ", stats.chunks, " chunks, expected ", num_keys,
        " (did it evict? host_capacity_bytes=", opts.host_capacity_bytes, ")"));
  }
  r.meta_bytes_per_chunk =
      static_cast<double>(stats.index_meta_bytes) / stats.chunks;

  std::vector<uint32_t> order(lookups);
  for (auto& o : order) o = static_cast<uint32_t>(rng.Next() % num_keys);
  uint64_t hits = 0;
  double t0 = Now();
  for (uint32_t i : order)
    hits += (*engine)->Lookup(absl::MakeConstSpan(&keys[i], 1));
  r.lookups_per_s = lookups / (Now() - t0);
  if (hits != lookups)
    Die(absl::StrCat("Lookup found ", hits, " of ", lookups, " keys"));

  std::vector<ChunkKey> absent(std::min<uint64_t>(lookups, 1 << 20));
  for (auto& k : absent) k = rng.Key();
  hits = 0;
  t0 = Now();
  for (const ChunkKey& k : absent)
    hits += (*engine)->Lookup(absl::MakeConstSpan(&k, 1));
  r.miss_lookups_per_s = absent.size() / (Now() - t0);
  engine->reset();  // give the pool back before the baseline's set

  absl::flat_hash_set<ChunkKey> set(keys.begin(), keys.end());
  hits = 0;
  t0 = Now();
  for (uint32_t i : order) hits += set.contains(keys[i]);
  r.hash_set_per_s = lookups / (Now() - t0);
  if (hits != lookups) Die("flat_hash_set lost keys");
  return r;
}

double Gbps(uint64_t bytes, double s) { return s > 0 ? bytes / s / kGB : 0; }
double Round(double v, int digits = 3) {
  double f = 1;
  for (int i = 0; i < digits; ++i) f *= 10;
  return std::round(v * f) / f;
}

int Main(int argc, char** argv) {
  const Args args = ParseArgs(argc, argv);
  Rng rng{20240601};
  std::vector<Shape> shapes;
  shapes.push_back(MakeShape("smollm2_135m", ModelSpec::SmolLM2_135M(),
                             args.quick ? 16 : 64, rng));
  shapes.push_back(
      MakeShape("llama3_8b", ModelSpec::Llama3_8B(), args.quick ? 4 : 16, rng));

  Json params, metrics, baseline, ratio;
  params["quick"] = args.quick;
  params["rounds"] = args.rounds;
  params["cpus"] = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));

  uint64_t host_bytes = 0;
  double put_s = 0, get_s = 0, mput_s = 0, mget_s = 0;
  for (const Shape& s : shapes) {
    std::fprintf(stderr, "host: %s, %zu chunks of %lu bytes\n", s.name.c_str(),
                 s.objects.size(), s.object_bytes);
    const HostResult h = RunHost(s, args.rounds);
    const uint64_t bytes = s.objects.size() * s.object_bytes;
    params["chunks_" + s.name] = s.objects.size();
    params["chunk_bytes_" + s.name] = s.object_bytes;
    params["host_huge_pages"] = h.huge_pages;
    metrics["host_put_gbps_" + s.name] = Round(Gbps(bytes, h.put_s));
    metrics["host_get_gbps_" + s.name] = Round(Gbps(bytes, h.get_s));
    baseline["memcpy_put_gbps_" + s.name] = Round(Gbps(bytes, h.memcpy_put_s));
    baseline["memcpy_get_gbps_" + s.name] = Round(Gbps(bytes, h.memcpy_get_s));
    host_bytes += bytes;
    put_s += h.put_s;
    get_s += h.get_s;
    mput_s += h.memcpy_put_s;
    mget_s += h.memcpy_get_s;
  }
  metrics["host_put_gbps"] = Round(Gbps(host_bytes, put_s));
  metrics["host_get_gbps"] = Round(Gbps(host_bytes, get_s));
  baseline["memcpy_put_gbps"] = Round(Gbps(host_bytes, mput_s));
  baseline["memcpy_get_gbps"] = Round(Gbps(host_bytes, mget_s));
  ratio["host_put_vs_memcpy"] = Round(mput_s / put_s);
  ratio["host_get_vs_memcpy"] = Round(mget_s / get_s);

  if (!args.skip_ssd) {
    params["ssd_dir"] = args.ssd_dir;
    double w = 0, rd = 0, rw = 0, rr = 0;
    bool tier_direct = true, raw_direct = true;
    for (const Shape& s : shapes) {
      std::fprintf(stderr, "ssd: %s\n", s.name.c_str());
      const SsdResult r = RunSsd(s, args.ssd_dir);
      const uint64_t bytes = s.objects.size() * s.object_bytes;
      metrics["ssd_write_gbps_" + s.name] = Round(Gbps(bytes, r.write_s));
      metrics["ssd_read_gbps_" + s.name] = Round(Gbps(bytes, r.read_s));
      baseline["raw_write_gbps_" + s.name] = Round(Gbps(bytes, r.raw_write_s));
      baseline["raw_read_gbps_" + s.name] = Round(Gbps(bytes, r.raw_read_s));
      metrics["ssd_map_bytes_per_entry_" + s.name] =
          Round(r.map_bytes_per_entry, 1);
      w += r.write_s;
      rd += r.read_s;
      rw += r.raw_write_s;
      rr += r.raw_read_s;
      tier_direct = tier_direct && r.tier_direct;
      raw_direct = raw_direct && r.raw_direct;
    }
    std::error_code ec;
    std::filesystem::remove(args.ssd_dir, ec);  // only if empty (we created it)
    params["ssd_tier_direct_io"] = tier_direct;
    params["raw_direct_io"] = raw_direct;
    metrics["ssd_write_gbps"] = Round(Gbps(host_bytes, w));
    metrics["ssd_read_gbps"] = Round(Gbps(host_bytes, rd));
    baseline["raw_write_gbps"] = Round(Gbps(host_bytes, rw));
    baseline["raw_read_gbps"] = Round(Gbps(host_bytes, rr));
    ratio["ssd_write_vs_raw"] = Round(rw / w);
    ratio["ssd_read_vs_raw"] = Round(rr / rd);
  }
  shapes.clear();

  if (!args.skip_index) {
    std::fprintf(stderr, "index: %lu keys\n", args.index_keys);
    const IndexResult ix = RunIndex(args.index_keys, args.lookups);
    params["index_keys"] = args.index_keys;
    params["index_lookups"] = args.lookups;
    params["index_object_bytes"] = ix.object_bytes;
    metrics["index_put_per_s"] = Round(ix.put_per_s, 0);
    metrics["index_lookups_per_s"] = Round(ix.lookups_per_s, 0);
    metrics["index_miss_lookups_per_s"] = Round(ix.miss_lookups_per_s, 0);
    metrics["meta_bytes_per_chunk"] = Round(ix.meta_bytes_per_chunk, 1);
    baseline["flat_hash_set_lookups_per_s"] = Round(ix.hash_set_per_s, 0);
    ratio["index_lookup_vs_hash_set"] =
        Round(ix.lookups_per_s / ix.hash_set_per_s);
  }

  Json out;
  out["bench"] = "store";
  out["params"] = params;
  out["metrics"] = metrics;
  out["baseline"] = baseline;
  out["ratio"] = ratio;
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace
}  // namespace kvd

int main(int argc, char** argv) { return kvd::Main(argc, argv); }
