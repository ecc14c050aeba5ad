// SsdTier garbage collection, segment deletion, corrupt-entry removal and
// watermarks (Sync).
#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "core/check.h"
#include "core/status.h"
#include "store/engine/ssd/segment_format.h"
#include "store/engine/ssd/ssd_index.h"
#include "store/engine/ssd/ssd_tier.h"

namespace kvd {
namespace {

constexpr uint64_t kMaxRelocateBytes = 64ull << 20;

}  // namespace

absl::Status SsdTier::CollectGarbage() {
  return CollectGarbageInternal(options_.gc_live_ratio, /*want_free=*/0);
}

absl::Status SsdTier::CollectGarbageInternal(double threshold,
                                             uint64_t want_free) {
  absl::MutexLock gc(&gc_mu_);
  std::vector<std::pair<double, uint32_t>> victims;
  absl::flat_hash_map<uint32_t, std::vector<std::pair<ChunkKey, Location>>>
      live;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, seg] : segments_) {
      if (seg.end == 0 || seg.live == seg.end) continue;  // nothing dead
      const double ratio =
          static_cast<double>(seg.live) / static_cast<double>(seg.end);
      if (ratio >= threshold) continue;
      if (id == active_) {
        if (!seg.pending.empty()) continue;  // writes in flight: leave it
        seg.sealed = true;
        active_ = 0;
      }
      if (!seg.sealed) continue;
      victims.emplace_back(ratio, id);
      live[id];
    }
    if (!victims.empty()) {
      for (const auto& [key, loc] : map_) {
        auto it = live.find(loc.segment);
        if (it != live.end()) it->second.emplace_back(key, loc);
      }
    }
  }
  std::sort(victims.begin(), victims.end());
  uint64_t freed = 0;
  for (const auto& [ratio, id] : victims) {
    if (want_free > 0 && freed >= want_free) break;
    uint64_t end = 0, moved = 0;
    {
      absl::ReaderMutexLock lock(&mu_);
      // An earlier victim's DeleteDeadSegments may have deleted this one
      // already: everything in it died meanwhile.
      auto it = segments_.find(id);
      if (it == segments_.end()) continue;
      end = it->second.end;
    }
    for (const auto& [key, loc] : live[id]) moved += loc.record_len();
    KVD_RETURN_IF_ERROR(RelocateSegment(id, std::move(live[id])));
    KVD_RETURN_IF_ERROR(DeleteDeadSegments());
    freed += end - std::min(end, moved);
  }
  return DeleteDeadSegments();
}

absl::Status SsdTier::RelocateSegment(
    uint32_t segment, std::vector<std::pair<ChunkKey, Location>> live) {
  std::sort(live.begin(), live.end(), [](const auto& a, const auto& b) {
    return a.second.offset_blocks < b.second.offset_blocks;
  });
  std::shared_ptr<RandomRWFile> file;
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = segments_.find(segment);
    if (it == segments_.end()) return absl::OkStatus();
    file = it->second.file;
  }
  for (size_t begin = 0; begin < live.size();) {
    size_t end = begin;
    uint64_t total = 0;
    while (end < live.size() &&
           (end == begin ||
            total + live[end].second.record_len() <= kMaxRelocateBytes)) {
      total += live[end].second.record_len();
      ++end;
    }
    AlignedBuffer buf = AcquireBuffer(total);
    std::vector<ReadOp> reads;
    std::vector<uint8_t*> at;
    uint64_t pos = 0;
    for (size_t i = begin; i < end; ++i) {
      at.push_back(buf.data() + pos);
      reads.push_back(ReadOp{
          live[i].second.offset(),
          absl::MakeSpan(buf.data() + pos, live[i].second.record_len())});
      pos += live[i].second.record_len();
    }
    absl::Status s = file->ReadBatchAt(reads);
    if (!s.ok()) {
      // Find which records are unreadable; a short file means lost records.
      for (const ReadOp& r : reads) {
        absl::Status one = file->ReadAt(r.offset, r.dst);
        if (!one.ok() && !absl::IsOutOfRange(one)) {
          ReleaseBuffer(std::move(buf));
          return one;
        }
      }
    }
    // Verify before moving: a corrupt record is dropped, never copied.
    std::vector<uint64_t> lens;
    std::vector<const uint8_t*> records;
    std::vector<PendingRecord> pending;
    for (size_t i = begin; i < end; ++i) {
      const auto& [key, loc] = live[i];
      absl::StatusOr<RecordView> view =
          DecodeRecord(absl::MakeConstSpan(at[i - begin], loc.record_len()));
      if (!view.ok() || view->header.key != key ||
          view->header.payload_len != loc.payload_len ||
          view->header.payload_checksum != loc.payload_checksum) {
        DropCorrupt(key, loc);
        continue;
      }
      lens.push_back(loc.record_len());
      records.push_back(at[i - begin]);
      PendingRecord p;
      p.key = key;
      p.loc = loc;
      p.replaces = loc;
      pending.push_back(std::move(p));
    }
    std::vector<Slot> slots;
    s = records.empty() ? absl::OkStatus()
                        : Reserve(lens, /*for_gc=*/true, &slots);
    if (s.ok() && !slots.empty()) {
      std::vector<std::vector<WriteOp>> ops(slots.size());
      for (size_t i = 0; i < slots.size(); ++i) {
        ops[i].push_back(
            WriteOp{slots[i].offset, absl::MakeConstSpan(records[i], lens[i])});
      }
      s = WriteSlots(slots, ops);
      if (!s.ok()) AbandonSlots(slots, /*seal=*/true);
    }
    if (s.ok() && !slots.empty()) {
      for (size_t i = 0; i < pending.size(); ++i) {
        Location& loc = pending[i].loc;
        loc.segment = slots[i].segment;
        loc.offset_blocks =
            static_cast<uint32_t>(slots[i].offset / kIoAlignment);
        // The record bytes are unchanged, so only the place differs.
        const RecordHeader h =
            DecodeRecordHeader(absl::MakeConstSpan(records[i], lens[i]))
                .value();
        SsdIndexEntry e;
        e.segment = loc.segment;
        e.offset = slots[i].offset;
        e.record_len = lens[i];
        e.payload_len = h.payload_len;
        e.payload_checksum = h.payload_checksum;
        e.parent = h.parent;
        e.codec = std::string(h.codec);
        pending[i].value = EncodeIndexValue(e);
      }
      s = Commit(absl::MakeSpan(pending));
    }
    ReleaseBuffer(std::move(buf));
    KVD_RETURN_IF_ERROR(s);
    begin = end;
  }
  return absl::OkStatus();
}

