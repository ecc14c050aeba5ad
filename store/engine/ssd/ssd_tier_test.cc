#include "store/engine/ssd/ssd_tier.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "core/chunk_format.h"
#include "gtest/gtest.h"
#include "store/engine/ssd/segment_format.h"
#include "store/engine/ssd/ssd_test_objects.h"

namespace kvd {
namespace {

constexpr uint64_t kMiB = 1ull << 20;

ChunkKey Key(uint32_t i) { return testing_objects::Key(i, 0x5a); }

std::vector<uint8_t> Object(uint32_t i, size_t size) {
  return testing_objects::Object(i, size, 1);
}

class SsdTierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    options_.dir = ::testing::TempDir() + "/ssd_tier_" + info->name() + "_" +
                   std::to_string(::getpid());
    std::string cmd = "rm -rf '" + options_.dir + "'";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    options_.capacity_bytes = 64 * kMiB;
    options_.segment_bytes = 1 * kMiB;
  }
  void TearDown() override {
    tier_.reset();
    std::string cmd = "rm -rf '" + options_.dir + "'";
    std::system(cmd.c_str());
  }

  void Open() {
    tier_.reset();
    auto t = SsdTier::Open(options_);
    ASSERT_TRUE(t.ok()) << t.status();
    tier_ = std::move(*t);
  }

  absl::Status PutOne(uint32_t i, size_t size,
                      ChunkKey parent = ChunkKey::Zero(),
                      std::string_view codec = "") {
    std::vector<uint8_t> obj = Object(i, size);
    SsdWriteItem item{Key(i), parent, codec, obj};
    return tier_->Put(absl::MakeConstSpan(&item, 1));
  }

  void ExpectObject(uint32_t i, size_t size) {
    auto n = tier_->Size(Key(i));
    ASSERT_TRUE(n.ok()) << i << " " << n.status();
    ASSERT_EQ(*n, size);
    std::vector<uint8_t> got(size);
    ASSERT_TRUE(tier_->Read(Key(i), absl::MakeSpan(got)).ok()) << i;
    EXPECT_EQ(got, Object(i, size)) << i;
  }

