#include "cluster/placement.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/check.h"
#include "core/chunk_format.h"

namespace kvd::cluster {
namespace {

// splitmix64's finalizer: a bijection with full avalanche, so the key's
// hash xor a node's seed gives each node an independent-looking value.
uint64_t Mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t KeyHash(const ChunkKey& key) {
  uint64_t h;
  std::memcpy(&h, key.bytes.data(), sizeof(h));
  return h;
}

// weight / -ln(u) with u = (top 53 bits + 0.5) / 2^53, in (0, 1).
double Score(double weight, uint64_t mixed) {
  const double u = (static_cast<double>(mixed >> 11) + 0.5) * 0x1p-53;
  return weight / -std::log(u);
}

struct Candidate {
  double score;
  uint32_t node;
};

// Higher score first; equal scores (probability ~2^-53) by node index.
bool Before(const Candidate& a, const Candidate& b) {
  return a.score != b.score ? a.score > b.score : a.node < b.node;
}

}  // namespace

absl::StatusOr<Placement> Placement::Create(std::vector<PlacementNode> nodes) {
  if (nodes.empty()) return absl::InvalidArgumentError("placement: no nodes");
  if (nodes.size() > kMaxNodes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "placement: nodes=", nodes.size(), " exceeds ", kMaxNodes));
  }
  std::sort(nodes.begin(), nodes.end(),
            [](const PlacementNode& a, const PlacementNode& b) {
              return a.id < b.id;
            });
  for (size_t i = 0; i < nodes.size(); ++i) {
    const PlacementNode& n = nodes[i];
    if (n.id.empty() || n.id.size() > kMaxNodeIdBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("placement: node id of ", n.id.size(),
                       " bytes is outside [1, ", kMaxNodeIdBytes, "]"));
    }
    if (n.weight == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("placement: node ", n.id, " has weight=0"));
    }
    if (i > 0 && nodes[i - 1].id == n.id) {
      return absl::InvalidArgumentError(
          absl::StrCat("placement: node id ", n.id, " appears twice"));
    }
  }
  Placement p;
  p.nodes_ = std::move(nodes);
  std::string identity;  // ids and weights, in id order
  for (const PlacementNode& n : p.nodes_) {
    p.seeds_.push_back(Checksum64(absl::MakeConstSpan(
        reinterpret_cast<const uint8_t*>(n.id.data()), n.id.size())));
    absl::StrAppend(&identity, n.id, "\n", n.weight, "\n");
  }
  p.fingerprint_ = Checksum64(absl::MakeConstSpan(
      reinterpret_cast<const uint8_t*>(identity.data()), identity.size()));
  p.order_.resize(p.nodes_.size());
  for (uint32_t i = 0; i < p.order_.size(); ++i) p.order_[i] = i;
  std::stable_sort(p.order_.begin(), p.order_.end(),
                   [&](uint32_t a, uint32_t b) {
                     return p.nodes_[a].weight > p.nodes_[b].weight;
                   });
  for (uint32_t i = 0; i < p.order_.size(); ++i) {
    const uint32_t weight = p.nodes_[p.order_[i]].weight;
    p.ordered_seeds_.push_back(p.seeds_[p.order_[i]]);
    if (p.classes_.empty() || p.classes_.back().weight != weight) {
      p.classes_.push_back({static_cast<double>(weight), i, i});
    }
    p.classes_.back().end = i + 1;
  }
  return p;
}

uint32_t Placement::PrimaryOf(const ChunkKey& key) const {
  const uint64_t k = KeyHash(key);
  Candidate best{-1.0, 0};
  for (const WeightClass& c : classes_) {
    // Within a class the score grows with the mix: the first maximum wins,
    // and positions in a class follow node indexes.
    uint64_t top = Mix(k ^ ordered_seeds_[c.begin]);
    uint32_t top_at = c.begin;
    for (uint32_t i = c.begin + 1; i < c.end; ++i) {
      const uint64_t m = Mix(k ^ ordered_seeds_[i]);
      if (m > top) {
        top = m;
        top_at = i;
      }
    }
    const Candidate cand{Score(c.weight, top), order_[top_at]};
    if (Before(cand, best)) best = cand;
  }
  return best.node;
}

Placement::Owners Placement::OwnersOf(const ChunkKey& key, int replicas) const {
  KVD_CHECK(replicas >= 1 && replicas <= kMaxReplicas,
            "replicas outside [1, kMaxReplicas]");
  const uint64_t k = KeyHash(key);
  const size_t want = std::min<size_t>(replicas, nodes_.size());
  absl::InlinedVector<Candidate, 16> all;
  for (const WeightClass& c : classes_) {
    // The class's top `want` by mix, kept sorted (small insertion list).
    absl::InlinedVector<std::pair<uint64_t, uint32_t>, kMaxReplicas> top;
    for (uint32_t i = c.begin; i < c.end; ++i) {
      const uint64_t m = Mix(k ^ ordered_seeds_[i]);
      if (top.size() == want && m <= top.back().first) continue;
      auto at = std::upper_bound(
          top.begin(), top.end(), m,
          [](uint64_t v, const std::pair<uint64_t, uint32_t>& e) {
            return v > e.first;
          });
      top.insert(at, {m, i});
      if (top.size() > want) top.pop_back();
    }
    for (const auto& [m, i] : top)
      all.push_back({Score(c.weight, m), order_[i]});
  }
  std::partial_sort(all.begin(), all.begin() + want, all.end(), Before);
  Owners owners;
  for (size_t i = 0; i < want; ++i) owners.push_back(all[i].node);
  return owners;
}

}  // namespace kvd::cluster
