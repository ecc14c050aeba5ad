#include "transfer/layout/chunk_gather.h"

#include <cstdint>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace kvd {
namespace {

// Calls fn(paged row address, canonical row offset) for every row (tensor,
// head, token) of the plan; a row is head_dim elements.
template <typename Fn>
void ForEachRow(const LayerCopyPlan& p, Fn fn) {
  const PagedLayerView& v = p.paged;
  const int64_t es = v.element_size();
  for (uint32_t t = 0; t < v.num_tensors; ++t) {
    const PagedStrides& s = v.strides[t];
    uint8_t* base = static_cast<uint8_t*>(v.base[t]);
    for (uint32_t h = 0; h < p.heads; ++h) {
      const int64_t head_off = int64_t{p.paged_head_begin + h} * s.head;
      for (uint32_t tok = 0; tok < p.tokens; ++tok) {
        const uint64_t pos = uint64_t{p.first_block_offset} + tok;
        const int64_t block = p.block_ids[pos / v.block_size];
        const int64_t slot = static_cast<int64_t>(pos % v.block_size);
        uint8_t* row =
            base + (block * s.block + slot * s.token + head_off) * es;
        fn(row, s.dim * es, p.CanonicalOffset(t, p.chunk_head_begin + h, tok));
      }
    }
  }
}

absl::Status CheckLayerSize(const LayerCopyPlan& plan, size_t size) {
  if (size != plan.layer_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "layer has ", size, " bytes, expected ", plan.layer_bytes, " = ",
        plan.paged.num_tensors, " tensors x chunk_heads=", plan.chunk_heads,
        " x tokens=", plan.tokens, " x head_dim=", plan.paged.head_dim, " x ",
        plan.paged.element_size(), " bytes"));
  }
  return absl::OkStatus();
}

// Plans every layer and checks they agree with layer 0 and fill
// `payload_size` bytes.
absl::StatusOr<std::vector<LayerCopyPlan>> PlanChunk(
    absl::Span<const PagedLayerView> layers, const ChunkSlots& slots,
    const HeadMap& heads, size_t payload_size) {
  if (layers.empty()) {
    return absl::InvalidArgumentError(
        "layers is empty: a chunk has >= 1 layer");
  }
  std::vector<LayerCopyPlan> plans;
  plans.reserve(layers.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    absl::StatusOr<LayerCopyPlan> plan = PlanLayerCopy(layers[i], slots, heads);
    if (!plan.ok()) {
      return Annotate(plan.status(), absl::StrCat("layers[", i, "]"));
    }
    const LayerCopyPlan& first = plans.empty() ? *plan : plans.front();
    if (plan->paged.dtype != first.paged.dtype ||
        plan->paged.num_tensors != first.paged.num_tensors ||
        plan->layer_bytes != first.layer_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "layers[", i, "] (dtype=", DTypeName(plan->paged.dtype),
          ", tensors=", plan->paged.num_tensors, ", ", plan->layer_bytes,
          " canonical bytes) differs from layers[0] (dtype=",
          DTypeName(first.paged.dtype), ", tensors=", first.paged.num_tensors,
          ", ", first.layer_bytes, " bytes)"));
    }
    plans.push_back(*std::move(plan));
  }
  const uint64_t expected = plans.front().layer_bytes * plans.size();
  if (payload_size != expected) {
    return absl::InvalidArgumentError(absl::StrCat(
        "payload has ", payload_size, " bytes, expected ", expected, " = ",
        plans.size(), " layers x ", plans.front().layer_bytes, " bytes"));
  }
  return plans;
}

