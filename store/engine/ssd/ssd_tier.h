// SsdTier: the key-addressed SSD tier of a node (DESIGN.md §3.5).
//
// Objects live in append-only segment files `<dir>/seg-<id>.kvd` as records
// of store/engine/ssd/segment_format.h; a RocksDB index in `<dir>/index` maps
// chunk key -> record location, mirrored in a compact in-memory hash map for
// reads. The tier owns key -> location: callers address objects by key only.
//
// Durability: the segment files are the source of truth. Put writes the
// records and fdatasyncs the segment: that is the durability point, and an
// OK Put survives a crash. The index entries are then written to RocksDB
// without a sync. Each segment has a persisted watermark (ssd_index.h): every
// record below it that was ever acknowledged has its index entry (or a later
// removal or move) durable. Watermarks advance with one synced index write
// when a segment is sealed, on Sync(), before segment files are deleted and
// at clean shutdown (the destructor), never per Put; so after a crash at most
// the active segment and stragglers of the one sealed before it lie above
// their watermarks.
//
// Recovery (Open): loads the index, then scans every segment from its
// watermark to its end. Each 4096-byte boundary may start a record; a record
// whose header and payload verify (checksums, padding) and whose key is not
// indexed is indexed again; anything else (zeros, garbage, a torn record) is
// skipped and the scan goes on at the next boundary (with concurrent Puts a
// later record may be acknowledged while an earlier one is torn). Recovered
// entries and new watermarks are then written with one synced batch, before
// any file is truncated or deleted. Index entries whose bytes cannot be there
// are dropped, segment tails no entry points to are truncated and segments
// with no entry are deleted. Bytes of entries loaded from the index are
// verified lazily, by checksum, on Read.
//
// Consequences, all harmless because a key always names the same bytes
// (content-addressed cache):
//   - Remove is not synced by itself: a crash may bring a removed object
//     back, intact (Sync() makes removals durable). A record removed after
//     its segment's watermark may come back even after a Sync() that ran
//     before the Remove.
//   - A Put that failed after its segment write reached the disk (e.g. its
//     index write failed) may be found by the scan and come back.
//   - A key found twice (e.g. a garbage-collection move whose old segment
//     survived the crash) keeps one verified copy: the indexed one when the
//     index has the key, else the first one found. The other copy is dead
//     bytes of its segment; live and allocated bytes count it that way.
//
// Space: capacity_bytes bounds the bytes of segment files. Removed records
// leave dead bytes; CollectGarbage() (and Put, when out of room) relocates the
// live records of sealed segments whose live ratio is below a threshold and
// deletes them. While relocating, the tier may briefly hold up to one
// segment_bytes over capacity.
//
// Thread-safe: every method may be called concurrently. Disk transfers run
// outside the tier's mutex.
#ifndef KVDEPOT_STORE_ENGINE_SSD_SSD_TIER_H_
#define KVDEPOT_STORE_ENGINE_SSD_SSD_TIER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "core/chunk_key.h"
#include "store/engine/ssd/aligned_buffer.h"
#include "store/engine/ssd/fault_injection_fs.h"
#include "store/engine/ssd/file_system.h"
#include "store/engine/ssd/segment_format.h"
#include "store/engine/tier.h"

namespace kvd {

class SsdIndex;

struct SsdTierOptions {
  std::string dir;  // created when missing
  uint64_t capacity_bytes = 0;
  // Records never span segments, so this bounds the largest object.
  // REQUIRES: a multiple of 4096, >= 64 KiB.
  uint64_t segment_bytes = 256ull << 20;
  bool direct_io = true;  // O_DIRECT; falls back to buffered I/O when refused
  // Not owned; must outlive the tier (its destructor syncs through it).
  // nullptr: FileSystem::Default().
  FileSystem* fs = nullptr;
  // CollectGarbage() relocates sealed segments whose live/total ratio is
  // below this. In [0, 1].
  double gc_live_ratio = 0.5;
};

struct SsdWriteItem {
  ChunkKey key;
  ChunkKey parent;
  std::string_view codec;  // <= kMaxRecordCodecBytes
  absl::Span<const uint8_t> object;
};

struct SsdEntryInfo {
  ChunkKey key;
  ChunkKey parent;
  uint64_t size = 0;  // object bytes
  std::string codec;
};

class SsdTier {
 public:
  // Opens the tier in options.dir, recovering what an earlier process left
  // (see above). kInvalidArgument for bad options (the message names the
  // field); I/O and index errors otherwise.
  static absl::StatusOr<std::unique_ptr<SsdTier>> Open(
      const SsdTierOptions& options);

