#include "store/engine/chunk_index.h"

#include "core/check.h"

namespace kvd {
namespace {
int T(TierKind tier) { return static_cast<int>(tier); }
}  // namespace

ChunkIndex::ChunkIndex() : keys_(0, SlotHash{&entries_}, SlotEq{&entries_}) {}

Slot ChunkIndex::Find(const ChunkKey& key) const {
  auto it = keys_.find(key);
  return it == keys_.end() ? kNoSlot : *it;
}

Slot ChunkIndex::Insert(const ChunkKey& key, const ChunkKey& parent,
                        TierKind tier, uint64_t handle, uint32_t object_bytes,
                        uint32_t now_s) {
  KVD_CHECK(Find(key) == kNoSlot, "Insert of a key that is present");
  Slot slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    KVD_CHECK(entries_.size() < kNoSlot, "index slot space exhausted");
    slot = static_cast<Slot>(entries_.size());
    entries_.emplace_back();
  }
  IndexEntry& e = entries_[slot];
  const uint32_t generation = e.generation;
  e = IndexEntry{};
  e.generation = generation;
  e.key = key;
  e.handle = handle;
  e.object_bytes = object_bytes;
  e.tier = tier;
  e.state = EntryState::kWriting;
  e.last_access_s = now_s;
  keys_.insert(slot);
  objects_[T(tier)]++;
  LinkParent(slot, parent);
  return slot;
}

void ChunkIndex::LinkParent(Slot slot, const ChunkKey& parent) {
  IndexEntry& e = entries_[slot];
  if (parent.IsZero() || ResolveParent(slot) != kNoSlot) return;
  const Slot p = Find(parent);
  if (p == kNoSlot || p == slot) return;
  e.parent = p;
  e.parent_generation = entries_[p].generation;
  AdjustParent(slot, e.tier, +1);
}

void ChunkIndex::Publish(Slot slot) {
  IndexEntry& e = entries_[slot];
  KVD_CHECK(e.state == EntryState::kWriting,
            "Publish of an entry that is not being written");
  e.state = EntryState::kReady;
  Link(slot);
}

void ChunkIndex::ChangeTier(Slot slot, TierKind tier, uint64_t handle) {
  IndexEntry& e = entries_[slot];
  KVD_CHECK(e.state != EntryState::kFree, "ChangeTier of a free slot");
  const bool listed = e.listed;
  if (listed) Unlink(slot);
  AdjustParent(slot, e.tier, -1);
  objects_[T(e.tier)]--;
  e.tier = tier;
  e.handle = handle;
  objects_[T(tier)]++;
  AdjustParent(slot, tier, +1);
  if (listed) Link(slot);
}

void ChunkIndex::Touch(Slot slot, uint32_t now_s) {
  IndexEntry& e = entries_[slot];
  e.last_access_s = now_s;
  if (e.listed) {
    Unlink(slot);
    Link(slot);
  }
}

bool ChunkIndex::Remove(Slot slot) {
  IndexEntry& e = entries_[slot];
  KVD_CHECK(e.state != EntryState::kFree && e.state != EntryState::kZombie,
            "Remove of an entry that is not live");
  keys_.erase(e.key);
  if (e.listed) Unlink(slot);
  AdjustParent(slot, e.tier, -1);
  objects_[T(e.tier)]--;
  if (e.pins > 0) {
    e.state = EntryState::kZombie;
    return false;
  }
  FreeSlot(slot);
  return true;
}

bool ChunkIndex::Unpin(Slot slot) {
  IndexEntry& e = entries_[slot];
  KVD_CHECK(e.pins > 0, "Unpin of an unpinned entry");
  if (--e.pins == 0 && e.state == EntryState::kZombie) {
    FreeSlot(slot);
    return true;
  }
  return false;
}

void ChunkIndex::SetState(Slot slot, EntryState state) {
  KVD_CHECK(state == EntryState::kReady || state == EntryState::kMoving,
            "SetState only toggles kReady/kMoving");
  IndexEntry& e = entries_[slot];
  KVD_CHECK(e.state == EntryState::kReady || e.state == EntryState::kMoving,
            "SetState of an entry that is not readable");
  e.state = state;
}

std::optional<Slot> ChunkIndex::PickVictim(TierKind tier) const {
  for (int leaf = 1; leaf >= 0; --leaf) {
    for (Slot s = lists_[T(tier)][leaf].tail; s != kNoSlot;
         s = entries_[s].prev) {
      const IndexEntry& e = entries_[s];
      if (e.pins == 0 && e.state == EntryState::kReady) return s;
    }
  }
  return std::nullopt;
}

uint32_t ChunkIndex::ChildCount(Slot slot) const {
  uint32_t n = 0;
  for (uint32_t c : entries_[slot].children) n += c;
  return n;
}

