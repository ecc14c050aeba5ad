#include <Eigen/Core>
#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "compress/reduce/attention.h"
#include "compress/reduce/budget.h"
#include "compress/reduce/reducers.h"
#include "compress/reduce/reduction.h"
#include "core/status.h"

namespace kvd::compress::reduce {
namespace {

using RowMatrix =
    Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Merged tokens whose similarities to every center are computed at once.
constexpr uint32_t kBlockRows = 256;

// The keys of head `head` at `positions`, scaled to unit length (zero keys
// stay zero), one per row.
RowMatrix UnitKeys(const HeadTensor& k, uint32_t head,
                   const std::vector<uint32_t>& positions) {
  RowMatrix out(positions.size(), k.dim);
  for (size_t i = 0; i < positions.size(); ++i) {
    const float* row = k.Row(head, positions[i]);
    double sq = 0;
    for (uint32_t j = 0; j < k.dim; ++j) sq += double{row[j]} * row[j];
    const double inv = sq > 0 ? 1.0 / std::sqrt(sq) : 0.0;
    for (uint32_t j = 0; j < k.dim; ++j) {
      out(i, j) = static_cast<float>(row[j] * inv);
    }
  }
  return out;
}

// s = a / mean(a) + l / mean(l), a term dropped when its mean is 0.
std::vector<double> GlobalLocalScore(const std::vector<double>& a,
                                     const std::vector<double>& l) {
  double sa = 0, sl = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    sa += a[i];
    sl += l[i];
  }
  const double n = static_cast<double>(a.size());
  const double ia = sa > 0 ? n / sa : 0.0, il = sl > 0 ? n / sl : 0.0;
  std::vector<double> s(a.size());
  for (size_t i = 0; i < a.size(); ++i) s[i] = a[i] * ia + l[i] * il;
  return s;
}

class EmsReducer final : public TokenReducer {
 public:
  EmsReducer(double keep, uint32_t window, double evict)
      : keep_(keep), window_(window), evict_(evict) {}

  std::string Spec() const override;
  absl::Status Reduce(const CodecInputs& in, LayerKV& kv) const override;

 private:
  const double keep_;
  const uint32_t window_;
  const double evict_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<TokenReducer>> MakeEmsReducer(
    const StageSpec& spec) {
  StageParams p(spec);
  KVD_ASSIGN_OR_RETURN(const double keep, ParseKeep(spec, p));
  KVD_ASSIGN_OR_RETURN(const int64_t window, p.Int("window", 32, 1, 1 << 20));
  KVD_ASSIGN_OR_RETURN(const double evict, p.Double("evict", 0.5, 0, 1));
  KVD_RETURN_IF_ERROR(p.Finish());
  return std::unique_ptr<TokenReducer>(
      new EmsReducer(keep, static_cast<uint32_t>(window), evict));
}

std::string EmsReducer::Spec() const {
  return absl::StrCat("ems(keep=", FormatDouble(keep_), ",window=", window_,
                      ",evict=", FormatDouble(evict_), ")");
}

absl::Status EmsReducer::Reduce(const CodecInputs& in, LayerKV& kv) const {
  KVD_RETURN_IF_ERROR(CheckLayer(kv, "ems"));
  KVD_RETURN_IF_ERROR(CheckQueries(in, kv.k, "ems"));
  const uint32_t t = kv.k.tokens;
  const uint32_t n = KeepCount(keep_, t);
  if (n == t) {
    Materialize(Identity(kv.k.heads, t), kv);
    return absl::OkStatus();
  }
  const uint32_t w = std::min(window_, n);
  const uint32_t q_tokens = in.queries->tokens;
  const uint32_t local_first = q_tokens - std::min(window_, q_tokens);
  const uint32_t rest = t - n;
  const uint32_t merge = rest - ShareOf(evict_, rest);
  std::vector<HeadReduction> heads(kv.k.heads);
  for (uint32_t h = 0; h < kv.k.heads; ++h) {
    const std::vector<double> s = GlobalLocalScore(
        AccumulatedAttention(*in.queries, kv.k, h, 0),
        AccumulatedAttention(*in.queries, kv.k, h, local_first));
    std::vector<uint32_t> centers = TopK(s, t - w, n - w);
    AppendRange(t - w, t, centers);
    // The other tokens, most important first; the first `merge` are merged.
    std::vector<bool> is_center(t, false);
    for (uint32_t c : centers) is_center[c] = true;
    std::vector<double> other_score;
    std::vector<uint32_t> others;
    for (uint32_t i = 0; i < t; ++i) {
      if (is_center[i]) continue;
      others.push_back(i);
      other_score.push_back(s[i]);
    }
    std::vector<uint32_t> merged;
    for (uint32_t j : TopK(other_score, rest, merge)) {
      merged.push_back(others[j]);
    }
    // Assign each merged token to the center with the most similar key.
    std::vector<std::vector<uint32_t>> group(n);
    const RowMatrix c = UnitKeys(kv.k, h, centers);
    for (size_t b = 0; b < merged.size(); b += kBlockRows) {
      const size_t rows = std::min<size_t>(kBlockRows, merged.size() - b);
      const std::vector<uint32_t> block(merged.begin() + b,
                                        merged.begin() + b + rows);
      const RowMatrix sim = UnitKeys(kv.k, h, block) * c.transpose();
      for (size_t r = 0; r < rows; ++r) {
        Eigen::Index best = 0;
        for (Eigen::Index j = 1; j < sim.cols(); ++j) {
          if (sim(r, j) > sim(r, best)) best = j;
        }
        group[best].push_back(block[r]);
      }
    }
    for (uint32_t i = 0; i < n; ++i) {
      if (group[i].empty()) {
        heads[h].AddSingle(centers[i]);
        continue;
      }
      std::vector<uint32_t> members = group[i];
      members.push_back(centers[i]);
      std::sort(members.begin(), members.end());
      std::vector<double> weight;
      for (uint32_t m : members) weight.push_back(s[m]);
      heads[h].AddGroup(centers[i], members, weight);
    }
  }
  Materialize(std::move(heads), kv);
  return absl::OkStatus();
}

}  // namespace kvd::compress::reduce
