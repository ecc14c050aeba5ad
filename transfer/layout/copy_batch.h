// A batch of (layer, chunk) copies between paged KV caches and canonical
// layers, flattened into the descriptors the CUDA kernels read
// (transfer/layout/paged_copy_kernels.h). Building a batch needs no CUDA:
// the host wrapper (chunk_gather_cuda.h) uploads it, and tests run the very
// same per-unit address arithmetic (UnitAt) on the CPU.
//
// The kernel's work item is a *unit*: `unit_bytes` bytes (1, 2, 4, 8 or 16)
// of one row, a row being head_dim elements of one (tensor, head, token).
// A job whose rows are contiguous on the paged side (dim stride 1) moves
// rows in the widest unit that every address and stride it touches is a
// multiple of; a job with a strided head dim moves one element per unit.
// Jobs are grouped by unit width, one kernel launch per group.
#ifndef KVDEPOT_TRANSFER_LAYOUT_COPY_BATCH_H_
#define KVDEPOT_TRANSFER_LAYOUT_COPY_BATCH_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "transfer/layout/copy_job.h"
#include "transfer/layout/paged_layout.h"

namespace kvd {

// One layer of one chunk to copy. `paged` and `layer` address memory the
// copying device can access (device memory, or mapped pinned host memory);
// block ids are in host memory and are copied into the batch.
struct LayerCopyJob {
  PagedLayerView paged;
  ChunkSlots slots;
  HeadMap heads;
  void* layer = nullptr;     // [tensors][chunk_heads][tokens][head_dim]
  uint64_t layer_bytes = 0;  // must equal the plan's layer_bytes
};

// Appends one job per layer of a chunk whose canonical layers lie back to
// back at `payload` (a chunk payload: DESIGN.md §3.2). kInvalidArgument when
// a layer does not plan (message prefixed with "layers[i]") or payload_bytes
// is not layers.size() times the layer bytes. `jobs` is unchanged on error.
absl::Status AppendChunkJobs(absl::Span<const PagedLayerView> layers,
                             const ChunkSlots& slots, const HeadMap& heads,
                             void* payload, uint64_t payload_bytes,
                             std::vector<LayerCopyJob>* jobs);

// Jobs [first_job, first_job + num_jobs) of a batch share a unit width.
struct CopyGroup {
  uint32_t unit_bytes = 0;
  uint32_t first_job = 0;
  uint32_t num_jobs = 0;
  uint32_t max_units = 0;  // largest total_units of the group
};

struct CopyBatch {
  std::vector<CopyJob> jobs;  // ordered by group
  // Every job's block ids; jobs[i] reads id_offsets[i] onward once
  // Relocate() has pointed it at a copy of this array.
  std::vector<int32_t> block_ids;
  std::vector<uint64_t> id_offsets;
  std::vector<CopyGroup> groups;
  // Index into the caller's job span of each batch job.
  std::vector<uint32_t> source_index;

  // Points every job's block_ids into `ids`, a copy of block_ids (on the
  // device, or block_ids.data() itself to run UnitAt on the host).
  void Relocate(const int32_t* ids);
};

// Validates every job and flattens them. kInvalidArgument, prefixed with
// "jobs[i]: ", for anything PlanLayerCopy rejects, a null layer, a
// layer_bytes other than the plan's, a layer not aligned to the element
// size, or more than 2^31 - 1 units in one job; for kScatter also when two
// jobs would write the same slot and head of the same paged layer (same K
// base), which would race on a GPU. An empty span gives an empty batch.
absl::StatusOr<CopyBatch> BuildCopyBatch(absl::Span<const LayerCopyJob> jobs,
                                         CopyDirection direction);

// The widest unit (1..16 bytes, a power of two) for copying `plan` to or
// from a canonical layer at `layer`.
uint32_t UnitBytesFor(const LayerCopyPlan& plan, const void* layer);

}  // namespace kvd

#endif  // KVDEPOT_TRANSFER_LAYOUT_COPY_BATCH_H_
