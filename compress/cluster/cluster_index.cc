#include "compress/cluster/cluster_index.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "compress/byte_io.h"
#include "core/chunk_format.h"
#include "core/status.h"

namespace kvd::compress {
namespace {

using RowMatrix =
    Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

constexpr uint32_t kMagic = 0x4943564b;  // "KVCI" little-endian
constexpr uint16_t kVersion = 1;
// Bounds the decoder enforces.
constexpr uint32_t kMaxLayers = 1024;
constexpr uint32_t kMaxHeads = 1024;
constexpr uint32_t kMaxDim = 4096;
constexpr uint32_t kMaxPositions = 1u << 28;

uint64_t Mix(uint64_t x) {  // splitmix64: one seed per head and range
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Uniform in [0, 1), the same on every platform.
double Uniform(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

// Rows [first, end) of one head's keys, scaled to unit length.
RowMatrix UnitRows(const HeadTensor& keys, uint32_t head, uint32_t first,
                   uint32_t end) {
  RowMatrix x(end - first, keys.dim);
  for (uint32_t t = first; t < end; ++t) {
    x.row(t - first) =
        Eigen::Map<const Eigen::RowVectorXf>(keys.Row(head, t), keys.dim);
    const float norm = x.row(t - first).norm();
    if (norm > 0) x.row(t - first) /= norm;
  }
  return x;
}

// k-means++ on cosine distance (1 - x . c).
RowMatrix SeedCentroids(const RowMatrix& x, uint32_t k, std::mt19937_64& rng) {
  const Eigen::Index n = x.rows();
  RowMatrix c(k, x.cols());
  c.row(0) = x.row(static_cast<Eigen::Index>(rng() % n));
  Eigen::VectorXf dist =
      (1.0f - (x * c.row(0).transpose()).array()).max(0.0f).matrix();
  for (uint32_t j = 1; j < k; ++j) {
    const double total = dist.cast<double>().sum();
    Eigen::Index pick = static_cast<Eigen::Index>(rng() % n);
    if (total > 0) {
      double r = Uniform(rng) * total;
      for (Eigen::Index i = 0; i < n; ++i) {
        r -= dist[i];
        if (r < 0 || i == n - 1) {
          pick = i;
          break;
        }
      }
    }
    c.row(j) = x.row(pick);
    dist = dist.cwiseMin(
        (1.0f - (x * c.row(j).transpose()).array()).max(0.0f).matrix());
  }
  return c;
}

// Each row's cluster: the most similar centroid (ties to the lower index)
// or, balanced, the most similar one with room, most confident rows first.
std::vector<uint32_t> Assign(const RowMatrix& sim, bool balanced) {
  const Eigen::Index n = sim.rows(), k = sim.cols();
  std::vector<uint32_t> a(n);
  std::vector<float> best(n);
  for (Eigen::Index i = 0; i < n; ++i) {
    Eigen::Index j;
    best[i] = sim.row(i).maxCoeff(&j);
    a[i] = static_cast<uint32_t>(j);
  }
  if (!balanced) return a;
  const Eigen::Index room = (n + k - 1) / k;
  std::vector<Eigen::Index> left(k, room);
  std::vector<uint32_t> rows(n);
  std::iota(rows.begin(), rows.end(), 0);
  std::stable_sort(rows.begin(), rows.end(),
                   [&](uint32_t p, uint32_t q) { return best[p] > best[q]; });
  std::vector<uint32_t> order(k);
  for (uint32_t i : rows) {
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](uint32_t p, uint32_t q) {
      return sim(i, p) > sim(i, q);
    });
    for (uint32_t j : order) {
      if (left[j] > 0) {
        --left[j];
        a[i] = j;
        break;
      }
    }
  }
  return a;
}

// Spherical k-means of the unit rows `x`, which stand for positions
// first, first + 1, ...
HeadClusters Cluster(const RowMatrix& x, uint32_t first,
                     const ClusterOptions& o, uint64_t seed) {
  const uint32_t n = static_cast<uint32_t>(x.rows());
  HeadClusters out;
  if (n == 0) return out;
  const uint32_t k =
      std::min(n, (n + o.tokens_per_cluster - 1) / o.tokens_per_cluster);
  std::mt19937_64 rng(seed);
  RowMatrix c = SeedCentroids(x, k, rng);
  std::vector<uint32_t> a;
  for (uint32_t round = 0; round < o.iterations; ++round) {
    const RowMatrix sim = x * c.transpose();
    std::vector<uint32_t> next = Assign(sim, o.balanced);
    // An empty cluster takes the row least similar to its own centroid.
    std::vector<uint32_t> count(k, 0);
    for (uint32_t j : next) ++count[j];
    for (uint32_t j = 0; j < k; ++j) {
      if (count[j] > 0) continue;
      uint32_t worst = n;
      for (uint32_t i = 0; i < n; ++i) {
        if (count[next[i]] > 1 &&
            (worst == n || sim(i, next[i]) < sim(worst, next[worst]))) {
          worst = i;
        }
      }
      if (worst == n) break;  // fewer distinct rows than clusters
      --count[next[worst]];
      next[worst] = j;
      count[j] = 1;
    }
    const bool settled = next == a;
    a = std::move(next);
    c.setZero();
    for (uint32_t i = 0; i < n; ++i) c.row(a[i]) += x.row(i);
    for (uint32_t j = 0; j < k; ++j) {
      const float norm = c.row(j).norm();
      if (norm > 0) c.row(j) /= norm;
    }
    if (settled) break;
  }
  // Clusters in centroid order, empty ones dropped; members ascending.
  std::vector<uint32_t> count(k, 0);
  for (uint32_t j : a) ++count[j];
  std::vector<uint32_t> slot(k, 0);
  out.offsets.push_back(0);
  for (uint32_t j = 0; j < k; ++j) {
    if (count[j] == 0) continue;
    slot[j] = out.offsets.back();
    out.offsets.push_back(out.offsets.back() + count[j]);
    out.centroids.insert(out.centroids.end(), c.row(j).data(),
                         c.row(j).data() + c.cols());
  }
  out.positions.resize(n);
  for (uint32_t i = 0; i < n; ++i) out.positions[slot[a[i]]++] = first + i;
  return out;
}

absl::Status CheckKeys(absl::Span<const HeadTensor> keys,
                       const ClusterOptions& o) {
  if (keys.empty()) return absl::InvalidArgumentError("no layers of keys");
  for (size_t l = 0; l < keys.size(); ++l) {
    const HeadTensor& k = keys[l];
    if (k.heads == 0 || k.dim == 0 || k.heads != keys[0].heads ||
        k.tokens != keys[0].tokens || k.dim != keys[0].dim ||
        k.data.size() != size_t{k.heads} * k.tokens * k.dim) {
      return absl::InvalidArgumentError(absl::StrCat(
          "layer ", l, " keys are [", k.heads, "][", k.tokens, "][", k.dim,
          "] with ", k.data.size(), " floats; layer 0's are [", keys[0].heads,
          "][", keys[0].tokens, "][", keys[0].dim, "]"));
    }
  }
  if (o.tokens_per_cluster == 0 || o.iterations == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokens_per_cluster=", o.tokens_per_cluster,
                     " and iterations=", o.iterations, " must be positive"));
  }
  return absl::OkStatus();
}

