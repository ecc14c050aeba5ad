#include "store/engine/chunk_index.h"

#include "gtest/gtest.h"

namespace kvd {
namespace {

ChunkKey K(uint8_t n) {
  ChunkKey k;
  k.bytes[0] = n;
  k.bytes[31] = 0x5a;
  return k;
}

Slot Add(ChunkIndex& index, uint8_t n, uint8_t parent,
         TierKind tier = TierKind::kHost) {
  Slot s = index.Insert(K(n), parent == 0 ? ChunkKey::Zero() : K(parent), tier,
                        n, 100, 0);
  index.Publish(s);
  return s;
}

TEST(ChunkIndexTest, InsertFindRemove) {
  ChunkIndex index;
  Slot a = Add(index, 1, 0);
  EXPECT_EQ(index.Find(K(1)), a);
  EXPECT_EQ(index.Find(K(2)), kNoSlot);
  EXPECT_EQ(index.size(), 1u);
  EXPECT_TRUE(index.Remove(a));
  EXPECT_EQ(index.Find(K(1)), kNoSlot);
  EXPECT_EQ(index.objects_in(TierKind::kHost), 0u);
}

TEST(ChunkIndexTest, LeavesGoBeforeTheirAncestorsEvenWhenHotter) {
  ChunkIndex index;
  Slot a = Add(index, 1, 0);
  Slot b = Add(index, 2, 1);
  Slot c = Add(index, 3, 2);
  index.Touch(c, 5);  // the leaf is the most recently used...
  EXPECT_EQ(index.PickVictim(TierKind::kHost), c);  // ...and still goes first
  index.ChangeTier(c, TierKind::kSsd, 0);  // demoted: b is a leaf in host now
  EXPECT_EQ(index.PickVictim(TierKind::kHost), b);
  EXPECT_EQ(index.PickVictim(TierKind::kSsd), c);
  index.ChangeTier(b, TierKind::kSsd, 0);
  EXPECT_EQ(index.PickVictim(TierKind::kHost), a);
  // On SSD, b has a child (c) in SSD, so c is the SSD leaf.
  EXPECT_EQ(index.PickVictim(TierKind::kSsd), c);
  EXPECT_EQ(index.ChildCount(a), 1u);
}

TEST(ChunkIndexTest, LeastRecentlyUsedLeafAmongLeaves) {
  ChunkIndex index;
  Slot a = Add(index, 1, 0);
  Slot b = Add(index, 2, 0);
  EXPECT_EQ(index.PickVictim(TierKind::kHost), a);
  index.Touch(a, 1);
  EXPECT_EQ(index.PickVictim(TierKind::kHost), b);
}

TEST(ChunkIndexTest, PinnedAndMovingEntriesAreSkipped) {
  ChunkIndex index;
  Slot a = Add(index, 1, 0);
  Slot b = Add(index, 2, 1);
  index.Pin(b);
  // The only leaf is pinned: fall back to the inner entry.
  EXPECT_EQ(index.PickVictim(TierKind::kHost), a);
  index.SetState(a, EntryState::kMoving);
  EXPECT_EQ(index.PickVictim(TierKind::kHost), std::nullopt);
  index.SetState(a, EntryState::kReady);
  EXPECT_FALSE(index.Unpin(b));
  EXPECT_EQ(index.PickVictim(TierKind::kHost), b);
}

TEST(ChunkIndexTest, RemovingAPinnedEntryDefersTheFree) {
  ChunkIndex index;
  Slot a = Add(index, 1, 0);
  index.Pin(a);
  EXPECT_FALSE(index.Remove(a));
  EXPECT_EQ(index.at(a).state, EntryState::kZombie);
  EXPECT_EQ(index.Find(K(1)), kNoSlot);
  EXPECT_TRUE(index.Unpin(a));
  EXPECT_EQ(index.at(a).state, EntryState::kFree);
}

TEST(ChunkIndexTest, StaleParentLinksAreIgnored) {
  ChunkIndex index;
  Slot a = Add(index, 1, 0);
  Slot b = Add(index, 2, 1);
  EXPECT_TRUE(index.Remove(a));  // parent goes first (e.g. an explicit Remove)
  Slot x = Add(index, 9, 0);     // reuses a's slot
  EXPECT_EQ(x, a);
  EXPECT_EQ(index.ChildCount(x), 0u);
  EXPECT_TRUE(index.Remove(b));  // must not touch x's counts
  EXPECT_EQ(index.ChildCount(x), 0u);
}

TEST(ChunkIndexTest, LinkParentAfterTheFact) {
  ChunkIndex index;
  Slot child = Add(index, 2, 1);  // parent not indexed yet
  Slot parent = Add(index, 1, 0);
  EXPECT_EQ(index.ChildCount(parent), 0u);
  index.LinkParent(child, K(1));
  EXPECT_EQ(index.ChildCount(parent), 1u);
  EXPECT_EQ(index.PickVictim(TierKind::kHost), child);
}

}  // namespace
}  // namespace kvd
