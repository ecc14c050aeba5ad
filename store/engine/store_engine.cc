// StoreEngine, part 1: creation and the operations. Part 2 (tiering, pins,
// leases, recovery) is store/engine/internal/engine_tiering.cc.
#include "store/engine/store_engine.h"

#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"
#include "core/check.h"
#include "core/status.h"
#include "store/engine/internal/engine_impl.h"
#include "store/engine/memory/gpu_tier.h"

namespace kvd {
namespace {

absl::Status ValidateOptions(const StoreOptions& o) {
  if (o.host_capacity_bytes == 0) {
    return absl::InvalidArgumentError("host_capacity_bytes=0 must be positive");
  }
  if (!o.ssd_dir.empty() && o.ssd_segment_bytes > o.ssd_capacity_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("ssd_segment_bytes=", o.ssd_segment_bytes,
                     " exceeds ssd_capacity_bytes=", o.ssd_capacity_bytes));
  }
  if (o.lease_ttl <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lease_ttl=", absl::FormatDuration(o.lease_ttl), " must be positive"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<StoreEngine>> StoreEngine::Create(
    const StoreOptions& options) {
  KVD_RETURN_IF_ERROR(ValidateOptions(options));
  KVD_ASSIGN_OR_RETURN(
      std::unique_ptr<HostTier> host,
      HostTier::Create({.capacity_bytes = options.host_capacity_bytes,
                        .huge_pages = options.host_huge_pages}));
  std::unique_ptr<MemoryTier> gpu;
  if (options.gpu_capacity_bytes > 0) {
#if KVD_HAVE_GPU_TIER
    KVD_ASSIGN_OR_RETURN(
        gpu, GpuTier::Create({.capacity_bytes = options.gpu_capacity_bytes,
                              .device = options.gpu_device}));
#else
    return absl::FailedPreconditionError(absl::StrCat(
        "gpu_capacity_bytes=", options.gpu_capacity_bytes,
        " but this build has no CUDA (configure with KVD_WITH_CUDA=ON)"));
#endif
  }
  std::unique_ptr<SsdTier> ssd;
  if (!options.ssd_dir.empty()) {
    SsdTierOptions so;
    so.dir = options.ssd_dir;
    so.capacity_bytes = options.ssd_capacity_bytes;
    so.segment_bytes = options.ssd_segment_bytes;
    so.direct_io = options.ssd_direct_io;
    so.fs = options.fs;
    KVD_ASSIGN_OR_RETURN(ssd, SsdTier::Open(so));
  }
  auto impl = std::make_unique<Impl>(options, std::move(gpu), std::move(host),
                                     std::move(ssd));
  KVD_RETURN_IF_ERROR(impl->Recover());
  return std::unique_ptr<StoreEngine>(new StoreEngine(std::move(impl)));
}

absl::StatusOr<ChunkHeader> StoreEngine::Impl::CheckObject(
    const ChunkKey& key, absl::Span<const uint8_t> object) {
  KVD_ASSIGN_OR_RETURN(ChunkHeader header, DecodeChunkHeader(object));
  if (header.key != key) {
    return absl::InvalidArgumentError(
        absl::StrCat("object header names chunk ", header.key.Hex(),
                     ", the request names ", key.Hex()));
  }
  if (header.ObjectSize() != object.size() || object.size() > kMaxObjectBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "object is ", object.size(), " bytes, its header describes ",
        header.ObjectSize(), " (limit ", kMaxObjectBytes, ")"));
  }
  return header;
}

bool StoreEngine::Impl::DedupLocked(const ChunkKey& key) {
  const Slot slot = FindSettledLocked(key);
  if (slot == kNoSlot) return false;
  counters_.dedup_puts++;
  index_.Touch(slot, NowSeconds());
  return true;
}

