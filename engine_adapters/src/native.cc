// kvdepot._native: the Python bindings of the engine-side C++ library
// (nanobind). Everything here converts and forwards: chunk keys
// (core/chunk_key.h), the store a worker talks to (store/client/client.h,
// cluster/cluster_client.h) and the paged-cache I/O
// (store/client/paged_chunk_io.h).
//
// ClusterIndex wraps ClusterKV's cluster index (compress/cluster/),
// ClusterRecall its recall from the store (store/client/cluster_recall.h).
//
// Tensors (torch, numpy: anything DLPack or the buffer protocol offers) are
// read as data pointer, dtype, shape and strides, never copied: a PagedKV
// keeps references to its tensors so their memory outlives it.
//
// Errors: a failed call raises ValueError (invalid argument), KeyError (not
// found), PermissionError (token refused), ConnectionError (unavailable,
// deadline) or RuntimeError, with the status code in the message; batched
// calls return one Status per item.
// Network calls release the GIL (and errors are raised after it is back).
// A PagedKV runs one call at a time (its staging is shared): calls from
// several threads, and a load_layers still running, wait for each other.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "cluster/cluster_client.h"
#include "compress/cluster/cluster_index.h"
#include "core/chunk_key.h"
#include "core/model_spec.h"
#include "store/client/client.h"
#include "store/client/cluster_recall.h"
#include "store/client/paged_chunk_io.h"
#include "transfer/layout/paged_layout.h"

namespace nb = nanobind;

namespace kvd {
namespace {

using Tensor = nb::ndarray<nb::device::cpu>;

[[noreturn]] void Raise(const absl::Status& s) {
  const std::string text = s.ToString();
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition:
      throw nb::value_error(text.c_str());
    case absl::StatusCode::kNotFound:
      throw nb::key_error(text.c_str());
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied:
      PyErr_SetString(PyExc_PermissionError, text.c_str());
      throw nb::python_error();
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      PyErr_SetString(PyExc_ConnectionError, text.c_str());
      throw nb::python_error();
    default:
      throw std::runtime_error(text);
  }
}

void Check(const absl::Status& s) {
  if (!s.ok()) Raise(s);
}

template <typename T>
T Value(absl::StatusOr<T> v) {
  if (!v.ok()) Raise(v.status());
  return *std::move(v);
}

// The outcome of one item of a batch.
struct ItemStatus {
  absl::Status status;
  bool ok() const { return status.ok(); }
  std::string code() const { return absl::StatusCodeToString(status.code()); }
  std::string message() const { return std::string(status.message()); }
};

std::vector<ItemStatus> Items(const std::vector<absl::Status>& statuses) {
  return {statuses.begin(), statuses.end()};
}

ChunkKey KeyFromBytes(const nb::bytes& b) {
  if (b.size() != ChunkKey::kSize) {
    Raise(absl::InvalidArgumentError(absl::StrCat(
        "a chunk key is ", ChunkKey::kSize, " bytes, got ", b.size())));
  }
  ChunkKey key;
  std::memcpy(key.bytes.data(), b.c_str(), ChunkKey::kSize);
  return key;
}

nb::bytes KeyToBytes(const ChunkKey& key) {
  return nb::bytes(reinterpret_cast<const char*>(key.bytes.data()),
                   ChunkKey::kSize);
}

std::vector<ChunkKey> KeysFromList(const std::vector<nb::bytes>& list) {
  std::vector<ChunkKey> keys;
  keys.reserve(list.size());
  for (const nb::bytes& b : list) keys.push_back(KeyFromBytes(b));
  return keys;
}

DType DTypeOf(const Tensor& t) {
  const nb::dlpack::dtype d = t.dtype();
  if (d.lanes == 1 && d.bits == 16 &&
      d.code == static_cast<uint8_t>(nb::dlpack::dtype_code::Bfloat)) {
    return DType::kBf16;
  }
  if (d.lanes == 1 && d.bits == 16 &&
      d.code == static_cast<uint8_t>(nb::dlpack::dtype_code::Float)) {
    return DType::kFp16;
  }
  if (d.lanes == 1 && d.bits == 32 &&
      d.code == static_cast<uint8_t>(nb::dlpack::dtype_code::Float)) {
    return DType::kFp32;
  }
  if (d.lanes == 1 && d.bits == 8) return DType::kFp8E4M3;  // float8_e4m3fn
  Raise(absl::InvalidArgumentError(
      absl::StrCat("unsupported tensor dtype (code ", d.code, ", ", d.bits,
                   " bits): bf16, f16, f32 or fp8 e4m3")));
}

TensorDesc Describe(const Tensor& t) {
  TensorDesc d;
  d.data = t.data();
  d.dtype = DTypeOf(t);
  for (size_t i = 0; i < t.ndim(); ++i) {
    d.shape.push_back(static_cast<int64_t>(t.shape(i)));
    d.strides.push_back(t.stride(i));
  }
  return d;
}

// The store a worker talks to: one node or a cluster.
struct Store {
  std::unique_ptr<ChunkStore> impl;

