// SsdTier, the write path: Put, staging, slot reservation, the writes and
// the index commit. Reads, removal and pooling are in ssd_tier.cc; recovery
// in ssd_recovery.cc; GC in ssd_tier_maintenance.cc.
#include <algorithm>
#include <cstring>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "core/check.h"
#include "core/chunk_format.h"
#include "core/status.h"
#include "store/engine/ssd/segment_format.h"
#include "store/engine/ssd/ssd_index.h"
#include "store/engine/ssd/ssd_tier.h"

namespace kvd {
namespace {

// A Put batch is staged and committed in groups of about this many bytes.
constexpr uint64_t kMaxGroupBytes = 64ull << 20;

}  // namespace

absl::Status SsdTier::Put(absl::Span<const SsdWriteItem> items) {
  for (size_t i = 0; i < items.size(); ++i) {
    const SsdWriteItem& item = items[i];
    if (item.codec.size() > kMaxRecordCodecBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("items[", i, "].codec length=", item.codec.size(),
                       " exceeds max=", kMaxRecordCodecBytes));
    }
    const uint64_t rec = RecordSize(item.codec.size(), item.object.size());
    if (rec > options_.segment_bytes || rec > options_.capacity_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "items[", i, "]: object size=", item.object.size(), " (record ", rec,
          " bytes) does not fit segment_bytes=", options_.segment_bytes,
          " / capacity_bytes=", options_.capacity_bytes));
    }
  }
  std::vector<const SsdWriteItem*> todo;
  {
    absl::ReaderMutexLock lock(&mu_);
    absl::flat_hash_set<ChunkKey> seen;
    for (const SsdWriteItem& item : items) {
      if (map_.contains(item.key) || !seen.insert(item.key).second) continue;
      todo.push_back(&item);
    }
  }
  for (size_t begin = 0; begin < todo.size();) {
    uint64_t bytes = 0;
    size_t end = begin;
    while (end < todo.size()) {
      const uint64_t rec =
          RecordSize(todo[end]->codec.size(), todo[end]->object.size());
      if (end > begin && bytes + rec > kMaxGroupBytes) break;
      bytes += rec;
      ++end;
    }
    KVD_RETURN_IF_ERROR(
        PutGroup(absl::MakeConstSpan(todo).subspan(begin, end - begin)));
    begin = end;
  }
  return absl::OkStatus();
}

void SsdTier::EncodeHeader(const SsdWriteItem& item, uint64_t payload_sum,
                           uint8_t* rec, uint32_t payload_offset) {
  // Bounds were checked in Put, so encoding cannot fail.
  absl::Status s =
      EncodeRecordHeader(item.key, item.parent, item.codec, item.object.size(),
                         payload_sum, absl::MakeSpan(rec, payload_offset));
  KVD_CHECK(s.ok(), "EncodeRecordHeader failed after validation");
  const uint32_t header_len = RecordHeaderLen(item.codec.size());
  std::memset(rec + header_len, 0, payload_offset - header_len);
}

