// The descriptor of one (layer, chunk) copy as the CUDA kernels read it, and
// the address of each unit it moves. Framework-free (no Abseil, no CUDA
// headers) so that nvcc compiles it into the kernels and the host compiler
// into CopyBatch and its CPU tests: both run the same arithmetic.
#ifndef KVDEPOT_TRANSFER_LAYOUT_COPY_JOB_H_
#define KVDEPOT_TRANSFER_LAYOUT_COPY_JOB_H_

#include <cstdint>

#if defined(__CUDACC__)
#define KVD_HOST_DEVICE __host__ __device__
#else
#define KVD_HOST_DEVICE
#endif

namespace kvd {

enum class CopyDirection { kGather, kScatter };

// A job as the kernel reads it. Strides are in bytes.
struct CopyJob {
  uint8_t* paged[2];
  int64_t block_stride[2];
  int64_t token_stride[2];
  int64_t head_stride[2];
  int64_t unit_stride[2];  // between consecutive units of a row
  uint8_t* layer;
  const int32_t* block_ids;
  uint64_t tensor_bytes;  // canonical bytes per tensor
  uint64_t row_bytes;
  uint32_t heads;
  uint32_t paged_head_begin;
  uint32_t chunk_head_begin;
  uint32_t tokens;
  uint32_t first_block_offset;
  uint32_t block_size;
  uint32_t units_per_row;
  uint32_t unit_bytes;
  uint32_t total_units;  // num_tensors * heads * tokens * units_per_row
};

// Paged and canonical address of unit `u` of job `j`.
// REQUIRES: u < j.total_units and j's block ids are relocated.
struct UnitAddress {
  uint8_t* paged;
  uint8_t* canon;
};
KVD_HOST_DEVICE inline UnitAddress UnitAt(const CopyJob& j, uint32_t u) {
  const uint32_t unit = u % j.units_per_row;
  uint32_t row = u / j.units_per_row;
  const uint32_t tok = row % j.tokens;
  row /= j.tokens;
  const uint32_t h = row % j.heads;
  const uint32_t t = row / j.heads;
  const uint32_t pos = j.first_block_offset + tok;
  const int64_t block = j.block_ids[pos / j.block_size];
  const int64_t slot = pos % j.block_size;
  UnitAddress a;
  a.paged = j.paged[t] + block * j.block_stride[t] + slot * j.token_stride[t] +
            int64_t{j.paged_head_begin + h} * j.head_stride[t] +
            int64_t{unit} * j.unit_stride[t];
  a.canon = j.layer + t * j.tensor_bytes +
            (uint64_t{j.chunk_head_begin + h} * j.tokens + tok) * j.row_bytes +
            uint64_t{unit} * j.unit_bytes;
  return a;
}

}  // namespace kvd

#endif  // KVDEPOT_TRANSFER_LAYOUT_COPY_JOB_H_
