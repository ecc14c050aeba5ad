// Token budgets and selection shared by the token reducers
// (compress/token_reducer.h).
//
// Every reducer takes `keep`, the fraction of a layer's T tokens it keeps,
// in (0, 1], and keeps exactly KeepCount(keep, T) tokens in every KV head.
// Selections are deterministic: ties in a score go to the lower position.
#ifndef KVDEPOT_COMPRESS_REDUCE_BUDGET_H_
#define KVDEPOT_COMPRESS_REDUCE_BUDGET_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "compress/codec_spec.h"

namespace kvd::compress::reduce {

// n = max(1, round(keep * tokens)), rounding halves up (keep=0.5 of 5 tokens
// keeps 3), and never more than `tokens`.
// REQUIRES: 0 < keep <= 1, tokens >= 1.
uint32_t KeepCount(double keep, uint32_t tokens);

// round(fraction * count) with halves up, clamped to [0, count]: the share of
// a budget a reducer gives to one kind of token (H2O's recent window).
// REQUIRES: 0 <= fraction <= 1.
uint32_t ShareOf(double fraction, uint32_t count);

// Reads the required `keep` parameter: kInvalidArgument naming the stage
// when it is absent, not a number, or outside (0, 1].
absl::StatusOr<double> ParseKeep(const StageSpec& spec, StageParams& params);

// The shortest text that parses back to `x` ("0.25", "1e-05"); what Spec()
// prints for fractions so a spec round-trips exactly.
std::string FormatDouble(double x);

// The `count` indices of `score` (restricted to [0, limit)) with the largest
// scores, ties to the lower index, returned in ascending index order.
// REQUIRES: count <= limit <= score.size().
std::vector<uint32_t> TopK(absl::Span<const double> score, uint32_t limit,
                           uint32_t count);

// Appends positions [begin, end) to `out`.
void AppendRange(uint32_t begin, uint32_t end, std::vector<uint32_t>& out);

}  // namespace kvd::compress::reduce

#endif  // KVDEPOT_COMPRESS_REDUCE_BUDGET_H_