  size_t Lookup(const std::vector<nb::bytes>& keys) {
    std::vector<ChunkKey> k = KeysFromList(keys);
    absl::StatusOr<size_t> n;
    {
      nb::gil_scoped_release release;
      n = impl->Lookup(k);
    }
    return Value(std::move(n));
  }
};

Store ConnectNode(const std::string& address, const std::string& token,
                  double timeout_s, const std::string& ucx_tls) {
  ClientOptions o{.address = address,
                  .token = token,
                  .ucx_tls = ucx_tls,
                  .timeout = absl::Seconds(timeout_s)};
  absl::StatusOr<std::unique_ptr<Client>> client;
  {
    nb::gil_scoped_release release;
    client = Client::Connect(o);
  }
  return Store{Value(std::move(client))};
}

Store ConnectCluster(const std::string& cluster,
                     const std::vector<std::string>& etcd, int replicas,
                     const std::string& token, double timeout_s,
                     const std::string& ucx_tls) {
  cluster::ClusterClientOptions o{
      .cluster = cluster,
      .etcd = etcd,
      .replicas = replicas,
      .node = {.token = token,
               .ucx_tls = ucx_tls,
               .timeout = absl::Seconds(timeout_s)}};
  absl::StatusOr<std::unique_ptr<cluster::ClusterClient>> client;
  {
    nb::gil_scoped_release release;
    client = cluster::ClusterClient::Connect(std::move(o));
  }
  return Store{Value(std::move(client))};
}

// PagedChunkIO over the caller's tensors and store, which it keeps alive.
struct PagedKV {
  nb::object store;
  std::vector<nb::object> tensors;
  std::unique_ptr<PagedChunkIO> io;
  absl::Mutex mu;  // held by each call of io

  // (key, parent, block_ids, first_block_offset) per chunk.
  using ChunkTuple =
      std::tuple<nb::bytes, nb::bytes, std::vector<int32_t>, uint32_t>;

  static std::vector<PagedChunk> Chunks(const std::vector<ChunkTuple>& in) {
    std::vector<PagedChunk> out;
    out.reserve(in.size());
    for (const auto& [key, parent, blocks, offset] : in) {
      out.push_back({.key = KeyFromBytes(key),
                     .parent = parent.size() == 0 ? ChunkKey::Zero()
                                                  : KeyFromBytes(parent),
                     .block_ids = blocks,
                     .first_block_offset = offset});
    }
    return out;
  }

