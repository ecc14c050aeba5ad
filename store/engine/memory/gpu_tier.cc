#include "store/engine/memory/gpu_tier.h"

#include <cuda_runtime_api.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/check.h"
#include "core/cuda_status.h"
#include "core/status.h"

namespace kvd {
namespace {

constexpr uint64_t kPageBytes = 2ull << 20;

}  // namespace

bool GpuTier::DevicePresent() { return CudaDeviceCount() > 0; }

absl::StatusOr<std::unique_ptr<GpuTier>> GpuTier::Create(
    const GpuTierOptions& options) {
  if (options.capacity_bytes == 0) {
    return absl::InvalidArgumentError(
        "capacity_bytes=0: the GPU tier needs at least 1 byte");
  }
  const int count = CudaDeviceCount();
  if (count == 0) {
    return absl::FailedPreconditionError(
        "GPU tier: no usable CUDA device (cudaGetDeviceCount reports none)");
  }
  if (options.device < 0 || options.device >= count) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gpu device=", options.device, " is out of range [0, ", count, ")"));
  }
  const uint64_t bytes =
      (options.capacity_bytes + kPageBytes - 1) / kPageBytes * kPageBytes;
  KVD_ASSIGN_OR_RETURN(std::unique_ptr<SlabAllocator> allocator,
                       SlabAllocator::Create({.capacity_bytes = bytes,
                                              .page_bytes = kPageBytes}));
  KVD_RETURN_IF_ERROR(
      CudaToStatus(cudaSetDevice(options.device),
                   absl::StrCat("cudaSetDevice(", options.device, ")")));
  void* base = nullptr;
  KVD_RETURN_IF_ERROR(
      CudaToStatus(cudaMalloc(&base, bytes),
                   absl::StrCat("cudaMalloc(capacity_bytes=", bytes,
                                ", device=", options.device, ")")));
  return std::unique_ptr<GpuTier>(new GpuTier(options.device,
                                              static_cast<uint8_t*>(base),
                                              bytes, std::move(allocator)));
}

GpuTier::GpuTier(int device, uint8_t* device_base, uint64_t pool_bytes,
                 std::unique_ptr<SlabAllocator> allocator)
    : device_(device),
      device_base_(device_base),
      pool_bytes_(pool_bytes),
      pool_("gpu tier", std::move(allocator)) {}

GpuTier::~GpuTier() {
  // Nothing to report to: a failure here leaves the pool to process exit.
  if (cudaSetDevice(device_) == cudaSuccess) cudaFree(device_base_);
}

absl::StatusOr<uint64_t> GpuTier::Allocate(uint64_t size) {
  return pool_.Allocate(size);
}

void GpuTier::Free(uint64_t handle) { pool_.Free(handle); }

absl::Status GpuTier::Write(uint64_t handle, uint64_t offset,
                            absl::Span<const uint8_t> src) {
  KVD_RETURN_IF_ERROR(pool_.CheckRange(handle, offset, src.size()));
  if (src.empty()) return absl::OkStatus();
  KVD_RETURN_IF_ERROR(CudaToStatus(cudaSetDevice(device_), "cudaSetDevice"));
  return CudaToStatus(
      cudaMemcpy(device_base_ + handle + offset, src.data(), src.size(),
                 cudaMemcpyHostToDevice),
      absl::StrCat("cudaMemcpy(H2D, handle=", handle, ", offset=", offset,
                   ", size=", src.size(), ")"));
}

absl::Status GpuTier::Read(uint64_t handle, uint64_t offset,
                           absl::Span<uint8_t> dst) {
  KVD_RETURN_IF_ERROR(pool_.CheckRange(handle, offset, dst.size()));
  if (dst.empty()) return absl::OkStatus();
  KVD_RETURN_IF_ERROR(CudaToStatus(cudaSetDevice(device_), "cudaSetDevice"));
  return CudaToStatus(
      cudaMemcpy(dst.data(), device_base_ + handle + offset, dst.size(),
                 cudaMemcpyDeviceToHost),
      absl::StrCat("cudaMemcpy(D2H, handle=", handle, ", offset=", offset,
                   ", size=", dst.size(), ")"));
}

TierUsage GpuTier::Usage() const { return pool_.Usage(); }

SlabAllocatorStats GpuTier::AllocatorStats() const { return pool_.Stats(); }

}  // namespace kvd
