#include "store/engine/ssd/ssd_index_testing.h"

#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "core/chunk_key.h"
#include "core/status.h"
#include "store/engine/ssd/ssd_index.h"

namespace kvd {

absl::StatusOr<uint64_t> DropIndexEntriesPastWatermarks(
    const std::string& dir) {
  KVD_ASSIGN_OR_RETURN(std::unique_ptr<SsdIndex> index,
                       SsdIndex::Open(dir + "/index"));
  absl::flat_hash_map<uint32_t, uint64_t> watermarks;
  std::vector<std::pair<std::string, SsdIndexEntry>> entries;
  KVD_RETURN_IF_ERROR(index->ForEach(
      [&](std::string_view k, std::string_view v) -> absl::Status {
        if (std::optional<uint32_t> id = ParseWatermarkKey(k)) {
          absl::StatusOr<uint64_t> wm = DecodeWatermark(v);
          if (wm.ok()) watermarks[*id] = *wm;
          return absl::OkStatus();
        }
        absl::StatusOr<SsdIndexEntry> e = DecodeIndexValue(v);
        if (k.size() == ChunkKey::kSize && e.ok())
          entries.emplace_back(std::string(k), *std::move(e));
        return absl::OkStatus();
      }));
  std::vector<std::string> drop;
  for (const auto& [key, e] : entries) {
    auto wm = watermarks.find(e.segment);
    if (wm == watermarks.end() || e.offset >= wm->second) drop.push_back(key);
  }
  if (!drop.empty()) KVD_RETURN_IF_ERROR(index->DeleteRaw(drop, /*sync=*/true));
  return drop.size();
}

}  // namespace kvd
