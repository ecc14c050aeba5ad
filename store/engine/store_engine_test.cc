#include "store/engine/store_engine.h"

#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "store/engine/engine_test_util.h"
#include "store/engine/ssd/fault_injection_fs.h"

namespace kvd {
namespace {

class StoreEngineTest : public StoreEngineTestBase {};

TEST_F(StoreEngineTest, PutGetLookupRemove) {
  auto e = Open(16 * kMiB, false);
  Prompt p = MakePrompt(1, 4);
  PutAll(*e, p);
  EXPECT_EQ(e->Lookup(p.keys), 4u);
  for (size_t i = 0; i < p.keys.size(); ++i) {
    auto got = e->GetObject(p.keys[i]);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, p.objects[i]);
  }
  // Dedup: a second put of the same chunk stores nothing new.
  PutAll(*e, p);
  StoreStats st = e->Stats();
  EXPECT_EQ(st.puts, 4u);
  EXPECT_EQ(st.dedup_puts, 4u);
  EXPECT_EQ(st.chunks, 4u);
  EXPECT_TRUE(e->Remove({p.keys[2]})[0].ok());
  EXPECT_EQ(e->Lookup(p.keys), 2u);
  EXPECT_TRUE(absl::IsNotFound(e->Remove({p.keys[2]})[0]));
  EXPECT_TRUE(absl::IsNotFound(e->GetObject(p.keys[2]).status()));
}

TEST_F(StoreEngineTest, RejectsBadObjects) {
  auto e = Open(16 * kMiB, false);
  Prompt p = MakePrompt(2, 2);
  // Wrong key for the object.
  auto s = e->Put({p.keys[1]}, {absl::Span<const uint8_t>(p.objects[0])});
  EXPECT_TRUE(absl::IsInvalidArgument(s[0])) << s[0];
  // A flipped payload byte.
  std::vector<uint8_t> bad = p.objects[0];
  bad[bad.size() - 5] ^= 1;
  s = e->Put({p.keys[0]}, {absl::Span<const uint8_t>(bad)});
  EXPECT_TRUE(absl::IsDataLoss(s[0])) << s[0];
  // Truncated.
  s = e->Put({p.keys[0]},
             {absl::Span<const uint8_t>(p.objects[0]).subspan(0, 1000)});
  EXPECT_FALSE(s[0].ok());
  // Wrong version.
  bad = p.objects[0];
  bad[4] = 9;
  s = e->Put({p.keys[0]}, {absl::Span<const uint8_t>(bad)});
  EXPECT_TRUE(absl::IsInvalidArgument(s[0])) << s[0];
  EXPECT_EQ(e->Lookup(p.keys), 0u);
  EXPECT_EQ(e->Stats().chunks, 0u);
}

TEST_F(StoreEngineTest, LayerRangeAndHeadSlice) {
  auto e = Open(16 * kMiB, false);
  Prompt p = MakePrompt(3, 1);
  PutAll(*e, p);
  auto header = DecodeChunkHeader(p.objects[0]);
  ASSERT_TRUE(header.ok());
  for (ChunkSelection sel :
       {ChunkSelection{1, 3, 0, UINT32_MAX}, ChunkSelection{0, 4, 1, 2},
        ChunkSelection{2, 3, 0, 1}}) {
    auto size = e->SelectedSize(p.keys[0], false, sel);
    ASSERT_TRUE(size.ok()) << size.status();
    std::vector<uint8_t> dst(*size);
    auto got = e->Get({{.key = p.keys[0],
                        .whole_object = false,
                        .selection = sel,
                        .dst = absl::MakeSpan(dst)}});
    ASSERT_TRUE(got[0].ok()) << got[0].status();
    EXPECT_EQ(*got[0], *size);
    std::vector<uint8_t> expected;
    auto ranges = SelectByteRanges(*header, sel);
    ASSERT_TRUE(ranges.ok());
    for (const ByteRange& r : *ranges) {
      expected.insert(expected.end(), p.objects[0].begin() + r.offset,
                      p.objects[0].begin() + r.offset + r.length);
    }
    EXPECT_EQ(dst, expected);
  }
  std::vector<uint8_t> small(10);
  auto got = e->Get({{.key = p.keys[0], .dst = absl::MakeSpan(small)}});
  EXPECT_TRUE(absl::IsInvalidArgument(got[0].status()));
}

TEST_F(StoreEngineTest, FullHostWithoutSsdEvictsLeavesFirst) {
  // 4 MiB holds about 30 chunks of 128 KiB.
  auto e = Open(4 * kMiB, false);
  Prompt shared = MakePrompt(10, 8);
  PutAll(*e, shared);
  for (uint32_t i = 0; i < 40; ++i) {
    PutAll(*e, MakePrompt(100 + i, 1));
    e->Lookup(shared.keys);  // lookups do not protect anything...
  }
  StoreStats st = e->Stats();
  EXPECT_GT(st.evictions, 0u);
  // ...but the prefix was evicted from its leaf end: what remains is a prefix.
  const size_t kept = e->Lookup(shared.keys);
  size_t present = 0;
  for (const ChunkKey& k : shared.keys) present += e->Inspect(k).ok();
  EXPECT_EQ(present, kept);
}

TEST_F(StoreEngineTest, OversizedPutNamesTheSizes) {
  auto e = Open(2 * kMiB, false);
  ModelSpec big = TestChunkSpec("test/engine");
  big.num_layers = 80;  // 80 layers x 32 KiB = 2.5 MiB > 2 MiB
  Prompt p = MakePrompt(4, 1, big);
  auto s = e->Put(p.keys, p.Spans());
  EXPECT_TRUE(absl::IsResourceExhausted(s[0])) << s[0];
  EXPECT_NE(s[0].message().find("exceeds the host tier capacity"),
            std::string::npos)
      << s[0];
}

TEST_F(StoreEngineTest, DemotesToSsdAndPromotesOnRead) {
  auto e = Open(2 * kMiB, true);
  std::vector<Prompt> prompts;
  for (uint32_t i = 0; i < 6; ++i) {
    prompts.push_back(MakePrompt(200 + i, 6));
    PutAll(*e, prompts.back());
  }
  StoreStats st = e->Stats();
  EXPECT_GT(st.demotions[static_cast<int>(TierKind::kHost)], 0u);
  EXPECT_GT(st.tiers[static_cast<int>(TierKind::kSsd)].objects, 0u);
  EXPECT_EQ(st.evictions, 0u);
  for (const Prompt& p : prompts) {
    ASSERT_EQ(e->Lookup(p.keys), p.keys.size());
    for (size_t i = 0; i < p.keys.size(); ++i) {
      auto got = e->GetObject(p.keys[i]);
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(*got, p.objects[i]);
    }
  }
  EXPECT_GT(e->Stats().promotions, 0u);
}

TEST_F(StoreEngineTest, PromotedChunksKeepTheirSsdCopy) {
  auto e = Open(2 * kMiB, true);
  Prompt cold = MakePrompt(250, 30);  // 3.75 MiB: the tail goes to SSD
  PutAll(*e, cold);
  ChunkKey key;
  for (const ChunkKey& k : cold.keys) {
    if (e->Inspect(k)->tier == TierKind::kSsd) key = k;
  }
  ASSERT_FALSE(key.IsZero()) << "nothing was demoted";
  auto ssd_objects = [&] {
    return e->Stats().tiers[static_cast<int>(TierKind::kSsd)].objects;
  };
  auto host_demotions = [&] {
    return e->Stats().demotions[static_cast<int>(TierKind::kHost)];
  };
  const uint64_t objects_before = ssd_objects();
  const uint64_t demotions_before = host_demotions();
  ASSERT_TRUE(e->GetObject(key).ok());  // promotes (and demotes to make room)
  auto info = e->Inspect(key);
  EXPECT_EQ(info->tier, TierKind::kHost);
  EXPECT_TRUE(info->on_ssd);
  // The promoted chunk's SSD record stayed; only the demotions added records.
  const uint64_t objects_after = ssd_objects();
  EXPECT_EQ(objects_after,
            objects_before + (host_demotions() - demotions_before));
  // Removing it frees both copies.
  ASSERT_TRUE(e->Remove({key})[0].ok());
  EXPECT_EQ(ssd_objects(), objects_after - 1);
}

TEST_F(StoreEngineTest, ChunksBouncingBetweenHostAndSsdStayIntact) {
  auto e = Open(2 * kMiB, true);
  Prompt p = MakePrompt(260, 24);  // 3 MiB
  PutAll(*e, p);
  // Read everything twice: chunks bounce between host and SSD.
  for (int round = 0; round < 2; ++round) {
    for (size_t i = 0; i < p.keys.size(); ++i) {
      auto got = e->GetObject(p.keys[i]);
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(*got, p.objects[i]);
    }
  }
  StoreStats st = e->Stats();
  // Distinct chunks on SSD never exceed the prompt, however often they moved.
  EXPECT_LE(st.tiers[static_cast<int>(TierKind::kSsd)].objects, p.keys.size());
  EXPECT_GT(st.demotions[static_cast<int>(TierKind::kHost)], p.keys.size());
}

TEST_F(StoreEngineTest, FullSsdEvicts) {
  auto e = Open(2 * kMiB, true, 8 * kMiB);
  for (uint32_t i = 0; i < 30; ++i)
    PutAll(*e, MakePrompt(300 + i, 4));  // 15 MiB
  StoreStats st = e->Stats();
  EXPECT_GT(st.evictions, 0u);
  EXPECT_LE(st.tiers[static_cast<int>(TierKind::kSsd)].allocated_bytes,
            8 * kMiB);
}

TEST_F(StoreEngineTest, RestartRecoversSsdChunks) {
  std::vector<Prompt> prompts;
  {
    auto e = Open(2 * kMiB, true);
    for (uint32_t i = 0; i < 6; ++i) {
      prompts.push_back(MakePrompt(400 + i, 6));
      PutAll(*e, prompts.back());
    }
    ASSERT_TRUE(e->Sync().ok());
  }
  auto e = Open(2 * kMiB, true);
  StoreStats st = e->Stats();
  ASSERT_GT(st.chunks, 0u);
  size_t found = 0;
  for (const Prompt& p : prompts) {
    for (size_t i = 0; i < p.keys.size(); ++i) {
      auto got = e->GetObject(p.keys[i]);
      if (got.ok()) {
        EXPECT_EQ(*got, p.objects[i]);
        ++found;
      } else {
        EXPECT_TRUE(absl::IsNotFound(got.status())) << got.status();
      }
    }
  }
  EXPECT_EQ(found, st.chunks);
}

TEST_F(StoreEngineTest, CorruptSsdChunkIsAMissNeverData) {
  Prompt p = MakePrompt(500, 30);  // 3.75 MiB: most of it lands on SSD
  {
    auto e = Open(2 * kMiB, true);
    PutAll(*e, p);
    ASSERT_TRUE(e->Sync().ok());
  }
  // Flip one byte in the middle of every segment file.
  for (const auto& f : std::filesystem::directory_iterator(dir_)) {
    if (f.path().extension() != ".kvd" || f.file_size() < 8192) continue;
    std::fstream io(f.path(), std::ios::in | std::ios::out | std::ios::binary);
    io.seekg(f.file_size() / 2 + 100);
    char c;
    io.read(&c, 1);
    c ^= 0x10;
    io.seekp(f.file_size() / 2 + 100);
    io.write(&c, 1);
  }
  auto e = Open(2 * kMiB, true);
  size_t ok = 0, lost = 0;
  for (size_t i = 0; i < p.keys.size(); ++i) {
    auto got = e->GetObject(p.keys[i]);
    if (got.ok()) {
      EXPECT_EQ(*got, p.objects[i]);
      ++ok;
    } else {
      EXPECT_TRUE(absl::IsDataLoss(got.status()) ||
                  absl::IsNotFound(got.status()))
          << got.status();
      ++lost;
      EXPECT_TRUE(absl::IsNotFound(e->GetObject(p.keys[i]).status()));
    }
  }
  EXPECT_GT(lost, 0u);
  EXPECT_GT(e->Stats().corrupt_chunks, 0u);
  EXPECT_LE(e->Stats().corrupt_chunks, lost);
}

TEST_F(StoreEngineTest, FailedSsdWritesDuringDemotionLoseNothing) {
  FaultInjectionFileSystem fault(FileSystem::Default());
  StoreOptions o;
  o.host_capacity_bytes = 2 * kMiB;
  o.host_huge_pages = false;
  o.ssd_dir = dir_.string();
  o.ssd_capacity_bytes = 64 * kMiB;
  o.ssd_segment_bytes = 4 * kMiB;
  o.clock = &clock_;
  o.fs = &fault;
  auto e = StoreEngine::Create(o);
  ASSERT_TRUE(e.ok()) << e.status();
  std::vector<Prompt> stored;
  int failed_puts = 0;
  for (uint32_t i = 0; i < 12; ++i) {
    if (i % 3 == 1) fault.FailNthWrite(1);  // the next demotion's write fails
    if (i % 3 == 2) fault.FailNthSync(1);   // or its sync
    Prompt p = MakePrompt(1100 + i, 4);
    std::vector<absl::Status> st = (*e)->Put(p.keys, p.Spans());
    bool all_ok = true;
    for (const absl::Status& s : st) {
      if (!s.ok()) {
        all_ok = false;
        ++failed_puts;
        EXPECT_NE(s.message().find("injected"), std::string::npos) << s;
      }
    }
    if (all_ok) stored.push_back(std::move(p));
    fault.ClearFaults();
  }
  EXPECT_GT(failed_puts, 0) << "no demotion hit an injected fault";
  // Every chunk of every fully acknowledged prompt reads back exactly.
  for (const Prompt& p : stored) {
    for (size_t i = 0; i < p.keys.size(); ++i) {
      auto got = (*e)->GetObject(p.keys[i]);
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(*got, p.objects[i]);
    }
  }
  EXPECT_EQ((*e)->Stats().corrupt_chunks, 0u);
}

TEST_F(StoreEngineTest, LeasesPinAndExpire) {
  auto e = Open(2 * kMiB, false);
  Prompt p = MakePrompt(600, 2);
  PutAll(*e, p);
  auto lease = e->AcquireLease(p.keys);
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_EQ(e->Inspect(p.keys[0])->pins, 1u);
  std::vector<uint8_t> dst(p.objects[1].size());
  auto got =
      e->ReadLeased(*lease, {.key = p.keys[1], .dst = absl::MakeSpan(dst)});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(dst, p.objects[1]);
  // A removed chunk stays readable through the lease until it ends.
  EXPECT_TRUE(e->Remove({p.keys[1]})[0].ok());
  EXPECT_TRUE(
      e->ReadLeased(*lease, {.key = p.keys[1], .dst = absl::MakeSpan(dst)})
          .ok());
  clock_.Advance(absl::Seconds(11));
  got = e->ReadLeased(*lease, {.key = p.keys[0], .dst = absl::MakeSpan(dst)});
  EXPECT_TRUE(absl::IsAborted(got.status())) << got.status();
  StoreStats st = e->Stats();
  EXPECT_EQ(st.lease_expiries, 1u);
  EXPECT_EQ(st.active_leases, 0u);
  EXPECT_EQ(e->Inspect(p.keys[0])->pins, 0u);
  e->ReleaseLease(*lease);  // no-op after expiry
  EXPECT_TRUE(absl::IsNotFound(e->AcquireLease(p.keys).status()));
}

TEST_F(StoreEngineTest, PinnedChunksAreNotEvicted) {
  auto e = Open(2 * kMiB, false);
  Prompt p = MakePrompt(700, 14);  // 1.75 MiB
  PutAll(*e, p);
  auto lease = e->AcquireLease(p.keys);
  ASSERT_TRUE(lease.ok());
  Prompt more = MakePrompt(701, 4);
  auto s = e->Put(more.keys, more.Spans());
  EXPECT_TRUE(absl::IsResourceExhausted(s.back())) << s.back();
  EXPECT_EQ(e->Lookup(p.keys), p.keys.size());
  e->ReleaseLease(*lease);
  PutAll(*e, more);
}

TEST_F(StoreEngineTest, InspectReportsHeaderAndTier) {
  auto e = Open(2 * kMiB, true);
  Prompt p = MakePrompt(800, 24);
  PutAll(*e, p);
  auto first = e->Inspect(p.keys[0]);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->header.key, p.keys[0]);
  EXPECT_EQ(first->header.num_layers, 4u);
  EXPECT_EQ(first->children, 1u);
  // Prefix-aware: the chain is demoted from its leaf end, so the root (the
  // oldest chunk) is still in host DRAM while later chunks went to SSD.
  EXPECT_EQ(first->tier, TierKind::kHost);
  size_t on_ssd = 0;
  for (const ChunkKey& k : p.keys) {
    auto info = e->Inspect(k);
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(info->header.key, k);
    on_ssd += info->tier == TierKind::kSsd;
  }
  EXPECT_GT(on_ssd, 0u);
}

