// In-process power-loss test: an SsdTier on a FaultInjectionFileSystem
// suffers injected write/sync failures and torn writes, then a simulated
// power loss: the tier closes without its shutdown sync, every unsynced byte
// of the segment files is dropped, and the index loses every entry its
// segment watermarks do not cover (DropIndexEntriesPastWatermarks: RocksDB
// is not on the fault-injecting file system, so that loss is simulated
// there). After each one, every acknowledged object must read back
// byte-exact (the recovery scan finds those whose entries were lost), failed
// Puts must have left nothing indexed, and no listed entry may fail to read.
#include <unistd.h>

#include <cstdlib>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "store/engine/ssd/ssd_index_testing.h"
#include "tests/crash/crash_objects.h"

namespace kvd::crash {
namespace {

TEST(SsdPowerLossTest, FaultsAndDroppedUnsyncedDataLoseNothingAcknowledged) {
  std::mt19937 rng(CrashSeed());
  const std::string dir =
      ::testing::TempDir() + "/ssd_power_loss_" + std::to_string(::getpid());
  std::system(("rm -rf '" + dir + "'").c_str());
  FaultInjectionFileSystem fault(FileSystem::Default());
  SsdTierOptions options = CrashTierOptions(dir);
  options.fs = &fault;

  std::set<uint32_t> acked;  // indexes of round 0 objects
  uint32_t next = 0;
  size_t failed_puts = 0;
  uint64_t lost_entries = 0;  // index entries the simulated losses took
  for (int round = 0; round < 25; ++round) {
    auto tier = SsdTier::Open(options);
    ASSERT_TRUE(tier.ok()) << tier.status();
    switch (rng() % 3) {
      case 0:
        fault.FailNthWrite(1 + rng() % 40);
        break;
      case 1:
        fault.TearNthWrite(1 + rng() % 40, rng() % 8192);
        break;
      default:
        fault.FailNthSync(1 + rng() % 40);
        break;
    }
    const int ops = 20 + static_cast<int>(rng() % 60);
    for (int op = 0; op < ops; ++op) {
      const uint32_t n = rng() % 4 == 0 ? 1 + rng() % 6 : 1;
      std::vector<CrashObject> objects;
      std::vector<SsdWriteItem> items;
      for (uint32_t j = 0; j < n; ++j)
        objects.push_back(MakeObject(0, next + j));
      for (const auto& o : objects)
        items.push_back(SsdWriteItem{o.key, o.parent, "", o.bytes});
      absl::Status s = (*tier)->Put(items);
      for (uint32_t j = 0; j < n; ++j) {
        if (s.ok()) {
          acked.insert(next + j);
        } else {
          EXPECT_FALSE((*tier)->Contains(objects[j].key))
              << "failed Put left an entry: " << s;
        }
      }
      if (!s.ok()) ++failed_puts;
      next += n;
      if (rng() % 5 == 0 && !acked.empty()) {
        auto it = acked.begin();
        std::advance(it, rng() % acked.size());
        if ((*tier)->Remove(MakeObject(0, *it).key).ok()) acked.erase(it);
      }
      if (rng() % 16 == 0) (*tier)->CollectGarbage().IgnoreError();
    }
    // Power loss: nothing more reaches the disk (the shutdown sync fails),
    // unsynced bytes and index writes vanish.
    fault.SetActive(false);
    tier->reset();
    absl::StatusOr<uint64_t> lost = DropIndexEntriesPastWatermarks(dir);
    ASSERT_TRUE(lost.ok()) << lost.status();
    lost_entries += *lost;
    ASSERT_TRUE(fault.DropUnsyncedData().ok());
    fault.SetActive(true);
    fault.ClearFaults();

    tier = SsdTier::Open(options);
    ASSERT_TRUE(tier.ok()) << tier.status();
    for (uint32_t i : acked) {
      const CrashObject want = MakeObject(0, i);
      std::vector<uint8_t> got(want.bytes.size());
      absl::Status s = (*tier)->Read(want.key, absl::MakeSpan(got));
      ASSERT_TRUE(s.ok()) << "acknowledged object " << i << " lost in round "
                          << round << ": " << s;
      ASSERT_EQ(got, want.bytes);
    }
    ASSERT_TRUE((*tier)
                    ->ForEach([&](const SsdEntryInfo& e) {
                      std::vector<uint8_t> got(e.size);
                      absl::Status s =
                          (*tier)->Read(e.key, absl::MakeSpan(got));
                      EXPECT_TRUE(s.ok()) << e.key.ShortHex() << ": " << s;
                      if (s.ok()) {
                        EXPECT_TRUE(VerifyChunkObject(got).ok());
                      }
                    })
                    .ok());
  }
  std::printf(
      "%zu acknowledged live objects, %zu failed Puts, %lu index entries "
      "lost and found again by the scan\n",
      acked.size(), failed_puts, static_cast<unsigned long>(lost_entries));
  EXPECT_GT(failed_puts, 0u);
  EXPECT_GT(lost_entries, 0u);
  std::system(("rm -rf '" + dir + "'").c_str());
}

}  // namespace
}  // namespace kvd::crash
