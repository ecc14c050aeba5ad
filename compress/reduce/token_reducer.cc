// MakeTokenReducer (compress/token_reducer.h): the names of the token
// reducers and the factories that build them (reduce/reducers.h).
#include "compress/token_reducer.h"

#include "compress/reduce/reducers.h"

namespace kvd::compress {

absl::StatusOr<std::unique_ptr<TokenReducer>> MakeTokenReducer(
    const StageSpec& spec) {
  using Factory =
      absl::StatusOr<std::unique_ptr<TokenReducer>> (*)(const StageSpec&);
  static constexpr struct {
    const char* name;
    Factory create;
  } kReducers[] = {
      {"streaming", &reduce::MakeStreamingReducer},
      {"keynorm", &reduce::MakeKeyNormReducer},
      {"h2o", &reduce::MakeH2oReducer},
      {"snapkv", &reduce::MakeSnapKvReducer},
      {"kvmerger", &reduce::MakeKvMergerReducer},
      {"ems", &reduce::MakeEmsReducer},
  };
  for (const auto& r : kReducers) {
    if (spec.name == r.name) return r.create(spec);
  }
  return std::unique_ptr<TokenReducer>();
}

}  // namespace kvd::compress
