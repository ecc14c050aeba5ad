#include "transfer/layout/chunk_gather_cuda.h"

#include <cstdint>
#include <cstring>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/cuda_status.h"
#include "core/status.h"
#include "transfer/layout/paged_copy_kernels.h"

namespace kvd {
namespace {

// kInvalidArgument unless `p` is addressable at the same address from
// `device`: its device memory, managed memory, or mapped pinned host memory.
absl::Status CheckAccessible(const void* p, int device, size_t job,
                             const char* what) {
  cudaPointerAttributes attr{};
  const cudaError_t err = cudaPointerGetAttributes(&attr, p);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return CudaToStatus(err, absl::StrCat("cudaPointerGetAttributes(jobs[", job,
                                          "] ", what, ")"));
  }
  const auto where = [&] {
    return absl::StrCat("jobs[", job, "] ", what, " at 0x",
                        absl::Hex(reinterpret_cast<uintptr_t>(p)));
  };
  switch (attr.type) {
    case cudaMemoryTypeDevice:
      if (attr.device != device) {
        return absl::InvalidArgumentError(
            absl::StrCat(where(), " is memory of device ", attr.device,
                         ", the current device is ", device));
      }
      return absl::OkStatus();
    case cudaMemoryTypeManaged:
      return absl::OkStatus();
    case cudaMemoryTypeHost:
      if (attr.devicePointer != p) {
        return absl::InvalidArgumentError(
            absl::StrCat(where(),
                         " is pinned host memory not mapped at the same device "
                         "address"));
      }
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          where(), " is unregistered host memory the GPU cannot access"));
  }
}

absl::Status Run(absl::Span<const LayerCopyJob> jobs, CopyDirection direction,
                 cudaStream_t stream) {
  if (jobs.empty()) return absl::OkStatus();
  KVD_ASSIGN_OR_RETURN(CopyBatch batch, BuildCopyBatch(jobs, direction));
  int device = 0;
  KVD_RETURN_IF_ERROR(CudaToStatus(cudaGetDevice(&device), "cudaGetDevice"));
  std::set<const void*> checked;
  for (size_t i = 0; i < jobs.size(); ++i) {
    const LayerCopyJob& j = jobs[i];
    const char* names[2] = {j.paged.num_tensors == 2 ? "K base" : "latent base",
                            "V base"};
    for (uint32_t t = 0; t < j.paged.num_tensors; ++t) {
      if (checked.insert(j.paged.base[t]).second) {
        KVD_RETURN_IF_ERROR(
            CheckAccessible(j.paged.base[t], device, i, names[t]));
      }
    }
    if (checked.insert(j.layer).second) {
      KVD_RETURN_IF_ERROR(CheckAccessible(j.layer, device, i, "layer"));
    }
  }

  // Scratch: [CopyJob x n][int32 block ids], freed in stream order.
  const size_t job_bytes = batch.jobs.size() * sizeof(CopyJob);
  const size_t id_bytes = batch.block_ids.size() * sizeof(int32_t);
  void* scratch = nullptr;
  KVD_RETURN_IF_ERROR(CudaToStatus(
      cudaMallocAsync(&scratch, job_bytes + id_bytes, stream),
      absl::StrCat("cudaMallocAsync(bytes=", job_bytes + id_bytes, ")")));
  uint8_t* base = static_cast<uint8_t*>(scratch);
  batch.Relocate(reinterpret_cast<const int32_t*>(base + job_bytes));
  std::vector<uint8_t> staging(job_bytes + id_bytes);
  std::memcpy(staging.data(), batch.jobs.data(), job_bytes);
  std::memcpy(staging.data() + job_bytes, batch.block_ids.data(), id_bytes);
  // From pageable memory: returns once `staging` has been copied out.
  absl::Status status =
      CudaToStatus(cudaMemcpyAsync(scratch, staging.data(), staging.size(),
                                   cudaMemcpyHostToDevice, stream),
                   absl::StrCat("cudaMemcpyAsync(bytes=", staging.size(), ")"));
  const CopyJob* device_jobs = reinterpret_cast<const CopyJob*>(base);
  for (const CopyGroup& g : batch.groups) {
    if (!status.ok()) break;
    status = CudaToStatus(
        LaunchPagedCopy(device_jobs + g.first_job, g.num_jobs, g.max_units,
                        g.unit_bytes, direction, stream),
        absl::StrCat("PagedCopyKernel(jobs=", g.num_jobs, ", unit_bytes=",
                     g.unit_bytes, ", max_units=", g.max_units, ")"));
  }
  const absl::Status freed =
      CudaToStatus(cudaFreeAsync(scratch, stream), "cudaFreeAsync");
  return status.ok() ? freed : status;
}

}  // namespace

absl::Status GatherChunkLayersCuda(absl::Span<const LayerCopyJob> jobs,
                                   cudaStream_t stream) {
  return Run(jobs, CopyDirection::kGather, stream);
}

absl::Status ScatterChunkLayersCuda(absl::Span<const LayerCopyJob> jobs,
                                    cudaStream_t stream) {
  return Run(jobs, CopyDirection::kScatter, stream);
}

}  // namespace kvd
