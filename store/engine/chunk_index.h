// ChunkIndex: the in-memory index of a node's chunks and its prefix-aware
// eviction order (DESIGN.md §3.5).
//
// Each chunk belongs to one tier, its hottest copy (demotion moves it down,
// promotion up); a promoted chunk may keep its SSD copy (`ssd_copy`). Chunks
// link to their parent chunk (the previous chunk of the same prompt) when the
// parent is indexed, and every entry counts its children per tier. In tier t,
// an entry is a *leaf* when no child lives in t or a hotter tier: such a chunk
// can leave t without stranding a descendant above it. Eviction candidates in a
// tier are taken from the least recently used leaves first, then from the least
// recently used inner entries (only when every leaf is pinned).
//
// Entries live in a pool addressed by 32-bit slots; the key set stores only
// slots, so the key is held once. A freed slot's generation changes, so a
// stale parent link is detected, never followed.
//
// Thread-compatible: the caller (StoreEngine) serializes every call.
#ifndef KVDEPOT_STORE_ENGINE_CHUNK_INDEX_H_
#define KVDEPOT_STORE_ENGINE_CHUNK_INDEX_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "core/chunk_key.h"
#include "store/engine/tier.h"

namespace kvd {

using Slot = uint32_t;
inline constexpr Slot kNoSlot = UINT32_MAX;

enum class EntryState : uint8_t {
  kFree = 0,     // slot unused
  kWriting = 1,  // data being copied in; invisible to readers and eviction
  kReady = 2,    // readable
  kMoving = 3,   // being demoted or promoted; readers wait
  kZombie = 4,   // removed from the key set, freed when the last pin goes
};

struct IndexEntry {
  ChunkKey key;
  uint64_t handle = 0;  // MemoryTier handle (GPU / host); unused on SSD
  uint32_t object_bytes = 0;
  Slot parent = kNoSlot;
  uint32_t parent_generation = 0;
  uint32_t generation = 0;
  uint32_t last_access_s = 0;  // seconds since the index was created
  uint32_t pins = 0;
  uint32_t children[kNumTiers] = {};    // linked children per tier
  Slot prev = kNoSlot, next = kNoSlot;  // eviction list links
  // Interned namespace fingerprint (ChunkIndex::NamespaceOf); 0: not known.
  // Sits in what was tail padding: it costs no DRAM per entry.
  uint32_t namespace_id = 0;
  TierKind tier = TierKind::kHost;
  EntryState state = EntryState::kFree;
  // A verified copy also lives on SSD while the chunk is in a hotter tier
  // (kept on promotion, so demoting it again writes nothing).
  bool ssd_copy = false;
  bool in_leaf_list = false;
  bool listed = false;  // on an eviction list (kReady / kMoving entries)
};

class ChunkIndex {
 public:
  ChunkIndex();
  ChunkIndex(const ChunkIndex&) = delete;
  ChunkIndex& operator=(const ChunkIndex&) = delete;

  // The slot of a live (not zombie) entry, or kNoSlot.
  Slot Find(const ChunkKey& key) const;

  // Adds a kWriting entry for a key that is not present, linked to `parent`
  // when the parent is indexed. REQUIRES: Find(key) == kNoSlot.
  Slot Insert(const ChunkKey& key, const ChunkKey& parent, TierKind tier,
              uint64_t handle, uint32_t object_bytes, uint32_t now_s);

  // Links an unlinked entry to its parent (used by recovery, where children
  // may be indexed before their parents). No-op when the parent is absent.
  void LinkParent(Slot slot, const ChunkKey& parent);

  // kWriting -> kReady: the entry becomes visible and evictable.
  void Publish(Slot slot);

  // Moves a chunk to another tier (after its bytes were copied there),
  // updating its parent's child counts and both eviction lists.
  void ChangeTier(Slot slot, TierKind tier, uint64_t handle);

  // Marks a read: the entry becomes most recently used in its tier.
  void Touch(Slot slot, uint32_t now_s);

