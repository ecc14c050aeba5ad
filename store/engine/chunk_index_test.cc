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

TEST(ChunkIndexTest, NamespacesAreInternedAndReleasedWithTheirEntries) {
  ChunkIndex index;
  const ChunkKey ns_a = K(200), ns_b = K(201);
  Slot a = Add(index, 1, 0), b = Add(index, 2, 1), c = Add(index, 3, 0);
  EXPECT_EQ(index.NamespaceOf(a), nullptr);
  index.SetNamespace(a, ns_a);
  index.SetNamespace(b, ns_a);
  index.SetNamespace(c, ns_b);
  ASSERT_NE(index.NamespaceOf(b), nullptr);
  EXPECT_EQ(*index.NamespaceOf(b), ns_a);
  EXPECT_EQ(*index.NamespaceOf(c), ns_b);
  EXPECT_EQ(index.namespace_count(), 2u);
  index.SetNamespace(c, ns_a);  // replaced: ns_b has no entry left
  EXPECT_EQ(index.namespace_count(), 1u);
  index.Pin(a);
  EXPECT_FALSE(index.Remove(a));  // zombie keeps its namespace until freed
  EXPECT_EQ(index.namespace_count(), 1u);
  EXPECT_TRUE(index.Remove(b));
  EXPECT_TRUE(index.Remove(c));
  EXPECT_EQ(index.namespace_count(), 1u);
  EXPECT_TRUE(index.Unpin(a));
  EXPECT_EQ(index.namespace_count(), 0u);
  // A reused slot starts with no namespace; a freed id is reused.
  Slot d = Add(index, 4, 0);
  EXPECT_EQ(index.NamespaceOf(d), nullptr);
  index.SetNamespace(d, ns_b);
  EXPECT_EQ(*index.NamespaceOf(d), ns_b);
  EXPECT_EQ(index.namespace_count(), 1u);
}

}  // namespace
}  // namespace kvd