absl::Status SsdTier::PutGroup(absl::Span<const SsdWriteItem* const> items) {
  std::vector<uint64_t> lens;
  for (const SsdWriteItem* item : items) {
    lens.push_back(RecordSize(item->codec.size(), item->object.size()));
  }
  std::vector<Slot> slots;
  KVD_RETURN_IF_ERROR(Reserve(lens, /*for_gc=*/false, &slots));
  // Stage headers, padding and (unless the payload can go to disk straight
  // from the caller's aligned buffer) payloads in one aligned buffer.
  std::vector<uint64_t> staged(items.size());
  std::vector<bool> direct(items.size());
  uint64_t total_staged = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    const SsdWriteItem& item = *items[i];
    const uint32_t off =
        RecordPayloadOffset(item.codec.size(), item.object.size());
    const uint64_t body = item.object.size() / kIoAlignment * kIoAlignment;
    direct[i] = IsAligned(off) && body > 0 &&
                IsAligned(reinterpret_cast<uintptr_t>(item.object.data()));
    staged[i] = direct[i] ? off + (lens[i] - off - body) : lens[i];
    total_staged += staged[i];
  }
  AlignedBuffer buf = AcquireBuffer(total_staged);
  // An aligned payload goes to disk first, straight from the caller's buffer
  // (`early`); its checksum is computed while it is in flight, then its
  // header block and tail follow (`ops`). Staged records go out whole.
  std::vector<std::vector<WriteOp>> early(items.size()), ops(items.size());
  std::vector<uint8_t*> headers(items.size());
  std::vector<uint64_t> sums(items.size());
  uint64_t at = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    const SsdWriteItem& item = *items[i];
    uint8_t* rec = buf.data() + at;
    headers[i] = rec;
    const uint32_t off =
        RecordPayloadOffset(item.codec.size(), item.object.size());
    const uint64_t rec_off = slots[i].offset;
    if (direct[i]) {
      const uint64_t body = item.object.size() / kIoAlignment * kIoAlignment;
      const uint64_t tail = item.object.size() - body;
      uint8_t* tail_block = rec + off;
      if (tail > 0) std::memcpy(tail_block, item.object.data() + body, tail);
      std::memset(tail_block + tail, 0, staged[i] - off - tail);
      early[i].push_back(WriteOp{rec_off + off, item.object.first(body)});
      ops[i].push_back(WriteOp{rec_off, absl::MakeConstSpan(rec, off)});
      if (staged[i] > off) {
        ops[i].push_back(
            WriteOp{rec_off + off + body,
                    absl::MakeConstSpan(tail_block, staged[i] - off)});
      }
    } else {
      sums[i] =
          CopyWithChecksum64(rec + off, item.object.data(), item.object.size());
      std::memset(rec + off + item.object.size(), 0,
                  lens[i] - off - item.object.size());
      ops[i].push_back(WriteOp{rec_off, absl::MakeConstSpan(rec, lens[i])});
      EncodeHeader(item, sums[i], rec, off);
    }
    at += staged[i];
  }
  absl::Status s = WriteSlots(slots, ops, early, [&](size_t i) {
    if (!direct[i]) return;
    const SsdWriteItem& item = *items[i];
    sums[i] = Checksum64(item.object);
    EncodeHeader(item, sums[i], headers[i],
                 RecordPayloadOffset(item.codec.size(), item.object.size()));
  });
  ReleaseBuffer(std::move(buf));
  if (!s.ok()) {
    AbandonSlots(slots, /*seal=*/true);
    return s;
  }
  std::vector<PendingRecord> pending;
  for (size_t i = 0; i < items.size(); ++i) {
    const SsdWriteItem& item = *items[i];
    PendingRecord p;
    p.key = item.key;
    p.loc.segment = slots[i].segment;
    p.loc.offset_blocks = static_cast<uint32_t>(slots[i].offset / kIoAlignment);
    p.loc.record_blocks = static_cast<uint32_t>(lens[i] / kIoAlignment);
    p.loc.payload_len = item.object.size();
    p.loc.payload_checksum = sums[i];
    SsdIndexEntry e;
    e.segment = slots[i].segment;
    e.offset = slots[i].offset;
    e.record_len = lens[i];
    e.payload_len = item.object.size();
    e.payload_checksum = sums[i];
    e.parent = item.parent;
    e.codec = std::string(item.codec);
    p.value = EncodeIndexValue(e);
    pending.push_back(std::move(p));
  }
  return Commit(absl::MakeSpan(pending));
}

absl::Status SsdTier::Reserve(absl::Span<const uint64_t> record_lens,
                              bool for_gc, std::vector<Slot>* slots) {
  uint64_t need = 0;
  for (uint64_t len : record_lens) need += len;
  bool collected = false;
  while (true) {
    bool reserved = false, opened = false;
    {
      absl::MutexLock lock(&mu_);
      const uint64_t limit =
          options_.capacity_bytes + (for_gc ? options_.segment_bytes : 0);
      if (allocated_ + need <= limit) {
        for (uint64_t len : record_lens) {
          auto it = segments_.find(active_);
          if (it == segments_.end() ||
              it->second.end + len > options_.segment_bytes) {
            absl::Status s = OpenNewSegmentLocked();
            if (!s.ok()) {
              for (const Slot& slot : *slots)
                segments_.at(slot.segment).pending.erase(slot.offset);
              slots->clear();
              return s;
            }
            opened = true;
            it = segments_.find(active_);
          }
          Segment& seg = it->second;
          slots->push_back(Slot{active_, seg.end, len, seg.file});
          seg.pending.insert(seg.end);
          seg.end += len;
          allocated_ += len;
        }
        reserved = true;
      } else {
        const bool has_dead = allocated_ > live_bytes_;
        if (for_gc || collected || !has_dead) {
          return absl::ResourceExhaustedError(absl::StrCat(
              "ssd tier full: need ", need, " bytes, allocated_bytes=",
              allocated_, " of capacity_bytes=", options_.capacity_bytes,
              " (live ", live_bytes_, " bytes)",
              for_gc ? " while relocating for garbage collection" : ""));
        }
      }
    }
    if (reserved) {
      // A segment was sealed: persist its watermark now (once per segment,
      // not per Put), so the scan at recovery stays within about the last
      // two segments.
      absl::Status s = opened ? SyncIndex() : absl::OkStatus();
      if (!s.ok()) {
        AbandonSlots(*slots, /*seal=*/false);
        slots->clear();
      }
      return s;
    }
    collected = true;
    KVD_RETURN_IF_ERROR(CollectGarbageInternal(/*threshold=*/1.0, need));
  }
}

