// Test support for the SSD tier's crash tests: simulates losing the index
// writes that no synced write covered (RocksDB itself does not run on the
// FaultInjectionFileSystem, so a power loss cannot be injected there).
#ifndef KVDEPOT_STORE_ENGINE_SSD_SSD_INDEX_TESTING_H_
#define KVDEPOT_STORE_ENGINE_SSD_SSD_INDEX_TESTING_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace kvd {

// Deletes, from the index of the tier in `dir`, every chunk entry whose
// record starts at or past its segment's watermark (every entry of a segment
// without one), with a synced write: as much as SsdTier's durability contract
// (ssd_tier.h) allows a power loss to take. Removals are not undone, which a
// real loss may also do. Returns how many entries were deleted.
// REQUIRES: no SsdTier has `dir` open.
absl::StatusOr<uint64_t> DropIndexEntriesPastWatermarks(const std::string& dir);

}  // namespace kvd

#endif  // KVDEPOT_STORE_ENGINE_SSD_SSD_INDEX_TESTING_H_
