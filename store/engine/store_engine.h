// StoreEngine: the single-node tiered KV-chunk store (DESIGN.md §3.5).
//
// Chunks are immutable objects in the format of core/chunk_format.h, keyed by
// their chunk key. New chunks land in the put tier (GPU when configured, else
// host DRAM); a full tier demotes its coldest chunks one tier down (GPU ->
// host -> SSD); only SSD eviction drops data. Eviction is prefix-aware: a
// chunk whose children are still in the same tier is kept until they leave,
// so leaves go before their ancestors; among candidates, least recently used
// goes first. A read of an SSD-resident chunk promotes it to host DRAM and
// keeps its SSD record, so demoting it again writes nothing; those kept
// copies are the first thing dropped when the SSD tier needs room.
//
// Integrity: every chunk is verified (header, sizes, every layer checksum)
// when it enters the node (Put) and when it comes back from SSD; a failure is
// kDataLoss and the chunk is dropped, never served. Bytes resting in DRAM or
// GPU memory were verified on the way in and are not re-hashed per read; the
// header of every chunk read is still decoded and matched against its key.
//
// Leases pin chunks for an in-flight read: a leased chunk is never moved or
// freed. A lease expires after `lease_ttl`; reading through an expired lease
// returns kAborted and never touches freed memory.
//
// Thread-safe: every method may be called concurrently. Data copies run
// outside the index lock, protected by pins.
#ifndef KVDEPOT_STORE_ENGINE_STORE_ENGINE_H_
#define KVDEPOT_STORE_ENGINE_STORE_ENGINE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "core/chunk_format.h"
#include "core/chunk_key.h"
#include "core/clock.h"
#include "store/engine/tier.h"

namespace kvd {

class FileSystem;

struct StoreOptions {
  // Host DRAM tier (always present).
  uint64_t host_capacity_bytes = 1ull << 30;
  bool host_huge_pages = true;  // try MAP_HUGETLB, then THP, then 4 KiB pages

  // GPU tier: used when gpu_capacity_bytes > 0 and the build has CUDA.
  uint64_t gpu_capacity_bytes = 0;
  int gpu_device = 0;

  // SSD tier: used when ssd_dir is not empty.
  std::string ssd_dir;
  uint64_t ssd_capacity_bytes = 16ull << 30;
  uint64_t ssd_segment_bytes = 256ull << 20;
  bool ssd_direct_io = true;

  absl::Duration lease_ttl = absl::Seconds(30);

