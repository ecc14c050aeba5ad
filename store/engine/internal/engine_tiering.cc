// StoreEngine::Impl, part 2: moving chunks between tiers, pins, leases and
// recovery. Part 1 (the operations) is store/engine/store_engine.cc.
#include "absl/strings/str_cat.h"
#include "core/check.h"
#include "core/status.h"
#include "spdlog/spdlog.h"
#include "store/engine/internal/engine_impl.h"

namespace kvd {

void StoreEngine::Impl::ReleaseStorage(const IndexEntry& e) {
  if (e.tier == TierKind::kSsd || e.ssd_copy) DiscardSsdCopy(e.key);
  if (e.tier != TierKind::kSsd) memory_[TierIndex(e.tier)]->Free(e.handle);
}

bool StoreEngine::Impl::DropOneSsdCopyLocked() {
  while (!ssd_copies_.empty()) {
    const auto [slot, generation] = ssd_copies_.front();
    ssd_copies_.pop_front();
    IndexEntry& e = index_.at(slot);
    if (e.generation != generation || !e.ssd_copy) continue;
    if (e.state != EntryState::kReady || e.pins > 0) {
      // In flight (a demotion may be relying on the copy): look again later.
      ssd_copies_.emplace_back(slot, generation);
      return false;
    }
    e.ssd_copy = false;
    DiscardSsdCopy(e.key);
    return true;
  }
  return false;
}

void StoreEngine::Impl::DiscardSsdCopy(const ChunkKey& key) {
  // kNotFound: the SSD tier already dropped it (for example as corrupt). Any
  // other failure leaves a dead record that segment GC reclaims after restart.
  if (absl::Status s = ssd_->Remove(key); !s.ok() && !absl::IsNotFound(s)) {
    spdlog::warn("removing SSD copy of chunk {}: {}", key.ShortHex(),
                 s.ToString());
  }
}

void StoreEngine::Impl::UnpinLocked(Slot slot) {
  if (index_.Unpin(slot)) ReleaseStorage(index_.at(slot));
}

void StoreEngine::Impl::DropLocked(Slot slot) {
  if (index_.Remove(slot)) ReleaseStorage(index_.at(slot));
}

void StoreEngine::Impl::DropIfCorruptLocked(Slot slot,
                                            const absl::Status& status) {
  // kNotFound from the SSD tier: it already dropped a record that failed
  // verification, so the index entry is dangling. Either way: a miss now.
  const EntryState state = index_.at(slot).state;
  if (!absl::IsDataLoss(status) && !absl::IsNotFound(status)) return;
  if (state != EntryState::kReady) return;  // zombie: already unindexed
  counters_.corrupt++;
  spdlog::warn("dropping chunk {}: {}", index_.at(slot).key.ShortHex(),
               status.ToString());
  DropLocked(slot);
}

void StoreEngine::Impl::ExpireLeasesLocked() {
  for (Lease& lease : leases_.TakeExpired(clock_->Now())) {
    counters_.lease_expiries++;
    for (Slot slot : lease.slots) UnpinLocked(slot);
  }
}

Slot StoreEngine::Impl::FindSettledLocked(const ChunkKey& key) {
  Slot slot = kNoSlot;
  auto settled = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    slot = index_.Find(key);
    if (slot == kNoSlot) return true;
    const EntryState state = index_.at(slot).state;
    return state != EntryState::kWriting && state != EntryState::kMoving;
  };
  mu_.Await(absl::Condition(&settled));
  return slot;
}

absl::StatusOr<uint64_t> StoreEngine::Impl::AllocateIn(TierKind tier,
                                                       uint64_t size) {
  MemoryTier* pool = memory_[TierIndex(tier)];
  KVD_CHECK(pool != nullptr, "AllocateIn on an absent tier");
  for (;;) {
    absl::StatusOr<uint64_t> handle = pool->Allocate(size);
    if (handle.ok() || !absl::IsResourceExhausted(handle.status()))
      return handle;
    if (size > pool->Usage().capacity_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "chunk of ", size, " bytes exceeds the ", TierName(tier),
          " tier capacity of ", pool->Usage().capacity_bytes, " bytes"));
    }
    KVD_RETURN_IF_ERROR(EvictOne(tier));
  }
}

