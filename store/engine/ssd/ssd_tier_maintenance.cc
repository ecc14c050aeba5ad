// SsdTier recovery at Open and garbage collection.
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

absl::Status SsdTier::Recover() {
  struct Found {
    std::shared_ptr<RandomRWFile> file;
    uint64_t size = 0;
    uint64_t max_end = 0;
    uint64_t live = 0;
  };
  std::map<uint32_t, Found> found;
  uint32_t max_id = 0;
  KVD_ASSIGN_OR_RETURN(std::vector<std::string> names, fs_->List(options_.dir));
  for (const std::string& name : names) {
    std::optional<uint32_t> id = ParseSegmentFileName(name);
    if (!id.has_value()) continue;
    FileOpenOptions fo;
    fo.direct_io = options_.direct_io;
    KVD_ASSIGN_OR_RETURN(std::unique_ptr<RandomRWFile> file,
                         fs_->Open(SegmentPath(*id), fo));
    KVD_ASSIGN_OR_RETURN(uint64_t size, file->Size());
    found[*id] = Found{std::move(file), size};
    max_id = std::max(max_id, *id);
  }

  // Entries whose bytes cannot be there (missing segment, past its end, or a
  // malformed value) are dropped: they were never durable.
  std::vector<std::string> bad;
  absl::flat_hash_map<ChunkKey, Location> map;
  uint64_t stored = 0;
  KVD_RETURN_IF_ERROR(index_->ForEach([&](std::string_view k,
                                          std::string_view v) -> absl::Status {
    absl::StatusOr<SsdIndexEntry> e = DecodeIndexValue(v);
    auto seg = e.ok() ? found.find(e->segment) : found.end();
    if (k.size() != ChunkKey::kSize || seg == found.end() ||
        !IsAligned(e->offset) ||
        e->record_len != RecordSize(e->codec.size(), e->payload_len) ||
        e->record_len / kIoAlignment > UINT32_MAX ||
        e->offset / kIoAlignment > UINT32_MAX ||
        e->offset + e->record_len > seg->second.size) {
      bad.emplace_back(k);
      return absl::OkStatus();
    }
    Location loc;
    loc.segment = e->segment;
    loc.offset_blocks = static_cast<uint32_t>(e->offset / kIoAlignment);
    loc.record_blocks = static_cast<uint32_t>(e->record_len / kIoAlignment);
    loc.payload_len = e->payload_len;
    loc.payload_checksum = e->payload_checksum;
    map.emplace(ChunkKey::FromBytes(reinterpret_cast<const uint8_t*>(k.data())),
                loc);
    seg->second.live += e->record_len;
    seg->second.max_end =
        std::max(seg->second.max_end, e->offset + e->record_len);
    stored += e->payload_len;
    return absl::OkStatus();
  }));
  if (!bad.empty()) KVD_RETURN_IF_ERROR(index_->DeleteRaw(bad, /*sync=*/true));

  // Unreferenced segments go; tails past the last indexed record (a torn or
  // unacknowledged write) are cut off.
  bool deleted = false;
  std::map<uint32_t, Segment> segments;
  uint64_t allocated = 0, live = 0;
  for (auto& [id, f] : found) {
    if (f.live == 0) {
      f.file.reset();
      KVD_RETURN_IF_ERROR(fs_->Delete(SegmentPath(id)));
      deleted = true;
      continue;
    }
    if (f.size > f.max_end) {
      KVD_RETURN_IF_ERROR(f.file->Truncate(f.max_end));
      KVD_RETURN_IF_ERROR(f.file->Sync());
    }
    Segment seg;
    seg.file = std::move(f.file);
    seg.end = f.max_end;
    seg.live = f.live;
    seg.sealed = true;
    allocated += seg.end;
    live += seg.live;
    segments.emplace(id, std::move(seg));
  }
  if (deleted) KVD_RETURN_IF_ERROR(fs_->SyncDir(options_.dir));

  absl::MutexLock lock(&mu_);
  map_ = std::move(map);
  segments_ = std::move(segments);
  allocated_ = allocated;
  live_bytes_ = live;
  stored_bytes_ = stored;
  next_segment_id_ = max_id + 1;
  active_ = 0;
  // Open the segment new records go to now, so direct_io_active() is known.
  return OpenNewSegmentLocked();
}

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
        if (seg.pending > 0) continue;  // writes in flight: leave it
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
      end = segments_.at(id).end;
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
  std::vector<uint32_t> dead;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = segments_.begin(); it != segments_.end();) {
      const Segment& seg = it->second;
      if (it->first != active_ && seg.sealed && seg.live == 0 &&
          seg.pending == 0) {
        allocated_ -= seg.end;
        dead.push_back(it->first);
        it = segments_.erase(it);
      } else {
        ++it;
      }
    }
  }
  if (dead.empty()) return absl::OkStatus();
  absl::Status first;
  for (uint32_t id : dead) {
    absl::Status s = fs_->Delete(SegmentPath(id));
    if (!s.ok() && !absl::IsNotFound(s) && first.ok()) first = s;
  }
  if (first.ok()) first = fs_->SyncDir(options_.dir);
  return first;
}

}  // namespace kvd