absl::Status StoreEngine::Impl::Put(const ChunkKey& key,
                                    absl::Span<const uint8_t> object) {
  KVD_RETURN_IF_ERROR(CheckWritesAllowed());
  KVD_ASSIGN_OR_RETURN(ChunkHeader header, CheckObject(key, object));
  {
    absl::MutexLock lock(&mu_);
    ExpireLeasesLocked();
    if (DedupLocked(key)) return absl::OkStatus();
  }
  const TierKind tier = PutTier();
  KVD_ASSIGN_OR_RETURN(uint64_t handle, AllocateIn(tier, object.size()));
  Slot slot;
  {
    absl::MutexLock lock(&mu_);
    if (DedupLocked(key)) {  // a concurrent Put won
      memory_[TierIndex(tier)]->Free(handle);
      return absl::OkStatus();
    }
    slot = index_.Insert(key, header.parent, tier, handle,
                         static_cast<uint32_t>(object.size()), NowSeconds());
    index_.SetNamespace(slot, header.namespace_fp);
  }
  absl::Status copied;
  if (tier == TierKind::kHost) {
    copied =
        CopyVerifiedObject(header, object.data(), host_->HostAddress(handle));
  } else {
    copied = VerifyLayers(header, object, 0, header.num_layers);
    if (copied.ok()) copied = gpu_->Write(handle, 0, object);
  }
  absl::MutexLock lock(&mu_);
  if (!copied.ok()) {
    DropLocked(slot);
    return copied;
  }
  index_.Publish(slot);
  counters_.puts++;
  counters_.put_bytes += object.size();
  return absl::OkStatus();
}

absl::StatusOr<PutReservation> StoreEngine::Impl::ReservePut(
    const ChunkKey& key, uint64_t size) {
  if (size < kChunkHeaderFixedBytes || size > kMaxObjectBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("object size ", size, " is outside [",
                     kChunkHeaderFixedBytes, ", ", kMaxObjectBytes, "]"));
  }
  KVD_RETURN_IF_ERROR(CheckWritesAllowed());
  {
    absl::MutexLock lock(&mu_);
    ExpireLeasesLocked();
    if (DedupLocked(key)) {
      return absl::AlreadyExistsError(
          absl::StrCat("chunk ", key.Hex(), " is already stored"));
    }
  }
  KVD_ASSIGN_OR_RETURN(uint64_t handle, AllocateIn(TierKind::kHost, size));
  return PutReservation{key, absl::MakeSpan(host_->HostAddress(handle), size),
                        handle};
}

absl::Status StoreEngine::Impl::CommitPut(const PutReservation& r) {
  absl::StatusOr<ChunkHeader> header = CheckObject(r.key, r.dst);
  absl::Status verified =
      header.ok() ? VerifyLayers(*header, r.dst, 0, header->num_layers)
                  : header.status();
  // A reservation made before a drain began is not committed: the drain
  // counted the chunks to make durable when it started.
  if (verified.ok()) verified = CheckWritesAllowed();
  absl::MutexLock lock(&mu_);
  if (!verified.ok() || DedupLocked(r.key)) {
    host_->Free(r.handle);
    return verified;
  }
  const Slot slot =
      index_.Insert(r.key, header->parent, TierKind::kHost, r.handle,
                    static_cast<uint32_t>(r.dst.size()), NowSeconds());
  index_.SetNamespace(slot, header->namespace_fp);
  index_.Publish(slot);
  counters_.puts++;
  counters_.put_bytes += r.dst.size();
  return absl::OkStatus();
}

absl::StatusOr<PinnedChunk> StoreEngine::Impl::PinChunk(const ChunkKey& key) {
  absl::StatusOr<Slot> found = PinForRead(key);
  if (!found.ok()) {  // counted like a Get of an absent key
    absl::MutexLock lock(&mu_);
    counters_.gets++;
    if (absl::IsNotFound(found.status())) counters_.get_misses++;
    return found.status();
  }
  Slot slot = *std::move(found);
  absl::StatusOr<PinnedBytes> pinned = ReadPinned(slot);
  absl::StatusOr<ChunkHeader> header =
      pinned.ok() ? VerifyHeaderOf(key, pinned->bytes) : pinned.status();
  absl::MutexLock lock(&mu_);
  counters_.gets++;
  if (!header.ok()) {
    DropIfCorruptLocked(slot, header.status());
    UnpinLocked(slot);
    counters_.get_misses++;
    return header.status();
  }
  counters_.get_hits++;
  counters_.get_bytes += pinned->bytes.size();
  PinnedChunk out{key, *std::move(header), pinned->bytes, slot, nullptr};
  if (!pinned->bounce.empty()) {
    out.bounce =
        std::make_shared<std::vector<uint8_t>>(std::move(pinned->bounce));
    out.bytes = absl::MakeConstSpan(*out.bounce);
  }
  return out;
}

void StoreEngine::Impl::UnpinChunk(const PinnedChunk& chunk) {
  absl::MutexLock lock(&mu_);
  UnpinLocked(chunk.slot);
}