// Clusters [first, end) of every head into new clusters appended to it.
void ClusterRange(absl::Span<const HeadTensor> keys, uint32_t first,
                  uint32_t end, const ClusterOptions& o, ClusterIndex& index) {
  for (uint32_t l = 0; l < index.layers; ++l) {
    for (uint32_t h = 0; h < index.kv_heads; ++h) {
      const size_t id = size_t{l} * index.kv_heads + h;
      HeadClusters add = Cluster(UnitRows(keys[l], h, first, end), first, o,
                                 Mix(o.seed ^ Mix(id) ^ Mix(~uint64_t{first})));
      HeadClusters& to = index.heads[id];
      if (to.offsets.empty()) to.offsets.push_back(0);
      const uint32_t base = to.offsets.back();
      for (size_t j = 1; j < add.offsets.size(); ++j) {
        to.offsets.push_back(base + add.offsets[j]);
      }
      to.centroids.insert(to.centroids.end(), add.centroids.begin(),
                          add.centroids.end());
      to.positions.insert(to.positions.end(), add.positions.begin(),
                          add.positions.end());
    }
  }
  index.clustered_end = end;
}

}  // namespace

absl::StatusOr<ClusterIndex> BuildClusterIndex(
    absl::Span<const HeadTensor> keys, const ClusterOptions& options) {
  KVD_RETURN_IF_ERROR(CheckKeys(keys, options));
  ClusterIndex index;
  index.layers = static_cast<uint32_t>(keys.size());
  index.kv_heads = keys[0].heads;
  index.head_dim = keys[0].dim;
  index.sinks = std::min(options.sinks, keys[0].tokens);
  index.clustered_end = index.sinks;
  index.heads.resize(size_t{index.layers} * index.kv_heads);
  for (HeadClusters& h : index.heads) h.offsets = {0};
  ClusterRange(keys, index.sinks, keys[0].tokens, options, index);
  return index;
}