TEST_F(StoreEngineTest, ConcurrentPutsAndGetsNeverReturnWrongBytes) {
  auto e = Open(2 * kMiB, true);
  std::vector<Prompt> prompts;
  for (uint32_t i = 0; i < 8; ++i) prompts.push_back(MakePrompt(900 + i, 4));
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int n = 0; n < 200; ++n) {
        const Prompt& p = prompts[rng() % prompts.size()];
        const size_t i = rng() % p.keys.size();
        if (rng() % 2) {
          e->Put({p.keys[i]}, {absl::Span<const uint8_t>(p.objects[i])});
        } else {
          auto got = e->GetObject(p.keys[i]);
          if (got.ok() && *got != p.objects[i]) wrong++;
          if (!got.ok() && !absl::IsNotFound(got.status())) wrong++;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

// Runs where the build has CUDA and the machine a GPU; skips elsewhere.
TEST_F(StoreEngineTest, GpuTierDemotesToHostAndServesReads) {
  StoreOptions o;
  o.host_capacity_bytes = 4 * kMiB;
  o.host_huge_pages = false;
  o.gpu_capacity_bytes = 2 * kMiB;
  o.clock = &clock_;
  auto e = StoreEngine::Create(o);
  if (absl::IsFailedPrecondition(e.status())) {
    GTEST_SKIP() << "no GPU tier here: " << e.status();
  }
  ASSERT_TRUE(e.ok()) << e.status();
  std::vector<Prompt> prompts;
  for (uint32_t i = 0; i < 3; ++i) {
    prompts.push_back(MakePrompt(1000 + i, 8));  // 3 MiB in all: GPU overflows
    PutAll(**e, prompts.back());
  }
  StoreStats st = (*e)->Stats();
  EXPECT_GT(st.demotions[static_cast<int>(TierKind::kGpu)], 0u);
  EXPECT_GT(st.tiers[static_cast<int>(TierKind::kGpu)].objects, 0u);
  for (const Prompt& p : prompts) {
    for (size_t i = 0; i < p.keys.size(); ++i) {
      auto got = (*e)->GetObject(p.keys[i]);
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(*got, p.objects[i]);
    }
  }
}

}  // namespace
}  // namespace kvd
