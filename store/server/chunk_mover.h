// Moving a draining node's chunks to their owners among the other nodes
// (Control.Drain with move_to_owners; `kvdepotctl cluster drain NODE`).
//
// Every chunk the engine lists is read whole (its stored object, header and
// checksums included, so the receiving node validates it as it would any
// put) into a staging buffer registered with `client`, and written in
// batches with ClusterClient::Put. The node has announced itself draining in
// its membership record beforehand, so placement passes over it and each
// chunk lands on the owners readers look up. A chunk removed meanwhile
// counts as done; one that cannot be read (corrupt) or stored counts as
// failed and the move goes on.
#ifndef KVDEPOT_STORE_SERVER_CHUNK_MOVER_H_
#define KVDEPOT_STORE_SERVER_CHUNK_MOVER_H_

#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "cluster/cluster_client.h"
#include "store/engine/store_engine.h"
#include "store/proto/kvdepot.pb.h"

namespace kvd {

struct ChunkMoveOptions {
  // A batch holds at most this many bytes (or one chunk, if bigger) ...
  uint64_t batch_bytes = uint64_t{64} << 20;
  // ... and this many chunks.
  size_t batch_chunks = 256;
};

// Counts into `progress` (totals first, then done, bytes and failures);
// calls `report` after the totals and after each batch, and stops with
// kCancelled when it returns false. Errors other than per-chunk ones (the
// staging buffer cannot be registered) end the move.
absl::Status MoveChunksToOwners(StoreEngine* engine,
                                cluster::ClusterClient* client,
                                kvdepot::v1::DrainProgress* progress,
                                const std::function<bool()>& report,
                                const ChunkMoveOptions& options = {});

}  // namespace kvd

#endif  // KVDEPOT_STORE_SERVER_CHUNK_MOVER_H_
