#include "store/client/paged_chunk_io.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/memory/memory.h"
#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "transfer/layout/chunk_gather.h"

namespace kvd {
namespace {

// Runs `round` over consecutive slices of at most `per_round` chunks.
template <typename Round>
std::vector<absl::Status> InRounds(absl::Span<const PagedChunk> chunks,
                                   size_t per_round, const Round& round) {
  std::vector<absl::Status> out(chunks.size());
  for (size_t i = 0; i < chunks.size(); i += per_round) {
    const size_t n = std::min(per_round, chunks.size() - i);
    round(chunks.subspan(i, n), absl::MakeSpan(out).subspan(i, n));
  }
  return out;
}

ChunkSlots SlotsOf(const PagedChunk& chunk, uint32_t tokens) {
  return {.block_ids = chunk.block_ids,
          .first_block_offset = chunk.first_block_offset,
          .tokens = tokens};
}

}  // namespace

absl::StatusOr<std::unique_ptr<PagedChunkIO>> PagedChunkIO::Create(
    ChunkStore* store, PagedChunkIOOptions options,
    std::vector<PagedLayerView> layers) {
  const ModelSpec& spec = options.spec;
  KVD_RETURN_IF_ERROR(spec.Validate());
  if (!spec.codec_chain.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.codec_chain=\"", spec.codec_chain,
                     "\": only raw chunks are written from a paged cache"));
  }
  if (layers.size() != spec.num_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat(layers.size(), " paged layers for a spec of ",
                     spec.num_layers, " layers"));
  }
  for (size_t i = 0; i < layers.size(); ++i) {
    const PagedLayerView& v = layers[i];
    KVD_RETURN_IF_ERROR(
        Annotate(ValidatePagedLayerView(v), absl::StrCat("paged layer ", i)));
    if (v.dtype != spec.dtype || v.num_tensors != spec.TensorsPerLayer() ||
        v.kv_heads != spec.kv_heads || v.head_dim != spec.head_dim) {
      return absl::InvalidArgumentError(absl::StrCat(
          "paged layer ", i, " (", v.kv_heads, " heads of ", v.head_dim,
          ", dtype ", DTypeName(v.dtype), ", ", v.num_tensors,
          " tensors) does not match the spec (", spec.kv_heads, " heads of ",
          spec.head_dim, ", dtype ", DTypeName(spec.dtype), ", ",
          spec.TensorsPerLayer(), " tensors)"));
    }
  }
  const uint64_t object_bytes =
      ChunkHeaderSize(0, spec.num_layers) + spec.ChunkPayloadBytes();
  if (options.staging_bytes < object_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "staging_bytes=", options.staging_bytes,
        " cannot hold one chunk object of ", object_bytes, " bytes"));
  }
  auto io = absl::WrapUnique(new PagedChunkIO(store, std::move(options),
                                              std::move(layers), object_bytes));
  KVD_ASSIGN_OR_RETURN(io->registration_,
                       store->RegisterBuffer(absl::MakeSpan(io->staging_)));
  return io;
}

PagedChunkIO::PagedChunkIO(ChunkStore* store, PagedChunkIOOptions options,
                           std::vector<PagedLayerView> layers,
                           uint64_t object_bytes)
    : store_(store),
      options_(std::move(options)),
      fingerprint_(options_.spec.Fingerprint()),
      layers_(std::move(layers)),
      object_bytes_(object_bytes),
      per_round_(options_.staging_bytes / object_bytes),
      staging_(per_round_ * object_bytes) {}

std::vector<absl::Status> PagedChunkIO::Save(
    absl::Span<const PagedChunk> chunks) {
  return InRounds(chunks, per_round_,
                  [this](auto c, auto out) { SaveRound(c, out); });
}

std::vector<absl::Status> PagedChunkIO::Load(
    absl::Span<const PagedChunk> chunks) {
  return InRounds(chunks, per_round_,
                  [this](auto c, auto out) { LoadRound(c, out); });
}

void PagedChunkIO::SaveRound(absl::Span<const PagedChunk> chunks,
                             absl::Span<absl::Status> out) {
  const uint32_t tokens = options_.spec.chunk_tokens;
  std::vector<ChunkKey> keys;
  std::vector<absl::Span<const uint8_t>> objects;
  std::vector<size_t> index;  // chunk of each staged object
  for (size_t i = 0; i < chunks.size(); ++i) {
    const PagedChunk& c = chunks[i];
    const absl::Span<uint8_t> object = absl::MakeSpan(
        staging_.data() + keys.size() * object_bytes_, object_bytes_);
    out[i] = GatherChunkObject(options_.spec,
                               {.namespace_fp = fingerprint_,
                                .key = c.key,
                                .parent = c.parent,
                                .token_count = tokens},
                               layers_, SlotsOf(c, tokens), object);
    if (!out[i].ok()) continue;
    keys.push_back(c.key);
    objects.push_back(object);
    index.push_back(i);
  }
  if (keys.empty()) return;
  const std::vector<absl::Status> put = store_->Put(keys, objects);
  for (size_t k = 0; k < keys.size(); ++k) out[index[k]] = put[k];
}

void PagedChunkIO::LoadRound(absl::Span<const PagedChunk> chunks,
                             absl::Span<absl::Status> out) {
  const uint32_t tokens = options_.spec.chunk_tokens;
  std::vector<GetTarget> targets;
  std::vector<size_t> index;
  for (size_t i = 0; i < chunks.size(); ++i) {
    // Bad slots fail before anything is fetched.
    absl::StatusOr<LayerCopyPlan> plan =
        PlanLayerCopy(layers_[0], SlotsOf(chunks[i], tokens), HeadMap());
    if (!plan.ok()) {
      out[i] = plan.status();
      continue;
    }
    targets.push_back(
        {.key = chunks[i].key,
         .dst = absl::MakeSpan(staging_.data() + targets.size() * object_bytes_,
                               object_bytes_)});
    index.push_back(i);
  }
  if (targets.empty()) return;
  const std::vector<absl::StatusOr<uint64_t>> got = store_->Get(targets);
  for (size_t k = 0; k < targets.size(); ++k) {
    const size_t i = index[k];
    if (!got[k].ok()) {
      out[i] = got[k].status();
      continue;
    }
    out[i] = ScatterVerified(chunks[i], targets[k].dst.first(*got[k]));
  }
}

absl::Status PagedChunkIO::ScatterVerified(const PagedChunk& chunk,
                                           absl::Span<const uint8_t> object) {
  absl::StatusOr<ChunkHeader> header = VerifyChunkObject(object);
  if (!header.ok()) {
    return absl::DataLossError(absl::StrCat("chunk ", chunk.key.Hex(), ": ",
                                            header.status().message()));
  }
  if (header->key != chunk.key || header->namespace_fp != fingerprint_ ||
      header->token_count != options_.spec.chunk_tokens) {
    return absl::DataLossError(absl::StrCat(
        "chunk ", chunk.key.Hex(), " holds chunk ", header->key.Hex(),
        " of namespace ", header->namespace_fp.Hex(), " with ",
        header->token_count, " tokens"));
  }
  return ScatterChunkObject(*header, object, 0,
                            SlotsOf(chunk, options_.spec.chunk_tokens),
                            HeadMap(), layers_);
}

}  // namespace kvd
