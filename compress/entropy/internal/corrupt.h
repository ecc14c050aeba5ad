// The error every entropy decoding failure returns
// (compress/entropy/entropy_coder.h: EntropyDecode).
#ifndef KVDEPOT_COMPRESS_ENTROPY_INTERNAL_CORRUPT_H_
#define KVDEPOT_COMPRESS_ENTROPY_INTERNAL_CORRUPT_H_

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace kvd::compress::entropy_internal {

// kDataLoss with message "entropy: " followed by the pieces of `a`.
template <typename... A>
absl::Status Corrupt(const A&... a) {
  return absl::DataLossError(absl::StrCat("entropy: ", a...));
}

}  // namespace kvd::compress::entropy_internal

#endif  // KVDEPOT_COMPRESS_ENTROPY_INTERNAL_CORRUPT_H_
