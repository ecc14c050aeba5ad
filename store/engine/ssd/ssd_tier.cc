#include "store/engine/ssd/ssd_tier.h"

#include <algorithm>
#include <cstring>

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack
#include <xxhash.h>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "core/check.h"
#include "core/chunk_format.h"
#include "core/status.h"
#include "store/engine/ssd/segment_format.h"
#include "store/engine/ssd/ssd_index.h"

namespace kvd {
namespace {

// A Put batch is staged and committed in groups of about this many bytes.
constexpr uint64_t kMaxGroupBytes = 64ull << 20;
constexpr size_t kMaxPooledBuffers = 4;
constexpr uint64_t kMaxPooledBufferBytes = 128ull << 20;
constexpr uint64_t kMinSegmentBytes = 64ull << 10;
constexpr uint64_t kMaxSegmentBytes = uint64_t{UINT32_MAX} * kIoAlignment;

// Copies n bytes and returns their xxh3-64 (== Checksum64), hashing each piece
// right after copying it, while it is still in cache: one pass over the
// source instead of two.
uint64_t CopyAndChecksum(uint8_t* dst, const uint8_t* src, size_t n) {
  constexpr size_t kPiece = 256 << 10;
  if (n <= kPiece) {
    if (n > 0) std::memcpy(dst, src, n);
    return Checksum64(absl::MakeConstSpan(dst, n));
  }
  XXH3_state_t state;
  KVD_CHECK(XXH3_64bits_reset(&state) == XXH_OK, "XXH3_64bits_reset failed");
  for (size_t done = 0; done < n;) {
    const size_t len = std::min(kPiece, n - done);
    std::memcpy(dst + done, src + done, len);
    KVD_CHECK(XXH3_64bits_update(&state, dst + done, len) == XXH_OK,
              "XXH3_64bits_update failed");
    done += len;
  }
  return XXH3_64bits_digest(&state);
}

}  // namespace

std::string SsdTier::SegmentPath(uint32_t id) const {
  return absl::StrCat(options_.dir, "/", SegmentFileName(id));
}

SsdTier::SsdTier(const SsdTierOptions& options, FileSystem* fs,
                 std::unique_ptr<SsdIndex> index)
    : options_(options), fs_(fs), index_(std::move(index)) {}

SsdTier::~SsdTier() { Sync().IgnoreError(); }

absl::StatusOr<std::unique_ptr<SsdTier>> SsdTier::Open(
    const SsdTierOptions& options) {
  if (options.dir.empty())
    return absl::InvalidArgumentError("SsdTierOptions.dir is empty");
  if (options.capacity_bytes == 0) {
    return absl::InvalidArgumentError(
        "SsdTierOptions.capacity_bytes=0, must be > 0");
  }
  if (options.segment_bytes < kMinSegmentBytes ||
      options.segment_bytes > kMaxSegmentBytes ||
      !IsAligned(options.segment_bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat("SsdTierOptions.segment_bytes=", options.segment_bytes,
                     " must be a multiple of ", kIoAlignment, " in [",
                     kMinSegmentBytes, ", ", kMaxSegmentBytes, "]"));
  }
  if (!(options.gc_live_ratio >= 0.0 && options.gc_live_ratio <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("SsdTierOptions.gc_live_ratio=", options.gc_live_ratio,
                     " must be in [0, 1]"));
  }
  FileSystem* fs = options.fs != nullptr ? options.fs : FileSystem::Default();
  KVD_RETURN_IF_ERROR(fs->CreateDir(options.dir));
  KVD_ASSIGN_OR_RETURN(std::unique_ptr<SsdIndex> index,
                       SsdIndex::Open(options.dir + "/index"));
  std::unique_ptr<SsdTier> tier(new SsdTier(options, fs, std::move(index)));
  KVD_RETURN_IF_ERROR(tier->Recover());
  return tier;
}

absl::Status SsdTier::OpenNewSegmentLocked() {
  if (active_ != 0) segments_.at(active_).sealed = true;
  active_ = 0;
  if (next_segment_id_ == UINT32_MAX) {
    return absl::FailedPreconditionError(
        "ssd tier: segment ids exhausted (max 4294967294)");
  }
  const uint32_t id = next_segment_id_++;
  FileOpenOptions fo;
  fo.create = true;
  fo.direct_io = options_.direct_io;
  KVD_ASSIGN_OR_RETURN(std::unique_ptr<RandomRWFile> file,
                       fs_->Open(SegmentPath(id), fo));
  // The new name must be durable before any index entry points into it.
  KVD_RETURN_IF_ERROR(fs_->SyncDir(options_.dir));
  direct_io_ = file->direct_io();
  Segment seg;
  seg.file = std::move(file);
  segments_.emplace(id, std::move(seg));
  active_ = id;
  return absl::OkStatus();
}

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
          CopyAndChecksum(rec + off, item.object.data(), item.object.size());
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

absl::StatusOr<uint64_t> SsdTier::Size(const ChunkKey& key) {
  absl::ReaderMutexLock lock(&mu_);
  auto it = map_.find(key);
  if (it == map_.end()) {
    return absl::NotFoundError(
        absl::StrCat("ssd tier: key ", key.ShortHex(), " not found"));
  }
  return it->second.payload_len;
}

bool SsdTier::Contains(const ChunkKey& key) {
  absl::ReaderMutexLock lock(&mu_);
  return map_.contains(key);
}

absl::Status SsdTier::Read(const ChunkKey& key, absl::Span<uint8_t> dst) {
  Location loc;
  std::shared_ptr<RandomRWFile> file;
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = map_.find(key);
    if (it == map_.end()) {
      return absl::NotFoundError(
          absl::StrCat("ssd tier: key ", key.ShortHex(), " not found"));
    }
    loc = it->second;
    if (dst.size() != loc.payload_len) {
      return absl::InvalidArgumentError(absl::StrCat(
          "dst size=", dst.size(), " != object size=", loc.payload_len));
    }
    file = segments_.at(loc.segment).file;
  }
  absl::Status bad = ReadRecord(*file, loc, key, dst);
  if (absl::IsDataLoss(bad)) {
    DropCorrupt(key, loc);
    return absl::DataLossError(
        absl::StrCat("ssd tier: record of ", key.ShortHex(), " in ",
                     SegmentPath(loc.segment), " at offset=", loc.offset(),
                     " is corrupt (entry dropped): ", bad.message()));
  }
  return bad;
}

