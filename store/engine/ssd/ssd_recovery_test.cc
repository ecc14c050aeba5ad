// SsdTier recovery: the scan past segment watermarks (ssd_tier.h) finds
// acknowledged records whose index entries were lost, skips garbage and torn
// records, and keeps one copy of a key found twice.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "core/chunk_format.h"
#include "gtest/gtest.h"
#include "store/engine/ssd/segment_format.h"
#include "store/engine/ssd/ssd_index_testing.h"
#include "store/engine/ssd/ssd_test_objects.h"
#include "store/engine/ssd/ssd_tier.h"

namespace kvd {
namespace {

constexpr uint64_t kMiB = 1ull << 20;

ChunkKey Key(uint32_t i) { return testing_objects::Key(i, 0xa5); }

std::vector<uint8_t> Object(uint32_t i, size_t size) {
  return testing_objects::Object(i, size, 7);
}

// The on-disk record of object i, as the tier writes it.
std::vector<uint8_t> Record(uint32_t i, size_t size,
                            std::string_view codec = "") {
  const std::vector<uint8_t> obj = Object(i, size);
  std::vector<uint8_t> rec(RecordSize(codec.size(), size));
  EXPECT_TRUE(EncodeRecordHeader(Key(i), Key(i + 1000), codec, size,
                                 Checksum64(obj), absl::MakeSpan(rec))
                  .ok());
  std::memcpy(rec.data() + RecordPayloadOffset(codec.size(), size), obj.data(),
              size);
  return rec;
}

class SsdRecoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    options_.dir = ::testing::TempDir() + "/ssd_recovery_" + info->name() +
                   "_" + std::to_string(::getpid());
    std::string cmd = "rm -rf '" + options_.dir + "'";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    options_.capacity_bytes = 64 * kMiB;
    options_.segment_bytes = 1 * kMiB;
    options_.fs = &fault_;
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

  // Closes the tier as a power loss would: its shutdown sync fails, and the
  // index loses every entry the watermarks do not cover. Returns how many.
  uint64_t Crash() {
    fault_.SetActive(false);
    tier_.reset();
    fault_.SetActive(true);
    absl::StatusOr<uint64_t> dropped =
        DropIndexEntriesPastWatermarks(options_.dir);
    EXPECT_TRUE(dropped.ok()) << dropped.status();
    return dropped.value_or(0);
  }

  absl::Status PutOne(uint32_t i, size_t size, std::string_view codec = "") {
    std::vector<uint8_t> obj = Object(i, size);
    SsdWriteItem item{Key(i), Key(i + 1000), codec, obj};
    return tier_->Put(absl::MakeConstSpan(&item, 1));
  }

  void ExpectObject(uint32_t i, size_t size) {
    auto n = tier_->Size(Key(i));
    ASSERT_TRUE(n.ok()) << i << " " << n.status();
    ASSERT_EQ(*n, size) << i;
    std::vector<uint8_t> got(size);
    ASSERT_TRUE(tier_->Read(Key(i), absl::MakeSpan(got)).ok()) << i;
    EXPECT_EQ(got, Object(i, size)) << i;
  }

  std::string SegmentPath(uint32_t id) const {
    return options_.dir + "/" + SegmentFileName(id);
  }

  // Writes a segment file by hand (no index entry, no watermark).
  void WriteSegment(uint32_t id, const std::vector<uint8_t>& bytes) {
    ASSERT_TRUE(FileSystem::Default()->CreateDir(options_.dir).ok());
    auto f = FileSystem::Default()->Open(SegmentPath(id), {.create = true});
    ASSERT_TRUE(f.ok()) << f.status();
    ASSERT_TRUE((*f)->WriteAt(0, bytes).ok());
    ASSERT_TRUE((*f)->Sync().ok());
  }

  uint64_t FileSize(const std::string& path) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return UINT64_MAX;
    return static_cast<uint64_t>(st.st_size);
  }

  FaultInjectionFileSystem fault_{FileSystem::Default()};  // outlives tier_
  SsdTierOptions options_;
  std::unique_ptr<SsdTier> tier_;
};

void Append(std::vector<uint8_t>* seg, const std::vector<uint8_t>& bytes) {
  seg->insert(seg->end(), bytes.begin(), bytes.end());
}

