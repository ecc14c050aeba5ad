// StoreEngine::Impl: the engine's state and its tiering machinery. Private to
// store/engine; the public contract is store/engine/store_engine.h.
//
// Locking: one mutex guards the index, the leases and the counters. Data
// copies and disk I/O run outside it, protected by pins: a pinned entry is
// never moved, and its storage is freed only when the last pin goes.
// An entry being moved between tiers is kMoving; readers wait for it.
#ifndef KVDEPOT_STORE_ENGINE_INTERNAL_ENGINE_IMPL_H_
#define KVDEPOT_STORE_ENGINE_INTERNAL_ENGINE_IMPL_H_

#include <atomic>
#include <deque>
#include <memory>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/chunk_format.h"
#include "store/engine/chunk_index.h"
#include "store/engine/lease_table.h"
#include "store/engine/memory/host_tier.h"
#include "store/engine/ssd/ssd_tier.h"
#include "store/engine/store_engine.h"

namespace kvd {

inline int TierIndex(TierKind tier) { return static_cast<int>(tier); }

// Objects are indexed with 32-bit sizes.
inline constexpr uint64_t kMaxObjectBytes = UINT32_MAX;

inline absl::Status ChunkNotFound(const ChunkKey& key) {
  return absl::NotFoundError(
      absl::StrCat("chunk ", key.Hex(), " is not stored"));
}

class StoreEngine::Impl {
 public:
  Impl(const StoreOptions& options, std::unique_ptr<MemoryTier> gpu,
       std::unique_ptr<HostTier> host, std::unique_ptr<SsdTier> ssd)
      : options_(options),
        clock_(options.clock != nullptr ? options.clock : Clock::Real()),
        start_(clock_->Now()),
        host_(std::move(host)),
        gpu_(std::move(gpu)),
        ssd_(std::move(ssd)) {
    memory_[TierIndex(TierKind::kGpu)] = gpu_.get();
    memory_[TierIndex(TierKind::kHost)] = host_.get();
  }

  absl::Status Recover();
  absl::Status Put(const ChunkKey& key, absl::Span<const uint8_t> object);
  absl::StatusOr<uint64_t> Get(const GetRequest& request);
  absl::StatusOr<uint64_t> SelectedSize(const ChunkKey& key, bool whole,
                                        const ChunkSelection& selection);
  size_t Lookup(absl::Span<const ChunkKey> keys);
  absl::Status Remove(const ChunkKey& key);
  absl::StatusOr<LeaseId> AcquireLease(absl::Span<const ChunkKey> keys);
  absl::StatusOr<uint64_t> ReadLeased(LeaseId lease, const GetRequest& request);
  void ReleaseLease(LeaseId lease);
  absl::StatusOr<ChunkInfo> Inspect(const ChunkKey& key);
  StoreStats Stats();
  absl::Status Sync() { return ssd_ ? ssd_->Sync() : absl::OkStatus(); }
  absl::StatusOr<PutReservation> ReservePut(const ChunkKey& key, uint64_t size);
  absl::Status CommitPut(const PutReservation& reservation);
  void AbortPut(const PutReservation& reservation) {
    host_->Free(reservation.handle);
  }
  absl::StatusOr<PinnedChunk> PinChunk(const ChunkKey& key);
  void UnpinChunk(const PinnedChunk& chunk);
  absl::Span<uint8_t> HostPool() {
    return absl::MakeSpan(host_->pool_base(), host_->pool_bytes());
  }

  // Control plane (store/engine/internal/engine_admin.cc).
  ChunkPage ListChunks(const ListChunksOptions& options);
  std::vector<ChunkExtent> VolatileChunks();
  absl::Status MakeDurable(const ChunkKey& key);
  void StopWrites() { writes_stopped_.store(true, std::memory_order_relaxed); }
  bool writes_stopped() const {
    return writes_stopped_.load(std::memory_order_relaxed);
  }
  // kUnavailable once StopWrites() was called.
  absl::Status CheckWritesAllowed() const {
    if (!writes_stopped()) return absl::OkStatus();
    return absl::UnavailableError(
        "node is draining: it stores no new chunks (DESIGN.md §3.6)");
  }

