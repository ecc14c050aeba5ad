#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "compress/reduce/budget.h"
#include "compress/reduce/reducers.h"
#include "compress/reduce/reduction.h"
#include "core/status.h"

namespace kvd::compress::reduce {
namespace {

class KeyNormReducer final : public TokenReducer {
 public:
  KeyNormReducer(double keep, uint32_t window) : keep_(keep), window_(window) {}

  std::string Spec() const override;
  absl::Status Reduce(const CodecInputs& in, LayerKV& kv) const override;

 private:
  const double keep_;
  const uint32_t window_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<TokenReducer>> MakeKeyNormReducer(
    const StageSpec& spec) {
  StageParams p(spec);
  KVD_ASSIGN_OR_RETURN(const double keep, ParseKeep(spec, p));
  KVD_ASSIGN_OR_RETURN(const int64_t window, p.Int("window", 0, 0, 1 << 20));
  KVD_RETURN_IF_ERROR(p.Finish());
  return std::unique_ptr<TokenReducer>(
      new KeyNormReducer(keep, static_cast<uint32_t>(window)));
}

std::string KeyNormReducer::Spec() const {
  return absl::StrCat("keynorm(keep=", FormatDouble(keep_), ",window=", window_,
                      ")");
}

absl::Status KeyNormReducer::Reduce(const CodecInputs& in, LayerKV& kv) const {
  KVD_RETURN_IF_ERROR(CheckLayer(kv, "keynorm"));
  const uint32_t t = kv.k.tokens, d = kv.k.dim;
  const uint32_t n = KeepCount(keep_, t);
  const uint32_t w = std::min(window_, n);
  std::vector<std::vector<uint32_t>> kept(kv.k.heads);
  std::vector<double> score(t - w);
  for (uint32_t h = 0; h < kv.k.heads; ++h) {
    for (uint32_t i = 0; i < t - w; ++i) {
      const float* row = kv.k.Row(h, i);
      double sq = 0;
      for (uint32_t j = 0; j < d; ++j) sq += double{row[j]} * row[j];
      score[i] = -sq;  // smallest norm first
    }
    kept[h] = TopK(score, t - w, n - w);
    AppendRange(t - w, t, kept[h]);
  }
  Materialize(Eviction(kept), kv);
  return absl::OkStatus();
}

}  // namespace kvd::compress::reduce