  // Unlinks the entry from the key set and its parent. With no pins the slot
  // is freed now and true is returned; otherwise it turns kZombie and is freed
  // by the Unpin that drops the last pin (which then returns true).
  bool Remove(Slot slot);

  void Pin(Slot slot) { entries_[slot].pins++; }
  // Returns true when this released a zombie (its slot is now free and the
  // caller must release the tier resources it recorded before unpinning).
  bool Unpin(Slot slot);

  void SetState(Slot slot, EntryState state);

  // The least recently used unpinned kReady entry of `tier`, leaves first.
  std::optional<Slot> PickVictim(TierKind tier) const;

  IndexEntry& at(Slot slot) { return entries_[slot]; }
  const IndexEntry& at(Slot slot) const { return entries_[slot]; }

  size_t size() const { return keys_.size(); }
  uint64_t objects_in(TierKind tier) const {
    return objects_[static_cast<int>(tier)];
  }
  // Number of linked children, in any tier.
  uint32_t ChildCount(Slot slot) const;
  // DRAM bytes held for entries and the key set.
  uint64_t MetadataBytes() const;

  // Namespaces (DESIGN.md §3.1) of entries. Fingerprints are interned with a
  // reference count per distinct namespace (a node holds few), so an entry
  // keeps only a 32-bit id. An entry's namespace is known once its header was
  // decoded by this process (Put, promotion, Inspect); chunks recovered from
  // SSD and not read since have none.
  //
  // Sets (or replaces) the namespace of a live entry.
  void SetNamespace(Slot slot, const ChunkKey& namespace_fp);
  // The entry's namespace fingerprint, or nullptr when not known. Valid until
  // the next mutation of the index.
  const ChunkKey* NamespaceOf(Slot slot) const;
  // Every slot is below this; scans in slot order stop here.
  Slot slot_limit() const { return static_cast<Slot>(entries_.size()); }
  // Distinct namespaces referenced by entries.
  size_t namespace_count() const { return namespace_ids_.size(); }

 private:
  struct SlotHash {
    using is_transparent = void;
    const std::vector<IndexEntry>* entries;
    size_t operator()(Slot s) const {
      return absl::Hash<ChunkKey>()((*entries)[s].key);
    }
    size_t operator()(const ChunkKey& k) const {
      return absl::Hash<ChunkKey>()(k);
    }
  };
  struct SlotEq {
    using is_transparent = void;
    const std::vector<IndexEntry>* entries;
    const ChunkKey& KeyOf(Slot s) const { return (*entries)[s].key; }
    const ChunkKey& KeyOf(const ChunkKey& k) const { return k; }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return KeyOf(a) == KeyOf(b);
    }
  };
  struct List {
    Slot head = kNoSlot;  // most recently used
    Slot tail = kNoSlot;  // least recently used
  };

  Slot ResolveParent(Slot slot) const;
  bool IsLeaf(const IndexEntry& e) const;
  List& ListFor(TierKind tier, bool leaf) {
    return lists_[static_cast<int>(tier)][leaf ? 1 : 0];
  }
  void Link(Slot slot);    // push on the head of the right list
  void Unlink(Slot slot);  // take off its list
  void Relist(Slot slot);  // re-evaluate leafness after a child count change
  void AdjustParent(Slot slot, TierKind tier, int delta);
  void FreeSlot(Slot slot);
  void ReleaseNamespace(uint32_t id);

  std::vector<IndexEntry> entries_;
  std::vector<Slot> free_slots_;
  absl::flat_hash_set<Slot, SlotHash, SlotEq> keys_;
  List lists_[kNumTiers][2];  // [tier][inner=0, leaf=1]
  uint64_t objects_[kNumTiers] = {};

  struct InternedNamespace {
    ChunkKey fp;
    uint64_t refs = 0;  // 0: the id is free
  };
  std::vector<InternedNamespace> namespaces_;  // by id - 1
  std::vector<uint32_t> free_namespace_ids_;
  absl::flat_hash_map<ChunkKey, uint32_t> namespace_ids_;
};

}  // namespace kvd

#endif  // KVDEPOT_STORE_ENGINE_CHUNK_INDEX_H_