TEST_F(SsdRecoveryTest, AcknowledgedPutsSurviveLostIndexWrites) {
  Open();
  // ~3 segments: the sealed ones get watermarks, the active one does not.
  std::vector<size_t> sizes;
  for (uint32_t i = 0; i < 30; ++i) sizes.push_back(1000 + i * 4321);
  for (uint32_t i = 0; i < sizes.size(); ++i)
    ASSERT_TRUE(PutOne(i, sizes[i], "q4").ok()) << i;
  const TierUsage before = tier_->Usage();
  EXPECT_GT(Crash(), 0u);
  Open();
  const TierUsage after = tier_->Usage();
  EXPECT_EQ(after.objects, sizes.size());
  EXPECT_EQ(after.stored_bytes, before.stored_bytes);
  EXPECT_LE(after.allocated_bytes, before.allocated_bytes);
  for (uint32_t i = 0; i < sizes.size(); ++i) ExpectObject(i, sizes[i]);
  size_t listed = 0;
  ASSERT_TRUE(tier_
                  ->ForEach([&](const SsdEntryInfo& e) {
                    uint32_t i;
                    std::memcpy(&i, e.key.bytes.data(), sizeof(i));
                    EXPECT_EQ(e.parent, Key(i + 1000));
                    EXPECT_EQ(e.codec, "q4");
                    ++listed;
                  })
                  .ok());
  EXPECT_EQ(listed, sizes.size());
  // The recovered entries were made durable: a second loss takes nothing.
  EXPECT_EQ(Crash(), 0u);
  Open();
  for (uint32_t i = 0; i < sizes.size(); ++i) ExpectObject(i, sizes[i]);
}

