// kvdepot._native: the Python bindings of the engine-side C++ library
// (nanobind). Everything here converts and forwards: chunk keys
// (core/chunk_key.h), the store a worker talks to (store/client/client.h,
// cluster/cluster_client.h) and the paged-cache I/O
// (store/client/paged_chunk_io.h).
//
// ClusterKV's bindings are in native_cluster.cc, the shared helpers in
// native_util.h.
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
#include "core/chunk_key.h"
#include "core/model_spec.h"
#include "engine_adapters/src/native_util.h"
#include "store/client/client.h"
#include "store/client/paged_chunk_io.h"
#include "transfer/layout/paged_layout.h"

namespace nb = nanobind;

namespace kvd {
namespace {

using Tensor = nb::ndarray<nb::device::cpu>;

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

  kvd::BindClusterKV(m);

  nb::class_<kvd::LayerLoad>(m, "LayerLoad")
      .def("wait_layer", &kvd::LayerLoad::WaitLayer, nb::arg("layer"),
           "Returns once `layer` of every chunk is in the cache (or its "
           "chunk failed).")
      .def("wait", &kvd::LayerLoad::Wait,
           "Waits for the load to end; one Status per chunk.");
}