  std::vector<ItemStatus> Save(const std::vector<ChunkTuple>& chunks) {
    std::vector<PagedChunk> c = Chunks(chunks);
    nb::gil_scoped_release release;
    absl::MutexLock lock(&mu);
    return Items(io->Save(c));
  }
  std::vector<ItemStatus> Load(const std::vector<ChunkTuple>& chunks) {
    std::vector<PagedChunk> c = Chunks(chunks);
    nb::gil_scoped_release release;
    absl::MutexLock lock(&mu);
    return Items(io->Load(c));
  }
};

// PagedKV.load_layers: a LoadLayers on a thread of its own, so the engine
// computes layer i while later layers arrive. wait_layer(i) returns once
// layer i of every chunk is in the cache or its chunk failed; wait() once
// the load has ended, with one Status per chunk.
class LayerLoad {
 public:
  LayerLoad(nb::object owner, PagedKV* kv, std::vector<PagedChunk> chunks,
            uint32_t layers_per_fetch)
      : owner_(std::move(owner)) {
    thread_ =
        std::thread([this, kv, chunks = std::move(chunks), layers_per_fetch] {
          absl::MutexLock io_lock(&kv->mu);
          std::vector<absl::Status> result = kv->io->LoadLayers(
              chunks, layers_per_fetch, [this](uint32_t end) {
                absl::MutexLock lock(&mu_);
                done_ = end;
                progressed_.SignalAll();
              });
          absl::MutexLock lock(&mu_);
          result_ = std::move(result);
          finished_ = true;
          progressed_.SignalAll();
        });
  }
  ~LayerLoad() {
    nb::gil_scoped_release release;
    Join();
  }

  void WaitLayer(uint32_t layer) {
    nb::gil_scoped_release release;
    absl::MutexLock lock(&mu_);
    while (!finished_ && done_ <= layer) progressed_.Wait(&mu_);
  }

  std::vector<ItemStatus> Wait() {
    {
      nb::gil_scoped_release release;
      Join();
    }
    return Items(result_);
  }

 private:
  void Join() {
    absl::MutexLock lock(&join_mu_);
    if (thread_.joinable()) thread_.join();
  }

  nb::object owner_;  // the PagedKV, alive while this runs
  absl::Mutex join_mu_;
  std::thread thread_;
  absl::Mutex mu_;
  absl::CondVar progressed_;
  uint32_t done_ ABSL_GUARDED_BY(mu_) = 0;  // layers [0, done_) are in
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<absl::Status> result_;  // set before finished_, read after join
};

// `layers`: per layer a (K, V) pair of tensors with dimensions `dims`
// (letters N block, T token slot, H head, D head dim; e.g. "NHTD").
std::unique_ptr<PagedKV> MakePagedKV(nb::handle store, const ModelSpec& spec,
                                     const std::vector<nb::tuple>& layers,
                                     const std::string& dims,
                                     uint64_t staging_bytes) {
  auto kv = std::make_unique<PagedKV>();
  kv->store = nb::borrow<nb::object>(store);
  ChunkStore* chunk_store = nb::cast<Store&>(store).impl.get();
  std::vector<PagedLayerView> views;
  for (size_t i = 0; i < layers.size(); ++i) {
    if (layers[i].size() != 2) {
      Raise(absl::InvalidArgumentError(
          absl::StrCat("layer ", i, ": a (K, V) pair of tensors")));
    }
    Tensor k = nb::cast<Tensor>(layers[i][0]);
    Tensor v = nb::cast<Tensor>(layers[i][1]);
    views.push_back(
        Value(PagedViewFromSeparate(Describe(k), Describe(v), dims)));
    kv->tensors.push_back(layers[i][0]);
    kv->tensors.push_back(layers[i][1]);
  }
  absl::StatusOr<std::unique_ptr<PagedChunkIO>> io;
  {
    nb::gil_scoped_release release;
    io = PagedChunkIO::Create(chunk_store,
                              {.spec = spec, .staging_bytes = staging_bytes},
                              std::move(views));
  }
  kv->io = Value(std::move(io));
  return kv;
}

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
      last_seconds = absl::ToDoubleSeconds(absl::Now() - start);
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
}  // namespace kvd

