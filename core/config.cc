#include "core/config.h"

#include <cerrno>
#include <cstdio>
#include <limits>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/check.h"
#include "core/status.h"
#include "yaml-cpp/yaml.h"

namespace kvd {
namespace {

constexpr absl::string_view kBoolForm = "true/false, yes/no, on/off or 1/0";
constexpr absl::string_view kUintForm =
    "a decimal integer in [0, 18446744073709551615]";
constexpr absl::string_view kBytesForm =
    "e.g. 4096, 512MiB, 64GiB; units B, KiB, MiB, GiB, TiB, PiB, kB, MB, GB, "
    "TB, PB";
constexpr absl::string_view kDurationForm =
    "a non-negative duration, e.g. 500ms, 30s, 5m, 1h30m";

absl::Status BadValue(absl::string_view text, absl::string_view form_name,
                      absl::string_view expected) {
  return absl::InvalidArgumentError(absl::StrCat("\"", absl::CEscape(text),
                                                 "\" is not ", form_name,
                                                 " (expected ", expected, ")"));
}

absl::StatusOr<std::string> ReadFile(absl::string_view path) {
  std::string p(path);
  FILE* f = std::fopen(p.c_str(), "rb");
  if (f == nullptr)
    return ErrnoToStatus(errno, absl::StrCat("open config file ", p));
  std::string data;
  char buf[8192];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) {
    data.append(buf, n);
    if (data.size() > (16u << 20)) {
      std::fclose(f);
      return absl::InvalidArgumentError(absl::StrCat(
          "config file ", p, " is larger than the limit of 16MiB"));
    }
  }
  bool failed = std::ferror(f) != 0;
  int err = errno;
  std::fclose(f);
  if (failed) return ErrnoToStatus(err, absl::StrCat("read config file ", p));
  return data;
}

std::string At(absl::string_view source, const YAML::Mark& mark) {
  if (mark.is_null()) return std::string(source);
  return absl::StrCat(source, ":", mark.line + 1, ":", mark.column + 1);
}

struct Entry {
  std::string key;
  std::string value;
  std::string origin;  // "file:line:column"
};

// Flattens nested mappings into dotted keys. Scalars only at the leaves.
absl::Status Flatten(const YAML::Node& node, const std::string& prefix,
                     absl::string_view source, std::vector<Entry>* out,
                     std::set<std::string>* seen) {
  for (auto it = node.begin(); it != node.end(); ++it) {
    // Copies: `*it` is a temporary, references into it would dangle.
    const YAML::Node key_node = it->first;
    const YAML::Node value = it->second;
    if (!key_node.IsScalar() || key_node.Scalar().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(At(source, key_node.Mark()),
                       ": config keys must be non-empty scalars"));
    }
    std::string key =
        prefix.empty() ? key_node.Scalar() : prefix + "." + key_node.Scalar();
    if (value.IsMap()) {
      KVD_RETURN_IF_ERROR(Flatten(value, key, source, out, seen));
      continue;
    }
    if (value.IsSequence()) {
      return absl::InvalidArgumentError(
          absl::StrCat(At(source, value.Mark()), ": config key ", key,
                       ": lists are not supported"));
    }
    if (!seen->insert(key).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          At(source, key_node.Mark()), ": config key ", key, " is set twice"));
    }
    out->push_back(Entry{key, value.IsScalar() ? value.Scalar() : std::string(),
                         At(source, key_node.Mark())});
  }
  return absl::OkStatus();
}

absl::Status ValidateValue(ConfigType type, absl::string_view text) {
  switch (type) {
    case ConfigType::kString:
      return absl::OkStatus();
    case ConfigType::kBool:
      return ParseConfigBool(text).status();
    case ConfigType::kUint:
      return ParseConfigUint(text).status();
    case ConfigType::kBytes:
      return ParseByteSize(text).status();
    case ConfigType::kDuration:
      return ParseConfigDuration(text).status();
  }
  return absl::InternalError("unknown ConfigType");
}

}  // namespace

absl::string_view ConfigTypeName(ConfigType type) {
  switch (type) {
    case ConfigType::kString:
      return "string";
    case ConfigType::kBool:
      return "bool";
    case ConfigType::kUint:
      return "unsigned integer";
    case ConfigType::kBytes:
      return "byte size";
    case ConfigType::kDuration:
      return "duration";
  }
  return "invalid";
}

