// StoreEngine, part 3: what the node's control plane needs: listing the
// index, and making GPU/host-resident chunks durable for a drain. Parts 1
// and 2 are store/engine/store_engine.cc and engine_tiering.cc.
#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "store/engine/internal/engine_impl.h"

namespace kvd {
namespace {

// Index slots one ListChunks call looks at, at most: bounds how long it holds
// the engine lock when a filter matches few chunks.
constexpr uint64_t kMaxSlotsScannedPerPage = 1 << 16;

}  // namespace

ChunkPage StoreEngine::Impl::ListChunks(const ListChunksOptions& options) {
  KVD_CHECK(options.limit >= 1, "ListChunks limit must be >= 1");
  ChunkPage page;
  absl::MutexLock lock(&mu_);
  const uint64_t end = index_.slot_limit();
  const uint64_t scan_end =
      std::min(end, options.cursor + kMaxSlotsScannedPerPage);
  uint64_t slot = options.cursor;
  for (; slot < scan_end && page.chunks.size() < options.limit; ++slot) {
    const Slot s = static_cast<Slot>(slot);
    const IndexEntry& e = index_.at(s);
    if (e.state != EntryState::kReady && e.state != EntryState::kMoving) {
      continue;
    }
    if (options.tier && e.tier != *options.tier) continue;
    const ChunkKey* ns = index_.NamespaceOf(s);
    if (options.namespace_fp) {
      if (ns == nullptr) {
        page.namespace_unknown++;
        continue;
      }
      if (*ns != *options.namespace_fp) continue;
    }
    ChunkSummary& c = page.chunks.emplace_back();
    c.key = e.key;
    if (ns != nullptr) c.namespace_fp = *ns;
    c.tier = e.tier;
    c.on_ssd = e.tier == TierKind::kSsd || e.ssd_copy;
    c.object_bytes = e.object_bytes;
    c.pins = e.pins;
    c.children = index_.ChildCount(s);
    c.last_access = start_ + absl::Seconds(e.last_access_s);
  }
  page.next_cursor = slot < end ? slot : 0;
  return page;
}

std::vector<ChunkExtent> StoreEngine::Impl::VolatileChunks() {
  std::vector<ChunkExtent> out;
  if (!ssd_) return out;
  absl::MutexLock lock(&mu_);
  for (Slot s = 0; s < index_.slot_limit(); ++s) {
    const IndexEntry& e = index_.at(s);
    if (e.state != EntryState::kReady && e.state != EntryState::kMoving) {
      continue;
    }
    if (e.tier == TierKind::kSsd || e.ssd_copy) continue;
    out.push_back({e.key, e.object_bytes});
  }
  return out;
}

absl::Status StoreEngine::Impl::MakeDurable(const ChunkKey& key) {
  if (!ssd_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "chunk ", key.Hex(), " cannot be made durable: no SSD tier"));
  }
  Slot slot;
  {
    absl::MutexLock lock(&mu_);
    slot = FindSettledLocked(key);
    if (slot == kNoSlot) return ChunkNotFound(key);
    const IndexEntry& e = index_.at(slot);
    if (e.tier == TierKind::kSsd || e.ssd_copy) return absl::OkStatus();
    // The pin keeps the chunk in its tier (eviction skips pinned entries) and
    // its bytes alive while they are written.
    index_.Pin(slot);
  }
  absl::StatusOr<PinnedBytes> pinned = ReadPinned(slot);
  absl::Status written = pinned.status();
  if (pinned.ok()) {
    absl::StatusOr<ChunkHeader> header = VerifyHeaderOf(key, pinned->bytes);
    written = header.status();
    if (header.ok()) {
      // Unlike WriteToSsd, no SSD chunk is evicted to make room: a drain must
      // not trade one chunk's durability for another's.
      const SsdWriteItem item{key, header->parent, header->codec_chain,
                              pinned->bytes};
      written = ssd_->Put(absl::MakeConstSpan(&item, 1));
      if (absl::IsResourceExhausted(written)) {
        written = Annotate(written, "SSD tier has no room for a durable copy");
      }
    }
  }
  absl::MutexLock lock(&mu_);
  IndexEntry& e = index_.at(slot);
  if (written.ok()) {
    if (e.state == EntryState::kZombie) {
      DiscardSsdCopy(key);  // removed meanwhile: the copy is not wanted
    } else {
      // Not put on ssd_copies_: this copy is the chunk's durability, not a
      // cache of a promotion, so making room on SSD does not drop it.
      e.ssd_copy = true;
    }
  } else {
    DropIfCorruptLocked(slot, written);
  }
  UnpinLocked(slot);
  return written;
}

// The public face.

ChunkPage StoreEngine::ListChunks(const ListChunksOptions& options) {
  return impl_->ListChunks(options);
}

std::vector<ChunkExtent> StoreEngine::VolatileChunks() {
  return impl_->VolatileChunks();
}

absl::Status StoreEngine::MakeDurable(const ChunkKey& key) {
  return impl_->MakeDurable(key);
}

void StoreEngine::StopWrites() { impl_->StopWrites(); }

bool StoreEngine::writes_stopped() const { return impl_->writes_stopped(); }

}  // namespace kvd