absl::Status SsdTier::WriteSlots(absl::Span<const Slot> slots,
                                 absl::Span<const std::vector<WriteOp>> ops,
                                 absl::Span<const std::vector<WriteOp>> early,
                                 absl::FunctionRef<void(size_t)> prepare) {
  // The writes of one segment go out as one batch, then the file is synced.
  for (size_t begin = 0; begin < slots.size();) {
    size_t end = begin;
    std::vector<WriteOp> first, second;
    while (end < slots.size() && slots[end].segment == slots[begin].segment) {
      if (!early.empty()) {
        first.insert(first.end(), early[end].begin(), early[end].end());
      }
      second.insert(second.end(), ops[end].begin(), ops[end].end());
      ++end;
    }
    RandomRWFile* file = slots[begin].file.get();
    KVD_RETURN_IF_ERROR(file->WriteBatchOverlapped(first, [&] {
      for (size_t i = begin; i < end; ++i) prepare(i);
    }));
    KVD_RETURN_IF_ERROR(file->WriteBatchAt(second));
    KVD_RETURN_IF_ERROR(file->Sync());
    begin = end;
  }
  return absl::OkStatus();
}

void SsdTier::AbandonSlots(absl::Span<const Slot> slots, bool seal) {
  absl::MutexLock lock(&mu_);
  for (const Slot& slot : slots) {
    Segment& seg = segments_.at(slot.segment);
    seg.pending.erase(slot.offset);
    // After a failed write or sync the file's state is unknown: stop
    // appending to it. Its indexed records stay readable (and verified).
    if (seal && slot.segment == active_) {
      seg.sealed = true;
      active_ = 0;
    }
  }
}

absl::Status SsdTier::Commit(absl::Span<PendingRecord> records) {
  absl::MutexLock commit(&commit_mu_);
  std::vector<size_t> fresh;
  std::vector<std::pair<ChunkKey, std::string>> puts;
  {
    absl::ReaderMutexLock lock(&mu_);
    for (size_t i = 0; i < records.size(); ++i) {
      auto it = map_.find(records[i].key);
      const bool take =
          records[i].replaces.has_value()
              ? (it != map_.end() && it->second.SamePlace(*records[i].replaces))
              : it == map_.end();
      if (take) {
        fresh.push_back(i);
        puts.emplace_back(records[i].key, std::move(records[i].value));
      }
    }
  }
  absl::Status s;
  // Not synced: the segment bytes are durable and the scan at recovery finds
  // them until a watermark (written with sync) passes them.
  if (!puts.empty()) s = index_->Write(puts, {}, /*sync=*/false);
  absl::MutexLock lock(&mu_);
  for (const PendingRecord& r : records)
    segments_.at(r.loc.segment).pending.erase(r.loc.offset());
  if (!s.ok()) return s;
  for (size_t i : fresh) {
    const PendingRecord& r = records[i];
    auto [it, inserted] = map_.try_emplace(r.key, r.loc);
    if (!inserted) {
      Segment& old = segments_.at(it->second.segment);
      old.live -= it->second.record_len();
      live_bytes_ -= it->second.record_len();
      stored_bytes_ -= it->second.payload_len;
      it->second = r.loc;
    }
    segments_.at(r.loc.segment).live += r.loc.record_len();
    live_bytes_ += r.loc.record_len();
    stored_bytes_ += r.loc.payload_len;
  }
  return absl::OkStatus();
}

}  // namespace kvd