  // Paths of the segment files, oldest first.
  std::vector<std::string> SegmentFiles() {
    std::vector<std::string> out;
    absl::StatusOr<std::vector<std::string>> names =
        FileSystem::Default()->List(options_.dir);
    EXPECT_TRUE(names.ok());
    for (const std::string& name : *names) {
      if (ParseSegmentFileName(name)) out.push_back(options_.dir + "/" + name);
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  SsdTierOptions options_;
  std::unique_ptr<SsdTier> tier_;
};

TEST_F(SsdTierTest, RoundTripSizesAndDedup) {
  Open();
  std::vector<size_t> sizes = {0, 1, 4000, 4096, 4097, 100000, 900000};
  for (uint32_t i = 0; i < sizes.size(); ++i)
    ASSERT_TRUE(PutOne(i, sizes[i]).ok()) << i;
  for (uint32_t i = 0; i < sizes.size(); ++i) ExpectObject(i, sizes[i]);
  const TierUsage before = tier_->Usage();
  EXPECT_EQ(before.objects, sizes.size());
  ASSERT_TRUE(PutOne(3, 4096).ok());  // existing key: no-op
  EXPECT_EQ(tier_->Usage().allocated_bytes, before.allocated_bytes);
  EXPECT_TRUE(absl::IsNotFound(tier_->Size(Key(99)).status()));
  EXPECT_FALSE(tier_->Contains(Key(99)));
  std::vector<uint8_t> wrong(10);
  EXPECT_TRUE(
      absl::IsInvalidArgument(tier_->Read(Key(2), absl::MakeSpan(wrong))));
  EXPECT_TRUE(absl::IsNotFound(tier_->Read(Key(99), absl::MakeSpan(wrong))));
  EXPECT_LE(tier_->IndexMemoryBytes() / std::max<uint64_t>(1, before.objects),
            256u);
}

TEST_F(SsdTierTest, BatchWithDuplicates) {
  Open();
  std::vector<std::vector<uint8_t>> objs;
  std::vector<SsdWriteItem> items;
  for (uint32_t i = 0; i < 50; ++i) objs.push_back(Object(i % 40, 3000 + i));
  for (uint32_t i = 0; i < 50; ++i) {
    items.push_back(SsdWriteItem{Key(i % 40), Key(1000), "zstd", objs[i]});
  }
  ASSERT_TRUE(tier_->Put(items).ok());
  EXPECT_EQ(tier_->Usage().objects, 40u);
  for (uint32_t i = 0; i < 40; ++i) ExpectObject(i, 3000 + i);
}

TEST_F(SsdTierTest, RecoveryAfterReopenAndForEach) {
  Open();
  for (uint32_t i = 0; i < 30; ++i)
    ASSERT_TRUE(PutOne(i, 50000 + i, Key(i + 500), "q4").ok());
  ASSERT_TRUE(tier_->Remove(Key(7)).ok());
  EXPECT_TRUE(absl::IsNotFound(tier_->Remove(Key(7))));
  ASSERT_TRUE(tier_->Sync().ok());
  const TierUsage before = tier_->Usage();
  Open();
  const TierUsage after = tier_->Usage();
  EXPECT_EQ(after.objects, 29u);
  EXPECT_EQ(after.stored_bytes, before.stored_bytes);
  for (uint32_t i = 0; i < 30; ++i) {
    if (i == 7) {
      EXPECT_FALSE(tier_->Contains(Key(i)));
    } else {
      ExpectObject(i, 50000 + i);
    }
  }
  int n = 0;
  ASSERT_TRUE(tier_
                  ->ForEach([&](const SsdEntryInfo& e) {
                    uint32_t i;
                    std::memcpy(&i, e.key.bytes.data(), 4);
                    EXPECT_EQ(e.parent, Key(i + 500));
                    EXPECT_EQ(e.size, 50000u + i);
                    EXPECT_EQ(e.codec, "q4");
                    ++n;
                  })
                  .ok());
  EXPECT_EQ(n, 29);
  // New writes after recovery go on working.
  ASSERT_TRUE(PutOne(100, 12345).ok());
  Open();
  ExpectObject(100, 12345);
}

TEST_F(SsdTierTest, CorruptRecordIsDataLossThenNotFound) {
  Open();
  ASSERT_TRUE(PutOne(1, 20000).ok());
  ASSERT_TRUE(PutOne(2, 20000).ok());
  tier_.reset();
  // Flip one payload byte of the first record on disk.
  const std::string seg = SegmentFiles().front();
  auto f = FileSystem::Default()->Open(seg, {});
  ASSERT_TRUE(f.ok());
  uint8_t b;
  ASSERT_TRUE((*f)->ReadAt(5000, absl::MakeSpan(&b, 1)).ok());
  b ^= 0x10;
  ASSERT_TRUE((*f)->WriteAt(5000, absl::MakeConstSpan(&b, 1)).ok());
  f->reset();
  Open();
  std::vector<uint8_t> dst(20000);
  absl::Status s = tier_->Read(Key(1), absl::MakeSpan(dst));
  EXPECT_TRUE(absl::IsDataLoss(s)) << s;
  EXPECT_TRUE(absl::IsNotFound(tier_->Read(Key(1), absl::MakeSpan(dst))));
  ExpectObject(2, 20000);
  Open();  // stays gone after a restart
  EXPECT_FALSE(tier_->Contains(Key(1)));
  ExpectObject(2, 20000);
}

TEST_F(SsdTierTest, WrongVersionOnDiskIsDataLoss) {
  Open();
  ASSERT_TRUE(PutOne(1, 1000).ok());
  tier_.reset();
  const std::string seg = SegmentFiles().front();
  auto f = FileSystem::Default()->Open(seg, {});
  std::vector<uint8_t> rec(4096);
  ASSERT_TRUE((*f)->ReadAt(0, absl::MakeSpan(rec)).ok());
  rec[4] = 2;  // version 2, header checksum re-sealed
  const uint64_t sum =
      Checksum64(absl::MakeConstSpan(rec.data(), kRecordFixedBytes));
  std::memcpy(rec.data() + kRecordFixedBytes, &sum, 8);
  ASSERT_TRUE((*f)->WriteAt(0, rec).ok());
  f->reset();
  Open();
  std::vector<uint8_t> dst(1000);
  absl::Status s = tier_->Read(Key(1), absl::MakeSpan(dst));
  EXPECT_TRUE(absl::IsDataLoss(s)) << s;
  EXPECT_NE(s.message().find("version=2"), std::string::npos) << s;
  EXPECT_FALSE(tier_->Contains(Key(1)));
}

TEST_F(SsdTierTest, TruncatedSegmentDropsLostEntries) {
  Open();
  for (uint32_t i = 0; i < 4; ++i)
    ASSERT_TRUE(PutOne(i, 10000).ok());  // 3 blocks each
  tier_.reset();
  const std::string seg = SegmentFiles().front();
  ASSERT_EQ(::truncate(seg.c_str(), 2 * 12288 + 4096),
            0);  // cuts record 2, drops 3
  Open();
  ExpectObject(0, 10000);
  ExpectObject(1, 10000);
  EXPECT_FALSE(tier_->Contains(Key(3)));  // past the end: dropped at recovery
  std::vector<uint8_t> dst(10000);
  EXPECT_FALSE(tier_->Contains(Key(2)));  // record runs past the end as well
  EXPECT_EQ(tier_->Usage().objects, 2u);
}

TEST_F(SsdTierTest, UnindexedTailIsTruncatedAndOrphansDeleted) {
  Open();
  ASSERT_TRUE(PutOne(1, 10000).ok());
  tier_.reset();
  std::vector<std::string> segs = SegmentFiles();
  ASSERT_EQ(::truncate(segs.front().c_str(), 1 << 20), 0);  // garbage tail
  const std::string orphan = options_.dir + "/" + SegmentFileName(999);
  ASSERT_TRUE(FileSystem::Default()->Open(orphan, {.create = true}).ok());
  Open();
  ExpectObject(1, 10000);
  for (const std::string& s : SegmentFiles()) {
    EXPECT_NE(s, orphan);
  }
  struct stat st;
  ASSERT_EQ(::stat(segs.front().c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 12288);
}

TEST_F(SsdTierTest, GarbageCollectionRelocatesLiveRecords) {
  options_.gc_live_ratio = 0.5;
  Open();
  // 40 objects of 100 KiB + header: ~9 per 1 MiB segment.
  for (uint32_t i = 0; i < 40; ++i) ASSERT_TRUE(PutOne(i, 100 * 1024).ok());
  for (uint32_t i = 0; i < 40; ++i) {
    if (i % 4 != 0) {
      ASSERT_TRUE(tier_->Remove(Key(i)).ok());
    }
  }
  const TierUsage before = tier_->Usage();
  ASSERT_TRUE(tier_->CollectGarbage().ok());
  const TierUsage after = tier_->Usage();
  EXPECT_LT(after.allocated_bytes, before.allocated_bytes / 2);
  EXPECT_EQ(after.objects, 10u);
  EXPECT_EQ(after.stored_bytes, before.stored_bytes);
  for (uint32_t i = 0; i < 40; i += 4) ExpectObject(i, 100 * 1024);
  Open();
  for (uint32_t i = 0; i < 40; i += 4) ExpectObject(i, 100 * 1024);
  EXPECT_EQ(tier_->Usage().allocated_bytes, after.allocated_bytes);
}

TEST_F(SsdTierTest, CapacityExhaustionAndGcOnPut) {
  options_.capacity_bytes = 4 * kMiB;
  Open();
  uint32_t stored = 0;
  absl::Status s;
  for (; stored < 100; ++stored) {
    s = PutOne(stored, 200 * 1024);
    if (!s.ok()) break;
  }
  EXPECT_TRUE(absl::IsResourceExhausted(s)) << s;
  EXPECT_NE(s.message().find("capacity_bytes=4194304"), std::string::npos) << s;
  EXPECT_GE(stored, 15u);
  EXPECT_LE(tier_->Usage().allocated_bytes, options_.capacity_bytes);
  // Removing makes room again: Put collects garbage by itself.
  for (uint32_t i = 0; i < stored; i += 2)
    ASSERT_TRUE(tier_->Remove(Key(i)).ok());
  for (uint32_t i = 1000; i < 1005; ++i)
    ASSERT_TRUE(PutOne(i, 200 * 1024).ok()) << i;
  for (uint32_t i = 1; i < stored; i += 2) ExpectObject(i, 200 * 1024);
  EXPECT_LE(tier_->Usage().allocated_bytes, options_.capacity_bytes);
}

TEST_F(SsdTierTest, OversizedObjectNamesBothSizes) {
  Open();
  absl::Status s = PutOne(1, 2 * kMiB);
  EXPECT_TRUE(absl::IsResourceExhausted(s)) << s;
  EXPECT_NE(s.message().find("segment_bytes=1048576"), std::string::npos) << s;
  EXPECT_NE(s.message().find("object size=2097152"), std::string::npos) << s;
}

TEST_F(SsdTierTest, BadOptions) {
  SsdTierOptions o = options_;
  o.segment_bytes = 5000;
  EXPECT_TRUE(absl::IsInvalidArgument(SsdTier::Open(o).status()));
  o = options_;
  o.capacity_bytes = 0;
  EXPECT_TRUE(absl::IsInvalidArgument(SsdTier::Open(o).status()));
  o = options_;
  o.gc_live_ratio = 1.5;
  EXPECT_TRUE(absl::IsInvalidArgument(SsdTier::Open(o).status()));
  o = options_;
  o.dir = "";
  EXPECT_TRUE(absl::IsInvalidArgument(SsdTier::Open(o).status()));
}

TEST_F(SsdTierTest, BufferedFallback) {
  auto fs = NewPosixFileSystem(
      PosixFileSystemOptions{.simulate_direct_io_refused = true});
  options_.fs = fs.get();
  Open();
  EXPECT_FALSE(tier_->direct_io_active());
  for (uint32_t i = 0; i < 10; ++i) ASSERT_TRUE(PutOne(i, 7777 * (i + 1)).ok());
  Open();
  for (uint32_t i = 0; i < 10; ++i) ExpectObject(i, 7777 * (i + 1));
  tier_.reset();
}

TEST_F(SsdTierTest, FailedWriteOrSyncIsNotAcknowledged) {
  FaultInjectionFileSystem fault(FileSystem::Default());
  options_.fs = &fault;
  Open();
  ASSERT_TRUE(PutOne(1, 5000).ok());
  fault.FailNthSync(1);
  EXPECT_FALSE(PutOne(2, 5000).ok());
  EXPECT_FALSE(tier_->Contains(Key(2)));
  fault.FailNthWrite(1);
  EXPECT_FALSE(PutOne(3, 5000).ok());
  EXPECT_FALSE(tier_->Contains(Key(3)));
  fault.TearNthWrite(1, 4096);
  EXPECT_FALSE(PutOne(4, 50000).ok());
  EXPECT_FALSE(tier_->Contains(Key(4)));
  // The tier keeps working on a fresh segment.
  ASSERT_TRUE(PutOne(5, 5000).ok());
  ExpectObject(1, 5000);
  ExpectObject(5, 5000);
  tier_.reset();
  ASSERT_TRUE(fault.DropUnsyncedData().ok());
  Open();
  ExpectObject(1, 5000);
  ExpectObject(5, 5000);
  for (uint32_t i : {2u, 3u, 4u}) EXPECT_FALSE(tier_->Contains(Key(i)));
  EXPECT_EQ(tier_->Usage().objects, 2u);
  tier_.reset();  // before `fault`, which it uses
}

TEST_F(SsdTierTest, ConcurrentPutsReadsRemoves) {
  options_.capacity_bytes = 8 * kMiB;
  Open();
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (uint32_t j = 0; j < 60; ++j) {
        const uint32_t i = t * 1000 + j;
        absl::Status s = PutOne(i, 30000 + j);
        if (absl::IsResourceExhausted(s)) continue;
        if (!s.ok()) ++failures;
        std::vector<uint8_t> got(30000 + j);
        s = tier_->Read(Key(i), absl::MakeSpan(got));
        if (s.ok() && got != Object(i, got.size())) ++failures;
        if (j % 2 == 0) tier_->Remove(Key(i)).IgnoreError();
        if (j % 20 == 0) tier_->CollectGarbage().IgnoreError();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  ASSERT_TRUE(tier_
                  ->ForEach([&](const SsdEntryInfo& e) {
                    std::vector<uint8_t> got(e.size);
                    EXPECT_TRUE(tier_->Read(e.key, absl::MakeSpan(got)).ok());
                  })
                  .ok());
}

}  // namespace
}  // namespace kvd

namespace kvd {
namespace {

// Large payloads are block-aligned in the record: aligned caller buffers move
// without a staging copy, unaligned ones through staging; both verify.
TEST_F(SsdTierTest, AlignedPayloadZeroCopyPaths) {
  options_.segment_bytes = 4 * kMiB;
  Open();
  for (uint64_t size : {64ull << 10, (200ull << 10) + 3, 1ull << 20}) {
    const uint32_t i = static_cast<uint32_t>(size);
    std::vector<uint8_t> want = Object(i, size);
    AlignedBuffer src(size);
    std::memcpy(src.data(), want.data(), size);
    SsdWriteItem item{Key(i), Key(1), "lowrank(r=32)",
                      absl::MakeConstSpan(src.data(), size)};
    ASSERT_TRUE(tier_->Put(absl::MakeConstSpan(&item, 1)).ok());
    AlignedBuffer dst(size + kIoAlignment);
    ASSERT_TRUE(tier_->Read(Key(i), dst.span(size)).ok());
    EXPECT_EQ(std::memcmp(dst.data(), want.data(), size), 0);
    ASSERT_TRUE(tier_->Read(Key(i), absl::MakeSpan(dst.data() + 1, size)).ok());
    EXPECT_EQ(std::memcmp(dst.data() + 1, want.data(), size), 0);
    // Unaligned source, too.
    ASSERT_TRUE(PutOne(i + 1, size).ok());
    ASSERT_TRUE(tier_->Read(Key(i + 1), dst.span(size)).ok());
    EXPECT_EQ(std::memcmp(dst.data(), Object(i + 1, size).data(), size), 0);
  }
  // A flipped byte in the last partial block is caught on the split path.
  tier_.reset();
  const std::string seg = SegmentFiles().back();
  struct stat st;
  ASSERT_EQ(::stat(seg.c_str(), &st), 0);
  Open();
  std::vector<std::string> segs = SegmentFiles();
  auto f = FileSystem::Default()->Open(segs[segs.size() - 2], {});
  ASSERT_TRUE(f.ok());
  // Find the record of the (200 KiB + 3)-byte object by scanning block
  // headers, and flip the last payload byte (in its partial tail block).
  const uint64_t size = (200ull << 10) + 3;
  uint8_t b = 0;
  bool flipped = false;
  for (uint64_t off = 0;
       off + 4096 <= static_cast<uint64_t>(st.st_size) && !flipped;
       off += 4096) {
    std::vector<uint8_t> head(4096);
    ASSERT_TRUE((*f)->ReadAt(off, absl::MakeSpan(head)).ok());
    auto h = DecodeRecordHeader(head, /*allow_short=*/true);
    if (!h.ok() || h->key != Key(static_cast<uint32_t>(size))) continue;
    const uint64_t at = off + h->payload_offset + size - 1;
    ASSERT_TRUE((*f)->ReadAt(at, absl::MakeSpan(&b, 1)).ok());
    b ^= 0xFF;
    ASSERT_TRUE((*f)->WriteAt(at, absl::MakeConstSpan(&b, 1)).ok());
    flipped = true;
  }
  ASSERT_TRUE(flipped);
  AlignedBuffer dst(size);
  absl::Status s =
      tier_->Read(Key(static_cast<uint32_t>(size)), dst.span(size));
  EXPECT_TRUE(absl::IsDataLoss(s)) << s;
  EXPECT_FALSE(tier_->Contains(Key(static_cast<uint32_t>(size))));
}

}  // namespace
}  // namespace kvd