 private:
  struct Counters {
    uint64_t puts = 0, put_bytes = 0, dedup_puts = 0;
    uint64_t gets = 0, get_bytes = 0, get_hits = 0, get_misses = 0;
    uint64_t lookups = 0, lookup_keys = 0, lookup_hits = 0;
    uint64_t removes = 0, promotions = 0, evictions = 0, corrupt = 0,
             lease_expiries = 0;
    uint64_t demotions[kNumTiers] = {};
  };

  // A pinned chunk's bytes as readable host memory: the pool itself for the
  // host tier, a bounce copy for the GPU tier.
  struct PinnedBytes {
    absl::Span<const uint8_t> bytes;
    std::vector<uint8_t> bounce;
  };

  // Decodes an incoming object's header and checks it against its key and
  // size (no checksums). kInvalidArgument naming the mismatch.
  static absl::StatusOr<ChunkHeader> CheckObject(
      const ChunkKey& key, absl::Span<const uint8_t> object);
  // True (and counted as a deduplicated put) when `key` is already stored.
  bool DedupLocked(const ChunkKey& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  uint32_t NowSeconds() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return static_cast<uint32_t>(absl::ToInt64Seconds(clock_->Now() - start_));
  }
  TierKind PutTier() const { return gpu_ ? TierKind::kGpu : TierKind::kHost; }

  // Frees what an entry held in its tier. Called when its slot was freed.
  // Frees what a freed slot's entry held: its tier allocation and any SSD
  // copy. REQUIRES: the slot was freed under this lock hold.
  void ReleaseStorage(const IndexEntry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops the SSD copy of one promoted chunk (the oldest promotion first) to
  // make room on SSD without losing data. False when there is none to drop.
  bool DropOneSsdCopyLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DiscardSsdCopy(const ChunkKey& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UnpinLocked(Slot slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropLocked(Slot slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Unindexes a chunk whose read failed verification (kDataLoss, or kNotFound
  // from a tier that already discarded it); other failures keep it.
  void DropIfCorruptLocked(Slot slot, const absl::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ExpireLeasesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Waits while the key's entry is being written or moved; returns its slot.
  Slot FindSettledLocked(const ChunkKey& key)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Allocates in a memory tier, demoting its coldest chunks until it fits.
  absl::StatusOr<uint64_t> AllocateIn(TierKind tier, uint64_t size)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Moves one victim out of `tier` (one tier down, or drops it from the
  // coldest tier). kResourceExhausted when every chunk there is pinned.
  absl::Status EvictOne(TierKind tier) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status WriteToSsd(const ChunkKey& key, absl::Span<const uint8_t> object)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Pins a chunk for reading, promoting it from SSD to host first.
  absl::StatusOr<Slot> PinForRead(const ChunkKey& key) ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<PinnedBytes> ReadPinned(Slot slot) ABSL_LOCKS_EXCLUDED(mu_);
  // Decodes a stored object's header; any mismatch with the index is kDataLoss.
  static absl::StatusOr<ChunkHeader> VerifyHeaderOf(
      const ChunkKey& key, absl::Span<const uint8_t> object);
  // Copies the requested part of a pinned chunk into request.dst.
  absl::StatusOr<uint64_t> CopyOut(Slot slot, const GetRequest& request)
      ABSL_LOCKS_EXCLUDED(mu_);

  const StoreOptions options_;
  Clock* const clock_;
  const absl::Time start_;
  std::unique_ptr<HostTier> host_;
  std::unique_ptr<MemoryTier> gpu_;
  std::unique_ptr<SsdTier> ssd_;
  MemoryTier* memory_[2] = {};  // by TierKind; nullptr where absent

  absl::Mutex mu_;
  ChunkIndex index_ ABSL_GUARDED_BY(mu_);
  LeaseTable leases_ ABSL_GUARDED_BY(mu_);
  Counters counters_ ABSL_GUARDED_BY(mu_);
  // Promoted chunks whose SSD copy was kept, oldest first, as (slot,
  // generation); stale records are skipped when popped.
  std::deque<std::pair<Slot, uint32_t>> ssd_copies_ ABSL_GUARDED_BY(mu_);
  // StopWrites(): Put refuses new chunks.
  std::atomic<bool> writes_stopped_{false};
};

}  // namespace kvd

#endif  // KVDEPOT_STORE_ENGINE_INTERNAL_ENGINE_IMPL_H_
