#include "transfer/layout/paged_layout.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace kvd {
namespace {

constexpr const char* kTensorNames[2][2] = {{"latent", ""}, {"K", "V"}};

const char* TensorName(const PagedLayerView& v, uint32_t i) {
  return kTensorNames[v.num_tensors == 2 ? 1 : 0][i];
}

bool KnownDType(DType d) {
  switch (d) {
    case DType::kBf16:
    case DType::kFp16:
    case DType::kFp32:
    case DType::kFp8E4M3:
      return true;
  }
  return false;
}

// a * b + c with overflow detection, all non-negative.
bool MulAdd(int64_t a, int64_t b, int64_t c, int64_t* out) {
  int64_t m = 0;
  if (__builtin_mul_overflow(a, b, &m)) return false;
  return !__builtin_add_overflow(m, c, out);
}

struct Dim {
  char letter;
  int64_t size;
  int64_t stride;
};

// Sorted by stride, each dimension must step past every element the
// dimensions with smaller strides reach: then no two elements share an
// address. Sets *reach to the offset of the furthest element.
absl::Status CheckNoOverlap(absl::string_view name, absl::Span<Dim> dims,
                            int64_t* reach) {
  std::sort(dims.begin(), dims.end(),
            [](const Dim& a, const Dim& b) { return a.stride < b.stride; });
  *reach = 0;
  for (const Dim& d : dims) {
    if (d.size == 1) continue;
    if (d.stride <= *reach) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, " strides overlap: dim ", std::string(1, d.letter),
          " stride=", d.stride, " <= ", *reach,
          ", the furthest element offset of the dims with smaller strides"));
    }
    if (!MulAdd(d.size - 1, d.stride, *reach, reach)) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, " extent overflows int64 at dim ", std::string(1, d.letter)));
    }
  }
  return absl::OkStatus();
}

// Checks one tensor of a validated-size view: strides, overlap, extent.
absl::Status ValidateTensor(const PagedLayerView& v, uint32_t i) {
  const char* name = TensorName(v, i);
  const uint32_t es = v.element_size();
  const uintptr_t addr = reinterpret_cast<uintptr_t>(v.base[i]);
  if (addr == 0)
    return absl::InvalidArgumentError(absl::StrCat(name, " base is null"));
  if (addr % es != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " base address 0x", absl::Hex(addr),
                     " is not aligned to the element size ", es));
  }
  const PagedStrides& s = v.strides[i];
  std::array<Dim, 4> dims = {{{'N', v.num_blocks, s.block},
                              {'T', v.block_size, s.token},
                              {'H', v.kv_heads, s.head},
                              {'D', v.head_dim, s.dim}}};
  for (const Dim& d : dims) {
    if (d.stride < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, " stride of dim ", std::string(1, d.letter), "=",
                       d.stride, " is negative"));
    }
    if (d.stride == 0 && d.size > 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, " stride of dim ", std::string(1, d.letter),
          "=0 but its size=", d.size, " > 1 (elements would alias)"));
    }
  }
  int64_t reach = 0;  // offset of the furthest element
  KVD_RETURN_IF_ERROR(CheckNoOverlap(name, absl::MakeSpan(dims), &reach));
  int64_t last_byte = 0;
  if (!MulAdd(reach, es, es - 1, &last_byte) ||
      addr > UINTPTR_MAX - static_cast<uint64_t>(last_byte)) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " extent of ", reach, " elements from base 0x",
                     absl::Hex(addr), " overflows the address space"));
  }
  return absl::OkStatus();
}

// A parsed dims string: the position of each letter, or -1.
struct DimPositions {
  int n = -1, t = -1, h = -1, d = -1, s = -1;
};