absl::Status ExtendClusterIndex(absl::Span<const HeadTensor> keys,
                                ClusterIndex& index,
                                const ClusterOptions& options) {
  KVD_RETURN_IF_ERROR(CheckKeys(keys, options));
  if (keys.size() != index.layers || keys[0].heads != index.kv_heads ||
      keys[0].dim != index.head_dim || keys[0].tokens < index.clustered_end) {
    return absl::InvalidArgumentError(absl::StrCat(
        "keys of ", keys.size(), " layers of [", keys[0].heads, "][",
        keys[0].tokens, "][", keys[0].dim, "] do not extend an index of ",
        index.layers, " layers, ", index.kv_heads, " heads of ", index.head_dim,
        " clustered up to ", index.clustered_end));
  }
  ClusterRange(keys, index.clustered_end, keys[0].tokens, options, index);
  return absl::OkStatus();
}

Selection SelectClusters(const ClusterIndex& index, uint32_t layer,
                         uint32_t head, absl::Span<const float> query,
                         uint32_t total, const SelectOptions& options) {
  Selection out;
  std::vector<uint8_t> keep(total, 0);
  uint32_t kept = 0;
  auto mark = [&](uint32_t begin, uint32_t end) {
    for (uint32_t p = begin; p < end; ++p) {
      kept += keep[p] == 0;
      keep[p] = 1;
    }
  };
  mark(0, std::min(index.sinks, total));
  mark(index.clustered_end, total);
  mark(total - std::min(options.recent, total), total);
  const HeadClusters& h = index.At(layer, head);
  const uint32_t k = h.clusters();
  const Eigen::Map<const RowMatrix> centroids(h.centroids.data(), k,
                                              index.head_dim);
  const Eigen::VectorXf score = centroids * Eigen::Map<const Eigen::VectorXf>(
                                                query.data(), index.head_dim);
  std::vector<uint32_t> order(k);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](uint32_t p, uint32_t q) { return score[p] > score[q]; });
  for (uint32_t c : order) {
    if (kept >= options.budget) break;
    uint32_t fresh = 0;
    for (uint32_t p : h.Members(c)) fresh += keep[p] == 0;
    if (kept + fresh > options.budget) continue;
    for (uint32_t p : h.Members(c)) keep[p] = 1;
    kept += fresh;
    out.clusters.push_back(c);
  }
  out.positions.reserve(kept);
  for (uint32_t p = 0; p < total; ++p) {
    if (keep[p]) out.positions.push_back(p);
  }
  return out;
}

// Byte form of one layer: magic u32, version u16, reserved u16 (0), layer,
// kv_heads, head_dim, sinks, clustered_end (u32 each); per head: clusters
// u32, offsets u32[clusters + 1], centroids f32[clusters * head_dim],
// positions u32[clustered_end - sinks]; then xxh3-64 of every byte before.
std::vector<std::vector<uint8_t>> EncodeClusterIndex(
    const ClusterIndex& index) {
  std::vector<std::vector<uint8_t>> out;
  for (uint32_t l = 0; l < index.layers; ++l) {
    ByteWriter w;
    w.Put(kMagic);
    w.Put(kVersion);
    w.Put(uint16_t{0});
    for (uint32_t v : {l, index.kv_heads, index.head_dim, index.sinks,
                       index.clustered_end}) {
      w.Put(v);
    }
    for (uint32_t h = 0; h < index.kv_heads; ++h) {
      const HeadClusters& c = index.At(l, h);
      w.Put(c.clusters());
      w.PutArray(absl::MakeConstSpan(c.offsets));
      w.PutArray(absl::MakeConstSpan(c.centroids));
      w.PutArray(absl::MakeConstSpan(c.positions));
    }
    w.Put(Checksum64(w.bytes()));
    out.push_back(std::move(w.bytes()));
  }
  return out;
}

