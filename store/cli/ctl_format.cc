#include "store/cli/ctl_format.h"

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"

namespace kvd {
namespace {

using json = nlohmann::ordered_json;

// TIER_HOST -> "host"; out-of-range -> "unknown(N)".
std::string EnumLabel(const std::string& name, absl::string_view prefix,
                      int value) {
  if (name.empty()) return absl::StrCat("unknown(", value, ")");
  return absl::AsciiStrToLower(absl::StripPrefix(name, prefix));
}

// hits / (hits + misses), or null when there were none.
json Rate(uint64_t hits, uint64_t total) {
  if (total == 0) return nullptr;
  return static_cast<double>(hits) / static_cast<double>(total);
}

std::string Percent(uint64_t part, uint64_t whole) {
  if (whole == 0) return "-";
  return absl::StrFormat(
      "%.1f%%", 100.0 * static_cast<double>(part) / static_cast<double>(whole));
}

// Left-aligned columns separated by two spaces.
std::string Table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    width.resize(std::max(width.size(), row.size()));
    for (size_t i = 0; i < row.size(); ++i) {
      width[i] = std::max(width[i], row[i].size());
    }
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line.append(width[i] - row[i].size() + 2, ' ');
    }
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

}  // namespace

std::string HumanBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  double v = static_cast<double>(bytes) / 1024;
  int unit = 0;
  while (v >= 1024 && unit + 1 < 5) {
    v /= 1024;
    ++unit;
  }
  return absl::StrFormat("%.2f %s", v, kUnits[unit]);
}

std::string HumanDuration(uint64_t ms) {
  uint64_t s = ms / 1000;
  uint64_t d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60;
  s %= 60;
  if (d > 0) return absl::StrFormat("%dd %02dh %02dm", d, h, m);
  if (h > 0) return absl::StrFormat("%dh %02dm %02ds", h, m, s);
  if (m > 0) return absl::StrFormat("%dm %02ds", m, s);
  return absl::StrFormat("%ds", s);
}

std::string TierLabel(int tier) {
  return EnumLabel(
      kvdepot::v1::Tier_IsValid(tier)
          ? kvdepot::v1::Tier_Name(static_cast<kvdepot::v1::Tier>(tier))
          : std::string(),
      "TIER_", tier);
}

std::string ModeLabel(int mode) {
  return EnumLabel(
      kvdepot::v1::Mode_IsValid(mode)
          ? kvdepot::v1::Mode_Name(static_cast<kvdepot::v1::Mode>(mode))
          : std::string(),
      "MODE_", mode);
}

std::string HealthLabel(int health) {
  return EnumLabel(
      kvdepot::v1::Health_IsValid(health)
          ? kvdepot::v1::Health_Name(static_cast<kvdepot::v1::Health>(health))
          : std::string(),
      "HEALTH_", health);
}

json StatusToJson(const kvdepot::v1::StatusResponse& status) {
  json tiers = json::array();
  for (int tier : status.tiers_enabled()) tiers.push_back(TierLabel(tier));
  return json{
      {"node_id", status.node_id()},
      {"version", status.version()},
      {"mode", ModeLabel(status.mode())},
      {"health", HealthLabel(status.health())},
      {"health_detail", status.health_detail()},
      {"listen_address", status.listen_address()},
      {"uptime_ms", status.uptime_ms()},
      {"start_time_unix_ms", status.start_time_unix_ms()},
      {"tiers_enabled", tiers},
      {"cluster", status.cluster()},
  };
}