absl::StatusOr<DimPositions> ParseDims(absl::string_view dims,
                                       const TensorDesc& desc,
                                       absl::string_view what) {
  if (desc.shape.size() != dims.size() || desc.strides.size() != dims.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": dims \"", dims, "\" names ", dims.size(),
                     " dimensions but shape has ", desc.shape.size(),
                     " and strides ", desc.strides.size()));
  }
  DimPositions p;
  for (size_t i = 0; i < dims.size(); ++i) {
    int* slot = nullptr;
    switch (dims[i]) {
      case 'N':
        slot = &p.n;
        break;
      case 'T':
        slot = &p.t;
        break;
      case 'H':
        slot = &p.h;
        break;
      case 'D':
        slot = &p.d;
        break;
      case 'S':
        slot = &p.s;
        break;
      default:
        return absl::InvalidArgumentError(absl::StrCat(
            what, ": dims \"", dims, "\" has unknown letter '",
            std::string(1, dims[i]), "' at ", i, " (expected N, T, H, D, S)"));
    }
    if (*slot != -1) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": dims \"", dims, "\" repeats '",
                       std::string(1, dims[i]), "'"));
    }
    *slot = static_cast<int>(i);
    if (desc.shape[i] <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": shape[", i, "] (", std::string(1, dims[i]),
                       ")=", desc.shape[i], " must be positive"));
    }
    if (desc.strides[i] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": strides[", i, "] (", std::string(1, dims[i]),
                       ")=", desc.strides[i], " is negative"));
    }
  }
  for (const auto& [pos, letter] :
       {std::pair{p.n, 'N'}, std::pair{p.t, 'T'}, std::pair{p.d, 'D'}}) {
    if (pos == -1) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": dims \"", dims, "\" lacks '", std::string(1, letter), "'"));
    }
  }
  if (!KnownDType(desc.dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": dtype=", static_cast<int>(desc.dtype),
                     " is not a known DType"));
  }
  return p;
}

absl::StatusOr<uint32_t> Size32(const TensorDesc& desc, int pos,
                                absl::string_view what, char letter) {
  const int64_t size = desc.shape[pos];
  if (size > int64_t{UINT32_MAX}) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": shape[", pos, "] (", std::string(1, letter),
                     ")=", size, " exceeds ", UINT32_MAX));
  }
  return static_cast<uint32_t>(size);
}

// Fills the geometry (not the bases) of `view` from one tensor's dims.
absl::Status FillGeometry(const TensorDesc& desc, const DimPositions& p,
                          absl::string_view what, PagedLayerView* view) {
  view->dtype = desc.dtype;
  view->num_blocks = desc.shape[p.n];
  KVD_ASSIGN_OR_RETURN(view->block_size, Size32(desc, p.t, what, 'T'));
  KVD_ASSIGN_OR_RETURN(view->head_dim, Size32(desc, p.d, what, 'D'));
  view->kv_heads = 1;
  if (p.h != -1) {
    KVD_ASSIGN_OR_RETURN(view->kv_heads, Size32(desc, p.h, what, 'H'));
  }
  return absl::OkStatus();
}

PagedStrides StridesOf(const TensorDesc& desc, const DimPositions& p) {
  PagedStrides s;
  s.block = desc.strides[p.n];
  s.token = desc.strides[p.t];
  s.head = p.h == -1 ? 0 : desc.strides[p.h];
  s.dim = desc.strides[p.d];
  return s;
}

}  // namespace

absl::Status ValidatePagedLayerView(const PagedLayerView& v) {
  if (!KnownDType(v.dtype)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dtype=", static_cast<int>(v.dtype), " is not a known DType"));
  }
  if (v.num_tensors != 1 && v.num_tensors != 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "num_tensors=", v.num_tensors, " must be 1 (latent) or 2 (K and V)"));
  }
  if (v.num_blocks <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_blocks=", v.num_blocks, " must be positive"));
  }
  if (v.block_size == 0) {
    return absl::InvalidArgumentError("block_size=0 must be positive");
  }
  if (v.kv_heads == 0) {
    return absl::InvalidArgumentError("kv_heads=0 must be positive");
  }
  if (v.head_dim == 0) {
    return absl::InvalidArgumentError("head_dim=0 must be positive");
  }
  if (v.num_tensors == 1 && v.kv_heads != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "kv_heads=", v.kv_heads, " but a latent cache has exactly 1 head"));
  }
  for (uint32_t i = 0; i < v.num_tensors; ++i) {
    KVD_RETURN_IF_ERROR(ValidateTensor(v, i));
  }
  return absl::OkStatus();
}

