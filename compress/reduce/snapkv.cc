#include <algorithm>

#include "absl/strings/str_cat.h"
#include "compress/reduce/attention.h"
#include "compress/reduce/budget.h"
#include "compress/reduce/reducers.h"
#include "compress/reduce/reduction.h"
#include "core/status.h"

namespace kvd::compress::reduce {
namespace {

// out[i] = max or mean of in[j] over j in [i - half, i + half] clipped to
// [0, in.size()).
std::vector<double> Pool(const std::vector<double>& in, uint32_t kernel,
                         bool max_pool) {
  const int64_t size = static_cast<int64_t>(in.size());
  const int64_t half = kernel / 2;
  std::vector<double> out(in.size());
  for (int64_t i = 0; i < size; ++i) {
    const int64_t b = std::max<int64_t>(0, i - half);
    const int64_t e = std::min<int64_t>(size, i + half + 1);
    double acc = max_pool ? in[b] : 0.0;
    for (int64_t j = b; j < e; ++j) {
      acc = max_pool ? std::max(acc, in[j]) : acc + in[j];
    }
    out[i] = max_pool ? acc : acc / static_cast<double>(e - b);
  }
  return out;
}

class SnapKvReducer final : public TokenReducer {
 public:
  SnapKvReducer(double keep, uint32_t window, uint32_t kernel, bool max_pool)
      : keep_(keep), window_(window), kernel_(kernel), max_pool_(max_pool) {}

  std::string Spec() const override;
  absl::Status Reduce(const CodecInputs& in, LayerKV& kv) const override;

 private:
  const double keep_;
  const uint32_t window_;
  const uint32_t kernel_;
  const bool max_pool_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<TokenReducer>> MakeSnapKvReducer(
    const StageSpec& spec) {
  StageParams p(spec);
  KVD_ASSIGN_OR_RETURN(const double keep, ParseKeep(spec, p));
  KVD_ASSIGN_OR_RETURN(const int64_t window, p.Int("window", 32, 1, 1 << 20));
  KVD_ASSIGN_OR_RETURN(const int64_t kernel, p.Int("kernel", 5, 1, 255));
  if (kernel % 2 == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        spec.name, ": kernel=", kernel, " must be odd (a centred window)"));
  }
  KVD_ASSIGN_OR_RETURN(const std::string pool,
                       p.Enum("pool", "max", {"max", "avg"}));
  KVD_RETURN_IF_ERROR(p.Finish());
  return std::unique_ptr<TokenReducer>(
      new SnapKvReducer(keep, static_cast<uint32_t>(window),
                        static_cast<uint32_t>(kernel), pool == "max"));
}

std::string SnapKvReducer::Spec() const {
  return absl::StrCat("snapkv(keep=", FormatDouble(keep_), ",window=", window_,
                      ",kernel=", kernel_, ",pool=", max_pool_ ? "max" : "avg",
                      ")");
}

absl::Status SnapKvReducer::Reduce(const CodecInputs& in, LayerKV& kv) const {
  KVD_RETURN_IF_ERROR(CheckLayer(kv, "snapkv"));
  KVD_RETURN_IF_ERROR(CheckQueries(in, kv.k, "snapkv"));
  const uint32_t t = kv.k.tokens;
  const uint32_t n = KeepCount(keep_, t);
  const uint32_t w = std::min(window_, n);
  const uint32_t q_tokens = in.queries->tokens;
  const uint32_t first_query = q_tokens - std::min(window_, q_tokens);
  std::vector<std::vector<uint32_t>> kept(kv.k.heads);
  for (uint32_t h = 0; h < kv.k.heads; ++h) {
    if (n == t) {
      AppendRange(0, t - w, kept[h]);
    } else if (n > w) {  // prefix tokens to choose
      std::vector<double> score =
          AccumulatedAttention(*in.queries, kv.k, h, first_query);
      score.resize(t - w);  // the prefix
      kept[h] = TopK(Pool(score, kernel_, max_pool_), t - w, n - w);
    }
    AppendRange(t - w, t, kept[h]);
  }
  Materialize(Eviction(kept), kv);
  return absl::OkStatus();
}

}  // namespace kvd::compress::reduce
