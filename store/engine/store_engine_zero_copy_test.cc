// StoreEngine's zero-copy paths for the data server: put reservations and
// pinned reads.
#include <cstring>

#include "gtest/gtest.h"
#include "store/engine/engine_test_util.h"
#include "store/engine/store_engine.h"

namespace kvd {
namespace {

class StoreEngineZeroCopyTest : public StoreEngineTestBase {};

TEST_F(StoreEngineZeroCopyTest, ReservedPutIsInvisibleUntilCommitted) {
  auto e = Open(16 * kMiB, false);
  Prompt p = MakePrompt(40, 2);
  auto r = e->ReservePut(p.keys[0], p.objects[0].size());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->dst.size(), p.objects[0].size());
  const absl::Span<uint8_t> pool = e->HostPool();
  EXPECT_GE(r->dst.data(), pool.data());
  EXPECT_LE(r->dst.data() + r->dst.size(), pool.data() + pool.size());
  EXPECT_EQ(e->Lookup(p.keys), 0u);
  std::memcpy(r->dst.data(), p.objects[0].data(), p.objects[0].size());
  ASSERT_TRUE(e->CommitPut(*std::move(r)).ok());
  EXPECT_EQ(e->Lookup(p.keys), 1u);
  EXPECT_EQ(*e->GetObject(p.keys[0]), p.objects[0]);
  // A stored key is not reserved again: the put is deduplicated.
  EXPECT_TRUE(absl::IsAlreadyExists(
      e->ReservePut(p.keys[0], p.objects[0].size()).status()));
  EXPECT_EQ(e->Stats().dedup_puts, 1u);
}

TEST_F(StoreEngineZeroCopyTest,
       CommitRefusesCorruptOrMislabelledBytesAndFreesThem) {
  auto e = Open(16 * kMiB, false);
  Prompt p = MakePrompt(41, 2);
  const uint64_t before = e->Stats().tiers[1].allocated_bytes;
  auto r = e->ReservePut(p.keys[0], p.objects[0].size());
  ASSERT_TRUE(r.ok());
  std::memcpy(r->dst.data(), p.objects[0].data(), p.objects[0].size());
  r->dst[r->dst.size() - 1] ^= 1;  // a flipped bit in the last layer
  EXPECT_TRUE(absl::IsDataLoss(e->CommitPut(*std::move(r))));
  auto other = e->ReservePut(p.keys[1], p.objects[0].size());
  ASSERT_TRUE(other.ok());
  std::memcpy(other->dst.data(), p.objects[0].data(), p.objects[0].size());
  EXPECT_TRUE(absl::IsInvalidArgument(e->CommitPut(*std::move(other))));
  auto aborted = e->ReservePut(p.keys[1], p.objects[1].size());
  ASSERT_TRUE(aborted.ok());
  e->AbortPut(*std::move(aborted));
  EXPECT_EQ(e->Lookup(p.keys), 0u);
  EXPECT_EQ(e->Stats().tiers[1].allocated_bytes, before);
  EXPECT_TRUE(absl::IsInvalidArgument(e->ReservePut(p.keys[0], 10).status()));
}

TEST_F(StoreEngineZeroCopyTest, PinnedChunkStaysPutUntilUnpinned) {
  auto e = Open(16 * kMiB, true);
  Prompt p = MakePrompt(42, 1);
  PutAll(*e, p);
  auto pinned = e->PinChunk(p.keys[0]);
  ASSERT_TRUE(pinned.ok()) << pinned.status();
  EXPECT_EQ(pinned->header.key, p.keys[0]);
  // Removing a pinned chunk unindexes it but keeps its bytes until unpinned.
  ASSERT_TRUE(e->Remove(p.keys).front().ok());
  Prompt filler = MakePrompt(43, 100);
  for (size_t i = 0; i < filler.keys.size(); ++i) {
    (void)e->Put({filler.keys[i]}, {filler.objects[i]});
  }
  EXPECT_TRUE(std::equal(pinned->bytes.begin(), pinned->bytes.end(),
                         p.objects[0].begin(), p.objects[0].end()));
  e->UnpinChunk(*pinned);
  EXPECT_TRUE(absl::IsNotFound(e->PinChunk(p.keys[0]).status()));
}

TEST_F(StoreEngineZeroCopyTest, PinChunkCountsHitsAndMissesLikeGet) {
  auto e = Open(16 * kMiB, true);
  Prompt p = MakePrompt(44, 2);
  PutAll(*e, {{p.keys[0]}, {p.objects[0]}});
  auto pinned = e->PinChunk(p.keys[0]);
  ASSERT_TRUE(pinned.ok()) << pinned.status();
  e->UnpinChunk(*pinned);
  EXPECT_TRUE(absl::IsNotFound(e->PinChunk(p.keys[1]).status()));
  const StoreStats st = e->Stats();
  EXPECT_EQ(st.gets, 2u);
  EXPECT_EQ(st.get_hits, 1u);
  EXPECT_EQ(st.get_misses, 1u);
  EXPECT_EQ(st.get_bytes, p.objects[0].size());
}

}  // namespace
}  // namespace kvd