absl::StatusOr<PagedLayerView> PagedViewFromStacked(const TensorDesc& kv,
                                                    absl::string_view dims) {
  KVD_ASSIGN_OR_RETURN(DimPositions p, ParseDims(dims, kv, "stacked KV"));
  if (p.s == -1 || p.h == -1) {
    return absl::InvalidArgumentError(
        absl::StrCat("stacked KV: dims \"", dims, "\" needs both 'S' and 'H'"));
  }
  if (kv.shape[p.s] != 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "stacked KV: shape[", p.s, "] (S)=", kv.shape[p.s], " must be 2"));
  }
  PagedLayerView view;
  KVD_RETURN_IF_ERROR(FillGeometry(kv, p, "stacked KV", &view));
  view.num_tensors = 2;
  const PagedStrides s = StridesOf(kv, p);
  view.strides[0] = s;
  view.strides[1] = s;
  view.base[0] = kv.data;
  int64_t v_offset = 0;
  if (!MulAdd(kv.strides[p.s], view.element_size(), 0, &v_offset)) {
    return absl::InvalidArgumentError(absl::StrCat("stacked KV: strides[", p.s,
                                                   "] (S)=", kv.strides[p.s],
                                                   " overflows in bytes"));
  }
  view.base[1] = static_cast<uint8_t*>(kv.data) + v_offset;
  KVD_RETURN_IF_ERROR(ValidatePagedLayerView(view));
  // K and V must not overlap: check S as a fifth dimension.
  const PagedStrides& ks = view.strides[0];
  std::array<Dim, 5> all = {{{'N', view.num_blocks, ks.block},
                             {'T', view.block_size, ks.token},
                             {'H', view.kv_heads, ks.head},
                             {'D', view.head_dim, ks.dim},
                             {'S', 2, kv.strides[p.s]}}};
  int64_t reach = 0;
  KVD_RETURN_IF_ERROR(
      CheckNoOverlap("stacked KV", absl::MakeSpan(all), &reach));
  return view;
}

absl::StatusOr<PagedLayerView> PagedViewFromSeparate(const TensorDesc& k,
                                                     const TensorDesc& v,
                                                     absl::string_view dims) {
  KVD_ASSIGN_OR_RETURN(DimPositions pk, ParseDims(dims, k, "K"));
  KVD_ASSIGN_OR_RETURN(DimPositions pv, ParseDims(dims, v, "V"));
  if (pk.s != -1 || pk.h == -1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "separate K and V: dims \"", dims, "\" needs 'H' and no 'S'"));
  }
  if (k.shape != v.shape) {
    for (size_t i = 0; i < k.shape.size(); ++i) {
      if (k.shape[i] != v.shape[i]) {
        return absl::InvalidArgumentError(absl::StrCat(
            "V shape[", i, "] (", std::string(1, dims[i]), ")=", v.shape[i],
            " differs from K shape[", i, "]=", k.shape[i]));
      }
    }
  }
  if (k.dtype != v.dtype) {
    return absl::InvalidArgumentError(
        absl::StrCat("V dtype=", DTypeName(v.dtype),
                     " differs from K dtype=", DTypeName(k.dtype)));
  }
  PagedLayerView view;
  KVD_RETURN_IF_ERROR(FillGeometry(k, pk, "K", &view));
  view.num_tensors = 2;
  view.base[0] = k.data;
  view.base[1] = v.data;
  view.strides[0] = StridesOf(k, pk);
  view.strides[1] = StridesOf(v, pv);
  KVD_RETURN_IF_ERROR(ValidatePagedLayerView(view));
  return view;
}

absl::StatusOr<PagedLayerView> PagedViewFromLatent(const TensorDesc& latent,
                                                   absl::string_view dims) {
  KVD_ASSIGN_OR_RETURN(DimPositions p, ParseDims(dims, latent, "latent"));
  if (p.s != -1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "latent: dims \"", dims, "\" must not have 'S' (one tensor)"));
  }
  if (p.h != -1 && latent.shape[p.h] != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "latent: shape[", p.h, "] (H)=", latent.shape[p.h], " must be 1"));
  }
  PagedLayerView view;
  KVD_RETURN_IF_ERROR(FillGeometry(latent, p, "latent", &view));
  view.num_tensors = 1;
  view.base[0] = latent.data;
  view.strides[0] = StridesOf(latent, p);
  KVD_RETURN_IF_ERROR(ValidatePagedLayerView(view));
  return view;
}