json StatsToJson(const kvdepot::v1::StatsResponse& stats) {
  json tiers = json::array();
  for (const kvdepot::v1::TierStats& t : stats.tiers()) {
    tiers.push_back(json{
        {"tier", TierLabel(t.tier())},
        {"enabled", t.enabled()},
        {"capacity_bytes", t.capacity_bytes()},
        {"allocated_bytes", t.allocated_bytes()},
        {"stored_bytes", t.stored_bytes()},
        {"objects", t.objects()},
        {"demotions", t.demotions()},
    });
  }
  uint64_t get_answers = stats.get_hits() + stats.get_misses();
  return json{
      {"tiers", tiers},
      {"chunks", stats.chunks()},
      {"puts", stats.puts()},
      {"put_bytes", stats.put_bytes()},
      {"dedup_puts", stats.dedup_puts()},
      {"gets", stats.gets()},
      {"get_bytes", stats.get_bytes()},
      {"get_hits", stats.get_hits()},
      {"get_misses", stats.get_misses()},
      {"get_hit_rate", Rate(stats.get_hits(), get_answers)},
      {"lookups", stats.lookups()},
      {"lookup_keys", stats.lookup_keys()},
      {"lookup_hits", stats.lookup_hits()},
      {"lookup_hit_rate", Rate(stats.lookup_hits(), stats.lookup_keys())},
      {"removes", stats.removes()},
      {"promotions", stats.promotions()},
      {"evictions", stats.evictions()},
      {"corrupt_chunks", stats.corrupt_chunks()},
      {"lease_expiries", stats.lease_expiries()},
      {"active_leases", stats.active_leases()},
      {"host_huge_pages", stats.host_huge_pages()},
      {"index_meta_bytes", stats.index_meta_bytes()},
      {"uptime_ms", stats.uptime_ms()},
  };
}

std::string StatusToText(const kvdepot::v1::StatusResponse& status) {
  std::vector<std::string> tiers;
  for (int tier : status.tiers_enabled()) tiers.push_back(TierLabel(tier));
  std::string health = HealthLabel(status.health());
  if (!status.health_detail().empty()) {
    absl::StrAppend(&health, " (", status.health_detail(), ")");
  }
  std::vector<std::vector<std::string>> rows = {
      {"node", status.node_id()},
      {"version", status.version()},
      {"mode", ModeLabel(status.mode())},
      {"health", health},
      {"address", status.listen_address()},
      {"uptime", HumanDuration(status.uptime_ms())},
      {"tiers", tiers.empty() ? "-" : absl::StrJoin(tiers, ", ")},
  };
  if (!status.cluster().empty()) rows.push_back({"cluster", status.cluster()});
  return Table(rows);
}

std::string StatsToText(const kvdepot::v1::StatsResponse& stats) {
  std::vector<std::vector<std::string>> tiers = {{"TIER", "ENABLED", "CAPACITY",
                                                  "STORED", "ALLOCATED", "USED",
                                                  "OBJECTS", "DEMOTED"}};
  for (const kvdepot::v1::TierStats& t : stats.tiers()) {
    if (!t.enabled()) {
      tiers.push_back(
          {TierLabel(t.tier()), "no", "-", "-", "-", "-", "-", "-"});
      continue;
    }
    tiers.push_back({TierLabel(t.tier()), "yes", HumanBytes(t.capacity_bytes()),
                     HumanBytes(t.stored_bytes()),
                     HumanBytes(t.allocated_bytes()),
                     Percent(t.allocated_bytes(), t.capacity_bytes()),
                     absl::StrCat(t.objects()), absl::StrCat(t.demotions())});
  }
  uint64_t get_answers = stats.get_hits() + stats.get_misses();
  std::vector<std::vector<std::string>> ops = {
      {"chunks", absl::StrCat(stats.chunks())},
      {"puts", absl::StrCat(stats.puts(), " (", HumanBytes(stats.put_bytes()),
                            ", ", stats.dedup_puts(), " deduplicated)")},
      {"gets",
       absl::StrCat(stats.gets(), " (", HumanBytes(stats.get_bytes()), ")")},
      {"get hit rate", absl::StrCat(Percent(stats.get_hits(), get_answers),
                                    " (", stats.get_hits(), " hits, ",
                                    stats.get_misses(), " misses)")},
      {"lookups",
       absl::StrCat(stats.lookups(), " (", stats.lookup_keys(), " keys, ",
                    stats.lookup_hits(), " hits, ",
                    Percent(stats.lookup_hits(), stats.lookup_keys()), ")")},
      {"removes", absl::StrCat(stats.removes())},
      {"promotions", absl::StrCat(stats.promotions())},
      {"evictions", absl::StrCat(stats.evictions())},
      {"corrupt chunks", absl::StrCat(stats.corrupt_chunks())},
      {"leases", absl::StrCat(stats.active_leases(), " active, ",
                              stats.lease_expiries(), " expired")},
      {"host huge pages", stats.host_huge_pages() ? "yes" : "no"},
      {"index memory", HumanBytes(stats.index_meta_bytes())},
      {"uptime", HumanDuration(stats.uptime_ms())},
  };
  return absl::StrCat(Table(tiers), "\n", Table(ops));
}

