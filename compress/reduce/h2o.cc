#include "absl/strings/str_cat.h"
#include "compress/reduce/attention.h"
#include "compress/reduce/budget.h"
#include "compress/reduce/reducers.h"
#include "compress/reduce/reduction.h"
#include "core/status.h"

namespace kvd::compress::reduce {
namespace {

class H2oReducer final : public TokenReducer {
 public:
  H2oReducer(double keep, double recent) : keep_(keep), recent_(recent) {}

  std::string Spec() const override;
  absl::Status Reduce(const CodecInputs& in, LayerKV& kv) const override;

 private:
  const double keep_;
  const double recent_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<TokenReducer>> MakeH2oReducer(
    const StageSpec& spec) {
  StageParams p(spec);
  KVD_ASSIGN_OR_RETURN(const double keep, ParseKeep(spec, p));
  KVD_ASSIGN_OR_RETURN(const double recent, p.Double("recent", 0.5, 0, 1));
  KVD_RETURN_IF_ERROR(p.Finish());
  return std::unique_ptr<TokenReducer>(new H2oReducer(keep, recent));
}

std::string H2oReducer::Spec() const {
  return absl::StrCat("h2o(keep=", FormatDouble(keep_),
                      ",recent=", FormatDouble(recent_), ")");
}

absl::Status H2oReducer::Reduce(const CodecInputs& in, LayerKV& kv) const {
  KVD_RETURN_IF_ERROR(CheckLayer(kv, "h2o"));
  KVD_RETURN_IF_ERROR(CheckQueries(in, kv.k, "h2o"));
  const uint32_t t = kv.k.tokens;
  const uint32_t n = KeepCount(keep_, t);
  const uint32_t r = ShareOf(recent_, n);
  std::vector<std::vector<uint32_t>> kept(kv.k.heads);
  for (uint32_t h = 0; h < kv.k.heads; ++h) {
    if (n == t) {
      AppendRange(0, t - r, kept[h]);
    } else if (n > r) {  // heavy hitters to choose
      const std::vector<double> score =
          AccumulatedAttention(*in.queries, kv.k, h, 0);
      kept[h] = TopK(score, t - r, n - r);
    }
    AppendRange(t - r, t, kept[h]);
  }
  Materialize(Eviction(kept), kv);
  return absl::OkStatus();
}

}  // namespace kvd::compress::reduce
