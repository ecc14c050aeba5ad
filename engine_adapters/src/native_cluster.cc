// kvdepot._native: ClusterKV's cluster index (compress/cluster/) and its
// recall from the store (store/client/cluster_recall.h).
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <cstring>
#include <memory>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "compress/cluster/cluster_index.h"
#include "core/model_spec.h"
#include "engine_adapters/src/native_util.h"
#include "store/client/cluster_recall.h"

namespace kvd {
namespace {

// Keys [layers][kv_heads][tokens][head_dim], float32, as HeadTensors.
using KeysArray =
    nb::ndarray<const float, nb::ndim<4>, nb::c_contig, nb::device::cpu>;

std::vector<compress::HeadTensor> LayersOf(const KeysArray& keys) {
  std::vector<compress::HeadTensor> layers;
  const size_t per_layer = keys.shape(1) * keys.shape(2) * keys.shape(3);
  for (size_t l = 0; l < keys.shape(0); ++l) {
    compress::HeadTensor& t =
        layers.emplace_back(static_cast<uint32_t>(keys.shape(1)),
                            static_cast<uint32_t>(keys.shape(2)),
                            static_cast<uint32_t>(keys.shape(3)));
    std::memcpy(t.data.data(), keys.data() + l * per_layer,
                per_layer * sizeof(float));
  }
  return layers;
}

compress::ClusterOptions ClusterOptionsOf(uint32_t sinks,
                                          uint32_t tokens_per_cluster,
                                          uint32_t iterations, bool balanced,
                                          uint64_t seed) {
  return {.sinks = sinks,
          .tokens_per_cluster = tokens_per_cluster,
          .iterations = iterations,
          .balanced = balanced,
          .seed = seed};
}

// ClusterRecall over the caller's store and index, which it keeps alive.
struct Recall {
  nb::object store;
  nb::object index;
  std::unique_ptr<ClusterRecall> impl;
  double last_seconds = 0;  // wall time of the last recall's C++ call

