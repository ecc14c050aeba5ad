// SsdIndex: the durable key -> record-location map of the SSD tier, kept in
// RocksDB under <tier dir>/index. Internal to store/engine/ssd.
//
// Two kinds of entries, told apart by key length:
//   - chunk entries. Key: the 32-byte chunk key. Value (little-endian, see
//     EncodeIndexValue): u8 version(1) | u32 segment | u64 offset
//     | u64 record_len | u64 payload_len | u64 payload_checksum | [32] parent
//     | u16 codec_len | codec bytes
//   - segment watermarks. Key: WatermarkKey(segment) ("wm/" + 10 digits,
//     13 bytes). Value: u64 offset, little-endian. Every record of the
//     segment that starts below the offset and was ever acknowledged has its
//     entry (or a later removal or move of it) durable in this index; records
//     at or past it may be missing and are found by scanning the segment (see
//     ssd_tier.h).
//
// RocksDB runs on its own Env (the real disk), not on the tier's FileSystem.
// Thread-safe (RocksDB is).
#ifndef KVDEPOT_STORE_ENGINE_SSD_SSD_INDEX_H_
#define KVDEPOT_STORE_ENGINE_SSD_SSD_INDEX_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/chunk_key.h"

namespace rocksdb {
class DB;
}  // namespace rocksdb

namespace kvd {

inline constexpr uint8_t kIndexValueVersion = 1;

struct SsdIndexEntry {
  uint32_t segment = 0;
  uint64_t offset = 0;      // of the record in the segment, 4096-aligned
  uint64_t record_len = 0;  // padded record bytes, 4096-aligned
  uint64_t payload_len = 0;
  uint64_t payload_checksum = 0;
  ChunkKey parent;
  std::string codec;
};

std::string EncodeIndexValue(const SsdIndexEntry& entry);
// kDataLoss naming the field when the value is malformed; kInvalidArgument
// for an unknown version.
absl::StatusOr<SsdIndexEntry> DecodeIndexValue(std::string_view value);

// The key of segment `segment`'s watermark entry.
std::string WatermarkKey(uint32_t segment);
// The segment of a watermark key, or std::nullopt for any other key.
std::optional<uint32_t> ParseWatermarkKey(std::string_view key);
std::string EncodeWatermark(uint64_t offset);
// kDataLoss naming the size when the value is not 8 bytes.
absl::StatusOr<uint64_t> DecodeWatermark(std::string_view value);

class SsdIndex {
 public:
  // Opens (creating when missing) the RocksDB database at `path`.
  static absl::StatusOr<std::unique_ptr<SsdIndex>> Open(
      const std::string& path);
  ~SsdIndex();
  SsdIndex(const SsdIndex&) = delete;
  SsdIndex& operator=(const SsdIndex&) = delete;

  // Applies puts then deletes in one atomic WriteBatch; with `sync`, durable
  // (WAL fsync'd) when OK.
  absl::Status Write(absl::Span<const std::pair<ChunkKey, std::string>> puts,
                     absl::Span<const ChunkKey> deletes, bool sync);
  // Deletes raw keys (used by recovery for malformed keys).
  absl::Status DeleteRaw(absl::Span<const std::string> keys, bool sync);
  // Applies raw-key deletes, then puts, in one atomic WriteBatch.
  absl::Status WriteRaw(
      absl::Span<const std::string> deletes,
      absl::Span<const std::pair<std::string, std::string>> puts, bool sync);

  // Calls `fn(raw key, raw value)` for every entry of a consistent snapshot,
  // in key order; stops at and returns the first non-OK status from `fn`.
  absl::Status ForEach(
      absl::FunctionRef<absl::Status(std::string_view, std::string_view)> fn);

  // Makes every earlier write durable.
  absl::Status SyncWal();

 private:
  explicit SsdIndex(std::unique_ptr<rocksdb::DB> db);
  std::unique_ptr<rocksdb::DB> db_;
};

}  // namespace kvd

#endif  // KVDEPOT_STORE_ENGINE_SSD_SSD_INDEX_H_