// Checks that the object's geometry matches view `v` (heads as mapped).
absl::Status CheckObjectMatchesView(const ChunkHeader& h,
                                    const PagedLayerView& v, size_t i) {
  const uint32_t tensors = h.layout == KvLayout::kLatent ? 1 : 2;
  if (v.dtype != h.dtype || v.num_tensors != tensors ||
      v.head_dim != h.head_dim) {
    return absl::InvalidArgumentError(
        absl::StrCat("layers[", i, "] (dtype=", DTypeName(v.dtype),
                     ", tensors=", v.num_tensors, ", head_dim=", v.head_dim,
                     ") does not match the chunk (dtype=", DTypeName(h.dtype),
                     ", tensors=", tensors, ", head_dim=", h.head_dim, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

void GatherPlanned(const LayerCopyPlan& plan, uint8_t* layer) {
  const uint64_t row_bytes = plan.row_bytes;
  const uint32_t es = plan.paged.element_size();
  const uint32_t dim = plan.paged.head_dim;
  ForEachRow(
      plan, [&](const uint8_t* row, int64_t dim_stride_bytes, uint64_t canon) {
        uint8_t* dst = layer + canon;
        if (dim_stride_bytes == es) {
          std::memcpy(dst, row, row_bytes);
          return;
        }
        for (uint32_t d = 0; d < dim; ++d) {
          std::memcpy(dst + uint64_t{d} * es, row + d * dim_stride_bytes, es);
        }
      });
}

void ScatterPlanned(const LayerCopyPlan& plan, const uint8_t* layer) {
  const uint64_t row_bytes = plan.row_bytes;
  const uint32_t es = plan.paged.element_size();
  const uint32_t dim = plan.paged.head_dim;
  ForEachRow(plan, [&](uint8_t* row, int64_t dim_stride_bytes, uint64_t canon) {
    const uint8_t* src = layer + canon;
    if (dim_stride_bytes == es) {
      std::memcpy(row, src, row_bytes);
      return;
    }
    for (uint32_t d = 0; d < dim; ++d) {
      std::memcpy(row + d * dim_stride_bytes, src + uint64_t{d} * es, es);
    }
  });
}

absl::Status GatherChunkLayer(const PagedLayerView& paged,
                              const ChunkSlots& slots, const HeadMap& heads,
                              absl::Span<uint8_t> layer) {
  KVD_ASSIGN_OR_RETURN(LayerCopyPlan plan, PlanLayerCopy(paged, slots, heads));
  KVD_RETURN_IF_ERROR(CheckLayerSize(plan, layer.size()));
  GatherPlanned(plan, layer.data());
  return absl::OkStatus();
}

absl::Status ScatterChunkLayer(absl::Span<const uint8_t> layer,
                               const ChunkSlots& slots, const HeadMap& heads,
                               const PagedLayerView& paged) {
  KVD_ASSIGN_OR_RETURN(LayerCopyPlan plan, PlanLayerCopy(paged, slots, heads));
  KVD_RETURN_IF_ERROR(CheckLayerSize(plan, layer.size()));
  ScatterPlanned(plan, layer.data());
  return absl::OkStatus();
}

absl::Status GatherChunk(absl::Span<const PagedLayerView> layers,
                         const ChunkSlots& slots, const HeadMap& heads,
                         absl::Span<uint8_t> payload) {
  KVD_ASSIGN_OR_RETURN(std::vector<LayerCopyPlan> plans,
                       PlanChunk(layers, slots, heads, payload.size()));
  uint8_t* dst = payload.data();
  for (const LayerCopyPlan& plan : plans) {
    GatherPlanned(plan, dst);
    dst += plan.layer_bytes;
  }
  return absl::OkStatus();
}

absl::Status ScatterChunk(absl::Span<const uint8_t> payload,
                          const ChunkSlots& slots, const HeadMap& heads,
                          absl::Span<const PagedLayerView> layers) {
  KVD_ASSIGN_OR_RETURN(std::vector<LayerCopyPlan> plans,
                       PlanChunk(layers, slots, heads, payload.size()));
  const uint8_t* src = payload.data();
  for (const LayerCopyPlan& plan : plans) {
    ScatterPlanned(plan, src);
    src += plan.layer_bytes;
  }
  return absl::OkStatus();
}

absl::Status GatherChunkObject(const ModelSpec& spec, const ChunkIdentity& id,
                               absl::Span<const PagedLayerView> layers,
                               const ChunkSlots& slots,
                               absl::Span<uint8_t> object) {
  KVD_RETURN_IF_ERROR(spec.Validate());
  if (!id.codec_chain.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "codec_chain=\"", id.codec_chain, "\": a gathered chunk is raw"));
  }
  if (layers.size() != spec.num_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("layers has ", layers.size(),
                     " entries, spec.num_layers=", spec.num_layers));
  }
  if (id.token_count != slots.tokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("token_count=", id.token_count,
                     " differs from slots.tokens=", slots.tokens));
  }
  ChunkHeader shape;
  shape.dtype = spec.dtype;
  shape.layout = spec.layout;
  shape.head_dim = spec.head_dim;
  for (size_t i = 0; i < layers.size(); ++i) {
    KVD_RETURN_IF_ERROR(CheckObjectMatchesView(shape, layers[i], i));
    if (layers[i].kv_heads != spec.kv_heads) {
      return absl::InvalidArgumentError(
          absl::StrCat("layers[", i, "] kv_heads=", layers[i].kv_heads,
                       " differs from spec.kv_heads=", spec.kv_heads));
    }
  }
  const uint64_t header_size = ChunkHeaderSize(0, spec.num_layers);
  const uint64_t layer_bytes = spec.LayerBytes(slots.tokens);
  if (object.size() != header_size + layer_bytes * layers.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "object has ", object.size(), " bytes, a raw chunk of ", slots.tokens,
        " tokens takes ", header_size + layer_bytes * layers.size()));
  }
  KVD_RETURN_IF_ERROR(
      GatherChunk(layers, slots, HeadMap{}, object.subspan(header_size)));
  const std::vector<uint64_t> sizes(layers.size(), layer_bytes);
  return SealChunkObject(spec, id, sizes, object);
}

