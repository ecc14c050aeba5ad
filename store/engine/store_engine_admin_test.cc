// StoreEngine's control-plane methods: ListChunks, VolatileChunks,
// MakeDurable and StopWrites.
#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "core/test_chunks.h"
#include "gtest/gtest.h"
#include "store/engine/engine_test_util.h"
#include "store/engine/store_engine.h"

namespace kvd {
namespace {

// Follows the cursor to the end; fails the test on a chunk seen twice.
std::vector<ChunkSummary> ListAll(StoreEngine& e, ListChunksOptions o,
                                  uint64_t* namespace_unknown = nullptr) {
  std::vector<ChunkSummary> all;
  std::set<ChunkKey> seen;
  for (int pages = 0; pages < 10000; ++pages) {
    ChunkPage page = e.ListChunks(o);
    EXPECT_LE(page.chunks.size(), o.limit);
    if (namespace_unknown != nullptr) {
      *namespace_unknown += page.namespace_unknown;
    }
    for (const ChunkSummary& c : page.chunks) {
      EXPECT_TRUE(seen.insert(c.key).second) << c.key.Hex() << " twice";
      all.push_back(c);
    }
    if (page.next_cursor == 0) break;
    EXPECT_GT(page.next_cursor, o.cursor);
    o.cursor = page.next_cursor;
  }
  return all;
}

std::set<ChunkKey> Keys(const std::vector<ChunkSummary>& chunks) {
  std::set<ChunkKey> out;
  for (const ChunkSummary& c : chunks) out.insert(c.key);
  return out;
}

class StoreEngineAdminTest : public StoreEngineTestBase {
 protected:
  StoreEngineAdminTest() { ssd_direct_io_ = false; }
};

TEST_F(StoreEngineAdminTest, ListsEveryChunkOnceAndFilters) {
  auto e = Open(16 * kMiB, false);
  const ModelSpec a = TestChunkSpec("test/a"), b = TestChunkSpec("test/b");
  Prompt a1 = MakeTestPrompt(a, 1, 5), a2 = MakeTestPrompt(a, 2, 4);
  Prompt b1 = MakeTestPrompt(b, 3, 6);
  PutAll(*e, a1);
  PutAll(*e, a2);
  PutAll(*e, b1);
  clock_.Advance(absl::Seconds(7));
  ASSERT_TRUE(e->GetObject(b1.keys[0]).ok());  // last access moves

  std::vector<ChunkSummary> all = ListAll(*e, {.limit = 4});
  EXPECT_EQ(all.size(), 15u);
  for (const ChunkSummary& c : all) {
    EXPECT_EQ(c.tier, TierKind::kHost);
    EXPECT_FALSE(c.on_ssd);
    EXPECT_GT(c.object_bytes, 128u << 10);
    ASSERT_TRUE(c.namespace_fp.has_value());
    if (c.key == b1.keys[0]) {
      EXPECT_EQ(c.children, 1u);
      EXPECT_EQ(*c.namespace_fp, b.Fingerprint());
      EXPECT_EQ(c.last_access - absl::UnixEpoch(),
                clock_.Now() - absl::UnixEpoch());
    }
  }

  std::set<ChunkKey> want_a(a1.keys.begin(), a1.keys.end());
  want_a.insert(a2.keys.begin(), a2.keys.end());
  EXPECT_EQ(Keys(ListAll(*e, {.namespace_fp = a.Fingerprint(), .limit = 3})),
            want_a);
  EXPECT_EQ(
      ListAll(*e, {.namespace_fp = b.Fingerprint(), .limit = 1000}).size(), 6u);
  EXPECT_TRUE(
      ListAll(*e, {.namespace_fp = TestChunkSpec("test/none").Fingerprint()})
          .empty());
  EXPECT_EQ(ListAll(*e, {.tier = TierKind::kHost}).size(), 15u);
  EXPECT_TRUE(ListAll(*e, {.tier = TierKind::kSsd}).empty());

  // Removed chunks leave the listing; a cursor past the end is a last page.
  ASSERT_TRUE(e->Remove({b1.keys[5]})[0].ok());
  EXPECT_EQ(ListAll(*e, {.namespace_fp = b.Fingerprint()}).size(), 5u);
  ChunkPage past = e->ListChunks({.cursor = 1u << 30});
  EXPECT_TRUE(past.chunks.empty());
  EXPECT_EQ(past.next_cursor, 0u);
}

TEST_F(StoreEngineAdminTest, NamespaceOfRecoveredChunksIsLearnedOnRead) {
  const ModelSpec a = TestChunkSpec("test/a");
  Prompt p = MakeTestPrompt(a, 1, 6);
  {
    auto e = Open(16 * kMiB, true);
    PutAll(*e, p);
    for (const ChunkKey& k : p.keys) ASSERT_TRUE(e->MakeDurable(k).ok());
  }
  auto e = Open(16 * kMiB, true);
  std::vector<ChunkSummary> all = ListAll(*e, {});
  ASSERT_EQ(all.size(), 6u);
  for (const ChunkSummary& c : all) {
    EXPECT_EQ(c.tier, TierKind::kSsd);
    EXPECT_TRUE(c.on_ssd);
    EXPECT_FALSE(c.namespace_fp.has_value());
  }
  uint64_t unknown = 0;
  EXPECT_TRUE(ListAll(*e, {.namespace_fp = a.Fingerprint()}, &unknown).empty());
  EXPECT_EQ(unknown, 6u);

  ASSERT_TRUE(e->GetObject(p.keys[0]).ok());  // promotion decodes the header
  ASSERT_TRUE(e->Inspect(p.keys[1]).ok());    // so does Inspect (from SSD)
  unknown = 0;
  std::vector<ChunkSummary> known =
      ListAll(*e, {.namespace_fp = a.Fingerprint()}, &unknown);
  EXPECT_EQ(Keys(known), (std::set<ChunkKey>{p.keys[0], p.keys[1]}));
  EXPECT_EQ(unknown, 4u);
  EXPECT_EQ(ListAll(*e, {.tier = TierKind::kHost}).size(), 1u);
  EXPECT_EQ(ListAll(*e, {.tier = TierKind::kSsd}).size(), 5u);
}

TEST_F(StoreEngineAdminTest, MakeDurableKeepsTheHotCopyAndSurvivesRestart) {
  Prompt p = MakeTestPrompt(TestChunkSpec("test/a"), 1, 5);
  {
    auto e = Open(16 * kMiB, true);
    PutAll(*e, p);
    std::vector<ChunkExtent> todo = e->VolatileChunks();
    ASSERT_EQ(todo.size(), 5u);
    for (const ChunkExtent& c : todo) {
      EXPECT_EQ(c.object_bytes,
                p.objects[std::find(p.keys.begin(), p.keys.end(), c.key) -
                          p.keys.begin()]
                    .size());
      ASSERT_TRUE(e->MakeDurable(c.key).ok());
      ASSERT_TRUE(e->MakeDurable(c.key).ok());  // already durable: no-op
    }
    EXPECT_TRUE(e->VolatileChunks().empty());
    StoreStats st = e->Stats();
    EXPECT_EQ(st.tiers[static_cast<int>(TierKind::kHost)].objects, 5u);
    EXPECT_EQ(st.tiers[static_cast<int>(TierKind::kSsd)].objects, 5u);
    absl::StatusOr<ChunkInfo> info = e->Inspect(p.keys[2]);
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(info->tier, TierKind::kHost);
    EXPECT_TRUE(info->on_ssd);
    // A removed chunk takes its durable copy with it.
    ASSERT_TRUE(e->Remove({p.keys[4]})[0].ok());
    EXPECT_EQ(e->Stats().tiers[static_cast<int>(TierKind::kSsd)].objects, 4u);
    ASSERT_TRUE(e->Sync().ok());
  }
  auto e = Open(16 * kMiB, true);
  EXPECT_EQ(e->Stats().chunks, 4u);
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<std::vector<uint8_t>> got = e->GetObject(p.keys[i]);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, p.objects[i]);
  }
  EXPECT_EQ(e->GetObject(p.keys[4]).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(StoreEngineAdminTest, MakeDurableNeverEvictsAndSaysWhenFull) {
  // One 4 MiB segment holds about 30 records of 128 KiB.
  auto e = Open(16 * kMiB, true, 4 * kMiB);
  Prompt p = MakeTestPrompt(TestChunkSpec("test/a"), 1, 40);
  PutAll(*e, p);
  int durable = 0;
  absl::Status full;
  for (const ChunkKey& k : p.keys) {
    absl::Status s = e->MakeDurable(k);
    if (s.ok()) {
      ++durable;
    } else {
      full = s;
      break;
    }
  }
  EXPECT_GT(durable, 20);
  EXPECT_LT(durable, 40);
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted) << full;
  EXPECT_NE(full.message().find("no room"), std::string::npos) << full;
  StoreStats st = e->Stats();
  EXPECT_EQ(st.evictions, 0u);
  EXPECT_EQ(st.tiers[static_cast<int>(TierKind::kSsd)].objects,
            static_cast<uint64_t>(durable));
  EXPECT_EQ(e->VolatileChunks().size(), 40u - durable);
}

TEST_F(StoreEngineAdminTest, WithoutSsdNothingCanBeMadeDurable) {
  auto e = Open(16 * kMiB, false);
  Prompt p = MakeTestPrompt(TestChunkSpec("test/a"), 1, 2);
  PutAll(*e, p);
  EXPECT_TRUE(e->VolatileChunks().empty());
  EXPECT_EQ(e->MakeDurable(p.keys[0]).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(StoreEngineAdminTest, MakeDurableOfAMissingChunkIsNotFound) {
  auto e = Open(16 * kMiB, true);
  EXPECT_EQ(
      e->MakeDurable(MakeTestPrompt(TestChunkSpec("x"), 1, 1).keys[0]).code(),
      absl::StatusCode::kNotFound);
}

TEST_F(StoreEngineAdminTest, StopWritesRefusesPutsAndKeepsReads) {
  auto e = Open(16 * kMiB, false);
  Prompt p = MakeTestPrompt(TestChunkSpec("test/a"), 1, 3);
  PutAll(*e, p);
  EXPECT_FALSE(e->writes_stopped());
  e->StopWrites();
  EXPECT_TRUE(e->writes_stopped());
  Prompt q = MakeTestPrompt(TestChunkSpec("test/a"), 2, 1);
  std::vector<absl::Span<const uint8_t>> spans = {q.objects[0]};
  std::vector<absl::Status> put = e->Put(q.keys, spans);
  EXPECT_EQ(put[0].code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(put[0].message().find("draining"), std::string::npos);
  EXPECT_TRUE(e->GetObject(p.keys[0]).ok());
  EXPECT_EQ(e->Lookup(p.keys), 3u);
  EXPECT_TRUE(e->Remove({p.keys[2]})[0].ok());
}

}  // namespace
}  // namespace kvd