absl::StatusOr<LayerCopyPlan> PlanLayerCopy(const PagedLayerView& paged,
                                            const ChunkSlots& slots,
                                            const HeadMap& heads) {
  KVD_RETURN_IF_ERROR(ValidatePagedLayerView(paged));
  if (slots.tokens == 0) {
    return absl::InvalidArgumentError("tokens=0: a chunk covers >= 1 token");
  }
  if (slots.first_block_offset >= paged.block_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("first_block_offset=", slots.first_block_offset,
                     " must be < block_size=", paged.block_size));
  }
  const uint64_t span = uint64_t{slots.first_block_offset} + slots.tokens;
  const uint64_t blocks = (span + paged.block_size - 1) / paged.block_size;
  if (slots.block_ids.size() != blocks) {
    return absl::InvalidArgumentError(absl::StrCat(
        "block_ids has ", slots.block_ids.size(), " entries but offset=",
        slots.first_block_offset, " + tokens=", slots.tokens,
        " with block_size=", paged.block_size, " touch ", blocks, " blocks"));
  }
  for (size_t i = 0; i < slots.block_ids.size(); ++i) {
    const int32_t id = slots.block_ids[i];
    if (id < 0 || id >= paged.num_blocks) {
      return absl::InvalidArgumentError(
          absl::StrCat("block_ids[", i, "]=", id,
                       " is outside [0, num_blocks=", paged.num_blocks, ")"));
    }
  }
  std::vector<int32_t> sorted(slots.block_ids.begin(), slots.block_ids.end());
  std::sort(sorted.begin(), sorted.end());
  const auto dup = std::adjacent_find(sorted.begin(), sorted.end());
  if (dup != sorted.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "block id ", *dup, " appears more than once in block_ids"));
  }

  LayerCopyPlan plan;
  plan.paged = paged;
  plan.block_ids = slots.block_ids;
  plan.first_block_offset = slots.first_block_offset;
  plan.tokens = slots.tokens;
  if (heads.paged_begin >= paged.kv_heads) {
    return absl::InvalidArgumentError(
        absl::StrCat("head paged_begin=", heads.paged_begin,
                     " must be < kv_heads=", paged.kv_heads));
  }
  const uint32_t count =
      heads.count == 0 ? paged.kv_heads - heads.paged_begin : heads.count;
  if (uint64_t{heads.paged_begin} + count > paged.kv_heads) {
    return absl::InvalidArgumentError(
        absl::StrCat("paged heads [", heads.paged_begin, ", ",
                     uint64_t{heads.paged_begin} + count,
                     ") exceed kv_heads=", paged.kv_heads));
  }
  const uint64_t chunk_end = uint64_t{heads.chunk_begin} + count;
  const uint64_t chunk_heads =
      heads.chunk_heads == 0 ? chunk_end : heads.chunk_heads;
  if (chunk_end > chunk_heads || chunk_heads > UINT32_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk heads [", heads.chunk_begin, ", ", chunk_end,
                     ") exceed chunk_heads=", chunk_heads));
  }
  plan.paged_head_begin = heads.paged_begin;
  plan.chunk_head_begin = heads.chunk_begin;
  plan.heads = count;
  plan.chunk_heads = static_cast<uint32_t>(chunk_heads);
  plan.row_bytes = uint64_t{paged.head_dim} * paged.element_size();
  // chunk_heads, tokens < 2^32 and row_bytes < 2^35: check the products.
  uint64_t tensor_bytes = 0;
  uint64_t layer_bytes = 0;
  if (__builtin_mul_overflow(chunk_heads * plan.tokens, plan.row_bytes,
                             &tensor_bytes) ||
      __builtin_mul_overflow(tensor_bytes, uint64_t{paged.num_tensors},
                             &layer_bytes) ||
      layer_bytes > (uint64_t{1} << 62)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "canonical layer of chunk_heads=", chunk_heads, " x tokens=",
        plan.tokens, " x ", plan.row_bytes, " bytes exceeds 2^62 bytes"));
  }
  plan.tensor_bytes = tensor_bytes;
  plan.layer_bytes = layer_bytes;
  return plan;
}

}  // namespace kvd
