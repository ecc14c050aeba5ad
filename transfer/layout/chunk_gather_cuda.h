// CUDA gather/scatter between paged KV caches on the GPU and canonical chunk
// layers (DESIGN.md §3.2): the host wrapper over paged_copy_kernels.h. The
// CPU functions in chunk_gather.h are its oracle.
//
// A call takes a batch of LayerCopyJobs (any mix of layers and chunks; see
// copy_batch.h and AppendChunkJobs), validates all of them, uploads their
// descriptors and block ids to a stream-ordered scratch allocation, and
// launches one kernel per unit width in the batch (one launch when the jobs
// share a geometry). Copies move 16 bytes per access when every address and
// stride allows it, fewer otherwise, one element per access for a strided
// head dim.
//
// Asynchronous: a call returns once the work is enqueued on `stream`; the
// copy is complete when the stream reaches it. The job span and its block
// ids may be reused as soon as the call returns; the paged caches and layer
// buffers must stay allocated, and be neither written (sources) nor read
// (destinations), until then.
//
// Built only with KVD_WITH_CUDA. Thread-safe (no shared state).
#ifndef KVDEPOT_TRANSFER_LAYOUT_CHUNK_GATHER_CUDA_H_
#define KVDEPOT_TRANSFER_LAYOUT_CHUNK_GATHER_CUDA_H_

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "transfer/layout/copy_batch.h"

namespace kvd {

// Copies every job's chunk slots from its paged cache into its canonical
// layer. REQUIRES: the current device is the one `stream` belongs to.
// kInvalidArgument for anything BuildCopyBatch rejects (nothing is enqueued
// then), or when a paged base or layer address is not accessible from the
// current device: unregistered host memory, memory of another device, or
// pinned host memory not mapped at the same address. kFailedPrecondition
// without a usable device; other CUDA errors as CudaToStatus maps them. An
// empty batch is OK and enqueues nothing.
absl::Status GatherChunkLayersCuda(absl::Span<const LayerCopyJob> jobs,
                                   cudaStream_t stream);

// Copies every job's canonical layer into its paged cache's chunk slots.
// Errors as for GatherChunkLayersCuda; jobs that would write the same slot
// and head of one paged layer are rejected (they would race).
absl::Status ScatterChunkLayersCuda(absl::Span<const LayerCopyJob> jobs,
                                    cudaStream_t stream);

}  // namespace kvd

#endif  // KVDEPOT_TRANSFER_LAYOUT_CHUNK_GATHER_CUDA_H_
