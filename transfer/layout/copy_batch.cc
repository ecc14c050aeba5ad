#include "transfer/layout/copy_batch.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace kvd {
namespace {

constexpr uint32_t kUnitWidths[] = {16, 8, 4, 2, 1};

// Slots [slot_begin, slot_end) and heads [head_begin, head_end) of one block
// written by job `job`.
struct BlockWrite {
  uint32_t job;
  uint32_t slot_begin, slot_end;
  uint32_t head_begin, head_end;
};

// Rejects two scatter jobs writing the same (slot, head) of one paged
// layer, identified by its K (or latent) base address.
absl::Status CheckScatterTargetsDisjoint(
    absl::Span<const LayerCopyPlan> plans) {
  std::map<std::pair<const void*, int32_t>, std::vector<BlockWrite>> writes;
  for (uint32_t j = 0; j < plans.size(); ++j) {
    const LayerCopyPlan& p = plans[j];
    const uint32_t bs = p.paged.block_size;
    uint64_t pos = p.first_block_offset;
    const uint64_t end = pos + p.tokens;
    for (const int32_t id : p.block_ids) {
      const uint64_t block_end = (pos / bs + 1) * bs;
      const BlockWrite w{
          j, static_cast<uint32_t>(pos % bs),
          static_cast<uint32_t>(std::min(end, block_end) - pos / bs * bs),
          p.paged_head_begin, p.paged_head_begin + p.heads};
      for (const BlockWrite& o : writes[{p.paged.base[0], id}]) {
        if (w.slot_begin < o.slot_end && o.slot_begin < w.slot_end &&
            w.head_begin < o.head_end && o.head_begin < w.head_end) {
          return absl::InvalidArgumentError(absl::StrCat(
              "jobs[", o.job, "] and jobs[", j, "] both scatter into block ",
              id, " slots [", std::max(w.slot_begin, o.slot_begin), ", ",
              std::min(w.slot_end, o.slot_end), ") heads [",
              std::max(w.head_begin, o.head_begin), ", ",
              std::min(w.head_end, o.head_end), ") of the same paged layer"));
        }
      }
      writes[{p.paged.base[0], id}].push_back(w);
      pos = block_end;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<LayerCopyPlan> PlanJob(const LayerCopyJob& job) {
  KVD_ASSIGN_OR_RETURN(LayerCopyPlan plan,
                       PlanLayerCopy(job.paged, job.slots, job.heads));
  if (job.layer == nullptr) {
    return absl::InvalidArgumentError("layer is null");
  }
  if (job.layer_bytes != plan.layer_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "layer_bytes=", job.layer_bytes, " but the plan needs ",
        plan.layer_bytes, " = ", plan.paged.num_tensors,
        " tensors x chunk_heads=", plan.chunk_heads, " x tokens=", plan.tokens,
        " x ", plan.row_bytes, " bytes"));
  }
  const uintptr_t addr = reinterpret_cast<uintptr_t>(job.layer);
  if (addr % plan.paged.element_size() != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "layer address 0x", absl::Hex(addr),
        " is not aligned to the element size ", plan.paged.element_size()));
  }
  if (addr > UINTPTR_MAX - plan.layer_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer at 0x", absl::Hex(addr), " + ", plan.layer_bytes,
                     " bytes overflows the address space"));
  }
  return plan;
}

CopyJob MakeCopyJob(const LayerCopyPlan& p, void* layer, uint32_t unit) {
  CopyJob j{};
  const int64_t es = p.paged.element_size();
  for (uint32_t t = 0; t < 2; ++t) {
    // A latent job never reaches t = 1; mirror tensor 0 to keep it defined.
    const uint32_t src = t < p.paged.num_tensors ? t : 0;
    const PagedStrides& s = p.paged.strides[src];
    j.paged[t] = static_cast<uint8_t*>(p.paged.base[src]);
    j.block_stride[t] = s.block * es;
    j.token_stride[t] = s.token * es;
    j.head_stride[t] = s.head * es;
    j.unit_stride[t] = unit == es && s.dim != 1 ? s.dim * es : unit;
  }
  j.layer = static_cast<uint8_t*>(layer);
  j.block_ids = nullptr;
  j.tensor_bytes = p.tensor_bytes;
  j.row_bytes = p.row_bytes;
  j.heads = p.heads;
  j.paged_head_begin = p.paged_head_begin;
  j.chunk_head_begin = p.chunk_head_begin;
  j.tokens = p.tokens;
  j.first_block_offset = p.first_block_offset;
  j.block_size = p.paged.block_size;
  j.units_per_row = static_cast<uint32_t>(p.row_bytes / unit);
  j.unit_bytes = unit;
  j.total_units = static_cast<uint32_t>(uint64_t{p.paged.num_tensors} *
                                        p.heads * p.tokens * j.units_per_row);
  return j;
}

}  // namespace

