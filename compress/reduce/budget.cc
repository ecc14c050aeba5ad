#include "compress/reduce/budget.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "core/check.h"

namespace kvd::compress::reduce {

uint32_t KeepCount(double keep, uint32_t tokens) {
  KVD_CHECK(keep > 0 && keep <= 1 && tokens >= 1, "keep in (0, 1], tokens>0");
  const double n = std::floor(keep * tokens + 0.5);
  return std::clamp<uint32_t>(static_cast<uint32_t>(n), 1, tokens);
}

uint32_t ShareOf(double fraction, uint32_t count) {
  KVD_CHECK(fraction >= 0 && fraction <= 1, "fraction in [0, 1]");
  const double n = std::floor(fraction * count + 0.5);
  return std::min<uint32_t>(static_cast<uint32_t>(n), count);
}

absl::StatusOr<double> ParseKeep(const StageSpec& spec, StageParams& params) {
  const bool present =
      std::any_of(spec.params.begin(), spec.params.end(),
                  [](const auto& kv) { return kv.first == "keep"; });
  if (!present) {
    return absl::InvalidArgumentError(
        absl::StrCat(spec.name,
                     ": keep is required (the fraction of tokens kept, in "
                     "(0, 1])"));
  }
  auto keep = params.Double("keep", 1.0, 0.0, 1.0);
  if (!keep.ok()) return keep.status();
  if (*keep <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        spec.name, ": keep=", FormatDouble(*keep), " is outside (0, 1]"));
  }
  return *keep;
}

std::string FormatDouble(double x) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof(buf), x);
  KVD_CHECK(r.ec == std::errc(), "to_chars(double) fits 64 chars");
  return std::string(buf, r.ptr);
}

std::vector<uint32_t> TopK(absl::Span<const double> score, uint32_t limit,
                           uint32_t count) {
  KVD_CHECK(count <= limit && limit <= score.size(), "count <= limit <= size");
  std::vector<uint32_t> idx(limit);
  std::iota(idx.begin(), idx.end(), 0u);
  // NaN sorts last so the order stays strict and weak.
  auto key = [&](uint32_t i) {
    return std::isnan(score[i]) ? -HUGE_VAL : score[i];
  };
  auto better = [&](uint32_t a, uint32_t b) {
    const double sa = key(a), sb = key(b);
    return sa > sb || (sa == sb && a < b);
  };
  std::nth_element(idx.begin(), idx.begin() + count, idx.end(), better);
  idx.resize(count);
  std::sort(idx.begin(), idx.end());
  return idx;
}

void AppendRange(uint32_t begin, uint32_t end, std::vector<uint32_t>& out) {
  for (uint32_t i = begin; i < end; ++i) out.push_back(i);
}

}  // namespace kvd::compress::reduce