TEST_F(SsdRecoveryTest, ConcurrentPutsSurviveLostIndexWrites) {
  Open();
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (uint32_t t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (uint32_t j = 0; j < 40; ++j) {
        if (!PutOne(t * 100 + j, 3000 + 1700 * j).ok()) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(failures.load(), 0);
  Crash();
  Open();
  EXPECT_EQ(tier_->Usage().objects, 160u);
  for (uint32_t t = 0; t < 4; ++t) {
    for (uint32_t j = 0; j < 40; ++j)
      ExpectObject(t * 100 + j, 3000 + 1700 * j);
  }
}

TEST_F(SsdRecoveryTest, ScanSkipsGarbageAndTornRecords) {
  std::vector<uint8_t> seg;
  Append(&seg, Record(1, 3000));  // 1 block
  std::vector<uint8_t> garbage = Object(77, 2 * kIoAlignment);
  Append(&seg, garbage);
  std::vector<uint8_t> bad_header = Record(2, 100);
  bad_header[40] ^= 1;  // key byte: header checksum fails
  Append(&seg, bad_header);
  std::vector<uint8_t> torn = Record(3, 10000);  // 3 blocks
  std::fill(torn.begin() + kIoAlignment, torn.end(), 0xEE);
  Append(&seg, torn);
  Append(&seg, Record(4, 100000));  // an aligned payload
  Append(&seg, std::vector<uint8_t>(2 * kIoAlignment, 0));
  Append(&seg, Record(5, 5000));
  const uint64_t end_of_5 = seg.size();
  std::vector<uint8_t> cut = Record(6, 20000);
  cut.resize(2 * kIoAlignment);  // runs past the end of the file
  Append(&seg, cut);
  WriteSegment(7, seg);

  Open();
  EXPECT_EQ(tier_->Usage().objects, 3u);
  ExpectObject(1, 3000);
  ExpectObject(4, 100000);
  ExpectObject(5, 5000);
  for (uint32_t i : {2u, 3u, 6u}) EXPECT_FALSE(tier_->Contains(Key(i))) << i;
  EXPECT_EQ(FileSize(SegmentPath(7)), end_of_5);  // the cut tail is gone
  EXPECT_EQ(tier_->Usage().allocated_bytes, end_of_5);
  // Durable: found again after another loss of unsynced index writes.
  Crash();
  Open();
  EXPECT_EQ(tier_->Usage().objects, 3u);
  ExpectObject(4, 100000);
}

TEST_F(SsdRecoveryTest, DuplicateKeyKeepsOneCopy) {
  // Key 1 in two scanned segments; the first one found (lower id) wins.
  std::vector<uint8_t> a = Record(1, 6000);
  Append(&a, Record(2, 100));
  std::vector<uint8_t> b = Record(1, 6000);
  Append(&b, Record(3, 100));
  WriteSegment(3, a);
  WriteSegment(4, b);
  Open();
  TierUsage u = tier_->Usage();
  EXPECT_EQ(u.objects, 3u);
  EXPECT_EQ(u.stored_bytes, 6000u + 100 + 100);
  EXPECT_EQ(u.allocated_bytes, a.size() + b.size());  // b's copy is dead
  ExpectObject(1, 6000);
  // Removing the live copies of segment 3 frees it; segment 4 stays with
  // key 3 and the dead copy of key 1.
  ASSERT_TRUE(tier_->Remove(Key(1)).ok());
  ASSERT_TRUE(tier_->Remove(Key(2)).ok());
  u = tier_->Usage();
  EXPECT_EQ(u.objects, 1u);
  EXPECT_EQ(FileSize(SegmentPath(3)), UINT64_MAX);
  EXPECT_EQ(u.allocated_bytes, b.size());
  ASSERT_TRUE(tier_->Sync().ok());
  // Segment 4 is below its watermark now: key 1 does not come back.
  Crash();
  Open();
  EXPECT_FALSE(tier_->Contains(Key(1)));
  ExpectObject(3, 100);
}

TEST_F(SsdRecoveryTest, IndexedCopyWinsOverScannedDuplicate) {
  Open();
  ASSERT_TRUE(PutOne(1, 6000).ok());
  tier_.reset();  // clean: the watermarks cover everything
  WriteSegment(99, Record(1, 6000));
  Open();
  EXPECT_EQ(tier_->Usage().objects, 1u);
  ExpectObject(1, 6000);
  EXPECT_EQ(FileSize(SegmentPath(99)), UINT64_MAX);  // nothing live: deleted
}

TEST_F(SsdRecoveryTest, RemovalPastWatermarkMayComeBack) {
  Open();
  for (uint32_t i = 1; i <= 3; ++i) ASSERT_TRUE(PutOne(i, 2000).ok());
  ASSERT_TRUE(tier_->Remove(Key(2)).ok());
  ASSERT_TRUE(tier_->Sync().ok());  // watermark past 1..3, removal durable
  ASSERT_TRUE(PutOne(4, 2000).ok());
  ASSERT_TRUE(tier_->Remove(Key(4)).ok());  // past the watermark
  Crash();
  Open();
  ExpectObject(1, 2000);
  EXPECT_FALSE(tier_->Contains(Key(2)));
  ExpectObject(3, 2000);
  ExpectObject(4, 2000);  // back, intact (ssd_tier.h)
}

TEST_F(SsdRecoveryTest, GarbageCollectionMovesSurviveLostIndexWrites) {
  options_.gc_live_ratio = 0.5;
  Open();
  for (uint32_t i = 0; i < 40; ++i) ASSERT_TRUE(PutOne(i, 100 * 1024).ok());
  for (uint32_t i = 0; i < 40; ++i) {
    if (i % 4 != 0) {
      ASSERT_TRUE(tier_->Remove(Key(i)).ok());
    }
  }
  ASSERT_TRUE(tier_->CollectGarbage().ok());
  const TierUsage after_gc = tier_->Usage();
  Crash();
  Open();
  EXPECT_EQ(tier_->Usage().objects, 10u);
  EXPECT_EQ(tier_->Usage().stored_bytes, after_gc.stored_bytes);
  for (uint32_t i = 0; i < 40; i += 4) ExpectObject(i, 100 * 1024);
}

TEST_F(SsdRecoveryTest, CleanShutdownLeavesNothingToScan) {
  Open();
  for (uint32_t i = 0; i < 5; ++i) ASSERT_TRUE(PutOne(i, 5000).ok());
  tier_.reset();
  absl::StatusOr<uint64_t> dropped =
      DropIndexEntriesPastWatermarks(options_.dir);
  ASSERT_TRUE(dropped.ok()) << dropped.status();
  EXPECT_EQ(*dropped, 0u);
}

}  // namespace
}  // namespace kvd