absl::StatusOr<uint64_t> StoreEngine::Impl::CopyOut(Slot slot,
                                                    const GetRequest& request) {
  KVD_ASSIGN_OR_RETURN(PinnedBytes pinned, ReadPinned(slot));
  const absl::Span<const uint8_t> src = pinned.bytes;
  KVD_ASSIGN_OR_RETURN(ChunkHeader header, VerifyHeaderOf(request.key, src));
  if (request.whole_object) {
    if (request.dst.size() < src.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("dst has ", request.dst.size(),
                       " bytes, chunk object needs ", src.size()));
    }
    std::memcpy(request.dst.data(), src.data(), src.size());
    return src.size();
  }
  KVD_ASSIGN_OR_RETURN(std::vector<ByteRange> ranges,
                       SelectByteRanges(header, request.selection));
  uint64_t total = 0;
  for (const ByteRange& r : ranges) total += r.length;
  if (request.dst.size() < total) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dst has ", request.dst.size(), " bytes, the selection needs ", total));
  }
  uint8_t* out = request.dst.data();
  for (const ByteRange& r : ranges) {
    std::memcpy(out, src.data() + r.offset, r.length);
    out += r.length;
  }
  return total;
}

absl::StatusOr<ChunkHeader> StoreEngine::Impl::VerifyHeaderOf(
    const ChunkKey& key, absl::Span<const uint8_t> object) {
  absl::StatusOr<ChunkHeader> header = DecodeChunkHeader(object);
  if (!header.ok()) {
    return absl::DataLossError(absl::StrCat("stored chunk ", key.Hex(), ": ",
                                            header.status().message()));
  }
  if (header->key != key || header->ObjectSize() != object.size()) {
    return absl::DataLossError(absl::StrCat(
        "stored chunk ", key.Hex(), ": header names ", header->key.Hex(),
        " and ", header->ObjectSize(), " bytes, the index ", object.size()));
  }
  return header;
}

absl::StatusOr<uint64_t> StoreEngine::Impl::Get(const GetRequest& request) {
  absl::StatusOr<Slot> slot = PinForRead(request.key);
  absl::StatusOr<uint64_t> copied =
      slot.ok() ? CopyOut(*slot, request)
                : absl::StatusOr<uint64_t>(slot.status());
  absl::MutexLock lock(&mu_);
  counters_.gets++;
  if (slot.ok()) {
    if (!copied.ok()) DropIfCorruptLocked(*slot, copied.status());
    UnpinLocked(*slot);
  }
  if (copied.ok()) {
    counters_.get_hits++;
    counters_.get_bytes += *copied;
  } else if (absl::IsNotFound(copied.status()) ||
             absl::IsDataLoss(copied.status())) {
    counters_.get_misses++;
  }
  return copied;
}

absl::StatusOr<uint64_t> StoreEngine::Impl::SelectedSize(
    const ChunkKey& key, bool whole, const ChunkSelection& selection) {
  KVD_ASSIGN_OR_RETURN(ChunkInfo info, Inspect(key));
  if (whole) return info.object_bytes;
  KVD_ASSIGN_OR_RETURN(std::vector<ByteRange> ranges,
                       SelectByteRanges(info.header, selection));
  uint64_t total = 0;
  for (const ByteRange& r : ranges) total += r.length;
  return total;
}

size_t StoreEngine::Impl::Lookup(absl::Span<const ChunkKey> keys) {
  absl::MutexLock lock(&mu_);
  size_t n = 0;
  for (; n < keys.size(); ++n) {
    const Slot slot = index_.Find(keys[n]);
    if (slot == kNoSlot || index_.at(slot).state == EntryState::kWriting) break;
  }
  counters_.lookups++;
  counters_.lookup_keys += keys.size();
  counters_.lookup_hits += n;
  return n;
}

absl::Status StoreEngine::Impl::Remove(const ChunkKey& key) {
  absl::MutexLock lock(&mu_);
  const Slot slot = FindSettledLocked(key);
  if (slot == kNoSlot) return ChunkNotFound(key);
  counters_.removes++;
  DropLocked(slot);
  return absl::OkStatus();
}

absl::StatusOr<LeaseId> StoreEngine::Impl::AcquireLease(
    absl::Span<const ChunkKey> keys) {
  std::vector<Slot> slots;
  slots.reserve(keys.size());
  for (const ChunkKey& key : keys) {
    absl::StatusOr<Slot> slot = PinForRead(key);
    if (!slot.ok()) {
      absl::MutexLock lock(&mu_);
      for (Slot s : slots) UnpinLocked(s);
      return slot.status();
    }
    slots.push_back(*slot);
  }
  absl::MutexLock lock(&mu_);
  return leases_.Add(std::move(slots), clock_->Now() + options_.lease_ttl);
}