  Clock* clock = nullptr;    // default Clock::Real()
  FileSystem* fs = nullptr;  // default the POSIX file system
};

// Per-tier figures plus operation counters since start.
struct StoreStats {
  TierUsage tiers[kNumTiers];
  bool tier_enabled[kNumTiers] = {};
  uint64_t chunks = 0;
  uint64_t puts = 0, put_bytes = 0, dedup_puts = 0;
  uint64_t gets = 0, get_bytes = 0, get_hits = 0, get_misses = 0;
  uint64_t lookups = 0, lookup_keys = 0, lookup_hits = 0;
  uint64_t removes = 0;
  uint64_t demotions[kNumTiers] = {};  // out of tier i into tier i+1
  uint64_t promotions = 0;             // SSD -> host on read
  uint64_t evictions = 0;       // dropped from SSD (or from the coldest tier)
  uint64_t corrupt_chunks = 0;  // failed verification, turned into misses
  uint64_t lease_expiries = 0;
  uint64_t active_leases = 0;
  bool host_huge_pages = false;   // the host pool got huge pages
  uint64_t index_meta_bytes = 0;  // DRAM held by the index for its entries
};

// What Inspect reports about one chunk.
struct ChunkInfo {
  ChunkHeader header;
  TierKind tier = TierKind::kHost;  // hottest tier holding it
  bool on_ssd = false;              // an SSD copy exists
  uint64_t object_bytes = 0;
  uint32_t pins = 0;      // in-flight reads holding it
  uint32_t children = 0;  // chunks stored with it as parent
  absl::Time last_access;
};

struct GetRequest {
  ChunkKey key;
  // Whole object (header included) when `whole_object`; otherwise the bytes
  // of `selection` (no header), concatenated as SelectByteRanges orders them.
  bool whole_object = true;
  ChunkSelection selection;
  absl::Span<uint8_t> dst;  // must hold the selected bytes
};

using LeaseId = uint64_t;

// ListChunks: one page of the index, in slot order (the order entries sit in
// the index's pool, not key order). A full listing follows next_cursor until
// it is 0. Weakly consistent: a chunk present for the whole listing is
// reported exactly once; one stored or dropped meanwhile may or may not be.
struct ListChunksOptions {
  // Only chunks of this namespace. A chunk's namespace is known once this
  // process decoded its header (it stored, read or inspected the chunk);
  // chunks recovered from SSD and not read since are skipped and counted in
  // ChunkPage::namespace_unknown.
  std::optional<ChunkKey> namespace_fp;
  // Only chunks whose hottest copy is in this tier.
  std::optional<TierKind> tier;
  uint32_t limit = 100;  // chunks per page; REQUIRES: >= 1
  uint64_t cursor = 0;   // 0: from the start; else a previous next_cursor
};

struct ChunkSummary {
  ChunkKey key;
  std::optional<ChunkKey> namespace_fp;  // nullopt: not known (see above)
  TierKind tier = TierKind::kHost;       // hottest tier holding it
  bool on_ssd = false;                   // an SSD copy exists
  uint64_t object_bytes = 0;
  uint32_t pins = 0;  // in-flight reads and leases holding it
  uint32_t children = 0;
  absl::Time last_access;
};

struct ChunkPage {
  std::vector<ChunkSummary> chunks;
  // Where the next page starts; 0 when the listing is complete. A page may
  // hold fewer than `limit` chunks (each call scans a bounded number of
  // index slots) and still have a next page.
  uint64_t next_cursor = 0;
  // Chunks this page skipped because a namespace filter was set and their
  // namespace is not known.
  uint64_t namespace_unknown = 0;
};

// A chunk and its object size.
struct ChunkExtent {
  ChunkKey key;
  uint64_t object_bytes = 0;
};

// Space for one incoming object, filled in place by a transport (zero-copy
// put). Not indexed until CommitPut: readers never see it, eviction never
// moves it. Move-only; pass it to exactly one of CommitPut / AbortPut.
struct PutReservation {
  ChunkKey key;
  absl::Span<uint8_t> dst;  // host memory inside HostPool()
  uint64_t handle = 0;      // the host tier's allocation
};

// A chunk pinned for a zero-copy read: its verified header and its bytes in
// host memory (inside HostPool() unless `bounce` holds a copy of a GPU-tier
// chunk). The bytes stay valid and unmoved until UnpinChunk.
struct PinnedChunk {
  ChunkKey key;
  ChunkHeader header;
  absl::Span<const uint8_t> bytes;
  uint32_t slot = 0;
  std::shared_ptr<std::vector<uint8_t>> bounce;
};

class StoreEngine {
 public:
  // Opens the tiers and, when an SSD directory is configured, recovers the
  // chunks it holds. kInvalidArgument for bad options (the message names the
  // field), other codes for I/O failures.
  static absl::StatusOr<std::unique_ptr<StoreEngine>> Create(
      const StoreOptions& options);

  ~StoreEngine();
  StoreEngine(const StoreEngine&) = delete;
  StoreEngine& operator=(const StoreEngine&) = delete;

  // Stores each object under its key. Per item: OK when stored or already
  // present (deduplicated, no copy); kInvalidArgument when the object's header
  // is malformed or names another key; kDataLoss when a checksum fails;
  // kResourceExhausted when the object is larger than every tier.
  std::vector<absl::Status> Put(
      absl::Span<const ChunkKey> keys,
      absl::Span<const absl::Span<const uint8_t>> objects);

  // Reads chunks into caller buffers. Per item: the number of bytes written;
  // kNotFound on a miss; kDataLoss when the stored copy is corrupt (it is then
  // dropped, so the next call is a plain miss); kInvalidArgument for a bad
  // selection or a too-small buffer.
  std::vector<absl::StatusOr<uint64_t>> Get(
      absl::Span<const GetRequest> requests);