std::string CodeLabel(int code) {
  return absl::AsciiStrToLower(
      absl::StatusCodeToString(static_cast<absl::StatusCode>(code)));
}

std::string HumanUnixMillis(int64_t ms) {
  if (ms == 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::FromUnixMillis(ms),
                          absl::UTCTimeZone());
}

json ChunkSummaryToJson(const kvdepot::v1::ChunkSummary& c) {
  return json{
      {"key", c.key()},
      {"namespace_fingerprint", c.namespace_fingerprint()},
      {"tier", TierLabel(c.tier())},
      {"on_ssd", c.on_ssd()},
      {"object_bytes", c.object_bytes()},
      {"pins", c.pins()},
      {"children", c.children()},
      {"last_access_unix_ms", c.last_access_unix_ms()},
  };
}

json ChunkListToJson(const std::vector<kvdepot::v1::ChunkSummary>& chunks,
                     uint64_t namespace_unknown, bool truncated) {
  json list = json::array();
  for (const auto& c : chunks) list.push_back(ChunkSummaryToJson(c));
  return json{{"chunks", list},
              {"count", chunks.size()},
              {"namespace_unknown", namespace_unknown},
              {"truncated", truncated}};
}

std::string ChunkListToText(
    const std::vector<kvdepot::v1::ChunkSummary>& chunks,
    uint64_t namespace_unknown, bool truncated) {
  std::vector<std::vector<std::string>> rows = {{"KEY", "TIER", "SSD", "SIZE",
                                                 "PINS", "CHILDREN",
                                                 "LAST ACCESS", "NAMESPACE"}};
  for (const auto& c : chunks) {
    rows.push_back({c.key(), TierLabel(c.tier()), c.on_ssd() ? "yes" : "no",
                    HumanBytes(c.object_bytes()), absl::StrCat(c.pins()),
                    absl::StrCat(c.children()),
                    HumanUnixMillis(c.last_access_unix_ms()),
                    c.namespace_fingerprint().empty()
                        ? "?"
                        : c.namespace_fingerprint().substr(0, 16)});
  }
  std::string out = Table(rows);
  absl::StrAppend(&out, chunks.size(),
                  chunks.size() == 1 ? " chunk" : " chunks",
                  truncated ? " (more not shown: raise --limit)" : "", "\n");
  if (namespace_unknown > 0) {
    absl::StrAppend(&out, namespace_unknown,
                    " chunks skipped: their namespace is not known until "
                    "they are read (recovered from SSD)\n");
  }
  return out;
}

json InspectToJson(const kvdepot::v1::InspectResponse& r) {
  json layers = json::array();
  for (const auto& l : r.layers()) {
    layers.push_back(
        json{{"offset", l.offset()},
             {"size", l.size()},
             {"checksum", absl::StrFormat("%016x", l.checksum())}});
  }
  return json{
      {"key", r.key()},
      {"namespace_fingerprint", r.namespace_fingerprint()},
      {"parent", r.parent()},
      {"format_version", r.format_version()},
      {"token_count", r.token_count()},
      {"num_layers", r.num_layers()},
      {"kv_heads", r.kv_heads()},
      {"head_dim", r.head_dim()},
      {"dtype", r.dtype()},
      {"layout", r.layout()},
      {"codec_chain", r.codec_chain()},
      {"header_bytes", r.header_bytes()},
      {"object_bytes", r.object_bytes()},
      {"layers", layers},
      {"tier", TierLabel(r.tier())},
      {"on_ssd", r.on_ssd()},
      {"pins", r.pins()},
      {"children", r.children()},
      {"last_access_unix_ms", r.last_access_unix_ms()},
  };
}