absl::StatusOr<bool> ParseConfigBool(absl::string_view text) {
  std::string lower = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  if (lower == "true" || lower == "yes" || lower == "on" || lower == "1")
    return true;
  if (lower == "false" || lower == "no" || lower == "off" || lower == "0")
    return false;
  return BadValue(text, "a bool", kBoolForm);
}

absl::StatusOr<uint64_t> ParseConfigUint(absl::string_view text) {
  absl::string_view t = absl::StripAsciiWhitespace(text);
  uint64_t value = 0;
  if (t.empty() || !absl::ascii_isdigit(t[0]) || !absl::SimpleAtoi(t, &value)) {
    return BadValue(text, "an unsigned integer", kUintForm);
  }
  return value;
}

absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text) {
  absl::string_view t = absl::StripAsciiWhitespace(text);
  size_t digits = 0;
  while (digits < t.size() && absl::ascii_isdigit(t[digits])) ++digits;
  if (digits == 0) return BadValue(text, "a byte size", kBytesForm);
  uint64_t number = 0;
  if (!absl::SimpleAtoi(t.substr(0, digits), &number)) {
    return BadValue(text, "a byte size", kBytesForm);
  }
  absl::string_view unit = absl::StripLeadingAsciiWhitespace(t.substr(digits));
  struct Unit {
    absl::string_view name;
    uint64_t factor;
  };
  static constexpr Unit kUnits[] = {
      {"", 1},
      {"B", 1},
      {"KiB", 1ull << 10},
      {"MiB", 1ull << 20},
      {"GiB", 1ull << 30},
      {"TiB", 1ull << 40},
      {"PiB", 1ull << 50},
      {"kB", 1000ull},
      {"KB", 1000ull},
      {"MB", 1000ull * 1000},
      {"GB", 1000ull * 1000 * 1000},
      {"TB", 1000ull * 1000 * 1000 * 1000},
      {"PB", 1000ull * 1000 * 1000 * 1000 * 1000},
  };
  for (const Unit& u : kUnits) {
    if (unit != u.name) continue;
    if (number > std::numeric_limits<uint64_t>::max() / u.factor) {
      return absl::InvalidArgumentError(absl::StrCat(
          "\"", absl::CEscape(text), "\" is larger than the maximum byte size ",
          std::numeric_limits<uint64_t>::max()));
    }
    return number * u.factor;
  }
  return BadValue(text, "a byte size", kBytesForm);
}

absl::StatusOr<absl::Duration> ParseConfigDuration(absl::string_view text) {
  absl::string_view t = absl::StripAsciiWhitespace(text);
  absl::Duration d;
  if (t.empty() || t[0] == '-' || t[0] == '+' || !absl::ParseDuration(t, &d) ||
      d == absl::InfiniteDuration() || d < absl::ZeroDuration()) {
    return BadValue(text, "a duration", kDurationForm);
  }
  return d;
}

std::string FormatByteSize(uint64_t bytes) {
  static constexpr std::pair<absl::string_view, int> kUnits[] = {
      {"PiB", 50}, {"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}};
  if (bytes != 0) {
    for (const auto& [name, shift] : kUnits) {
      uint64_t mask = (1ull << shift) - 1;
      if ((bytes & mask) == 0) return absl::StrCat(bytes >> shift, name);
    }
  }
  return absl::StrCat(bytes, "B");
}

ConfigSchema& ConfigSchema::Add(std::string name, ConfigType type,
                                std::string default_value, std::string help) {
  KVD_CHECK(!name.empty() && !absl::StartsWith(name, ".") &&
                !absl::EndsWith(name, ".") && !absl::StrContains(name, ".."),
            "config key names are non-empty dotted paths");
  KVD_CHECK(keys_.find(name) == keys_.end(), "config key declared twice");
  KVD_CHECK(ValidateValue(type, default_value).ok(),
            "config default does not parse");
  Key key{name, type, std::move(default_value), std::move(help)};
  keys_.emplace(std::move(name), std::move(key));
  return *this;
}

const ConfigSchema::Key* ConfigSchema::Find(absl::string_view name) const {
  auto it = keys_.find(name);
  return it == keys_.end() ? nullptr : &it->second;
}

bool ConfigSchema::IsSection(absl::string_view name) const {
  std::string prefix = absl::StrCat(name, ".");
  auto it = keys_.lower_bound(prefix);
  return it != keys_.end() && absl::StartsWith(it->first, prefix);
}

absl::Status Config::Set(absl::string_view key, std::string value,
                         absl::string_view origin) {
  const ConfigSchema::Key* spec = schema_.Find(key);
  if (spec == nullptr) {
    if (schema_.IsSection(key)) {
      return absl::InvalidArgumentError(absl::StrCat(
          origin, ": config key ", key,
          " is a section; set one of its keys, e.g. ",
          schema_.keys().lower_bound(absl::StrCat(key, "."))->first));
    }
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": unknown config key ", key));
  }
  absl::Status valid = ValidateValue(spec->type, value);
  if (!valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        origin, ": config key ", key, ": value ", valid.message()));
  }
  values_[std::string(key)] = std::move(value);
  is_set_[std::string(key)] = true;
  return absl::OkStatus();
}