  // Bytes a GetRequest with this selection needs. kNotFound on a miss.
  absl::StatusOr<uint64_t> SelectedSize(const ChunkKey& key, bool whole_object,
                                        const ChunkSelection& selection);

  // Convenience: the whole object of one chunk.
  absl::StatusOr<std::vector<uint8_t>> GetObject(const ChunkKey& key);

  // How many leading keys of `keys` are present (the longest cached prefix).
  // Answered from the index; touches no data.
  size_t Lookup(absl::Span<const ChunkKey> keys);

  // Drops chunks. Per item: OK, or kNotFound. A leased chunk is dropped from
  // the index at once and its memory freed when the last lease ends.
  std::vector<absl::Status> Remove(absl::Span<const ChunkKey> keys);

  // Leases: pin `keys` (promoting SSD chunks to host) for an in-flight read.
  // Fails as a whole with kNotFound if a key is missing.
  absl::StatusOr<LeaseId> AcquireLease(absl::Span<const ChunkKey> keys);
  // Reads one leased chunk like Get. kAborted when the lease has expired.
  absl::StatusOr<uint64_t> ReadLeased(LeaseId lease, const GetRequest& request);
  // Ends a lease; releasing an expired or unknown lease is a no-op.
  void ReleaseLease(LeaseId lease);

  absl::StatusOr<ChunkInfo> Inspect(const ChunkKey& key);
  StoreStats Stats();

  // Makes every SSD write durable (called on graceful shutdown).
  absl::Status Sync();

  // --- Control plane (admin RPCs, drain) ---

  // One page of the chunk listing; see ListChunksOptions.
  ChunkPage ListChunks(const ListChunksOptions& options);

  // Chunks whose only copy is in GPU or host memory (no SSD copy): what a
  // restart would lose. Empty when there is no SSD tier to save them to
  // (check Stats().tier_enabled).
  std::vector<ChunkExtent> VolatileChunks();

  // Writes an SSD copy of one GPU- or host-resident chunk and keeps the hot
  // copy (reads keep being served from memory); the chunk then survives a
  // restart. Never evicts SSD data to make room. OK when the chunk is durable
  // (now or already); kNotFound when it is not stored; kFailedPrecondition
  // without an SSD tier; kResourceExhausted when the SSD tier is full; I/O
  // errors from the SSD tier. Call Sync() after a batch for the removals of
  // the same period to be durable too.
  absl::Status MakeDurable(const ChunkKey& key);

  // From now on Put refuses every chunk with kUnavailable ("draining"); reads
  // and removals go on. There is no way back: a drained node restarts.
  void StopWrites();
  bool writes_stopped() const;

  // Zero-copy puts. ReservePut allocates `size` bytes in the host tier
  // (demoting cold chunks as Put does). kAlreadyExists when the key is stored
  // (nothing to transfer: a deduplicated put); kInvalidArgument for a size
  // outside [kChunkHeaderBytes, 4 GiB); kResourceExhausted when it cannot fit.
  absl::StatusOr<PutReservation> ReservePut(const ChunkKey& key, uint64_t size);
  // Verifies the filled reservation exactly as Put verifies an object, then
  // indexes it (or, when a concurrent put stored the key first, frees it and
  // counts a dedup). Per-item codes as Put. The reservation is consumed.
  absl::Status CommitPut(PutReservation reservation);
  // Frees an unfilled or abandoned reservation.
  void AbortPut(PutReservation reservation);

  // Zero-copy reads: pins a chunk (promoting it from SSD) and decodes its
  // header. kNotFound on a miss, kDataLoss for a corrupt copy (dropped).
  absl::StatusOr<PinnedChunk> PinChunk(const ChunkKey& key);
  void UnpinChunk(const PinnedChunk& chunk);

  // The host tier's whole pool, for registering with a transport once.
  absl::Span<uint8_t> HostPool();

  class Impl;

 private:
  explicit StoreEngine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvd

#endif  // KVDEPOT_STORE_ENGINE_STORE_ENGINE_H_