absl::Status SsdTier::DeleteDeadSegments() {
  // Taken out of segments_ first: a segment that dies after the SyncIndex
  // below waits for the next call.
  std::vector<std::pair<uint32_t, Segment>> dead;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = segments_.begin(); it != segments_.end();) {
      const Segment& seg = it->second;
      if (it->first != active_ && seg.sealed && seg.live == 0 &&
          seg.pending.empty()) {
        allocated_ -= seg.end;
        dead.emplace_back(it->first, std::move(it->second));
        it = segments_.erase(it);
      } else {
        ++it;
      }
    }
  }
  if (dead.empty()) return absl::OkStatus();
  // The entries that moved out of these segments (GC) must be durable before
  // the files go; removals need not be, but are made durable too.
  absl::Status first = SyncIndex();
  if (!first.ok()) {
    // Keep them (dead, sealed) for a later call.
    absl::MutexLock lock(&mu_);
    for (auto& [id, seg] : dead) {
      allocated_ += seg.end;
      segments_.emplace(id, std::move(seg));
    }
    return first;
  }
  std::vector<std::string> watermarks;
  for (auto& [id, seg] : dead) {
    seg.file.reset();
    absl::Status s = fs_->Delete(SegmentPath(id));
    if (!s.ok() && !absl::IsNotFound(s) && first.ok()) first = s;
    watermarks.push_back(WatermarkKey(id));
  }
  if (first.ok()) first = fs_->SyncDir(options_.dir);
  // After the files: a watermark left behind (crash, failure) is dropped by
  // recovery, whereas a file left without its watermark would be scanned.
  if (first.ok()) first = index_->DeleteRaw(watermarks, /*sync=*/false);
  return first;
}

void SsdTier::DropCorrupt(const ChunkKey& key, const Location& loc) {
  absl::MutexLock commit(&commit_mu_);
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = map_.find(key);
    if (it == map_.end() || !it->second.SamePlace(loc))
      return;  // moved or gone
  }
  // Even if the index delete fails, the entry leaves the map: this process
  // never serves it again, and a restart finds the record corrupt again.
  const ChunkKey keys[] = {key};
  index_->Write({}, keys, /*sync=*/true).IgnoreError();
  absl::MutexLock lock(&mu_);
  ForgetLocked(map_.find(key));
}

absl::Status SsdTier::Sync() {
  std::shared_ptr<RandomRWFile> active;
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = segments_.find(active_);
    if (it != segments_.end()) active = it->second.file;
  }
  if (active != nullptr) KVD_RETURN_IF_ERROR(active->Sync());
  return SyncIndex();
}

absl::Status SsdTier::SyncIndex() {
  absl::MutexLock wm(&wm_mu_);
  std::vector<std::pair<uint32_t, uint64_t>> advance;
  {
    absl::ReaderMutexLock lock(&mu_);
    for (const auto& [id, seg] : segments_) {
      const uint64_t frontier = seg.Frontier();
      if (frontier > seg.watermark) advance.emplace_back(id, frontier);
    }
  }
  if (advance.empty()) return index_->SyncWal();
  // Every slot below a frontier was committed (index write returned) or
  // abandoned before we read it, so this synced write, later in the WAL,
  // makes those entries durable along with the watermark.
  std::vector<std::pair<std::string, std::string>> puts;
  for (const auto& [id, offset] : advance)
    puts.emplace_back(WatermarkKey(id), EncodeWatermark(offset));
  KVD_RETURN_IF_ERROR(index_->WriteRaw({}, puts, /*sync=*/true));
  absl::MutexLock lock(&mu_);
  for (const auto& [id, offset] : advance) {
    auto it = segments_.find(id);
    if (it != segments_.end())
      it->second.watermark = std::max(it->second.watermark, offset);
  }
  return absl::OkStatus();
}

}  // namespace kvd