uint64_t ChunkIndex::MetadataBytes() const {
  return entries_.capacity() * sizeof(IndexEntry) +
         free_slots_.capacity() * sizeof(Slot) +
         keys_.capacity() * (sizeof(Slot) + 1) +
         namespaces_.capacity() * sizeof(InternedNamespace) +
         free_namespace_ids_.capacity() * sizeof(uint32_t) +
         namespace_ids_.capacity() * (sizeof(ChunkKey) + sizeof(uint32_t) + 1);
}

Slot ChunkIndex::ResolveParent(Slot slot) const {
  const IndexEntry& e = entries_[slot];
  if (e.parent == kNoSlot) return kNoSlot;
  const IndexEntry& p = entries_[e.parent];
  if (p.generation != e.parent_generation || p.state == EntryState::kFree ||
      p.state == EntryState::kZombie) {
    return kNoSlot;
  }
  return e.parent;
}

bool ChunkIndex::IsLeaf(const IndexEntry& e) const {
  for (int t = 0; t <= T(e.tier); ++t) {
    if (e.children[t] != 0) return false;
  }
  return true;
}

void ChunkIndex::Link(Slot slot) {
  IndexEntry& e = entries_[slot];
  KVD_CHECK(!e.listed, "Link of a listed entry");
  e.in_leaf_list = IsLeaf(e);
  List& list = ListFor(e.tier, e.in_leaf_list);
  e.prev = kNoSlot;
  e.next = list.head;
  if (list.head != kNoSlot) entries_[list.head].prev = slot;
  list.head = slot;
  if (list.tail == kNoSlot) list.tail = slot;
  e.listed = true;
}

void ChunkIndex::Unlink(Slot slot) {
  IndexEntry& e = entries_[slot];
  KVD_CHECK(e.listed, "Unlink of an unlisted entry");
  List& list = ListFor(e.tier, e.in_leaf_list);
  if (e.prev != kNoSlot) {
    entries_[e.prev].next = e.next;
  } else {
    list.head = e.next;
  }
  if (e.next != kNoSlot) {
    entries_[e.next].prev = e.prev;
  } else {
    list.tail = e.prev;
  }
  e.prev = e.next = kNoSlot;
  e.listed = false;
}

void ChunkIndex::Relist(Slot slot) {
  IndexEntry& e = entries_[slot];
  if (e.listed && e.in_leaf_list != IsLeaf(e)) {
    // Keeps its recency only approximately: it goes to the head of its new
    // list, which errs on the side of keeping it.
    Unlink(slot);
    Link(slot);
  }
}

void ChunkIndex::AdjustParent(Slot slot, TierKind tier, int delta) {
  const Slot p = ResolveParent(slot);
  if (p == kNoSlot) return;
  uint32_t& count = entries_[p].children[T(tier)];
  KVD_CHECK(delta > 0 || count > 0, "child count underflow");
  count += delta;
  Relist(p);
}

void ChunkIndex::FreeSlot(Slot slot) {
  IndexEntry& e = entries_[slot];
  ReleaseNamespace(e.namespace_id);
  e.namespace_id = 0;
  e.state = EntryState::kFree;
  e.generation++;
  free_slots_.push_back(slot);
}

// The namespace id must not grow the entry: it took 4 of the 7 bytes of tail
// padding (an entry was 89 bytes of fields in 96).
static_assert(sizeof(IndexEntry) == 96, "IndexEntry grew");

void ChunkIndex::SetNamespace(Slot slot, const ChunkKey& namespace_fp) {
  IndexEntry& e = entries_[slot];
  KVD_CHECK(e.state != EntryState::kFree, "SetNamespace of a free slot");
  if (e.namespace_id != 0 && namespaces_[e.namespace_id - 1].fp == namespace_fp)
    return;
  uint32_t id;
  auto it = namespace_ids_.find(namespace_fp);
  if (it != namespace_ids_.end()) {
    id = it->second;
  } else {
    if (!free_namespace_ids_.empty()) {
      id = free_namespace_ids_.back();
      free_namespace_ids_.pop_back();
    } else {
      KVD_CHECK(namespaces_.size() < UINT32_MAX - 1, "namespace ids exhausted");
      namespaces_.emplace_back();
      id = static_cast<uint32_t>(namespaces_.size());
    }
    namespaces_[id - 1].fp = namespace_fp;
    namespace_ids_.emplace(namespace_fp, id);
  }
  namespaces_[id - 1].refs++;
  ReleaseNamespace(e.namespace_id);
  e.namespace_id = id;
}

const ChunkKey* ChunkIndex::NamespaceOf(Slot slot) const {
  const uint32_t id = entries_[slot].namespace_id;
  return id == 0 ? nullptr : &namespaces_[id - 1].fp;
}

void ChunkIndex::ReleaseNamespace(uint32_t id) {
  if (id == 0) return;
  InternedNamespace& ns = namespaces_[id - 1];
  KVD_CHECK(ns.refs > 0, "namespace released more often than set");
  if (--ns.refs > 0) return;
  namespace_ids_.erase(ns.fp);
  free_namespace_ids_.push_back(id);
}

}  // namespace kvd
