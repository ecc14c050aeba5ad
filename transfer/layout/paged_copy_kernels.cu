#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "transfer/layout/paged_copy_kernels.h"

namespace kvd {
namespace {

constexpr uint32_t kThreads = 256;
constexpr uint32_t kMaxGridY = 65535;

// One unit of `Bytes` bytes, loaded and stored as a single access.
template <uint32_t Bytes>
struct UnitType;
template <>
struct UnitType<1> {
  using type = uint8_t;
};
template <>
struct UnitType<2> {
  using type = uint16_t;
};
template <>
struct UnitType<4> {
  using type = uint32_t;
};
template <>
struct UnitType<8> {
  using type = uint2;
};
template <>
struct UnitType<16> {
  using type = uint4;
};

template <uint32_t Bytes, bool kGather>
__global__ void __launch_bounds__(kThreads)
    PagedCopyKernel(const CopyJob* __restrict__ jobs) {
  using Unit = typename UnitType<Bytes>::type;
  __shared__ CopyJob job;
  if (threadIdx.x == 0) job = jobs[blockIdx.x];
  __syncthreads();
  const uint32_t step = gridDim.y * kThreads;
  for (uint32_t u = blockIdx.y * kThreads + threadIdx.x; u < job.total_units;
       u += step) {
    const UnitAddress a = UnitAt(job, u);
    if constexpr (kGather) {
      *reinterpret_cast<Unit*>(a.canon) =
          *reinterpret_cast<const Unit*>(a.paged);
    } else {
      *reinterpret_cast<Unit*>(a.paged) =
          *reinterpret_cast<const Unit*>(a.canon);
    }
  }
}

template <uint32_t Bytes>
cudaError_t Launch(const CopyJob* jobs, dim3 grid, bool gather,
                   cudaStream_t stream) {
  if (gather) {
    PagedCopyKernel<Bytes, true><<<grid, kThreads, 0, stream>>>(jobs);
  } else {
    PagedCopyKernel<Bytes, false><<<grid, kThreads, 0, stream>>>(jobs);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchPagedCopy(const CopyJob* jobs, uint32_t num_jobs,
                            uint32_t max_units, uint32_t unit_bytes,
                            CopyDirection direction, cudaStream_t stream) {
  if (num_jobs == 0 || num_jobs > INT32_MAX) return cudaErrorInvalidValue;
  const uint32_t blocks_y =
      std::max(1u, std::min(kMaxGridY, (max_units + kThreads - 1) / kThreads));
  const dim3 grid(num_jobs, blocks_y);
  const bool gather = direction == CopyDirection::kGather;
  switch (unit_bytes) {
    case 16:
      return Launch<16>(jobs, grid, gather, stream);
    case 8:
      return Launch<8>(jobs, grid, gather, stream);
    case 4:
      return Launch<4>(jobs, grid, gather, stream);
    case 2:
      return Launch<2>(jobs, grid, gather, stream);
    case 1:
      return Launch<1>(jobs, grid, gather, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace kvd
