#include "compress/token_reducer.h"

namespace kvd::compress {

absl::StatusOr<std::unique_ptr<TokenReducer>> MakeTokenReducer(
    const StageSpec& spec) {
  return std::unique_ptr<TokenReducer>();
}

}  // namespace kvd::compress
