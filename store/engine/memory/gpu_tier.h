// GpuTier: the GPU tier, one cudaMalloc pool on one device carved by a
// SlabAllocator (DESIGN.md §3.5).
//
// Built only with KVD_WITH_CUDA=ON: the target kvd::gpu_tier then defines
// KVD_HAVE_GPU_TIER=1 for everything that links it; with CUDA off the target
// is an empty interface library that defines KVD_HAVE_GPU_TIER=0, so code can
// link it unconditionally and test the macro. This header needs no CUDA
// headers.
//
// Handles are byte offsets into the device pool. Write/Read are synchronous
// cudaMemcpy calls (host <-> device) on the tier's device; they validate the
// range under the mutex and copy outside it. HostAddress returns nullptr;
// DevicePointer gives the device address for transports and kernels.
//
// Thread-safe, with the same pinning contract as HostTier: the caller must not
// Free a handle while a copy of it is in flight.
#ifndef KVDEPOT_STORE_ENGINE_MEMORY_GPU_TIER_H_
#define KVDEPOT_STORE_ENGINE_MEMORY_GPU_TIER_H_

#include <cstdint>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "store/engine/memory/slab_allocator.h"
#include "store/engine/memory/slab_pool.h"
#include "store/engine/tier.h"

namespace kvd {

struct GpuTierOptions {
  // Bytes of the pool, rounded up to whole 2 MiB pages. REQUIRES > 0.
  uint64_t capacity_bytes = 0;
  // CUDA device ordinal. REQUIRES 0 <= device < cudaGetDeviceCount().
  int device = 0;
};

class GpuTier final : public MemoryTier {
 public:
  // Allocates the device pool. kFailedPrecondition when no CUDA device (or no
  // usable driver) is present; kInvalidArgument for capacity_bytes 0 or a
  // device ordinal out of range (the message names the bound);
  // kResourceExhausted when cudaMalloc cannot provide the pool.
  static absl::StatusOr<std::unique_ptr<GpuTier>> Create(
      const GpuTierOptions& options);

  // True when the CUDA runtime reports at least one device.
  static bool DevicePresent();

  ~GpuTier() override;
  GpuTier(const GpuTier&) = delete;
  GpuTier& operator=(const GpuTier&) = delete;

  TierKind kind() const override { return TierKind::kGpu; }

  absl::StatusOr<uint64_t> Allocate(uint64_t size) override;
  // Crashes on a handle that is not live (double free).
  void Free(uint64_t handle) override;

  // Host <-> device copies. kOutOfRange when the range does not lie inside
  // the allocation; the CUDA error converted to a Status when a copy fails.
  absl::Status Write(uint64_t handle, uint64_t offset,
                     absl::Span<const uint8_t> src) override;
  absl::Status Read(uint64_t handle, uint64_t offset,
                    absl::Span<uint8_t> dst) override;

  // Always nullptr: device memory is not host-addressable.
  uint8_t* HostAddress(uint64_t handle) override { return nullptr; }
  // Device address of the allocation's first byte. REQUIRES: `handle` is live.
  void* DevicePointer(uint64_t handle) const { return device_base_ + handle; }

  TierUsage Usage() const override;
  SlabAllocatorStats AllocatorStats() const;

  int device() const { return device_; }
  void* pool_base() const { return device_base_; }
  uint64_t pool_bytes() const { return pool_bytes_; }

 private:
  GpuTier(int device, uint8_t* device_base, uint64_t pool_bytes,
          std::unique_ptr<SlabAllocator> allocator);

  const int device_;
  uint8_t* const device_base_;
  const uint64_t pool_bytes_;

  SlabPool pool_;
};

}  // namespace kvd

#endif  // KVDEPOT_STORE_ENGINE_MEMORY_GPU_TIER_H_