NB_MODULE(_native, m) {
  m.doc() = "kvdepot engine-side library (C++), see kvdepot/__init__.py";

  nb::enum_<kvd::DType>(m, "DType")
      .value("bf16", kvd::DType::kBf16)
      .value("f16", kvd::DType::kFp16)
      .value("f32", kvd::DType::kFp32)
      .value("fp8_e4m3", kvd::DType::kFp8E4M3);

  nb::class_<kvd::ModelSpec>(m, "ModelSpec")
      .def(nb::init<>())
      .def_rw("model_id", &kvd::ModelSpec::model_id)
      .def_rw("revision", &kvd::ModelSpec::revision)
      .def_rw("dtype", &kvd::ModelSpec::dtype)
      .def_rw("num_layers", &kvd::ModelSpec::num_layers)
      .def_rw("kv_heads", &kvd::ModelSpec::kv_heads)
      .def_rw("head_dim", &kvd::ModelSpec::head_dim)
      .def_rw("rope_theta", &kvd::ModelSpec::rope_theta)
      .def_rw("rope_scaling", &kvd::ModelSpec::rope_scaling)
      .def_rw("chunk_tokens", &kvd::ModelSpec::chunk_tokens)
      .def_rw("codec_chain", &kvd::ModelSpec::codec_chain)
      .def_rw("tenant_salt", &kvd::ModelSpec::tenant_salt)
      .def("validate",
           [](const kvd::ModelSpec& s) { kvd::Check(s.Validate()); })
      .def("fingerprint",
           [](const kvd::ModelSpec& s) {
             kvd::Check(s.Validate());
             return kvd::KeyToBytes(s.Fingerprint());
           })
      .def_prop_ro("chunk_payload_bytes", &kvd::ModelSpec::ChunkPayloadBytes);

  m.def(
      "chunk_keys",
      [](const kvd::ModelSpec& spec, const std::vector<uint32_t>& tokens) {
        kvd::Check(spec.Validate());
        std::vector<nb::bytes> out;
        for (const kvd::ChunkKey& k : kvd::ChainChunkKeys(
                 spec.Fingerprint(), tokens, spec.chunk_tokens)) {
          out.push_back(kvd::KeyToBytes(k));
        }
        return out;
      },
      nb::arg("spec"), nb::arg("tokens"),
      "Keys of every full chunk of `tokens` (DESIGN.md 3.1).");

  nb::class_<kvd::ItemStatus>(m, "Status")
      .def_prop_ro("ok", &kvd::ItemStatus::ok)
      .def_prop_ro("code", &kvd::ItemStatus::code)
      .def_prop_ro("message", &kvd::ItemStatus::message)
      .def("__repr__",
           [](const kvd::ItemStatus& s) { return s.status.ToString(); });

  nb::class_<kvd::Store>(m, "Store")
      .def_static("connect", &kvd::ConnectNode, nb::arg("address"),
                  nb::arg("token") = "", nb::arg("timeout_s") = 10.0,
                  nb::arg("ucx_tls") = "", "One kvdepot-node at host:port.")
      .def_static("connect_cluster", &kvd::ConnectCluster, nb::arg("cluster"),
                  nb::arg("etcd"), nb::arg("replicas") = 1,
                  nb::arg("token") = "", nb::arg("timeout_s") = 10.0,
                  nb::arg("ucx_tls") = "",
                  "A cluster, through its membership in etcd.")
      .def("lookup", &kvd::Store::Lookup, nb::arg("keys"),
           "How many leading keys the store holds.");

  nb::class_<kvd::PagedKV>(m, "PagedKV")
      .def(nb::new_(&kvd::MakePagedKV), nb::arg("store"), nb::arg("spec"),
           nb::arg("layers"), nb::arg("dims"),
           nb::arg("staging_bytes") = uint64_t{64} << 20)
      .def_prop_ro("object_bytes",
                   [](const kvd::PagedKV& kv) { return kv.io->object_bytes(); })
      .def("save", &kvd::PagedKV::Save, nb::arg("chunks"))
      .def("load", &kvd::PagedKV::Load, nb::arg("chunks"))
      .def(
          "load_layers",
          [](nb::handle self,
             const std::vector<kvd::PagedKV::ChunkTuple>& chunks,
             uint32_t layers_per_fetch) {
            kvd::PagedKV& kv = nb::cast<kvd::PagedKV&>(self);
            return std::make_unique<kvd::LayerLoad>(
                nb::borrow<nb::object>(self), &kv, kvd::PagedKV::Chunks(chunks),
                layers_per_fetch);
          },
          nb::arg("chunks"), nb::arg("layers_per_fetch"),
          "Starts loading `chunks` a few layers at a time, in order, on a "
          "thread of its own; returns a LayerLoad.");

  nb::class_<kvd::compress::ClusterIndex>(m, "ClusterIndex")
      .def_static(
          "build",
          [](const kvd::KeysArray& keys, uint32_t sinks,
             uint32_t tokens_per_cluster, uint32_t iterations, bool balanced,
             uint64_t seed) {
            std::vector<kvd::compress::HeadTensor> layers = kvd::LayersOf(keys);
            nb::gil_scoped_release release;
            return kvd::Value(kvd::compress::BuildClusterIndex(
                layers, kvd::ClusterOptionsOf(sinks, tokens_per_cluster,
                                              iterations, balanced, seed)));
          },
          nb::arg("keys"), nb::arg("sinks") = 16,
          nb::arg("tokens_per_cluster") = 80, nb::arg("iterations") = 20,
          nb::arg("balanced") = false, nb::arg("seed") = 1,
          "Clusters post-RoPE keys [layers][kv_heads][tokens][head_dim] "
          "(float32) past the sinks.")
      .def(
          "extend",
          [](kvd::compress::ClusterIndex& index, const kvd::KeysArray& keys,
             uint32_t tokens_per_cluster, uint32_t iterations, bool balanced,
             uint64_t seed) {
            std::vector<kvd::compress::HeadTensor> layers = kvd::LayersOf(keys);
            nb::gil_scoped_release release;
            kvd::Check(kvd::compress::ExtendClusterIndex(
                layers, index,
                kvd::ClusterOptionsOf(index.sinks, tokens_per_cluster,
                                      iterations, balanced, seed)));
          },
          nb::arg("keys"), nb::arg("tokens_per_cluster") = 80,
          nb::arg("iterations") = 20, nb::arg("balanced") = false,
          nb::arg("seed") = 1,
          "Clusters the positions past clustered_end of `keys` (the same "
          "layers, longer) into new clusters.")
      .def(
          "select",
          [](const kvd::compress::ClusterIndex& index, uint32_t layer,
             uint32_t head,
             nb::ndarray<const float, nb::ndim<1>, nb::c_contig,
                         nb::device::cpu>
                 query,
             uint32_t total, uint32_t budget, uint32_t recent) {
            if (layer >= index.layers || head >= index.kv_heads ||
                query.shape(0) != index.head_dim ||
                total < index.clustered_end) {
              kvd::Raise(absl::InvalidArgumentError(absl::StrCat(
                  "select(layer=", layer, ", head=", head, ", query of ",
                  query.shape(0), ", total=", total, ") on an index of ",
                  index.layers, " layers, ", index.kv_heads, " heads of ",
                  index.head_dim, " clustered up to ", index.clustered_end)));
            }
            kvd::compress::Selection s = kvd::compress::SelectClusters(
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
          [](const kvd::compress::ClusterIndex& index) {
            std::vector<nb::bytes> out;
            for (const auto& b : kvd::compress::EncodeClusterIndex(index)) {
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
            return kvd::Value(kvd::compress::DecodeClusterIndex(spans));
          },
          nb::arg("layers"))
      .def(
          "clusters",
          [](const kvd::compress::ClusterIndex& index, uint32_t layer,
             uint32_t head) {
            if (layer >= index.layers || head >= index.kv_heads) {
              kvd::Raise(
                  absl::InvalidArgumentError("layer or head out of range"));
            }
            const auto& h = index.At(layer, head);
            return std::make_tuple(h.offsets, h.positions);
          },
          nb::arg("layer"), nb::arg("head"),
          "(offsets, positions): cluster c holds "
          "positions[offsets[c]:offsets[c + 1]].")
      .def_ro("layers", &kvd::compress::ClusterIndex::layers)
      .def_ro("kv_heads", &kvd::compress::ClusterIndex::kv_heads)
      .def_ro("head_dim", &kvd::compress::ClusterIndex::head_dim)
      .def_ro("sinks", &kvd::compress::ClusterIndex::sinks)
      .def_ro("clustered_end", &kvd::compress::ClusterIndex::clustered_end);

  nb::class_<kvd::Recall>(m, "ClusterRecall")
      .def(nb::new_(&kvd::MakeRecall), nb::arg("store"), nb::arg("spec"),
           nb::arg("keys"), nb::arg("index"),
           nb::arg("cache_bytes") = uint64_t{256} << 20,
           nb::arg("staging_bytes") = uint64_t{64} << 20,
           "Recalls clusters' K/V rows from the raw chunks `keys` of a "
           "request clustered by `index`.")
      .def("recall", &kvd::Recall::Run, nb::arg("wants"),
           "wants: [(layer, head, [cluster ids])]; per want, per cluster "
           "(k, v) rows as bytes, fetched in one batch for the clusters not "
           "cached.")
      .def_ro("last_seconds", &kvd::Recall::last_seconds,
              "Wall time of the last recall's C++ call (GIL released).")
      .def_prop_ro(
          "stats",
          [](const kvd::Recall& r) {
            const kvd::ClusterRecallStats& s = r.impl->stats();
            return std::make_tuple(s.recalls, s.clusters_fetched,
                                   s.clusters_cached, s.bytes_fetched);
          },
          "(recalls, clusters_fetched, clusters_cached, bytes_fetched)");

  m.def(
      "put_cluster_index",
      [](kvd::Store& store, const kvd::ModelSpec& spec,
         const nb::bytes& last_chunk,
         const kvd::compress::ClusterIndex& index) {
        const kvd::ChunkKey last = kvd::KeyFromBytes(last_chunk);
        absl::Status s;
        {
          nb::gil_scoped_release release;
          s = kvd::PutClusterIndex(store.impl.get(), spec, last, index);
        }
        kvd::Check(s);
      },
      nb::arg("store"), nb::arg("spec"), nb::arg("last_chunk"),
      nb::arg("index"),
      "Stores a request's cluster index with its chunks (keyed by its last "
      "chunk).");
  m.def(
      "get_cluster_index",
      [](kvd::Store& store, const kvd::ModelSpec& spec,
         const nb::bytes& last_chunk) {
        const kvd::ChunkKey last = kvd::KeyFromBytes(last_chunk);
        absl::StatusOr<kvd::compress::ClusterIndex> index;
        {
          nb::gil_scoped_release release;
          index = kvd::GetClusterIndex(store.impl.get(), spec, last);
        }
        return kvd::Value(std::move(index));
      },
      nb::arg("store"), nb::arg("spec"), nb::arg("last_chunk"),
      "The cluster index stored with the chunks ending at `last_chunk`; "
      "KeyError when there is none.");

  nb::class_<kvd::LayerLoad>(m, "LayerLoad")
      .def("wait_layer", &kvd::LayerLoad::WaitLayer, nb::arg("layer"),
           "Returns once `layer` of every chunk is in the cache (or its "
           "chunk failed).")
      .def("wait", &kvd::LayerLoad::Wait,
           "Waits for the load to end; one Status per chunk.");
}
