// The one place where a cudaError_t becomes a Status
// (STYLE.md §3), and the device count the GPU code and tests ask for.
// Built only with KVD_WITH_CUDA.
#ifndef KVDEPOT_CORE_CUDA_STATUS_H_
#define KVDEPOT_CORE_CUDA_STATUS_H_

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvd {

// OK for cudaSuccess; otherwise `context: cudaErrorName (description)` with
// kResourceExhausted for allocation failures, kFailedPrecondition when there
// is no usable device or driver, kInvalidArgument for invalid values,
// devices or pointers, and kInternal for everything else (including sticky
// execution errors such as illegal addresses). `context` names the call and
// its subject, e.g. "cudaMallocAsync(bytes=4096)".
absl::Status CudaToStatus(cudaError_t err, absl::string_view context);

// Number of CUDA devices; 0 when the runtime finds no device or no driver
// (the error is cleared so later calls do not see it).
int CudaDeviceCount();

}  // namespace kvd

#endif  // KVDEPOT_CORE_CUDA_STATUS_H_