uint32_t UnitBytesFor(const LayerCopyPlan& p, const void* layer) {
  const PagedLayerView& v = p.paged;
  const uint32_t es = v.element_size();
  const int64_t ies = es;
  uint64_t bits = p.row_bytes | reinterpret_cast<uintptr_t>(layer);
  if (v.num_tensors == 2) bits |= p.tensor_bytes;
  for (uint32_t t = 0; t < v.num_tensors; ++t) {
    const PagedStrides& s = v.strides[t];
    if (s.dim != 1 && v.head_dim > 1) return es;  // one element per unit
    bits |= reinterpret_cast<uintptr_t>(v.base[t]);
    // A dimension of size 1 is only ever indexed at 0: its stride is moot.
    if (v.num_blocks > 1) bits |= static_cast<uint64_t>(s.block * ies);
    if (v.block_size > 1) bits |= static_cast<uint64_t>(s.token * ies);
    if (v.kv_heads > 1) bits |= static_cast<uint64_t>(s.head * ies);
  }
  const uint64_t lowest = bits & (~bits + 1);  // largest power of 2 dividing
  return lowest == 0 || lowest > 16 ? 16 : static_cast<uint32_t>(lowest);
}

void CopyBatch::Relocate(const int32_t* ids) {
  for (size_t i = 0; i < jobs.size(); ++i) {
    jobs[i].block_ids = ids + id_offsets[i];
  }
}

absl::Status AppendChunkJobs(absl::Span<const PagedLayerView> layers,
                             const ChunkSlots& slots, const HeadMap& heads,
                             void* payload, uint64_t payload_bytes,
                             std::vector<LayerCopyJob>* jobs) {
  if (layers.empty()) {
    return absl::InvalidArgumentError(
        "layers is empty: a chunk has >= 1 layer");
  }
  if (payload == nullptr) return absl::InvalidArgumentError("payload is null");
  std::vector<LayerCopyJob> add;
  add.reserve(layers.size());
  uint64_t offset = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    absl::StatusOr<LayerCopyPlan> plan = PlanLayerCopy(layers[i], slots, heads);
    if (!plan.ok()) {
      return Annotate(plan.status(), absl::StrCat("layers[", i, "]"));
    }
    LayerCopyJob job;
    job.paged = layers[i];
    job.slots = slots;
    job.heads = heads;
    job.layer = static_cast<uint8_t*>(payload) + offset;
    job.layer_bytes = plan->layer_bytes;
    offset += plan->layer_bytes;
    add.push_back(job);
  }
  if (offset != payload_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("payload_bytes=", payload_bytes, " but ", layers.size(),
                     " layers take ", offset, " bytes"));
  }
  jobs->insert(jobs->end(), add.begin(), add.end());
  return absl::OkStatus();
}

absl::StatusOr<CopyBatch> BuildCopyBatch(absl::Span<const LayerCopyJob> jobs,
                                         CopyDirection direction) {
  std::vector<LayerCopyPlan> plans;
  std::vector<uint32_t> units;
  plans.reserve(jobs.size());
  units.reserve(jobs.size());
  for (size_t i = 0; i < jobs.size(); ++i) {
    absl::StatusOr<LayerCopyPlan> plan = PlanJob(jobs[i]);
    if (!plan.ok()) {
      return Annotate(plan.status(), absl::StrCat("jobs[", i, "]"));
    }
    const uint32_t unit = UnitBytesFor(*plan, jobs[i].layer);
    const uint64_t total = uint64_t{plan->paged.num_tensors} * plan->heads *
                           plan->tokens * (plan->row_bytes / unit);
    if (total > INT32_MAX) {
      return absl::InvalidArgumentError(
          absl::StrCat("jobs[", i, "]: ", total, " copy units of ", unit,
                       " bytes exceed 2^31 - 1; split the chunk"));
    }
    plans.push_back(*std::move(plan));
    units.push_back(unit);
  }
  if (direction == CopyDirection::kScatter) {
    KVD_RETURN_IF_ERROR(CheckScatterTargetsDisjoint(plans));
  }
  CopyBatch batch;
  for (const uint32_t width : kUnitWidths) {
    CopyGroup group;
    group.unit_bytes = width;
    group.first_job = static_cast<uint32_t>(batch.jobs.size());
    for (uint32_t i = 0; i < plans.size(); ++i) {
      if (units[i] != width) continue;
      CopyJob j = MakeCopyJob(plans[i], jobs[i].layer, width);
      group.max_units = std::max(group.max_units, j.total_units);
      batch.jobs.push_back(j);
      batch.id_offsets.push_back(batch.block_ids.size());
      batch.block_ids.insert(batch.block_ids.end(), plans[i].block_ids.begin(),
                             plans[i].block_ids.end());
      batch.source_index.push_back(i);
    }
    group.num_jobs = static_cast<uint32_t>(batch.jobs.size()) - group.first_job;
    if (group.num_jobs > 0) batch.groups.push_back(group);
  }
  return batch;
}

}  // namespace kvd