absl::Status ScatterChunkObject(const ChunkHeader& header,
                                absl::Span<const uint8_t> object,
                                uint32_t layer_begin, const ChunkSlots& slots,
                                const HeadMap& heads,
                                absl::Span<const PagedLayerView> layers) {
  if (!header.IsRaw()) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk has codec_chain=\"", header.codec_chain,
                     "\": decode it before scattering"));
  }
  if (layers.empty() || layer_begin >= header.num_layers ||
      layers.size() > header.num_layers - layer_begin) {
    return absl::InvalidArgumentError(absl::StrCat(
        "layers [", layer_begin, ", ", uint64_t{layer_begin} + layers.size(),
        ") is empty or exceeds the chunk's num_layers=", header.num_layers));
  }
  if (header.layers.size() != header.num_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("header has ", header.layers.size(),
                     " layer extents for num_layers=", header.num_layers));
  }
  if (slots.tokens != header.token_count) {
    return absl::InvalidArgumentError(absl::StrCat(
        "slots.tokens=", slots.tokens,
        " differs from the chunk's token_count=", header.token_count));
  }
  if (heads.chunk_heads != 0 && heads.chunk_heads != header.kv_heads) {
    return absl::InvalidArgumentError(
        absl::StrCat("heads.chunk_heads=", heads.chunk_heads,
                     " differs from the chunk's kv_heads=", header.kv_heads));
  }
  HeadMap map = heads;
  map.chunk_heads = header.kv_heads;
  std::vector<LayerCopyPlan> plans;
  plans.reserve(layers.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    KVD_RETURN_IF_ERROR(CheckObjectMatchesView(header, layers[i], i));
    absl::StatusOr<LayerCopyPlan> plan = PlanLayerCopy(layers[i], slots, map);
    if (!plan.ok()) {
      return Annotate(plan.status(), absl::StrCat("layers[", i, "]"));
    }
    const LayerExtent& ext = header.layers[layer_begin + i];
    if (ext.size != plan->layer_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("chunk layer ", layer_begin + i, " has ", ext.size,
                       " bytes, the view expects ", plan->layer_bytes));
    }
    if (ext.offset > object.size() || ext.size > object.size() - ext.offset) {
      return absl::OutOfRangeError(absl::StrCat(
          "chunk layer ", layer_begin + i, " at [", ext.offset, ", +", ext.size,
          ") lies past the object's ", object.size(), " bytes"));
    }
    plans.push_back(*std::move(plan));
  }
  for (size_t i = 0; i < plans.size(); ++i) {
    ScatterPlanned(plans[i],
                   object.data() + header.layers[layer_begin + i].offset);
  }
  return absl::OkStatus();
}

}  // namespace kvd