absl::Status StoreEngine::Impl::EvictOne(TierKind tier) {
  Slot slot;
  uint64_t handle;
  uint32_t size;
  ChunkKey key;
  bool has_ssd_copy;
  {
    absl::MutexLock lock(&mu_);
    std::optional<Slot> victim = index_.PickVictim(tier);
    if (!victim) {
      return absl::ResourceExhaustedError(absl::StrCat(
          TierName(tier), " tier is full and each of its ",
          index_.objects_in(tier), " chunks is pinned or in flight"));
    }
    slot = *victim;
    IndexEntry& e = index_.at(slot);
    index_.Pin(slot);
    index_.SetState(slot, EntryState::kMoving);
    handle = e.handle;
    size = e.object_bytes;
    key = e.key;
    has_ssd_copy = e.ssd_copy;  // stays: pinned entries keep their copy
  }
  // Where the victim goes: one tier down, or nowhere (dropped).
  std::optional<TierKind> target;
  if (tier == TierKind::kGpu) {
    target = TierKind::kHost;
  } else if (tier == TierKind::kHost && ssd_) {
    target = TierKind::kSsd;
  }
  absl::Status moved = absl::OkStatus();
  uint64_t new_handle = 0;
  if (target == TierKind::kHost) {
    absl::StatusOr<uint64_t> h = AllocateIn(TierKind::kHost, size);
    moved = h.status();
    if (h.ok()) {
      new_handle = *h;
      moved = gpu_->Read(handle, 0,
                         absl::Span<uint8_t>(host_->HostAddress(*h), size));
      if (!moved.ok()) host_->Free(*h);
    }
  } else if (target == TierKind::kSsd && !has_ssd_copy) {
    moved = WriteToSsd(
        key, absl::Span<const uint8_t>(host_->HostAddress(handle), size));
  }

  absl::MutexLock lock(&mu_);
  IndexEntry& e = index_.at(slot);
  if (!moved.ok()) {
    if (e.state == EntryState::kMoving)
      index_.SetState(slot, EntryState::kReady);
    UnpinLocked(slot);
    return moved;
  }
  if (!target) {
    counters_.evictions++;
    if (e.state == EntryState::kZombie) {
      UnpinLocked(slot);  // removed meanwhile: the unpin frees it
    } else {
      DropLocked(slot);   // pinned by us: becomes a zombie...
      UnpinLocked(slot);  // ...freed here
    }
    return absl::OkStatus();
  }
  counters_.demotions[TierIndex(tier)]++;
  if (e.state == EntryState::kZombie) {
    // Removed while moving: free the copy just made; the unpin frees the
    // entry's own storage (and a kept SSD copy).
    if (*target == TierKind::kHost) host_->Free(new_handle);
    if (*target == TierKind::kSsd && !has_ssd_copy) DiscardSsdCopy(key);
    UnpinLocked(slot);
    return absl::OkStatus();
  }
  if (*target == TierKind::kSsd) e.ssd_copy = false;  // the copy is primary now
  index_.ChangeTier(slot, *target, new_handle);
  index_.SetState(slot, EntryState::kReady);
  memory_[TierIndex(tier)]->Free(handle);
  index_.Unpin(slot);
  return absl::OkStatus();
}

absl::Status StoreEngine::Impl::WriteToSsd(const ChunkKey& key,
                                           absl::Span<const uint8_t> object) {
  KVD_ASSIGN_OR_RETURN(ChunkHeader header, DecodeChunkHeader(object));
  const SsdWriteItem item{key, header.parent, header.codec_chain, object};
  for (;;) {
    absl::Status s = ssd_->Put(absl::MakeConstSpan(&item, 1));
    if (!absl::IsResourceExhausted(s)) return s;
    absl::MutexLock lock(&mu_);
    // Copies of promoted chunks go first: dropping them loses nothing.
    if (DropOneSsdCopyLocked()) continue;
    std::optional<Slot> victim = index_.PickVictim(TierKind::kSsd);
    if (!victim) return s;
    counters_.evictions++;
    DropLocked(*victim);
  }
}

