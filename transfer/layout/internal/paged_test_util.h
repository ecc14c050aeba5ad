// Test-only: a paged KV layer laid out in one host byte buffer under any dims
// order, with optional padding between strides, a strided head dimension and
// a misaligned start, so tests can exercise every geometry a binding passes.
// Used by the CPU and the CUDA tests (which copy `bytes` to the device and
// build the same view over the device copy).
#ifndef KVDEPOT_TRANSFER_LAYOUT_INTERNAL_PAGED_TEST_UTIL_H_
#define KVDEPOT_TRANSFER_LAYOUT_INTERNAL_PAGED_TEST_UTIL_H_

#include <cstdint>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "transfer/layout/paged_layout.h"

namespace kvd::testing {

struct PagedGeometry {
  std::string dims = "NTHD";  // with 'S': one stacked tensor
  bool latent = false;        // one latent tensor (dims without 'S')
  DType dtype = DType::kBf16;
  int64_t num_blocks = 4;
  uint32_t block_size = 4;
  uint32_t kv_heads = 2;
  uint32_t head_dim = 8;
  int64_t pad = 0;         // extra elements added to every outer stride
  int64_t dim_stride = 1;  // stride of 'D' in elements
  int64_t lead = 0;        // elements before the first tensor's start

  std::string Name() const {
    std::string n = dims + (latent ? "_latent" : "") + "_es" +
                    std::to_string(DTypeSize(dtype)) + "_bs" +
                    std::to_string(block_size) + "_h" +
                    std::to_string(kv_heads) + "_d" + std::to_string(head_dim);
    if (pad) n += "_pad" + std::to_string(pad);
    if (dim_stride != 1) n += "_ds" + std::to_string(dim_stride);
    if (lead) n += "_lead" + std::to_string(lead);
    return n;
  }
};

// Storage and descriptors for one geometry. Tensor descs hold offsets from
// the start of `bytes` in `data` until View() rebases them.
class TestPagedLayer {
 public:
  explicit TestPagedLayer(const PagedGeometry& g) : g_(g) {
    const bool stacked = g.dims.find('S') != std::string::npos;
    std::vector<int64_t> shape;
    for (char c : g.dims) shape.push_back(SizeOf(c));
    // Strides innermost first: D gets dim_stride, the others step past
    // everything inside them plus `pad`.
    std::vector<int64_t> strides(shape.size());
    int64_t next = 1;
    for (int i = static_cast<int>(shape.size()) - 1; i >= 0; --i) {
      if (g.dims[i] == 'D') {
        strides[i] = g.dim_stride * next;
        next = strides[i] * (shape[i] - 1) + next + g.pad;
      } else {
        strides[i] = next;
        next = next * shape[i] + g.pad;
      }
    }
    const int64_t tensor_elems = next;
    const int64_t es = DTypeSize(g.dtype);
    k_.dtype = v_.dtype = g.dtype;
    k_.shape = v_.shape = shape;
    k_.strides = v_.strides = strides;
    k_offset_ = g.lead * es;
    // V starts on the next 256-byte boundary after K, plus K's lead, so
    // both tensors share one alignment.
    v_offset_ = (k_offset_ + tensor_elems * es + 255) / 256 * 256 + k_offset_;
    const int64_t tensors = (stacked || g.latent) ? 1 : 2;
    bytes_.assign(static_cast<size_t>((tensors == 2 ? v_offset_ : k_offset_) +
                                      tensor_elems * es),
                  0);
  }

  const PagedGeometry& geometry() const { return g_; }
  std::vector<uint8_t>& bytes() { return bytes_; }

  // The view over a copy of bytes() that starts at `storage` (host or
  // device memory).
  absl::StatusOr<PagedLayerView> View(uint8_t* storage) const {
    TensorDesc k = k_, v = v_;
    k.data = storage + k_offset_;
    v.data = storage + v_offset_;
    if (g_.latent) return PagedViewFromLatent(k, g_.dims);
    if (g_.dims.find('S') != std::string::npos) {
      return PagedViewFromStacked(k, g_.dims);
    }
    return PagedViewFromSeparate(k, v, g_.dims);
  }