absl::Status SsdTier::ReadRecord(RandomRWFile& file, const Location& loc,
                                 const ChunkKey& key, absl::Span<uint8_t> dst) {
  // I/O errors pass through (the entry may be fine); a short file or any
  // verification failure is kDataLoss.
  auto io_error = [](absl::Status s) {
    return absl::IsOutOfRange(s) ? absl::DataLossError(s.message()) : s;
  };
  auto verify_error = [](absl::Status s) {
    return s.ok() || absl::IsDataLoss(s) ? s : absl::DataLossError(s.message());
  };
  const uint64_t record_len = loc.record_len();
  const uint64_t body = dst.size() / kIoAlignment * kIoAlignment;
  const uint64_t tail_block = AlignUp(dst.size() - body);
  // Large payloads start at a block boundary (segment_format.h): they go
  // straight from disk into an aligned dst, and only the header block and the
  // last partial block pass through a staging buffer.
  const bool split = dst.size() >= kAlignedPayloadMinBytes &&
                     IsAligned(reinterpret_cast<uintptr_t>(dst.data())) &&
                     record_len > body + tail_block &&
                     record_len - body - tail_block <= 2 * kIoAlignment;
  if (!split) {
    AlignedBuffer buf = AcquireBuffer(record_len);
    absl::Span<uint8_t> rec = buf.span(record_len);
    absl::Status s = io_error(file.ReadAt(loc.offset(), rec));
    if (s.ok()) {
      absl::StatusOr<RecordView> view = DecodeRecord(rec);
      s = verify_error(view.ok() ? CheckRecord(view->header, loc, key)
                                 : view.status());
      if (s.ok() && !dst.empty())
        std::memcpy(dst.data(), view->payload.data(), dst.size());
    }
    ReleaseBuffer(std::move(buf));
    return s;
  }
  const uint64_t off = record_len - body - tail_block;
  AlignedBuffer buf = AcquireBuffer(off + tail_block);
  ReadOp ops[3] = {{loc.offset(), buf.span(off)},
                   {loc.offset() + off, dst.first(body)},
                   {loc.offset() + off + body,
                    absl::MakeSpan(buf.data() + off, tail_block)}};
  absl::Status s = io_error(
      file.ReadBatchAt(absl::MakeConstSpan(ops, tail_block > 0 ? 3 : 2)));
  if (s.ok()) {
    const uint64_t tail = dst.size() - body;
    if (tail > 0) std::memcpy(dst.data() + body, buf.data() + off, tail);
    absl::StatusOr<RecordHeader> h = VerifyRecordPieces(
        absl::MakeConstSpan(buf.data(), off), dst,
        absl::MakeConstSpan(buf.data() + off + tail, tail_block - tail));
    s = verify_error(h.ok() ? CheckRecord(*h, loc, key) : h.status());
  }
  ReleaseBuffer(std::move(buf));
  return s;
}

