#include <algorithm>

#include "absl/strings/str_cat.h"
#include "compress/reduce/budget.h"
#include "compress/reduce/reducers.h"
#include "compress/reduce/reduction.h"
#include "core/status.h"

namespace kvd::compress::reduce {
namespace {

class StreamingReducer final : public TokenReducer {
 public:
  StreamingReducer(double keep, uint32_t sinks) : keep_(keep), sinks_(sinks) {}

  std::string Spec() const override;
  absl::Status Reduce(const CodecInputs& in, LayerKV& kv) const override;

 private:
  const double keep_;
  const uint32_t sinks_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<TokenReducer>> MakeStreamingReducer(
    const StageSpec& spec) {
  StageParams p(spec);
  KVD_ASSIGN_OR_RETURN(const double keep, ParseKeep(spec, p));
  KVD_ASSIGN_OR_RETURN(const int64_t sinks, p.Int("sinks", 4, 0, 1 << 20));
  KVD_RETURN_IF_ERROR(p.Finish());
  return std::unique_ptr<TokenReducer>(
      new StreamingReducer(keep, static_cast<uint32_t>(sinks)));
}

std::string StreamingReducer::Spec() const {
  return absl::StrCat("streaming(keep=", FormatDouble(keep_), ",sinks=", sinks_,
                      ")");
}

absl::Status StreamingReducer::Reduce(const CodecInputs& in,
                                      LayerKV& kv) const {
  KVD_RETURN_IF_ERROR(CheckLayer(kv, "streaming"));
  const uint32_t t = kv.k.tokens;
  const uint32_t n = KeepCount(keep_, t);
  const uint32_t sinks = std::min(sinks_, n);
  std::vector<uint32_t> kept;
  AppendRange(0, sinks, kept);
  AppendRange(t - (n - sinks), t, kept);
  Materialize(Eviction(std::vector<std::vector<uint32_t>>(kv.k.heads, kept)),
              kv);
  return absl::OkStatus();
}

}  // namespace kvd::compress::reduce