 private:
  int64_t SizeOf(char c) const {
    switch (c) {
      case 'N':
        return g_.num_blocks;
      case 'T':
        return g_.block_size;
      case 'H':
        return g_.kv_heads;
      case 'D':
        return g_.head_dim;
      case 'S':
        return 2;
    }
    return 1;
  }

  PagedGeometry g_;
  TensorDesc k_, v_;
  int64_t k_offset_ = 0;
  int64_t v_offset_ = 0;
  std::vector<uint8_t> bytes_;
};

// Address of element (tensor, block, slot, head, d) of a view, by the
// documented formula.
inline uint8_t* ElementAt(const PagedLayerView& v, uint32_t tensor,
                          int64_t block, int64_t slot, int64_t head,
                          int64_t d) {
  const PagedStrides& s = v.strides[tensor];
  return static_cast<uint8_t*>(v.base[tensor]) +
         (block * s.block + slot * s.token + head * s.head + d * s.dim) *
             int64_t{v.element_size()};
}

// Fills `v` with bytes from a seeded generator.
inline void FillRandom(std::vector<uint8_t>& v, uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
}

// One copy to test: a geometry, the chunk's block ids, offset and tokens,
// and the head map.
struct Case {
  PagedGeometry g;
  std::vector<int32_t> block_ids;
  uint32_t offset = 0;
  uint32_t tokens = 0;
  HeadMap heads;
};

inline void PrintTo(const Case& c, std::ostream* os) {
  *os << c.g.Name() << " offset=" << c.offset << " tokens=" << c.tokens;
}

// Small geometries covering every dims order, stacking, dtype size,
// padding, strided head dims, misaligned starts, latent caches, head slices
// and offsets. Block ids are the first blocks of {2, 0, 3, 1} the tokens touch.
inline std::vector<Case> Cases() {
  std::vector<Case> cases;
  auto add = [&](PagedGeometry g, HeadMap heads = {}, uint32_t offset = 1,
                 uint32_t tokens = 9) {
    const std::vector<int32_t> order = {2, 0, 3, 1};
    const size_t blocks = (offset + tokens + g.block_size - 1) / g.block_size;
    cases.push_back(
        {g, std::vector<int32_t>(order.begin(), order.begin() + blocks), offset,
         tokens, heads});
  };
  add({.dims = "NTHD"});
  add({.dims = "NHTD"});
  add({.dims = "SNTHD"});
  add({.dims = "NSTHD"});
  add({.dims = "SNHTD", .dtype = DType::kFp32});
  add({.dims = "NTHD", .dtype = DType::kFp8E4M3, .head_dim = 5});
  add({.dims = "NTHD", .pad = 3});
  add({.dims = "NHTD", .pad = 1, .dim_stride = 2});
  add({.dims = "NTHD", .lead = 3});
  add({.dims = "HNTD", .kv_heads = 3});  // heads outermost
  add({.dims = "NTD", .latent = true, .kv_heads = 1, .head_dim = 12});
  add({.dims = "NTHD", .kv_heads = 4}, {.paged_begin = 1, .count = 2});
  add({.dims = "SNTHD", .kv_heads = 2},
      {.chunk_begin = 2, .chunk_heads = 6});  // TP rank 1 of 3
  add({.dims = "NHTD", .kv_heads = 4},
      {.paged_begin = 3, .chunk_begin = 0, .count = 1, .chunk_heads = 2});
  add({.dims = "NTHD"}, {}, 0, 12);  // whole blocks
  add({.dims = "NTHD"}, {}, 3, 1);   // one token
  return cases;
}

}  // namespace kvd::testing

#endif  // KVDEPOT_TRANSFER_LAYOUT_INTERNAL_PAGED_TEST_UTIL_H_