namespace {

// Layer `layer` of an index from its byte form: its heads are appended to
// index.heads; the geometry is set by layer 0 and must match after it.
absl::Status DecodeLayer(absl::Span<const uint8_t> bytes, uint32_t layer,
                         ClusterIndex& index) {
  if (bytes.size() < 40) {
    return absl::DataLossError(absl::StrCat("cluster index layer ", layer,
                                            " of ", bytes.size(),
                                            " bytes is truncated"));
  }
  const absl::Span<const uint8_t> body = bytes.first(bytes.size() - 8);
  uint64_t checksum;
  std::memcpy(&checksum, bytes.data() + body.size(), 8);
  ByteReader r(body);
  uint32_t magic;
  uint16_t version, reserved;
  KVD_RETURN_IF_ERROR(r.Get("magic", &magic));
  if (magic != kMagic) return absl::DataLossError("not a cluster index");
  if (Checksum64(body) != checksum) {
    return absl::DataLossError(
        absl::StrCat("cluster index layer ", layer, ": checksum mismatch"));
  }
  KVD_RETURN_IF_ERROR(r.Get("version", &version));
  KVD_RETURN_IF_ERROR(r.Get("reserved", &reserved));
  if (version != kVersion || reserved != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cluster index version ", version, " (reserved ", reserved,
                     "); this build reads version ", kVersion));
  }
  uint32_t said_layer, kv_heads, head_dim, sinks, clustered_end;
  KVD_RETURN_IF_ERROR(r.Get("layer", &said_layer));
  KVD_RETURN_IF_ERROR(r.Get("kv_heads", &kv_heads));
  KVD_RETURN_IF_ERROR(r.Get("head_dim", &head_dim));
  KVD_RETURN_IF_ERROR(r.Get("sinks", &sinks));
  KVD_RETURN_IF_ERROR(r.Get("clustered_end", &clustered_end));
  if (layer == 0) {
    index.kv_heads = kv_heads;
    index.head_dim = head_dim;
    index.sinks = sinks;
    index.clustered_end = clustered_end;
  }
  if (said_layer != layer || kv_heads != index.kv_heads ||
      head_dim != index.head_dim || sinks != index.sinks ||
      clustered_end != index.clustered_end || kv_heads == 0 ||
      kv_heads > kMaxHeads || head_dim == 0 || head_dim > kMaxDim ||
      sinks > clustered_end || clustered_end > kMaxPositions) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cluster index layer ", layer, " says layer ", said_layer, ", ",
        kv_heads, " heads of ", head_dim, ", positions [", sinks, ", ",
        clustered_end, "): out of range or unlike layer 0 (", index.kv_heads,
        " heads of ", index.head_dim, ", [", index.sinks, ", ",
        index.clustered_end, "))"));
  }
  const uint32_t n = clustered_end - sinks;
  std::vector<uint8_t> seen(n);
  for (uint32_t head = 0; head < kv_heads; ++head) {
    HeadClusters& h = index.heads.emplace_back();
    uint32_t k;
    KVD_RETURN_IF_ERROR(r.Get("clusters", &k));
    if (k > n || (n > 0 && k == 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer ", layer, " head ", head, ": ", k,
                       " clusters of ", n, " positions"));
    }
    KVD_RETURN_IF_ERROR(r.GetArray("offsets", size_t{k} + 1, &h.offsets));
    KVD_RETURN_IF_ERROR(
        r.GetArray("centroids", size_t{k} * head_dim, &h.centroids));
    KVD_RETURN_IF_ERROR(r.GetArray("positions", n, &h.positions));
    if (h.offsets[0] != 0 || h.offsets[k] != n) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer ", layer, " head ", head,
                       ": offsets do not span ", n, " positions"));
    }
    std::fill(seen.begin(), seen.end(), 0);
    for (uint32_t c = 0; c < k; ++c) {
      if (h.offsets[c + 1] <= h.offsets[c] || h.offsets[c + 1] > n) {
        return absl::InvalidArgumentError(
            absl::StrCat("layer ", layer, " head ", head, ": cluster ", c,
                         " is empty or its offsets are out of order"));
      }
      for (uint32_t i = h.offsets[c]; i < h.offsets[c + 1]; ++i) {
        const uint32_t p = h.positions[i];
        if (p < sinks || p >= clustered_end || seen[p - sinks] ||
            (i > h.offsets[c] && p <= h.positions[i - 1])) {
          return absl::InvalidArgumentError(absl::StrCat(
              "layer ", layer, " head ", head, ": position ", p, " of cluster ",
              c, " is out of range, repeated or out of order"));
        }
        seen[p - sinks] = 1;
      }
    }
    for (float x : h.centroids) {
      if (!std::isfinite(x)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "layer ", layer, " head ", head, ": a centroid is not finite"));
      }
    }
  }
  return r.ExpectEnd("cluster index layer");
}

}  // namespace

absl::StatusOr<ClusterIndex> DecodeClusterIndex(
    absl::Span<const absl::Span<const uint8_t>> layers) {
  if (layers.empty() || layers.size() > kMaxLayers) {
    return absl::InvalidArgumentError(
        absl::StrCat("a cluster index of ", layers.size(), " layers"));
  }
  ClusterIndex index;
  index.layers = static_cast<uint32_t>(layers.size());
  for (uint32_t l = 0; l < index.layers; ++l) {
    KVD_RETURN_IF_ERROR(DecodeLayer(layers[l], l, index));
  }
  return index;
}

}  // namespace kvd::compress
