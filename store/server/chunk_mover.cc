#include "store/server/chunk_mover.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "spdlog/spdlog.h"

namespace kvd {
namespace {

// Every chunk of the engine, with its stored size.
std::vector<ChunkSummary> ListAll(StoreEngine* engine) {
  std::vector<ChunkSummary> out;
  ListChunksOptions options;
  options.limit = 1000;
  do {
    ChunkPage page = engine->ListChunks(options);
    for (ChunkSummary& c : page.chunks) out.push_back(std::move(c));
    options.cursor = page.next_cursor;
  } while (options.cursor != 0);
  return out;
}

}  // namespace

absl::Status MoveChunksToOwners(StoreEngine* engine,
                                cluster::ClusterClient* client,
                                kvdepot::v1::DrainProgress* progress,
                                const std::function<bool()>& report,
                                const ChunkMoveOptions& options) {
  const std::vector<ChunkSummary> chunks = ListAll(engine);
  uint64_t largest = 0;
  for (const ChunkSummary& c : chunks) {
    progress->set_bytes_total(progress->bytes_total() + c.object_bytes);
    largest = std::max(largest, c.object_bytes);
  }
  progress->set_chunks_total(chunks.size());
  if (!report()) return absl::CancelledError("caller went away");
  if (chunks.empty()) return absl::OkStatus();

  std::vector<uint8_t> staging(std::max(options.batch_bytes, largest));
  KVD_ASSIGN_OR_RETURN(std::unique_ptr<Registration> registration,
                       client->RegisterBuffer(absl::MakeSpan(staging)));
  absl::Status first_error;
  auto failed = [&](const absl::Status& s) {
    progress->set_chunks_failed(progress->chunks_failed() + 1);
    if (first_error.ok()) {
      first_error = s;
      spdlog::warn("drain: a chunk could not be moved: {}", s.ToString());
    }
  };
  size_t next = 0;
  while (next < chunks.size()) {
    std::vector<ChunkKey> keys;
    std::vector<absl::Span<const uint8_t>> objects;
    uint64_t used = 0;
    for (; next < chunks.size() && keys.size() < options.batch_chunks; ++next) {
      const ChunkSummary& c = chunks[next];
      if (!keys.empty() && used + c.object_bytes > staging.size()) break;
      absl::StatusOr<std::vector<uint8_t>> object = engine->GetObject(c.key);
      if (absl::IsNotFound(object.status())) {  // removed meanwhile
        progress->set_chunks_done(progress->chunks_done() + 1);
        continue;
      }
      if (!object.ok()) {
        failed(object.status());
        continue;
      }
      if (used + object->size() > staging.size()) {
        failed(absl::DataLossError(
            absl::StrCat("chunk ", c.key.Hex(), " is ", object->size(),
                         " bytes but was listed with ", c.object_bytes)));
        continue;
      }
      std::memcpy(staging.data() + used, object->data(), object->size());
      keys.push_back(c.key);
      objects.push_back(
          absl::MakeConstSpan(staging.data() + used, object->size()));
      used += object->size();
    }
    const std::vector<absl::Status> stored = client->Put(keys, objects);
    for (size_t i = 0; i < keys.size(); ++i) {
      if (stored[i].ok()) {
        progress->set_chunks_done(progress->chunks_done() + 1);
        progress->set_bytes_done(progress->bytes_done() + objects[i].size());
      } else {
        failed(stored[i]);
      }
    }
    if (!report()) return absl::CancelledError("caller went away");
  }
  return absl::OkStatus();
}

}  // namespace kvd