  // Per want (layer, head, cluster ids): per cluster (k, v) bytes.
  using Want = std::tuple<uint32_t, uint32_t, std::vector<uint32_t>>;
  std::vector<std::vector<std::tuple<nb::bytes, nb::bytes>>> Run(
      const std::vector<Want>& wants) {
    std::vector<ClusterWant> w;
    for (const auto& [layer, head, clusters] : wants) {
      w.push_back({.layer = layer, .head = head, .clusters = clusters});
    }
    absl::StatusOr<std::vector<std::vector<RecalledCluster>>> got;
    {
      nb::gil_scoped_release release;
      const absl::Time start = absl::Now();
      got = impl->Recall(w);
      last_seconds = absl::FDivDuration(absl::Now() - start, absl::Seconds(1));
    }
    std::vector<std::vector<std::tuple<nb::bytes, nb::bytes>>> out;
    for (const std::vector<RecalledCluster>& clusters : Value(std::move(got))) {
      auto& rows = out.emplace_back();
      for (const RecalledCluster& c : clusters) {
        rows.emplace_back(
            nb::bytes(reinterpret_cast<const char*>(c.k.data()), c.k.size()),
            nb::bytes(reinterpret_cast<const char*>(c.v.data()), c.v.size()));
      }
    }
    return out;
  }
};

std::unique_ptr<Recall> MakeRecall(nb::handle store, const ModelSpec& spec,
                                   const std::vector<nb::bytes>& keys,
                                   nb::handle index, uint64_t cache_bytes,
                                   uint64_t staging_bytes) {
  auto r = std::make_unique<Recall>();
  r->store = nb::borrow<nb::object>(store);
  r->index = nb::borrow<nb::object>(index);
  ChunkStore* chunk_store = nb::cast<Store&>(store).impl.get();
  const auto* cluster_index = &nb::cast<const compress::ClusterIndex&>(index);
  absl::StatusOr<std::unique_ptr<ClusterRecall>> impl;
  std::vector<ChunkKey> chunk_keys = KeysFromList(keys);
  {
    nb::gil_scoped_release release;
    impl = ClusterRecall::Create(chunk_store,
                                 {.spec = spec,
                                  .cache_bytes = cache_bytes,
                                  .staging_bytes = staging_bytes},
                                 std::move(chunk_keys), cluster_index);
  }
  r->impl = Value(std::move(impl));
  return r;
}

}  // namespace

void BindClusterKV(nb::module_& m) {
  nb::class_<compress::ClusterIndex>(m, "ClusterIndex")
      .def_static(
          "build",
          [](const KeysArray& keys, uint32_t sinks, uint32_t tokens_per_cluster,
             uint32_t iterations, bool balanced, uint64_t seed) {
            std::vector<compress::HeadTensor> layers = LayersOf(keys);
            nb::gil_scoped_release release;
            return Value(compress::BuildClusterIndex(
                layers, ClusterOptionsOf(sinks, tokens_per_cluster, iterations,
                                         balanced, seed)));
          },
          nb::arg("keys"), nb::arg("sinks") = 16,
          nb::arg("tokens_per_cluster") = 80, nb::arg("iterations") = 20,
          nb::arg("balanced") = false, nb::arg("seed") = 1,
          "Clusters post-RoPE keys [layers][kv_heads][tokens][head_dim] "
          "(float32) past the sinks.")
      .def(
          "extend",
          [](compress::ClusterIndex& index, const KeysArray& keys,
             uint32_t tokens_per_cluster, uint32_t iterations, bool balanced,
             uint64_t seed) {
            std::vector<compress::HeadTensor> layers = LayersOf(keys);
            nb::gil_scoped_release release;
            Check(compress::ExtendClusterIndex(
                layers, index,
                ClusterOptionsOf(index.sinks, tokens_per_cluster, iterations,
                                 balanced, seed)));
          },
          nb::arg("keys"), nb::arg("tokens_per_cluster") = 80,
          nb::arg("iterations") = 20, nb::arg("balanced") = false,
          nb::arg("seed") = 1,
          "Clusters the positions past clustered_end of `keys` (the same "
          "layers, longer) into new clusters.")
      .def(
          "select",
          [](const compress::ClusterIndex& index, uint32_t layer, uint32_t head,
             nb::ndarray<const float, nb::ndim<1>, nb::c_contig,
                         nb::device::cpu>
                 query,
             uint32_t total, uint32_t budget, uint32_t recent) {
            if (layer >= index.layers || head >= index.kv_heads ||
                query.shape(0) != index.head_dim ||
                total < index.clustered_end) {
              Raise(absl::InvalidArgumentError(absl::StrCat(
                  "select(layer=", layer, ", head=", head, ", query of ",
                  query.shape(0), ", total=", total, ") on an index of ",
                  index.layers, " layers, ", index.kv_heads, " heads of ",
                  index.head_dim, " clustered up to ", index.clustered_end)));
            }
            compress::Selection s = compress::SelectClusters(
                index, layer, head, {query.data(), index.head_dim}, total,
                {.budget = budget, .recent = recent});
            return std::make_tuple(std::move(s.positions),
                                   std::move(s.clusters));
          },
          nb::arg("layer"), nb::arg("head"), nb::arg("query"), nb::arg("total"),
          nb::arg("budget"), nb::arg("recent") = 0,
          "(positions, clusters): the positions (ascending) one KV head "
          "attends to (sinks, positions past clustered_end, the last "
          "`recent`, then the clusters closest to `query` within `budget` "
          "positions in all) and those clusters' ids.")
      .def(
          "encode",
          [](const compress::ClusterIndex& index) {
            std::vector<nb::bytes> out;
            for (const auto& b : compress::EncodeClusterIndex(index)) {
              out.emplace_back(reinterpret_cast<const char*>(b.data()),
                               b.size());
            }
            return out;
          },
          "One checksummed byte form per layer.")
      .def_static(
          "decode",
          [](const std::vector<nb::bytes>& layers) {
            std::vector<absl::Span<const uint8_t>> spans;
            for (const nb::bytes& b : layers) {
              spans.emplace_back(reinterpret_cast<const uint8_t*>(b.c_str()),
                                 b.size());
            }
            return Value(compress::DecodeClusterIndex(spans));
          },
          nb::arg("layers"))
      .def(
          "clusters",
          [](const compress::ClusterIndex& index, uint32_t layer,
             uint32_t head) {
            if (layer >= index.layers || head >= index.kv_heads) {
              Raise(absl::InvalidArgumentError("layer or head out of range"));
            }
            const auto& h = index.At(layer, head);
            return std::make_tuple(h.offsets, h.positions);
          },
          nb::arg("layer"), nb::arg("head"),
          "(offsets, positions): cluster c holds "
          "positions[offsets[c]:offsets[c + 1]].")
      .def_ro("layers", &compress::ClusterIndex::layers)
      .def_ro("kv_heads", &compress::ClusterIndex::kv_heads)
      .def_ro("head_dim", &compress::ClusterIndex::head_dim)
      .def_ro("sinks", &compress::ClusterIndex::sinks)
      .def_ro("clustered_end", &compress::ClusterIndex::clustered_end);

  nb::class_<Recall>(m, "ClusterRecall")
      .def(nb::new_(&MakeRecall), nb::arg("store"), nb::arg("spec"),
           nb::arg("keys"), nb::arg("index"),
           nb::arg("cache_bytes") = uint64_t{256} << 20,
           nb::arg("staging_bytes") = uint64_t{64} << 20,
           "Recalls clusters' K/V rows from the raw chunks `keys` of a "
           "request clustered by `index`.")
      .def("recall", &Recall::Run, nb::arg("wants"),
           "wants: [(layer, head, [cluster ids])]; per want, per cluster "
           "(k, v) rows as bytes, fetched in one batch for the clusters not "
           "cached.")
      .def_ro("last_seconds", &Recall::last_seconds,
              "Wall time of the last recall's C++ call (GIL released).")
      .def_prop_ro(
          "stats",
          [](const Recall& r) {
            const ClusterRecallStats& s = r.impl->stats();
            return std::make_tuple(s.recalls, s.clusters_fetched,
                                   s.clusters_cached, s.bytes_fetched);
          },
          "(recalls, clusters_fetched, clusters_cached, bytes_fetched)");

  m.def(
      "put_cluster_index",
      [](Store& store, const ModelSpec& spec, const nb::bytes& last_chunk,
         const compress::ClusterIndex& index) {
        const ChunkKey last = KeyFromBytes(last_chunk);
        absl::Status s;
        {
          nb::gil_scoped_release release;
          s = PutClusterIndex(store.impl.get(), spec, last, index);
        }
        Check(s);
      },
      nb::arg("store"), nb::arg("spec"), nb::arg("last_chunk"),
      nb::arg("index"),
      "Stores a request's cluster index with its chunks (keyed by its last "
      "chunk).");
  m.def(
      "get_cluster_index",
      [](Store& store, const ModelSpec& spec, const nb::bytes& last_chunk) {
        const ChunkKey last = KeyFromBytes(last_chunk);
        absl::StatusOr<compress::ClusterIndex> index;
        {
          nb::gil_scoped_release release;
          index = GetClusterIndex(store.impl.get(), spec, last);
        }
        return Value(std::move(index));
      },
      nb::arg("store"), nb::arg("spec"), nb::arg("last_chunk"),
      "The cluster index stored with the chunks ending at `last_chunk`; "
      "KeyError when there is none.");
}

}  // namespace kvd
