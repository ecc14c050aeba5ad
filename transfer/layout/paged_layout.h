// The geometry of an engine's paged KV cache for one layer, and the plan for
// copying one chunk's tokens between it and the canonical chunk layout
// (DESIGN.md §3.2).
//
// An engine keeps, per layer, K and V in blocks of `block_size` token slots:
//   vLLM NHD:       K, V each [num_blocks][block_size][kv_heads][head_dim]
//   HND:            K, V each [num_blocks][kv_heads][block_size][head_dim]
//   stacked:        one tensor [2][num_blocks]... or [num_blocks][2]...
//   latent (MLA):   one tensor [num_blocks][block_size][head_dim]
// A PagedLayerView records where element (block, token, head, dim) of each
// tensor lives, from the tensor's shape and strides in elements exactly as a
// binding reads torch's `.shape` and `.stride()`: nothing assumes contiguity
// or a dimension order.
//
// The canonical side of a layer is `K | V` (or one latent tensor), each
// [chunk_heads][tokens][head_dim] contiguous in the paged dtype:
//   // [tensors][chunk_heads][tokens][head_dim], dtype of the paged cache
//
// Everything here is plain data and validation: no copies, no CUDA. The CPU
// copies are in transfer/layout/chunk_gather.h, the CUDA ones in
// transfer/layout/chunk_gather_cuda.h; both take a LayerCopyPlan.
#ifndef KVDEPOT_TRANSFER_LAYOUT_PAGED_LAYOUT_H_
#define KVDEPOT_TRANSFER_LAYOUT_PAGED_LAYOUT_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/model_spec.h"

namespace kvd {

// A tensor as a binding passes it: data pointer, dtype, shape and strides
// (in elements, like torch.Tensor.stride()). The memory may be host or
// device memory; nothing here dereferences it.
struct TensorDesc {
  void* data = nullptr;  // address of element [0, ..., 0]
  DType dtype = DType::kBf16;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;  // elements, one per dimension
};

// Dimension letters of a `dims` string, one letter per tensor dimension in
// order:
//   'N' block index          'T' token slot within a block
//   'H' KV head              'D' element of the head dimension
//   'S' K/V stack (size 2; index 0 is K, 1 is V)
inline constexpr absl::string_view kDimsNHD = "NTHD";  // vLLM K or V
inline constexpr absl::string_view kDimsHND = "NHTD";
inline constexpr absl::string_view kDimsStackedNHD = "SNTHD";  // [2][N]...
inline constexpr absl::string_view kDimsBlockStackedNHD = "NSTHD";
inline constexpr absl::string_view kDimsLatent = "NTD";  // MLA

// Strides of one paged tensor in elements.
struct PagedStrides {
  int64_t block = 0;
  int64_t token = 0;
  int64_t head = 0;
  int64_t dim = 0;
};

// One layer of a paged KV cache. Tensor 0 is K (or the latent tensor),
// tensor 1 is V. Element (b, t, h, d) of tensor i is at
//   base[i] + (b*strides[i].block + t*strides[i].token
//              + h*strides[i].head + d*strides[i].dim) * DTypeSize(dtype).
// Does not own the memory.
struct PagedLayerView {
  DType dtype = DType::kBf16;
  uint32_t num_tensors = 2;  // 2: K and V; 1: latent (MLA)
  void* base[2] = {nullptr, nullptr};
  PagedStrides strides[2];
  int64_t num_blocks = 0;
  uint32_t block_size = 0;  // token slots per block
  uint32_t kv_heads = 0;    // 1 for a latent tensor
  uint32_t head_dim = 0;

  uint32_t element_size() const { return DTypeSize(dtype); }
};

// Checks a view built by hand or by the functions below: a known dtype,
// num_tensors 1 or 2, non-null bases aligned to the element size, positive
// sizes, strides >= 0 and > 0 wherever the size is > 1, no two elements of a
// tensor at the same address, and the furthest element addressable without
// overflow. kInvalidArgument naming the field and the bound otherwise.
absl::Status ValidatePagedLayerView(const PagedLayerView& view);

// Builds a view from one tensor holding K and V (`dims` has an 'S').
absl::StatusOr<PagedLayerView> PagedViewFromStacked(const TensorDesc& kv,
                                                    absl::string_view dims);
// Builds a view from separate K and V tensors with the same dims, shape and
// dtype (their strides and addresses may differ).
absl::StatusOr<PagedLayerView> PagedViewFromSeparate(const TensorDesc& k,
                                                     const TensorDesc& v,
                                                     absl::string_view dims);
// Builds a view of a latent (MLA) cache: one tensor, `dims` without 'S'; 'H'
// may be omitted (one head) or present with size 1.
absl::StatusOr<PagedLayerView> PagedViewFromLatent(const TensorDesc& latent,
                                                   absl::string_view dims);

// The token slots a chunk covers: `tokens` consecutive positions starting at
// slot `first_block_offset` of block_ids[0] and running on through the next
// blocks. block_ids must hold exactly the blocks those positions touch.
// Does not own the ids.
struct ChunkSlots {
  absl::Span<const int32_t> block_ids;
  uint32_t first_block_offset = 0;
  uint32_t tokens = 0;
};

// Which heads move: paged heads [paged_begin, paged_begin + count) are chunk
// heads [chunk_begin, chunk_begin + count) of a canonical layer holding
// `chunk_heads` heads. A tensor-parallel rank whose cache holds chunk heads
// [h0, h1) uses {0, h0, h1 - h0, all heads}; a buffer holding only a head
// slice is a canonical layer with chunk_heads = count.
struct HeadMap {
  uint32_t paged_begin = 0;
  uint32_t chunk_begin = 0;
  uint32_t count = 0;        // 0: every paged head from paged_begin on
  uint32_t chunk_heads = 0;  // 0: chunk_begin + count
};

// A validated copy of one chunk's tokens of one layer. Holds the block id
// span of the ChunkSlots it was made from (does not own it).
struct LayerCopyPlan {
  PagedLayerView paged;
  absl::Span<const int32_t> block_ids;
  uint32_t first_block_offset = 0;
  uint32_t tokens = 0;
  uint32_t paged_head_begin = 0;
  uint32_t chunk_head_begin = 0;
  uint32_t heads = 0;         // heads copied per tensor
  uint32_t chunk_heads = 0;   // heads of the canonical layer
  uint64_t row_bytes = 0;     // head_dim * element size
  uint64_t tensor_bytes = 0;  // chunk_heads * tokens * row_bytes
  uint64_t layer_bytes = 0;   // num_tensors * tensor_bytes

  // Byte offset, in the canonical layer, of (tensor, chunk head, token).
  uint64_t CanonicalOffset(uint32_t tensor, uint32_t chunk_head,
                           uint32_t token) const {
    return tensor * tensor_bytes +
           (uint64_t{chunk_head} * tokens + token) * row_bytes;
  }
};

// Validates the view, the slots and the head map together.
// kInvalidArgument, naming the field and the bound, for: an invalid view;
// tokens 0; first_block_offset >= block_size; a block_ids count other than
// the number of blocks the tokens touch; a block id outside [0, num_blocks)
// or repeated; a head range outside the paged heads or the chunk heads; a
// canonical layer too large to address.
absl::StatusOr<LayerCopyPlan> PlanLayerCopy(const PagedLayerView& paged,
                                            const ChunkSlots& slots,
                                            const HeadMap& heads);

}  // namespace kvd

#endif  // KVDEPOT_TRANSFER_LAYOUT_PAGED_LAYOUT_H_
