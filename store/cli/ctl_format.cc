#include "store/cli/ctl_format.h"

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"

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

}  // namespace kvd
