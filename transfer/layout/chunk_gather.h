// CPU gather/scatter between a paged KV cache in host memory and the
// canonical chunk layout (DESIGN.md §3.2). This is the oracle the CUDA
// kernels (transfer/layout/chunk_gather_cuda.h) are tested against.
//
// A canonical layer is
//   // [tensors][chunk_heads][tokens][head_dim], dtype of the paged cache
// (tensors = K, V or one latent tensor) and a chunk payload is its layers
// back to back in order, which is what follows the header of a raw chunk
// object (core/chunk_format.h).
//
// Gather writes only the bytes of the selected heads of the canonical layer;
// scatter writes only the selected heads' slots of the paged cache. Every
// function validates all its inputs before copying a byte: on an error,
// nothing was written. Thread-compatible; the caller keeps the buffers alive
// and unchanged (sources) or unread (destinations) during a call.
#ifndef KVDEPOT_TRANSFER_LAYOUT_CHUNK_GATHER_H_
#define KVDEPOT_TRANSFER_LAYOUT_CHUNK_GATHER_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/chunk_format.h"
#include "transfer/layout/paged_layout.h"

namespace kvd {

// Copies one layer's chunk slots from the paged cache into `layer`.
// REQUIRES: paged memory is host memory.
// kInvalidArgument for anything PlanLayerCopy rejects, or when layer.size()
// is not the plan's layer_bytes.
absl::Status GatherChunkLayer(const PagedLayerView& paged,
                              const ChunkSlots& slots, const HeadMap& heads,
                              absl::Span<uint8_t> layer);

// Copies one canonical layer into the paged cache's chunk slots. Errors as
// for GatherChunkLayer.
absl::Status ScatterChunkLayer(absl::Span<const uint8_t> layer,
                               const ChunkSlots& slots, const HeadMap& heads,
                               const PagedLayerView& paged);

// The same for every layer of a chunk: layers[i] is layer i's paged view
// (the same slots and heads in each) and `payload` holds layers.size()
// canonical layers back to back. kInvalidArgument when the layers differ in
// geometry or payload.size() is not layers.size() times one layer's bytes.
absl::Status GatherChunk(absl::Span<const PagedLayerView> layers,
                         const ChunkSlots& slots, const HeadMap& heads,
                         absl::Span<uint8_t> payload);
absl::Status ScatterChunk(absl::Span<const uint8_t> payload,
                          const ChunkSlots& slots, const HeadMap& heads,
                          absl::Span<const PagedLayerView> layers);

// Builds a raw chunk object (empty codec chain) from every head of every
// layer in `object`, which must be exactly ChunkHeaderSize(0, num_layers) +
// num_layers * spec.LayerBytes(slots.tokens) bytes: gathers the layers into
// place, then SealChunkObject. spec must match the views (num_layers =
// layers.size(), kv_heads, head_dim, dtype, layout) and id.token_count must
// be slots.tokens; kInvalidArgument otherwise.
absl::Status GatherChunkObject(const ModelSpec& spec, const ChunkIdentity& id,
                               absl::Span<const PagedLayerView> layers,
                               const ChunkSlots& slots,
                               absl::Span<uint8_t> object);

// Scatters layers [layer_begin, layer_begin + layers.size()) of a raw chunk
// object into `layers`. `heads` maps paged heads to the object's heads
// (chunk_heads 0 or header.kv_heads). REQUIRES: `header` came from
// DecodeChunkHeader or VerifyChunkObject of `object` (this does not check
// layer checksums). kInvalidArgument when the object has a codec chain, or
// its dtype, layout, head_dim, kv_heads, token_count or layer range do not
// match the views and slots; kOutOfRange when `object` is shorter than a
// layer's extent.
absl::Status ScatterChunkObject(const ChunkHeader& header,
                                absl::Span<const uint8_t> object,
                                uint32_t layer_begin, const ChunkSlots& slots,
                                const HeadMap& heads,
                                absl::Span<const PagedLayerView> layers);

// Copies per plan; REQUIRES: `layer` holds plan.layer_bytes bytes and the
// plan came from PlanLayerCopy over host memory.
void GatherPlanned(const LayerCopyPlan& plan, uint8_t* layer);
void ScatterPlanned(const LayerCopyPlan& plan, const uint8_t* layer);

}  // namespace kvd

#endif  // KVDEPOT_TRANSFER_LAYOUT_CHUNK_GATHER_H_
