// Config: typed, strictly validated configuration from a YAML file plus
// command-line overrides (`--set section.key=value`).
//
// A program declares every key it understands in a ConfigSchema (dotted name,
// type, default, help). Loading flattens the YAML mappings into dotted keys
// ("ssd:\n  capacity: 64GiB" -> "ssd.capacity"), applies the overrides in
// order (later wins), and validates every value against its type. Outcomes:
//   - a key the schema does not declare: kInvalidArgument naming the key;
//   - a value that does not parse: kInvalidArgument naming the key, the value
//     and the expected form, e.g.
//     "config key host.capacity: value \"64 gigs\" is not a byte size
//      (expected e.g. 4096, 512MiB, 64GiB)";
//   - malformed YAML, duplicate keys, sequences: kInvalidArgument with the
//     file's name and the line;
//   - an unreadable file: kNotFound / kPermissionDenied / kInternal.
// yaml-cpp exceptions never escape this module.
//
// Value forms:
//   string    any scalar ("" when the YAML value is null)
//   bool      true/false, yes/no, on/off, 1/0 (case-insensitive)
//   uint      decimal digits, fits in uint64
//   bytes     an unsigned integer with an optional unit: B, KiB, MiB, GiB,
//             TiB, PiB (powers of 1024) or kB/KB, MB, GB, TB, PB (powers of
//             1000); "64GiB", "512MiB", "4096", "4 KiB"; must fit in uint64
//   duration  a non-negative finite absl duration: "30s", "500ms", "1h30m",
//             "1.5s", "0"
//
// Thread safety: a Config is immutable after Load and may be read from any
// thread. ConfigSchema is not thread-safe while being built.
#ifndef KVDEPOT_CORE_CONFIG_H_
#define KVDEPOT_CORE_CONFIG_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace kvd {

enum class ConfigType { kString, kBool, kUint, kBytes, kDuration };

// "string", "bool", "unsigned integer", "byte size", "duration".
absl::string_view ConfigTypeName(ConfigType type);

// Parsers for the value forms above, usable on their own. kInvalidArgument
// with a message of the form `"<text>" is not a <form> (expected ...)`.
absl::StatusOr<bool> ParseConfigBool(absl::string_view text);
absl::StatusOr<uint64_t> ParseConfigUint(absl::string_view text);
absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text);
absl::StatusOr<absl::Duration> ParseConfigDuration(absl::string_view text);

// Renders a byte count in the largest binary unit that divides it exactly:
// 68719476736 -> "64GiB", 1536 -> "1536B", 0 -> "0B". ParseByteSize reads it
// back.
std::string FormatByteSize(uint64_t bytes);

// The declared keys of a program's configuration.
class ConfigSchema {
 public:
  struct Key {
    std::string name;  // dotted: "section.key"
    ConfigType type;
    std::string default_value;  // in the textual form of `type`
    std::string help;
  };

  // Declares a key. Returns *this for chaining. KVD_CHECK-fails on a
  // duplicate name, an empty name or segment, or a default that does not
  // parse as `type` (schemas are code, not input).
  ConfigSchema& Add(std::string name, ConfigType type,
                    std::string default_value, std::string help);

  // nullptr when `name` is not declared.
  const Key* Find(absl::string_view name) const;

  // True when `name` is a proper prefix section of a declared key ("ssd" for
  // "ssd.capacity").
  bool IsSection(absl::string_view name) const;

  const std::map<std::string, Key, std::less<>>& keys() const { return keys_; }

 private:
  std::map<std::string, Key, std::less<>> keys_;
};

class Config {
 public:
  // Reads `yaml_path` (empty: no file, defaults only), then applies
  // `overrides`, each of the form "section.key=value". See the file comment
  // for the outcomes. `schema` is copied.
  static absl::StatusOr<Config> Load(const ConfigSchema& schema,
                                     absl::string_view yaml_path,
                                     absl::Span<const std::string> overrides);

  // Like Load, with the YAML given as text; `source_name` names it in errors.
  static absl::StatusOr<Config> FromYaml(
      const ConfigSchema& schema, absl::string_view yaml_text,
      absl::Span<const std::string> overrides,
      absl::string_view source_name = "<config>");

  // Typed accessors. kNotFound when `key` is not declared; kInvalidArgument
  // when it is declared with another type (a program bug, reported rather
  // than crashing). Values are validated at load time, so a declared key of
  // the right type always yields a value.
  absl::StatusOr<std::string> GetString(absl::string_view key) const;
  absl::StatusOr<bool> GetBool(absl::string_view key) const;
  absl::StatusOr<uint64_t> GetUint(absl::string_view key) const;
  absl::StatusOr<uint64_t> GetBytes(absl::string_view key) const;
  absl::StatusOr<absl::Duration> GetDuration(absl::string_view key) const;

  // True when the file or an override set `key` (false: default in use).
  bool IsSet(absl::string_view key) const;

  // The textual value of every declared key, defaults included, sorted.
  const std::map<std::string, std::string, std::less<>>& values() const {
    return values_;
  }

 private:
  Config() = default;
  absl::Status Set(absl::string_view key, std::string value,
                   absl::string_view origin);
  absl::StatusOr<const std::string*> Raw(absl::string_view key,
                                         ConfigType type) const;

  ConfigSchema schema_;
  std::map<std::string, std::string, std::less<>> values_;
  std::map<std::string, bool, std::less<>> is_set_;
};

}  // namespace kvd

#endif  // KVDEPOT_CORE_CONFIG_H_