std::string InspectToText(const kvdepot::v1::InspectResponse& r) {
  std::vector<std::vector<std::string>> rows = {
      {"key", r.key()},
      {"namespace", r.namespace_fingerprint()},
      {"parent", r.parent().empty() ? "- (first chunk)" : r.parent()},
      {"tier",
       absl::StrCat(TierLabel(r.tier()),
                    r.on_ssd() ? " (SSD copy: yes)" : " (SSD copy: no)")},
      {"size", absl::StrCat(HumanBytes(r.object_bytes()), " (header ",
                            HumanBytes(r.header_bytes()), ")")},
      {"tokens", absl::StrCat(r.token_count())},
      {"shape",
       absl::StrCat(r.num_layers(), " layers x ", r.kv_heads(), " kv heads x ",
                    r.head_dim(), " dims, ", r.dtype(), ", ", r.layout())},
      {"codecs", r.codec_chain().empty() ? "none (raw)" : r.codec_chain()},
      {"format", absl::StrCat("v", r.format_version())},
      {"pins", absl::StrCat(r.pins())},
      {"children", absl::StrCat(r.children())},
      {"last access", HumanUnixMillis(r.last_access_unix_ms())},
  };
  std::vector<std::vector<std::string>> layers = {
      {"LAYER", "OFFSET", "SIZE", "XXH3-64"}};
  for (int i = 0; i < r.layers_size(); ++i) {
    const auto& l = r.layers(i);
    layers.push_back({absl::StrCat(i), absl::StrCat(l.offset()),
                      HumanBytes(l.size()),
                      absl::StrFormat("%016x", l.checksum())});
  }
  return absl::StrCat(Table(rows), "\n", Table(layers));
}

json EvictToJson(const kvdepot::v1::EvictResponse& r) {
  json results = json::array();
  for (const auto& e : r.results()) {
    results.push_back(json{{"key", e.key()},
                           {"status", CodeLabel(e.code())},
                           {"message", e.message()}});
  }
  return json{{"evicted", r.evicted()}, {"results", results}};
}

std::string EvictToText(const kvdepot::v1::EvictResponse& r) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& e : r.results()) {
    rows.push_back({e.key(), e.code() == 0 ? "evicted" : CodeLabel(e.code()),
                    e.message()});
  }
  return absl::StrCat(Table(rows), r.evicted(), " of ", r.results_size(),
                      " evicted\n");
}

json DrainProgressToJson(const kvdepot::v1::DrainProgress& p) {
  return json{
      {"chunks_total", p.chunks_total()},
      {"chunks_done", p.chunks_done()},
      {"chunks_failed", p.chunks_failed()},
      {"bytes_total", p.bytes_total()},
      {"bytes_done", p.bytes_done()},
      {"done", p.done()},
      {"durable", p.durable()},
      {"moved", p.moved()},
      {"detail", p.detail()},
  };
}

std::string DrainProgressLine(const kvdepot::v1::DrainProgress& p, bool move) {
  std::string line = absl::StrCat(
      "drain: ", p.chunks_done(), "/", p.chunks_total(), " chunks (",
      Percent(p.chunks_done(), p.chunks_total()), "), ",
      HumanBytes(p.bytes_done()), " of ", HumanBytes(p.bytes_total()), ", ",
      p.chunks_failed(), " failed");
  if (p.done()) {
    const char* outcome = move ? (p.moved() ? "moved" : "NOT moved")
                               : (p.durable() ? "durable" : "NOT durable");
    absl::StrAppend(&line, "; done, ", outcome, ": ", p.detail());
  }
  return line;
}

std::string DrainProgressBar(const kvdepot::v1::DrainProgress& p, int width) {
  const double fraction = p.chunks_total() == 0
                              ? 1.0
                              : static_cast<double>(p.chunks_done()) /
                                    static_cast<double>(p.chunks_total());
  const int filled =
      std::clamp(static_cast<int>(fraction * width + 0.5), 0, width);
  return absl::StrFormat(
      "[%s%s] %5.1f%%  %d/%d chunks  %s/%s", std::string(filled, '#'),
      std::string(width - filled, '.'), 100.0 * fraction, p.chunks_done(),
      p.chunks_total(), HumanBytes(p.bytes_done()),
      HumanBytes(p.bytes_total()));
}

}  // namespace kvd
