// The codec chain's text form (DESIGN.md §3.3):
//
//   chain  = stage { "|" stage }
//   stage  = name [ "(" param { "," param } ")" ]
//   param  = key "=" value
//
// e.g.
// "lowrank(rk=32,rv=48,window=32)|quant(k=int4/channel,v=int4/token,g=32)|zstd".
// Names and keys are lower-case [a-z0-9_]; values [A-Za-z0-9_./-]. Spaces
// around tokens are ignored. Parsing only checks the grammar; each codec
// checks its own parameters (StageParams) when the chain is built.
#ifndef KVDEPOT_COMPRESS_CODEC_SPEC_H_
#define KVDEPOT_COMPRESS_CODEC_SPEC_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvd::compress {

struct StageSpec {
  std::string name;
  std::vector<std::pair<std::string, std::string>> params;  // in text order
};

// kInvalidArgument naming the position and what was expected; an empty
// string is the empty chain (raw layout). At most kMaxStages stages.
inline constexpr size_t kMaxStages = 8;
absl::StatusOr<std::vector<StageSpec>> ParseChainSpec(absl::string_view text);

// Typed access to one stage's parameters. Every getter removes the key it
// reads; Finish() rejects keys no getter asked for, so a misspelt parameter
// is an error instead of a silent default.
class StageParams {
 public:
  explicit StageParams(const StageSpec& spec);

  // kInvalidArgument when present but not a number in [lo, hi].
  absl::StatusOr<int64_t> Int(absl::string_view key, int64_t def, int64_t lo,
                              int64_t hi);
  absl::StatusOr<double> Double(absl::string_view key, double def, double lo,
                                double hi);
  // kInvalidArgument when present but not one of `allowed`.
  absl::StatusOr<std::string> Enum(absl::string_view key, absl::string_view def,
                                   const std::vector<std::string>& allowed);
  absl::StatusOr<std::string> String(absl::string_view key,
                                     absl::string_view def);
  absl::Status Finish() const;

 private:
  const std::string* Find(absl::string_view key);

  std::string stage_;
  std::vector<std::pair<std::string, std::string>> params_;
  absl::flat_hash_set<std::string> used_;
};

}  // namespace kvd::compress

#endif  // KVDEPOT_COMPRESS_CODEC_SPEC_H_