absl::StatusOr<uint64_t> StoreEngine::Impl::ReadLeased(
    LeaseId lease_id, const GetRequest& request) {
  Slot slot = kNoSlot;
  {
    absl::MutexLock lock(&mu_);
    ExpireLeasesLocked();
    const Lease* lease = leases_.Find(lease_id, clock_->Now());
    if (lease == nullptr) {
      return absl::AbortedError(
          absl::StrCat("lease ", lease_id, " expired or was released"));
    }
    for (Slot s : lease->slots) {
      if (index_.at(s).key == request.key) slot = s;
    }
    if (slot == kNoSlot) {
      return absl::InvalidArgumentError(absl::StrCat(
          "chunk ", request.key.Hex(), " is not part of lease ", lease_id));
    }
    index_.Pin(
        slot);  // this read's own pin: the copy stays safe if the lease expires
  }
  absl::StatusOr<uint64_t> copied = CopyOut(slot, request);
  absl::MutexLock lock(&mu_);
  UnpinLocked(slot);
  return copied;
}

void StoreEngine::Impl::ReleaseLease(LeaseId lease_id) {
  absl::MutexLock lock(&mu_);
  if (std::optional<Lease> lease = leases_.Take(lease_id)) {
    for (Slot slot : lease->slots) UnpinLocked(slot);
  }
}

absl::StatusOr<ChunkInfo> StoreEngine::Impl::Inspect(const ChunkKey& key) {
  ChunkInfo info;
  Slot slot;
  {
    absl::MutexLock lock(&mu_);
    slot = FindSettledLocked(key);
    if (slot == kNoSlot) return ChunkNotFound(key);
    const IndexEntry& e = index_.at(slot);
    info.tier = e.tier;
    info.on_ssd = e.tier == TierKind::kSsd || e.ssd_copy;
    info.object_bytes = e.object_bytes;
    info.pins = e.pins;
    info.children = index_.ChildCount(slot);
    info.last_access = start_ + absl::Seconds(e.last_access_s);
    index_.Pin(slot);
  }
  // An SSD chunk is read into a scratch buffer: inspecting must not promote.
  absl::StatusOr<ChunkHeader> header;
  std::vector<uint8_t> scratch;
  if (info.tier == TierKind::kSsd) {
    scratch.resize(info.object_bytes);
    absl::Status read = ssd_->Read(key, absl::MakeSpan(scratch));
    header = read.ok() ? VerifyHeaderOf(key, scratch)
                       : absl::StatusOr<ChunkHeader>(read);
  } else {
    absl::StatusOr<PinnedBytes> pinned = ReadPinned(slot);
    header = pinned.ok() ? VerifyHeaderOf(key, pinned->bytes) : pinned.status();
  }
  absl::MutexLock lock(&mu_);
  if (!header.ok()) DropIfCorruptLocked(slot, header.status());
  if (header.ok() && index_.at(slot).state != EntryState::kZombie) {
    index_.SetNamespace(slot, header->namespace_fp);
  }
  UnpinLocked(slot);
  KVD_RETURN_IF_ERROR(header.status());
  info.header = *std::move(header);
  return info;
}

StoreStats StoreEngine::Impl::Stats() {
  StoreStats st;
  st.tier_enabled[TierIndex(TierKind::kHost)] = true;
  st.tier_enabled[TierIndex(TierKind::kGpu)] = gpu_ != nullptr;
  st.tier_enabled[TierIndex(TierKind::kSsd)] = ssd_ != nullptr;
  st.tiers[TierIndex(TierKind::kHost)] = host_->Usage();
  if (gpu_) st.tiers[TierIndex(TierKind::kGpu)] = gpu_->Usage();
  if (ssd_) st.tiers[TierIndex(TierKind::kSsd)] = ssd_->Usage();
  st.host_huge_pages = host_->huge_pages_mode() != HugePagesMode::kNone;
  absl::MutexLock lock(&mu_);
  ExpireLeasesLocked();
  const Counters& c = counters_;
  st.chunks = index_.size();
  st.puts = c.puts;
  st.put_bytes = c.put_bytes;
  st.dedup_puts = c.dedup_puts;
  st.gets = c.gets;
  st.get_bytes = c.get_bytes;
  st.get_hits = c.get_hits;
  st.get_misses = c.get_misses;
  st.lookups = c.lookups;
  st.lookup_keys = c.lookup_keys;
  st.lookup_hits = c.lookup_hits;
  st.removes = c.removes;
  for (int t = 0; t < kNumTiers; ++t) st.demotions[t] = c.demotions[t];
  st.promotions = c.promotions;
  st.evictions = c.evictions;
  st.corrupt_chunks = c.corrupt;
  st.lease_expiries = c.lease_expiries;
  st.active_leases = leases_.size();
  st.index_meta_bytes = index_.MetadataBytes();
  return st;
}