  // Clean shutdown: persists the watermarks (as Sync() does) so that the
  // next Open scans nothing; if that fails, the next Open scans instead.
  ~SsdTier();
  SsdTier(const SsdTier&) = delete;
  SsdTier& operator=(const SsdTier&) = delete;

  // Stores every item; OK means each one is durable. A key already stored
  // (or repeated in `items`) is a no-op. kResourceExhausted, with the sizes
  // in the message, when an object is larger than the capacity or a segment,
  // or when there is no room even after garbage collection; kInvalidArgument
  // for an over-long codec. On error no entry is half-indexed, but items of
  // a large batch committed before the failure may be stored; retrying is
  // safe.
  absl::Status Put(absl::Span<const SsdWriteItem> items);

  // Object bytes of `key`; kNotFound when absent.
  absl::StatusOr<uint64_t> Size(const ChunkKey& key);
  bool Contains(const ChunkKey& key);

  // Copies the object into dst. REQUIRES-ish (checked): dst.size() ==
  // Size(key), else kInvalidArgument. kNotFound when absent. kDataLoss when
  // the stored record fails verification: the entry is then removed, so the
  // next call returns kNotFound. Other codes: I/O errors (entry kept).
  absl::Status Read(const ChunkKey& key, absl::Span<uint8_t> dst);

  // kNotFound when absent.
  absl::Status Remove(const ChunkKey& key);

  // Calls `fn` for every entry of a consistent snapshot of the index, with
  // no tier lock held (fn may call back into the tier).
  absl::Status ForEach(absl::FunctionRef<void(const SsdEntryInfo&)> fn);

  // Relocates the live records of sealed segments whose live ratio is below
  // gc_live_ratio and deletes those segments.
  absl::Status CollectGarbage();

  // Makes every earlier operation (Removes included) durable and advances the
  // segment watermarks (one synced index write).
  absl::Status Sync();

  TierUsage Usage() const;
  // True when segment files are written with O_DIRECT.
  bool direct_io_active() const;

  // DRAM the in-memory index holds (hash-map slots), for the metadata budget.
  uint64_t IndexMemoryBytes() const;

 private:
  // In-memory location of a record. Compact: 32 bytes per entry.
  struct Location {
    uint32_t segment = 0;
    uint32_t offset_blocks = 0;  // offset / kIoAlignment
    uint32_t record_blocks = 0;  // record_len / kIoAlignment
    uint32_t pad = 0;
    uint64_t payload_len = 0;
    uint64_t payload_checksum = 0;
    uint64_t offset() const { return uint64_t{offset_blocks} * kIoAlignment; }
    uint64_t record_len() const {
      return uint64_t{record_blocks} * kIoAlignment;
    }
    bool SamePlace(const Location& o) const {
      return segment == o.segment && offset_blocks == o.offset_blocks;
    }
  };
  struct Segment {
    std::shared_ptr<RandomRWFile> file;
    uint64_t end = 0;   // bytes reserved from the start of the file
    uint64_t live = 0;  // record bytes of indexed entries
    // Offsets of reserved slots not yet committed or abandoned.
    std::set<uint64_t> pending;
    // The persisted watermark (ssd_index.h), or more: never above Frontier()
    // when it was written.
    uint64_t watermark = 0;
    bool sealed = false;  // takes no new records
    // Every slot below this is committed (its index entry written) or
    // abandoned (never acknowledged).
    uint64_t Frontier() const {
      return pending.empty() ? end : *pending.begin();
    }
  };
  // A reserved place for one record.
  struct Slot {
    uint32_t segment = 0;
    uint64_t offset = 0;
    uint64_t record_len = 0;
    std::shared_ptr<RandomRWFile> file;
  };
  // One record to write: its key, the location it will have, and its index
  // value.
  struct PendingRecord {
    ChunkKey key;
    Location loc;
    std::string value;                 // encoded SsdIndexEntry
    std::optional<Location> replaces;  // GC: commit only if still here
  };

  SsdTier(const SsdTierOptions& options, FileSystem* fs,
          std::unique_ptr<SsdIndex> index);

