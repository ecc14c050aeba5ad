// CUDA kernels that copy units between paged KV caches and canonical chunk
// layers, framework-free: they take the descriptors of a CopyBatch
// (transfer/layout/copy_batch.h) already in device memory and return the
// launch's cudaError_t. Validation lives in the host wrapper
// (transfer/layout/chunk_gather_cuda.h).
#ifndef KVDEPOT_TRANSFER_LAYOUT_PAGED_COPY_KERNELS_H_
#define KVDEPOT_TRANSFER_LAYOUT_PAGED_COPY_KERNELS_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "transfer/layout/copy_job.h"

namespace kvd {

// Launches one kernel over `num_jobs` device-resident CopyJobs that all have
// unit_bytes == `unit_bytes` (1, 2, 4, 8 or 16) and total_units <=
// `max_units`: thread block (x = job, y) copies units y*256 + tid, stepping
// by gridDim.y*256. Gather copies paged -> canonical, scatter the reverse.
// Returns cudaErrorInvalidValue for another unit width or num_jobs == 0, else
// the launch error (execution errors surface on the stream).
// REQUIRES: jobs[i].block_ids point at device memory; every address the jobs
// name is accessible from the current device.
cudaError_t LaunchPagedCopy(const CopyJob* jobs, uint32_t num_jobs,
                            uint32_t max_units, uint32_t unit_bytes,
                            CopyDirection direction, cudaStream_t stream);

}  // namespace kvd

#endif  // KVDEPOT_TRANSFER_LAYOUT_PAGED_COPY_KERNELS_H_