// The public face: batching over the single-chunk operations.

StoreEngine::StoreEngine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StoreEngine::~StoreEngine() = default;

std::vector<absl::Status> StoreEngine::Put(
    absl::Span<const ChunkKey> keys,
    absl::Span<const absl::Span<const uint8_t>> objects) {
  std::vector<absl::Status> out;
  out.reserve(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    out.push_back(i < objects.size()
                      ? impl_->Put(keys[i], objects[i])
                      : absl::InvalidArgumentError(absl::StrCat(
                            "keys has ", keys.size(), " entries, objects ",
                            objects.size())));
  }
  return out;
}

std::vector<absl::StatusOr<uint64_t>> StoreEngine::Get(
    absl::Span<const GetRequest> requests) {
  std::vector<absl::StatusOr<uint64_t>> out;
  out.reserve(requests.size());
  for (const GetRequest& r : requests) out.push_back(impl_->Get(r));
  return out;
}

absl::StatusOr<uint64_t> StoreEngine::SelectedSize(
    const ChunkKey& key, bool whole_object, const ChunkSelection& selection) {
  return impl_->SelectedSize(key, whole_object, selection);
}

absl::StatusOr<std::vector<uint8_t>> StoreEngine::GetObject(
    const ChunkKey& key) {
  for (;;) {
    KVD_ASSIGN_OR_RETURN(uint64_t size, impl_->SelectedSize(key, true, {}));
    std::vector<uint8_t> object(size);
    absl::StatusOr<uint64_t> got =
        impl_->Get({.key = key, .dst = absl::MakeSpan(object)});
    if (got.ok()) return object;
    // Objects are immutable, so a size change means it was replaced: retry.
    if (!absl::IsInvalidArgument(got.status())) return got.status();
  }
}

size_t StoreEngine::Lookup(absl::Span<const ChunkKey> keys) {
  return impl_->Lookup(keys);
}

std::vector<absl::Status> StoreEngine::Remove(absl::Span<const ChunkKey> keys) {
  std::vector<absl::Status> out;
  out.reserve(keys.size());
  for (const ChunkKey& key : keys) out.push_back(impl_->Remove(key));
  return out;
}

absl::StatusOr<LeaseId> StoreEngine::AcquireLease(
    absl::Span<const ChunkKey> keys) {
  return impl_->AcquireLease(keys);
}

absl::StatusOr<uint64_t> StoreEngine::ReadLeased(LeaseId lease,
                                                 const GetRequest& request) {
  return impl_->ReadLeased(lease, request);
}

void StoreEngine::ReleaseLease(LeaseId lease) { impl_->ReleaseLease(lease); }

absl::StatusOr<ChunkInfo> StoreEngine::Inspect(const ChunkKey& key) {
  return impl_->Inspect(key);
}

StoreStats StoreEngine::Stats() { return impl_->Stats(); }

absl::StatusOr<PutReservation> StoreEngine::ReservePut(const ChunkKey& key,
                                                       uint64_t size) {
  return impl_->ReservePut(key, size);
}

absl::Status StoreEngine::CommitPut(PutReservation reservation) {
  return impl_->CommitPut(reservation);
}

void StoreEngine::AbortPut(PutReservation reservation) {
  impl_->AbortPut(reservation);
}

absl::StatusOr<PinnedChunk> StoreEngine::PinChunk(const ChunkKey& key) {
  return impl_->PinChunk(key);
}

void StoreEngine::UnpinChunk(const PinnedChunk& chunk) {
  impl_->UnpinChunk(chunk);
}

absl::Span<uint8_t> StoreEngine::HostPool() { return impl_->HostPool(); }

absl::Status StoreEngine::Sync() { return impl_->Sync(); }

}  // namespace kvd