  absl::Status Recover();
  // Recover's scan of [from, AlignDown(file size)) of one segment: calls
  // `found` for each record that fully verifies, in offset order.
  absl::Status ScanSegment(
      uint32_t id, RandomRWFile& file, uint64_t from, uint64_t size,
      absl::FunctionRef<void(const RecordHeader&, const Location&)> found);
  // Writes, with one synced index write, the watermark of every segment whose
  // Frontier() passed it; with nothing to advance, syncs the index WAL. Either
  // way every earlier index write is durable when OK.
  absl::Status SyncIndex() ABSL_LOCKS_EXCLUDED(mu_, commit_mu_);
  absl::Status PutGroup(absl::Span<const SsdWriteItem* const> items);
  // Reserves record slots, running GC (when allowed) if out of room.
  // Sealing a segment advances the watermarks (SyncIndex) before returning.
  absl::Status Reserve(absl::Span<const uint64_t> record_lens, bool for_gc,
                       std::vector<Slot>* slots);
  // Seals the active segment and creates the next one (file creation and a
  // directory sync run under mu_: once per segment_bytes written).
  absl::Status OpenNewSegmentLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Issues the pieces of each slot's record and syncs the files. Per run of
  // slots in one segment: early[i] go out first, prepare(i) runs for each
  // slot while they are in flight, then ops[i] follow. `early` may be empty.
  absl::Status WriteSlots(
      absl::Span<const Slot> slots, absl::Span<const std::vector<WriteOp>> ops,
      absl::Span<const std::vector<WriteOp>> early = {},
      absl::FunctionRef<void(size_t)> prepare = [](size_t) {});
  // Writes a record header for `item` into rec[0, payload_offset), zero
  // padded. REQUIRES: the item passed Put's validation.
  static void EncodeHeader(const SsdWriteItem& item, uint64_t payload_sum,
                           uint8_t* rec, uint32_t payload_offset);
  void AbandonSlots(absl::Span<const Slot> slots, bool seal);
  // Drops an indexed entry from the map and the live/stored accounting;
  // returns its segment. REQUIRES: `it` is a valid iterator of map_.
  const Segment& ForgetLocked(
      absl::flat_hash_map<ChunkKey, Location>::iterator it)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Commits index entries (unsynced) for written and synced slots; keys
  // already present (or, for GC, moved since) leave their new copy dead.
  absl::Status Commit(absl::Span<PendingRecord> records);
  // Reads and verifies the record at `loc` into dst (no lock held). kDataLoss
  // when the record is corrupt, truncated or not the entry's.
  absl::Status ReadRecord(RandomRWFile& file, const Location& loc,
                          const ChunkKey& key, absl::Span<uint8_t> dst);
  static absl::Status CheckRecord(const RecordHeader& h, const Location& loc,
                                  const ChunkKey& key);
  // Removes `key` if it still lives at `loc` (a corrupt record).
  void DropCorrupt(const ChunkKey& key, const Location& loc);
  absl::Status CollectGarbageInternal(double threshold, uint64_t want_free);
  absl::Status RelocateSegment(uint32_t segment,
                               std::vector<std::pair<ChunkKey, Location>> live);
  // Deletes sealed segments with no live and no pending record. The index is
  // synced first (SyncIndex), so the entries that moved out of them are
  // durable before their files go.
  absl::Status DeleteDeadSegments();

  AlignedBuffer AcquireBuffer(uint64_t size);
  void ReleaseBuffer(AlignedBuffer buffer);

  std::string SegmentPath(uint32_t id) const;

  const SsdTierOptions options_;
  FileSystem* const fs_;
  const std::unique_ptr<SsdIndex> index_;

  // Serialises index mutations (Put commits, Remove, GC moves) so RocksDB and
  // the map agree; taken before mu_. Held across the RocksDB write.
  absl::Mutex commit_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  // One garbage collection at a time; taken before commit_mu_.
  absl::Mutex gc_mu_ ABSL_ACQUIRED_BEFORE(commit_mu_);
  // Serialises watermark writes (SyncIndex), so a smaller watermark never
  // overwrites a larger one. Taken after gc_mu_, never with commit_mu_, and
  // held across the synced RocksDB write.
  absl::Mutex wm_mu_ ABSL_ACQUIRED_AFTER(gc_mu_) ABSL_ACQUIRED_BEFORE(mu_);

  mutable absl::Mutex mu_;
  absl::flat_hash_map<ChunkKey, Location> map_ ABSL_GUARDED_BY(mu_);
  std::map<uint32_t, Segment> segments_ ABSL_GUARDED_BY(mu_);
  uint32_t active_ ABSL_GUARDED_BY(mu_) = 0;  // 0: none open
  uint32_t next_segment_id_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t allocated_ ABSL_GUARDED_BY(mu_) = 0;     // sum of Segment::end
  uint64_t live_bytes_ ABSL_GUARDED_BY(mu_) = 0;    // sum of Segment::live
  uint64_t stored_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // payload bytes of entries
  bool direct_io_ ABSL_GUARDED_BY(mu_) = false;

  absl::Mutex pool_mu_;
  std::vector<AlignedBuffer> pool_ ABSL_GUARDED_BY(pool_mu_);
};

}  // namespace kvd

#endif  // KVDEPOT_STORE_ENGINE_SSD_SSD_TIER_H_
