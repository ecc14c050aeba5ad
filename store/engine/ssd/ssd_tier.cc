#include "store/engine/ssd/ssd_tier.h"

#include <algorithm>
#include <cstring>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "core/check.h"
#include "core/chunk_format.h"
#include "core/status.h"
#include "store/engine/ssd/segment_format.h"
#include "store/engine/ssd/ssd_index.h"

namespace kvd {
namespace {

constexpr size_t kMaxPooledBuffers = 4;
constexpr uint64_t kMaxPooledBufferBytes = 128ull << 20;
constexpr uint64_t kMinSegmentBytes = 64ull << 10;
constexpr uint64_t kMaxSegmentBytes = uint64_t{UINT32_MAX} * kIoAlignment;

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
