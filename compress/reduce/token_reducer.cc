// MakeTokenReducer (compress/token_reducer.h): the names of the token
// reducers and the classes that implement them.
#include "compress/token_reducer.h"

#include "compress/reduce/ems.h"
#include "compress/reduce/h2o.h"
#include "compress/reduce/keynorm.h"
#include "compress/reduce/kvmerger.h"
#include "compress/reduce/snapkv.h"
#include "compress/reduce/streaming.h"

namespace kvd::compress {

absl::StatusOr<std::unique_ptr<TokenReducer>> MakeTokenReducer(
    const StageSpec& spec) {
  using Factory =
      absl::StatusOr<std::unique_ptr<TokenReducer>> (*)(const StageSpec&);
  static constexpr struct {
    const char* name;
    Factory create;
  } kReducers[] = {
      {"streaming", &reduce::StreamingReducer::Create},
      {"keynorm", &reduce::KeyNormReducer::Create},
      {"h2o", &reduce::H2oReducer::Create},
      {"snapkv", &reduce::SnapKvReducer::Create},
      {"kvmerger", &reduce::KvMergerReducer::Create},
      {"ems", &reduce::EmsReducer::Create},
  };
  for (const auto& r : kReducers) {
    if (spec.name == r.name) return r.create(spec);
  }
  return std::unique_ptr<TokenReducer>();
}

}  // namespace kvd::compress
