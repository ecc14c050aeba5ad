// ChunkStore: what an engine needs of kvdepot, whether it talks to one node
// (Client, store/client/client.h) or to a cluster (ClusterClient,
// cluster/cluster_client.h). Engine-side code (PagedChunkIO, the Python
// bindings) is written against it.
//
// The contract is Client's: every span of one call lies in one buffer
// registered here; Put reports a status per key; Get a size per target, or
// kNotFound for a miss (kDataLoss for a corrupt chunk); Lookup the number of
// leading keys present. Implementations are thread-safe.
#ifndef KVDEPOT_STORE_CLIENT_CHUNK_STORE_H_
#define KVDEPOT_STORE_CLIENT_CHUNK_STORE_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/chunk_format.h"
#include "core/chunk_key.h"
#include "transfer/transport.h"

namespace kvd {

struct GetTarget {
  ChunkKey key;
  bool whole_object = true;
  ChunkSelection selection;  // when !whole_object
  absl::Span<uint8_t> dst;
};

class ChunkStore {
 public:
  virtual ~ChunkStore() = default;

  // Registers memory for zero-copy transfers while the handle lives
  // (destroy handles before the store).
  virtual absl::StatusOr<std::unique_ptr<Registration>> RegisterBuffer(
      absl::Span<uint8_t> memory) = 0;
  virtual std::vector<absl::Status> Put(
      absl::Span<const ChunkKey> keys,
      absl::Span<const absl::Span<const uint8_t>> objects) = 0;
  virtual std::vector<absl::StatusOr<uint64_t>> Get(
      absl::Span<const GetTarget> targets) = 0;
  virtual absl::StatusOr<size_t> Lookup(absl::Span<const ChunkKey> keys) = 0;
};

}  // namespace kvd

#endif  // KVDEPOT_STORE_CLIENT_CHUNK_STORE_H_
