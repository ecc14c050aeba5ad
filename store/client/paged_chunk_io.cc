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
  return LoadLayers(chunks, options_.spec.num_layers, [](uint32_t) {});
}

std::vector<absl::Status> PagedChunkIO::LoadLayers(
    absl::Span<const PagedChunk> chunks, uint32_t layers_per_fetch,
    absl::FunctionRef<void(uint32_t)> on_layers) {
  layers_per_fetch =
      std::clamp<uint32_t>(layers_per_fetch, 1, options_.spec.num_layers);
  // Layers are complete for the batch only during its last round.
  const size_t last = chunks.empty() ? 0 : (chunks.size() - 1) / per_round_;
  size_t round = 0;
  uint32_t reported = 0;
  auto report = [&](uint32_t end) {
    on_layers(end);
    reported = end;
  };
  auto quiet = [](uint32_t) {};
  std::vector<absl::Status> out =
      InRounds(chunks, per_round_, [&](auto c, auto o) {
        if (round++ == last) {
          LoadRound(c, o, layers_per_fetch, report);
        } else {
          LoadRound(c, o, layers_per_fetch, quiet);
        }
      });
  if (reported < options_.spec.num_layers) report(options_.spec.num_layers);
  return out;
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
                             absl::Span<absl::Status> out,
                             uint32_t layers_per_fetch,
                             absl::FunctionRef<void(uint32_t)> on_layers) {
  const ModelSpec& spec = options_.spec;
  const uint64_t header_bytes = ChunkHeaderSize(0, spec.num_layers);
  const uint64_t layer_bytes = spec.LayerBytes(spec.chunk_tokens);
  std::vector<size_t> live;  // chunks not failed so far
  for (size_t i = 0; i < chunks.size(); ++i) {
    // Bad slots fail before anything is fetched.
    absl::StatusOr<LayerCopyPlan> plan = PlanLayerCopy(
        layers_[0], SlotsOf(chunks[i], spec.chunk_tokens), HeadMap());
    out[i] = plan.status();
    if (plan.ok()) live.push_back(i);
  }
  // Chunk i's parts land where they sit in its object, at staging slot i.
  auto object = [&](size_t i) {
    return absl::MakeSpan(staging_.data() + i * object_bytes_, object_bytes_);
  };
  std::vector<ChunkHeader> headers(chunks.size());
  for (uint32_t begin = 0; begin < spec.num_layers && !live.empty();
       begin += layers_per_fetch) {
    const uint32_t end = std::min(spec.num_layers, begin + layers_per_fetch);
    const uint64_t from = begin == 0 ? 0 : header_bytes + begin * layer_bytes;
    const uint64_t length = header_bytes + end * layer_bytes - from;
    std::vector<GetTarget> targets;
    for (size_t i : live) {
      targets.push_back({.key = chunks[i].key,
                         .whole_object = false,
                         .selection = {.layer_begin = begin,
                                       .layer_end = end,
                                       .with_header = begin == 0},
                         .dst = object(i).subspan(from, length)});
    }
    const std::vector<absl::StatusOr<uint64_t>> got = store_->Get(targets);
    std::vector<size_t> still;
    for (size_t k = 0; k < live.size(); ++k) {
      const size_t i = live[k];
      absl::Status& status = out[i];
      if (!got[k].ok()) {
        status = got[k].status();
      } else if (*got[k] != length) {
        status = absl::DataLossError(absl::StrCat(
            "chunk ", chunks[i].key.Hex(), ": layers [", begin, ", ", end,
            ") came as ", *got[k], " bytes, not ", length));
      } else if (begin == 0) {
        absl::StatusOr<ChunkHeader> header = HeaderOf(chunks[i], object(i));
        status = header.status();
        if (header.ok()) headers[i] = *std::move(header);
      }
      if (status.ok()) {
        status = Annotate(VerifyLayers(headers[i], object(i), begin, end),
                          absl::StrCat("chunk ", chunks[i].key.Hex()));
      }
      if (status.ok()) {
        status = ScatterChunkObject(
            headers[i], object(i), begin, SlotsOf(chunks[i], spec.chunk_tokens),
            HeadMap(),
            absl::MakeConstSpan(layers_).subspan(begin, end - begin));
      }
      if (status.ok()) still.push_back(i);
    }
    live = std::move(still);
    on_layers(live.empty() ? spec.num_layers : end);
  }
}

absl::StatusOr<ChunkHeader> PagedChunkIO::HeaderOf(
    const PagedChunk& chunk, absl::Span<const uint8_t> object) const {
  const ModelSpec& spec = options_.spec;
  absl::StatusOr<ChunkHeader> header = DecodeChunkHeader(object);
  if (!header.ok()) {
    return absl::DataLossError(absl::StrCat("chunk ", chunk.key.Hex(), ": ",
                                            header.status().message()));
  }
  if (header->key != chunk.key || header->namespace_fp != fingerprint_ ||
      header->token_count != spec.chunk_tokens) {
    return absl::DataLossError(absl::StrCat(
        "chunk ", chunk.key.Hex(), " holds chunk ", header->key.Hex(),
        " of namespace ", header->namespace_fp.Hex(), " with ",
        header->token_count, " tokens"));
  }
  // The parts were placed where a raw object of this namespace has them.
  if (header->ObjectSize() != object_bytes_) {
    return absl::DataLossError(
        absl::StrCat("chunk ", chunk.key.Hex(), " is ", header->ObjectSize(),
                     " bytes, a raw chunk of this namespace ", object_bytes_));
  }
  return header;
}

}  // namespace kvd