absl::Status SsdTier::CheckRecord(const RecordHeader& h, const Location& loc,
                                  const ChunkKey& key) {
  if (h.key != key) {
    return absl::DataLossError(
        absl::StrCat("record key=", h.key.ShortHex(), " is not the entry's"));
  }
  if (h.payload_len != loc.payload_len ||
      h.payload_checksum != loc.payload_checksum ||
      h.record_len != loc.record_len()) {
    return absl::DataLossError(absl::StrCat(
        "record payload_len=", h.payload_len, " checksum=0x",
        absl::Hex(h.payload_checksum), " record_len=", h.record_len,
        " differ from the index (", loc.payload_len, ", 0x",
        absl::Hex(loc.payload_checksum), ", ", loc.record_len(), ")"));
  }
  return absl::OkStatus();
}

absl::Status SsdTier::Remove(const ChunkKey& key) {
  {
    absl::MutexLock commit(&commit_mu_);
    {
      absl::ReaderMutexLock lock(&mu_);
      if (!map_.contains(key)) {
        return absl::NotFoundError(
            absl::StrCat("ssd tier: key ", key.ShortHex(), " not found"));
      }
    }
    const ChunkKey keys[] = {key};
    KVD_RETURN_IF_ERROR(index_->Write({}, keys, /*sync=*/false));
    absl::MutexLock lock(&mu_);
    const Segment& seg = ForgetLocked(map_.find(key));
    if (seg.live != 0 || !seg.sealed) return absl::OkStatus();
  }
  return DeleteDeadSegments();
}

const SsdTier::Segment& SsdTier::ForgetLocked(
    absl::flat_hash_map<ChunkKey, Location>::iterator it) {
  Segment& seg = segments_.at(it->second.segment);
  seg.live -= it->second.record_len();
  live_bytes_ -= it->second.record_len();
  stored_bytes_ -= it->second.payload_len;
  map_.erase(it);
  return seg;
}

absl::Status SsdTier::ForEach(absl::FunctionRef<void(const SsdEntryInfo&)> fn) {
  return index_->ForEach([&](std::string_view k,
                             std::string_view v) -> absl::Status {
    if (k.size() != ChunkKey::kSize) return absl::OkStatus();
    absl::StatusOr<SsdIndexEntry> e = DecodeIndexValue(v);
    if (!e.ok()) return absl::OkStatus();
    SsdEntryInfo info;
    info.key = ChunkKey::FromBytes(reinterpret_cast<const uint8_t*>(k.data()));
    if (!Contains(info.key)) return absl::OkStatus();  // dropped as corrupt
    info.parent = e->parent;
    info.size = e->payload_len;
    info.codec = std::move(e->codec);
    fn(info);
    return absl::OkStatus();
  });
}

TierUsage SsdTier::Usage() const {
  absl::ReaderMutexLock lock(&mu_);
  TierUsage u;
  u.capacity_bytes = options_.capacity_bytes;
  u.allocated_bytes = allocated_;
  u.stored_bytes = stored_bytes_;
  u.objects = map_.size();
  return u;
}

bool SsdTier::direct_io_active() const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = segments_.find(active_);
  return it != segments_.end() ? it->second.file->direct_io() : direct_io_;
}

uint64_t SsdTier::IndexMemoryBytes() const {
  absl::ReaderMutexLock lock(&mu_);
  return map_.capacity() * (sizeof(std::pair<const ChunkKey, Location>) + 1);
}

AlignedBuffer SsdTier::AcquireBuffer(uint64_t size) {
  AlignedBuffer buf;
  {
    absl::MutexLock lock(&pool_mu_);
    // The smallest pooled buffer that fits, else the largest one.
    size_t best = pool_.size();
    for (size_t i = 0; i < pool_.size(); ++i) {
      const bool fits = pool_[i].capacity() >= size;
      if (best == pool_.size()) {
        best = i;
      } else if (fits && (pool_[best].capacity() < size ||
                          pool_[i].capacity() < pool_[best].capacity())) {
        best = i;
      } else if (!fits && pool_[best].capacity() < size &&
                 pool_[i].capacity() > pool_[best].capacity()) {
        best = i;
      }
    }
    if (best != pool_.size()) {
      buf = std::move(pool_[best]);
      pool_.erase(pool_.begin() + static_cast<ptrdiff_t>(best));
    }
  }
  buf.Reserve(size);
  return buf;
}

void SsdTier::ReleaseBuffer(AlignedBuffer buffer) {
  if (buffer.capacity() > kMaxPooledBufferBytes) return;
  absl::MutexLock lock(&pool_mu_);
  if (pool_.size() < kMaxPooledBuffers) pool_.push_back(std::move(buffer));
}

}  // namespace kvd
