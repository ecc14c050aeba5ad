#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "compress/reduce/attention.h"
#include "compress/reduce/budget.h"
#include "compress/reduce/reducers.h"
#include "compress/reduce/reduction.h"
#include "core/check.h"
#include "core/status.h"

namespace kvd::compress::reduce {
namespace {

double Dot(const float* a, const float* b, uint32_t d) {
  double s = 0;
  for (uint32_t j = 0; j < d; ++j) s += double{a[j]} * b[j];
  return s;
}

// cos(a, b); 1 when both are zero, 0 when one is.
double Cosine(const float* a, const float* b, uint32_t d) {
  const double na = Dot(a, a, d), nb = Dot(b, b, d);
  if (na == 0 || nb == 0) return na == nb ? 1.0 : 0.0;
  return Dot(a, b, d) / std::sqrt(na * nb);
}

double SquaredDistance(const float* a, const float* b, uint32_t d) {
  double s = 0;
  for (uint32_t j = 0; j < d; ++j) {
    const double x = double{a[j]} - b[j];
    s += x * x;
  }
  return s;
}

// Marks the protected tokens of [0, zone): the top `heavy` by score, fewer
// when they would cut the rest into more than `slots + heavy` runs (see the
// header). Returns the flags.
std::vector<bool> ProtectHeavyHitters(const std::vector<double>& score,
                                      uint32_t zone, uint32_t heavy,
                                      uint32_t slots) {
  std::vector<uint32_t> order(zone);
  std::iota(order.begin(), order.end(), 0u);
  std::stable_sort(order.begin(), order.end(),
                   [&](uint32_t a, uint32_t b) { return score[a] > score[b]; });
  std::vector<bool> prot(zone, false);
  for (uint32_t i = 0; i < heavy; ++i) prot[order[i]] = true;
  uint32_t runs = 0;
  for (uint32_t i = 0; i < zone; ++i) {
    if (!prot[i] && (i == 0 || prot[i - 1])) ++runs;
  }
  // slots counts the kept tokens left for the unprotected ones.
  while (slots < runs) {
    KVD_CHECK(heavy > 0, "with no heavy hitters there is one run");
    const uint32_t p = order[--heavy];
    const bool left = p > 0 && !prot[p - 1];
    const bool right = p + 1 < zone && !prot[p + 1];
    prot[p] = false;
    runs = runs + 1 - left - right;
    ++slots;
  }
  return prot;
}

// Adds the run [b, e) of joined tokens to `out` as one merged token.
void AddSet(const HeadTensor& k, uint32_t head, const std::vector<double>& acc,
            uint32_t b, uint32_t e, HeadReduction& out) {
  if (e - b == 1) {
    out.AddSingle(b);
    return;
  }
  uint32_t pivot = b;
  for (uint32_t i = b + 1; i < e; ++i) {
    if (acc[i] > acc[pivot]) pivot = i;
  }
  const uint32_t d = k.dim;
  std::vector<double> dist2(e - b);
  double mean = 0;
  for (uint32_t i = b; i < e; ++i) {
    dist2[i - b] = SquaredDistance(k.Row(head, pivot), k.Row(head, i), d);
    mean += std::sqrt(dist2[i - b]);
  }
  mean /= (e - b - 1);  // the pivot's own distance is 0
  std::vector<uint32_t> members(e - b);
  std::iota(members.begin(), members.end(), b);
  std::vector<double> g(e - b, 1.0);  // uniform when mean == 0
  if (mean > 0) {
    for (uint32_t i = 0; i < e - b; ++i)
      g[i] = std::exp(-dist2[i] / (mean * mean));
  }
  out.AddGroup(pivot, members, g);
}

class KvMergerReducer final : public TokenReducer {
 public:
  KvMergerReducer(double keep, uint32_t window, double heavy)
      : keep_(keep), window_(window), heavy_(heavy) {}

  std::string Spec() const override;
  absl::Status Reduce(const CodecInputs& in, LayerKV& kv) const override;

 private:
  const double keep_;
  const uint32_t window_;
  const double heavy_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<TokenReducer>> MakeKvMergerReducer(
    const StageSpec& spec) {
  StageParams p(spec);
  KVD_ASSIGN_OR_RETURN(const double keep, ParseKeep(spec, p));
  KVD_ASSIGN_OR_RETURN(const int64_t window, p.Int("window", 32, 0, 1 << 20));
  KVD_ASSIGN_OR_RETURN(const double heavy, p.Double("heavy", 0.25, 0, 1));
  KVD_RETURN_IF_ERROR(p.Finish());
  return std::unique_ptr<TokenReducer>(
      new KvMergerReducer(keep, static_cast<uint32_t>(window), heavy));
}

std::string KvMergerReducer::Spec() const {
  return absl::StrCat("kvmerger(keep=", FormatDouble(keep_),
                      ",window=", window_, ",heavy=", FormatDouble(heavy_),
                      ")");
}

absl::Status KvMergerReducer::Reduce(const CodecInputs& in, LayerKV& kv) const {
  KVD_RETURN_IF_ERROR(CheckLayer(kv, "kvmerger"));
  KVD_RETURN_IF_ERROR(CheckQueries(in, kv.k, "kvmerger"));
  const uint32_t t = kv.k.tokens, d = kv.k.dim;
  const uint32_t n = KeepCount(keep_, t);
  if (n == t) {
    Materialize(Identity(kv.k.heads, t), kv);
    return absl::OkStatus();
  }
  const uint32_t w = std::min(window_, n - 1);
  const uint32_t zone = t - w;  // tokens outside the window, >= 2
  const uint32_t heavy = std::min(ShareOf(heavy_, n), n - w - 1);
  std::vector<HeadReduction> heads(kv.k.heads);
  for (uint32_t h = 0; h < kv.k.heads; ++h) {
    const std::vector<double> acc =
        AccumulatedAttention(*in.queries, kv.k, h, 0);
    const std::vector<bool> prot =
        ProtectHeavyHitters(acc, zone, heavy, n - w - heavy);
    // Candidate pairs (i, i+1), both unprotected; join the t - n most similar.
    std::vector<uint32_t> pair;
    std::vector<double> sim;
    for (uint32_t i = 0; i + 1 < zone; ++i) {
      if (prot[i] || prot[i + 1]) continue;
      pair.push_back(i);
      sim.push_back(Cosine(kv.k.Row(h, i), kv.k.Row(h, i + 1), d));
    }
    KVD_CHECK(pair.size() >= t - n, "enough pairs after protection");
    std::vector<bool> joined(zone, false);  // joined[i]: i and i+1 merge
    const uint32_t count = static_cast<uint32_t>(pair.size());
    for (uint32_t j : TopK(sim, count, t - n)) joined[pair[j]] = true;
    for (uint32_t b = 0; b < zone;) {
      uint32_t e = b + 1;
      while (joined[e - 1]) ++e;
      AddSet(kv.k, h, acc, b, e, heads[h]);
      b = e;
    }
    for (uint32_t i = zone; i < t; ++i) heads[h].AddSingle(i);
  }
  Materialize(std::move(heads), kv);
  return absl::OkStatus();
}

}  // namespace kvd::compress::reduce
