// PagedChunkIO: the engine side of saving KV caches to kvdepot and loading
// them back (DESIGN.md §3.1, §3.2). Built once per engine worker from its
// paged KV cache (one PagedLayerView per layer, as register_kv_caches sees
// them) and a ChunkStore (one node or a cluster).
//
//   auto io = PagedChunkIO::Create(store, {.spec = spec}, layers);
//   std::vector<absl::Status> saved = (*io)->Save(chunks);   // gather + put
//   std::vector<absl::Status> loaded = (*io)->Load(chunks);  // get + scatter
//
// A chunk is spec.chunk_tokens tokens at slots
//   block_ids[0] from first_block_offset, then the following blocks,
// and its key comes from the token ids (ChainChunkKeys), never from the
// engine's own block hashes.
//
// Save gathers every layer of each chunk from the cache into the canonical
// layout behind a header with per-layer checksums (GatherChunkObject),
// straight into one buffer registered with the store, and puts the objects
// in one batch. Load gets the objects into staging, verifies each (header,
// sizes, identity and every layer checksum) and only then scatters it into
// the chunk's blocks: a missing chunk is kNotFound and a corrupt one
// kDataLoss, and neither writes a byte into the cache. LoadLayers does the
// same a few layers at a time, in order, so an engine can compute layer i
// while later layers travel. Batches larger than the staging buffer go in
// several rounds.
//
// Host memory only, and every KV head in the cache: the views must point at
// CPU memory (CUDA caches need the kernels of
// transfer/layout/chunk_gather_cuda.h, and a tensor-parallel rank holding a
// head slice needs head-sliced objects; neither is wired here yet).
//
// Thread-compatible: one call at a time (the staging buffer is shared).
#ifndef KVDEPOT_STORE_CLIENT_PAGED_CHUNK_IO_H_
#define KVDEPOT_STORE_CLIENT_PAGED_CHUNK_IO_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/chunk_key.h"
#include "core/model_spec.h"
#include "store/client/chunk_store.h"
#include "transfer/layout/paged_layout.h"

namespace kvd {

struct PagedChunk {
  ChunkKey key;
  ChunkKey parent;  // the previous chunk's key; ChunkKey::Zero() for the first
  std::vector<int32_t> block_ids;  // blocks holding the chunk's tokens
  uint32_t first_block_offset = 0;
};

struct PagedChunkIOOptions {
  ModelSpec spec;  // the namespace: geometry, dtype, chunk size, salt
  // Staging for one round of Save or Load, in whole chunk objects; at least
  // one object.
  uint64_t staging_bytes = uint64_t{64} << 20;
};

class PagedChunkIO {
 public:
  // kInvalidArgument when the spec or a view is invalid, the views do not
  // match the spec (layer count, heads, head_dim, dtype) or staging cannot
  // hold one object; errors of RegisterBuffer. `store` must outlive it.
  static absl::StatusOr<std::unique_ptr<PagedChunkIO>> Create(
      ChunkStore* store, PagedChunkIOOptions options,
      std::vector<PagedLayerView> layers);

  // Per chunk: OK once the store holds it. kInvalidArgument for bad slots.
  std::vector<absl::Status> Save(absl::Span<const PagedChunk> chunks);
  // Per chunk: OK once its tokens are in the cache; kNotFound (a miss) or
  // kDataLoss (corrupt, not copied) otherwise.
  std::vector<absl::Status> Load(absl::Span<const PagedChunk> chunks);

  // Load, `layers_per_fetch` layers at a time: a staging round gets layers
  // [0, n) of its chunks with their headers, verifies and scatters them,
  // then gets the next n layers, and so on. Calls on_layers(end), with end
  // increasing to num_layers, once layers [0, end) of every chunk that has
  // not failed are in the cache (with several rounds, during the last).
  // A chunk that fails after some of its layers were scattered has written
  // those: its status says it failed, and its blocks must be recomputed.
  // Load is LoadLayers with layers_per_fetch = num_layers.
  std::vector<absl::Status> LoadLayers(
      absl::Span<const PagedChunk> chunks, uint32_t layers_per_fetch,
      absl::FunctionRef<void(uint32_t)> on_layers);

  // Bytes of one chunk object of this namespace.
  uint64_t object_bytes() const { return object_bytes_; }

 private:
  PagedChunkIO(ChunkStore* store, PagedChunkIOOptions options,
               std::vector<PagedLayerView> layers, uint64_t object_bytes);
  // One staging round of chunks; fills `out`.
  void SaveRound(absl::Span<const PagedChunk> chunks,
                 absl::Span<absl::Status> out);
  void LoadRound(absl::Span<const PagedChunk> chunks,
                 absl::Span<absl::Status> out, uint32_t layers_per_fetch,
                 absl::FunctionRef<void(uint32_t)> on_layers);
  // The header a Get put at the start of `object` (`got` bytes so far),
  // checked against the chunk asked for and this namespace's layout.
  absl::StatusOr<ChunkHeader> HeaderOf(const PagedChunk& chunk,
                                       absl::Span<const uint8_t> object) const;

  ChunkStore* const store_;
  const PagedChunkIOOptions options_;
  const ChunkKey fingerprint_;
  const std::vector<PagedLayerView> layers_;
  const uint64_t object_bytes_;
  const size_t per_round_;  // objects per staging round
  std::vector<uint8_t> staging_;
  std::unique_ptr<Registration> registration_;
};

}  // namespace kvd

#endif  // KVDEPOT_STORE_CLIENT_PAGED_CHUNK_IO_H_
