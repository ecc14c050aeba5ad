// Helpers shared by the binding files of kvdepot._native (native.cc,
// native_cluster.cc): Status to Python exceptions, per-item statuses, chunk
// keys as bytes, and the Store handle a worker talks to.
#ifndef KVDEPOT_ENGINE_ADAPTERS_SRC_NATIVE_UTIL_H_
#define KVDEPOT_ENGINE_ADAPTERS_SRC_NATIVE_UTIL_H_

#include <nanobind/nanobind.h>

#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/chunk_key.h"
#include "store/client/chunk_store.h"

namespace kvd {

namespace nb = nanobind;

[[noreturn]] inline void Raise(const absl::Status& s) {
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

inline void Check(const absl::Status& s) {
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

inline std::vector<ItemStatus> Items(
    const std::vector<absl::Status>& statuses) {
  return {statuses.begin(), statuses.end()};
}

inline ChunkKey KeyFromBytes(const nb::bytes& b) {
  if (b.size() != ChunkKey::kSize) {
    Raise(absl::InvalidArgumentError(absl::StrCat(
        "a chunk key is ", ChunkKey::kSize, " bytes, got ", b.size())));
  }
  ChunkKey key;
  std::memcpy(key.bytes.data(), b.c_str(), ChunkKey::kSize);
  return key;
}

inline nb::bytes KeyToBytes(const ChunkKey& key) {
  return nb::bytes(reinterpret_cast<const char*>(key.bytes.data()),
                   ChunkKey::kSize);
}

inline std::vector<ChunkKey> KeysFromList(const std::vector<nb::bytes>& list) {
  std::vector<ChunkKey> keys;
  keys.reserve(list.size());
  for (const nb::bytes& b : list) keys.push_back(KeyFromBytes(b));
  return keys;
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

// Binds ClusterKV's cluster index and recall (native_cluster.cc).
void BindClusterKV(nb::module_& m);

}  // namespace kvd

#endif  // KVDEPOT_ENGINE_ADAPTERS_SRC_NATIVE_UTIL_H_