absl::StatusOr<Slot> StoreEngine::Impl::PinForRead(const ChunkKey& key) {
  Slot slot;
  uint32_t size;
  {
    absl::MutexLock lock(&mu_);
    ExpireLeasesLocked();
    slot = FindSettledLocked(key);
    if (slot == kNoSlot) return ChunkNotFound(key);
    IndexEntry& e = index_.at(slot);
    index_.Pin(slot);
    index_.Touch(slot, NowSeconds());
    if (e.tier != TierKind::kSsd) return slot;
    index_.SetState(slot, EntryState::kMoving);
    size = e.object_bytes;
  }
  // Promote SSD -> host: read into a fresh host allocation and verify there.
  absl::StatusOr<uint64_t> handle = AllocateIn(TierKind::kHost, size);
  absl::Status read = handle.status();
  ChunkKey namespace_fp;
  if (handle.ok()) {
    absl::Span<uint8_t> dst(host_->HostAddress(*handle), size);
    read = ssd_->Read(key, dst);
    if (read.ok()) {
      absl::StatusOr<ChunkHeader> header = VerifyChunkObject(dst);
      read = header.status();
      if (read.ok()) namespace_fp = header->namespace_fp;
      if (read.ok() && header->key != key) {
        read = absl::DataLossError(absl::StrCat(
            "SSD record for ", key.Hex(), " holds chunk ", header->key.Hex()));
      }
    }
    if (!read.ok()) host_->Free(*handle);
  }
  absl::MutexLock lock(&mu_);
  IndexEntry& e = index_.at(slot);
  if (!read.ok()) {
    if (e.state == EntryState::kMoving)
      index_.SetState(slot, EntryState::kReady);
    DropIfCorruptLocked(slot, read);
    UnpinLocked(slot);
    return read;
  }
  if (e.state == EntryState::kZombie) {
    host_->Free(*handle);
    UnpinLocked(slot);
    return ChunkNotFound(key);
  }
  // The SSD copy stays: demoting this chunk again then writes nothing.
  e.ssd_copy = true;
  ssd_copies_.emplace_back(slot, e.generation);
  index_.SetNamespace(slot, namespace_fp);
  index_.ChangeTier(slot, TierKind::kHost, *handle);
  index_.SetState(slot, EntryState::kReady);
  counters_.promotions++;
  return slot;
}

absl::StatusOr<StoreEngine::Impl::PinnedBytes> StoreEngine::Impl::ReadPinned(
    Slot slot) {
  TierKind tier;
  uint64_t handle;
  uint32_t size;
  {
    absl::MutexLock lock(&mu_);
    const IndexEntry& e = index_.at(slot);
    tier = e.tier;
    handle = e.handle;
    size = e.object_bytes;
  }
  PinnedBytes out;
  if (tier == TierKind::kHost) {
    out.bytes = absl::Span<const uint8_t>(host_->HostAddress(handle), size);
    return out;
  }
  KVD_CHECK(tier == TierKind::kGpu, "pinned chunk must be in a memory tier");
  out.bounce.resize(size);
  KVD_RETURN_IF_ERROR(gpu_->Read(handle, 0, absl::MakeSpan(out.bounce)));
  out.bytes = out.bounce;
  return out;
}

absl::Status StoreEngine::Impl::Recover() {
  if (!ssd_) return absl::OkStatus();
  std::vector<std::pair<Slot, ChunkKey>> parents;
  absl::MutexLock lock(&mu_);
  const uint32_t now = NowSeconds();
  absl::Status s = ssd_->ForEach(
      [&](const SsdEntryInfo& info) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        if (info.size > kMaxObjectBytes || index_.Find(info.key) != kNoSlot)
          return;
        const Slot slot =
            index_.Insert(info.key, ChunkKey::Zero(), TierKind::kSsd, 0,
                          static_cast<uint32_t>(info.size), now);
        index_.Publish(slot);
        parents.emplace_back(slot, info.parent);
      });
  KVD_RETURN_IF_ERROR(s);
  for (const auto& [slot, parent] : parents) index_.LinkParent(slot, parent);
  return absl::OkStatus();
}

}  // namespace kvd
