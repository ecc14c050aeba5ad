// SsdTier recovery at Open (ssd_tier.h): load the index, scan every segment
// past its watermark for records the index lost, make the result durable,
// then cut what no entry points to.
#include <algorithm>
#include <map>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "store/engine/ssd/segment_format.h"
#include "store/engine/ssd/ssd_index.h"
#include "store/engine/ssd/ssd_tier.h"

namespace kvd {
namespace {

// The scan reads segments in windows of this many bytes; larger records are
// read on their own.
constexpr uint64_t kScanWindowBytes = 4ull << 20;

uint64_t AlignDown(uint64_t n) { return n / kIoAlignment * kIoAlignment; }

std::string RawKey(const ChunkKey& key) {
  return std::string(reinterpret_cast<const char*>(key.bytes.data()),
                     ChunkKey::kSize);
}

}  // namespace

absl::Status SsdTier::ScanSegment(
    uint32_t id, RandomRWFile& file, uint64_t from, uint64_t size,
    absl::FunctionRef<void(const RecordHeader&, const Location&)> found) {
  // Records are whole blocks, so a partial last block holds none.
  const uint64_t scan_end = AlignDown(size);
  AlignedBuffer window = AcquireBuffer(kScanWindowBytes);
  uint64_t win_off = 0, win_len = 0;
  absl::Status status;
  auto emit = [&](const RecordHeader& h, uint64_t at) {
    Location loc;
    loc.segment = id;
    loc.offset_blocks = static_cast<uint32_t>(at / kIoAlignment);
    loc.record_blocks = static_cast<uint32_t>(h.record_len / kIoAlignment);
    loc.payload_len = h.payload_len;
    loc.payload_checksum = h.payload_checksum;
    found(h, loc);
  };
  for (uint64_t at = AlignUp(from); at < scan_end;) {
    if (at < win_off || at + kIoAlignment > win_off + win_len) {
      win_off = at;
      win_len = std::min(kScanWindowBytes, scan_end - at);
      status = file.ReadAt(win_off, window.span(win_len));
      if (!status.ok()) break;
    }
    const absl::Span<const uint8_t> rest = absl::MakeConstSpan(
        window.data() + (at - win_off), win_len - (at - win_off));
    absl::StatusOr<RecordHeader> h =
        DecodeRecordHeader(rest, /*allow_short=*/true);
    if (!h.ok() || h->record_len > scan_end - at) {
      at += kIoAlignment;  // zeros, garbage, or a record cut by the file end
      continue;
    }
    if (h->record_len > rest.size() && h->record_len <= kScanWindowBytes) {
      win_len = 0;  // read the window again from here: the record fits it
      continue;
    }
    bool ok = false;
    if (h->record_len <= rest.size()) {
      absl::StatusOr<RecordView> view = DecodeRecord(rest.first(h->record_len));
      ok = view.ok();
      if (ok) emit(view->header, at);
    } else {
      AlignedBuffer rec = AcquireBuffer(h->record_len);
      const uint64_t record_len = h->record_len;  // h views the window
      status = file.ReadAt(at, rec.span(record_len));
      if (status.ok()) {
        absl::StatusOr<RecordView> view =
            DecodeRecord(absl::MakeConstSpan(rec.data(), record_len));
        ok = view.ok();
        if (ok) emit(view->header, at);
      }
      ReleaseBuffer(std::move(rec));
      if (!status.ok()) break;
    }
    // A torn record (payload or padding does not verify) is skipped block
    // by block: a later record may still be whole.
    at += ok ? h->record_len : kIoAlignment;
  }
  ReleaseBuffer(std::move(window));
  if (!status.ok()) {
    return Annotate(
        status, absl::StrCat("ssd tier recovery: scanning ", SegmentPath(id),
                             " from offset=", from, " to size=", size));
  }
  return absl::OkStatus();
}

absl::Status SsdTier::Recover() {
  struct Found {
    std::shared_ptr<RandomRWFile> file;
    uint64_t size = 0;
    uint64_t watermark = 0;  // persisted; 0 when none (scan it all)
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
  // malformed value) are dropped: they were never durable. So are watermarks
  // of segments that are gone.
  std::vector<std::string> deletes;
  absl::flat_hash_map<ChunkKey, Location> map;
  KVD_RETURN_IF_ERROR(index_->ForEach([&](std::string_view k,
                                          std::string_view v) -> absl::Status {
    if (std::optional<uint32_t> wm_id = ParseWatermarkKey(k)) {
      auto seg = found.find(*wm_id);
      absl::StatusOr<uint64_t> wm = DecodeWatermark(v);
      if (seg == found.end() || !wm.ok()) {
        deletes.emplace_back(k);
      } else {
        seg->second.watermark = *wm;
      }
      return absl::OkStatus();
    }
    absl::StatusOr<SsdIndexEntry> e = DecodeIndexValue(v);
    auto seg = e.ok() ? found.find(e->segment) : found.end();
    if (k.size() != ChunkKey::kSize || seg == found.end() ||
        !IsAligned(e->offset) ||
        e->record_len != RecordSize(e->codec.size(), e->payload_len) ||
        e->record_len / kIoAlignment > UINT32_MAX ||
        e->offset / kIoAlignment > UINT32_MAX ||
        e->offset + e->record_len > seg->second.size) {
      deletes.emplace_back(k);
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
    return absl::OkStatus();
  }));

  // Records past the watermarks whose entries were lost (written unsynced,
  // or dropped above) are indexed again. A key already indexed keeps its
  // entry; this copy is dead.
  std::vector<std::pair<std::string, std::string>> puts;
  for (auto& [seg_id, f] : found) {
    if (f.watermark >= AlignDown(f.size)) continue;
    const uint32_t id = seg_id;  // lambdas cannot capture bindings (clang 14)
    KVD_RETURN_IF_ERROR(
        ScanSegment(id, *f.file, f.watermark, f.size,
                    [&](const RecordHeader& h, const Location& loc) {
                      if (!map.emplace(h.key, loc).second) return;
                      SsdIndexEntry e;
                      e.segment = id;
                      e.offset = loc.offset();
                      e.record_len = loc.record_len();
                      e.payload_len = loc.payload_len;
                      e.payload_checksum = loc.payload_checksum;
                      e.parent = h.parent;
                      e.codec = std::string(h.codec);
                      puts.emplace_back(RawKey(h.key), EncodeIndexValue(e));
                    }));
  }
  uint64_t stored = 0;
  for (const auto& [key, loc] : map) {
    Found& f = found.at(loc.segment);
    f.live += loc.record_len();
    f.max_end = std::max(f.max_end, loc.offset() + loc.record_len());
    stored += loc.payload_len;
  }

  // Durable before any file is cut or deleted: recovered entries, dropped
  // ones, and a watermark at the end of every segment (none takes new
  // records), so the next Open scans none of what was scanned here.
  for (auto& [id, f] : found) {
    if (f.watermark >= f.size) continue;
    f.watermark = f.size;
    puts.emplace_back(WatermarkKey(id), EncodeWatermark(f.size));
  }
  if (!deletes.empty() || !puts.empty())
    KVD_RETURN_IF_ERROR(index_->WriteRaw(deletes, puts, /*sync=*/true));

  // Segments no entry points to go; tails past the last indexed record (a
  // torn, unacknowledged or dead write) are cut off.
  std::vector<std::string> gone;
  std::map<uint32_t, Segment> segments;
  uint64_t allocated = 0, live = 0;
  for (auto& [id, f] : found) {
    if (f.live == 0) {
      f.file.reset();
      KVD_RETURN_IF_ERROR(fs_->Delete(SegmentPath(id)));
      gone.push_back(WatermarkKey(id));
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
    seg.watermark = f.watermark;
    seg.sealed = true;
    allocated += seg.end;
    live += seg.live;
    segments.emplace(id, std::move(seg));
  }
  if (!gone.empty()) {
    KVD_RETURN_IF_ERROR(fs_->SyncDir(options_.dir));
    // A watermark left behind by a crash here is dropped by the next Open.
    KVD_RETURN_IF_ERROR(index_->DeleteRaw(gone, /*sync=*/false));
  }

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

}  // namespace kvd