absl::StatusOr<Config> Config::Load(const ConfigSchema& schema,
                                    absl::string_view yaml_path,
                                    absl::Span<const std::string> overrides) {
  std::string text;
  if (!yaml_path.empty()) {
    KVD_ASSIGN_OR_RETURN(text, ReadFile(yaml_path));
  }
  return FromYaml(schema, text, overrides,
                  yaml_path.empty() ? "<config>" : yaml_path);
}

absl::StatusOr<Config> Config::FromYaml(const ConfigSchema& schema,
                                        absl::string_view yaml_text,
                                        absl::Span<const std::string> overrides,
                                        absl::string_view source_name) {
  Config config;
  config.schema_ = schema;
  for (const auto& [name, key] : schema.keys()) {
    config.values_[name] = key.default_value;
    config.is_set_[name] = false;
  }

  std::vector<Entry> entries;
  // yaml-cpp reports errors by exception; none may escape (STYLE.md §3).
  try {
    YAML::Node root = YAML::Load(std::string(yaml_text));
    if (root.IsDefined() && !root.IsNull()) {
      if (!root.IsMap()) {
        return absl::InvalidArgumentError(
            absl::StrCat(At(source_name, root.Mark()),
                         ": the top level of a config must be a mapping"));
      }
      std::set<std::string> seen;
      KVD_RETURN_IF_ERROR(Flatten(root, "", source_name, &entries, &seen));
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(At(source_name, e.mark), ": invalid YAML: ", e.msg));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source_name, ": invalid YAML: ", e.what()));
  }
  for (Entry& entry : entries) {
    KVD_RETURN_IF_ERROR(
        config.Set(entry.key, std::move(entry.value), entry.origin));
  }

  for (const std::string& item : overrides) {
    size_t eq = item.find('=');
    std::string origin = absl::StrCat("--set ", item);
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ": expected section.key=value"));
    }
    std::string key(
        absl::StripAsciiWhitespace(absl::string_view(item).substr(0, eq)));
    KVD_RETURN_IF_ERROR(config.Set(key, item.substr(eq + 1), origin));
  }
  return config;
}

absl::StatusOr<const std::string*> Config::Raw(absl::string_view key,
                                               ConfigType type) const {
  const ConfigSchema::Key* spec = schema_.Find(key);
  if (spec == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("config key ", key, " is not declared"));
  }
  if (spec->type != type) {
    return absl::InvalidArgumentError(
        absl::StrCat("config key ", key, " is a ", ConfigTypeName(spec->type),
                     ", not a ", ConfigTypeName(type)));
  }
  return &values_.find(key)->second;
}

absl::StatusOr<std::string> Config::GetString(absl::string_view key) const {
  KVD_ASSIGN_OR_RETURN(const std::string* raw, Raw(key, ConfigType::kString));
  return *raw;
}

absl::StatusOr<bool> Config::GetBool(absl::string_view key) const {
  KVD_ASSIGN_OR_RETURN(const std::string* raw, Raw(key, ConfigType::kBool));
  return ParseConfigBool(*raw);
}

absl::StatusOr<uint64_t> Config::GetUint(absl::string_view key) const {
  KVD_ASSIGN_OR_RETURN(const std::string* raw, Raw(key, ConfigType::kUint));
  return ParseConfigUint(*raw);
}

absl::StatusOr<uint64_t> Config::GetBytes(absl::string_view key) const {
  KVD_ASSIGN_OR_RETURN(const std::string* raw, Raw(key, ConfigType::kBytes));
  return ParseByteSize(*raw);
}

absl::StatusOr<absl::Duration> Config::GetDuration(
    absl::string_view key) const {
  KVD_ASSIGN_OR_RETURN(const std::string* raw, Raw(key, ConfigType::kDuration));
  return ParseConfigDuration(*raw);
}

bool Config::IsSet(absl::string_view key) const {
  auto it = is_set_.find(key);
  return it != is_set_.end() && it->second;
}

}  // namespace kvd
