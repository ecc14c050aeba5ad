#include "store/client/cluster_recall.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/container/node_hash_map.h"
#include "absl/memory/memory.h"
#include "absl/strings/str_cat.h"
#include "core/chunk_format.h"
#include "core/status.h"

namespace kvd {
namespace {

constexpr char kIndexCodec[] = "clusterkv-index";

}  // namespace

absl::StatusOr<std::unique_ptr<ClusterRecall>> ClusterRecall::Create(
    ChunkStore* store, ClusterRecallOptions options, std::vector<ChunkKey> keys,
    const compress::ClusterIndex* index) {
  const ModelSpec& spec = options.spec;
  KVD_RETURN_IF_ERROR(spec.Validate());
  if (!spec.codec_chain.empty() || spec.TensorsPerLayer() != 2) {
    return absl::InvalidArgumentError(
        "clusters are recalled from raw chunks with separate K and V");
  }
  if (index->layers != spec.num_layers || index->kv_heads != spec.kv_heads ||
      index->head_dim != spec.head_dim ||
      index->clustered_end > uint64_t{keys.size()} * spec.chunk_tokens) {
    return absl::InvalidArgumentError(absl::StrCat(
        "index of ", index->layers, " layers, ", index->kv_heads, " heads of ",
        index->head_dim, " up to position ", index->clustered_end,
        " does not fit ", keys.size(), " chunks of ", spec.chunk_tokens,
        " tokens, ", spec.num_layers, " layers, ", spec.kv_heads, " heads of ",
        spec.head_dim));
  }
  auto recall = absl::WrapUnique(
      new ClusterRecall(store, std::move(options), std::move(keys), index));
  KVD_ASSIGN_OR_RETURN(recall->registration_,
                       store->RegisterBuffer(absl::MakeSpan(recall->staging_)));
  return recall;
}

ClusterRecall::ClusterRecall(ChunkStore* store, ClusterRecallOptions options,
                             std::vector<ChunkKey> keys,
                             const compress::ClusterIndex* index)
    : store_(store),
      options_(std::move(options)),
      keys_(std::move(keys)),
      index_(index),
      row_bytes_(uint64_t{options_.spec.head_dim} *
                 DTypeSize(options_.spec.dtype)),
      staging_(options_.staging_bytes) {}

absl::StatusOr<std::vector<std::vector<RecalledCluster>>> ClusterRecall::Recall(
    absl::Span<const ClusterWant> wants) {
  const ModelSpec& spec = options_.spec;
  const uint32_t tokens = spec.chunk_tokens;
  const uint64_t header = ChunkHeaderSize(0, spec.num_layers);
  const uint64_t layer_bytes = spec.LayerBytes(tokens);
  const uint64_t tensor_bytes = layer_bytes / 2;
  ++clock_;
  ++stats_.recalls;

  // Where each fetched row goes: a row of a new entry, K or V half.
  struct Landing {
    Entry* entry;
    uint64_t offset;  // in entry->rows
  };
  struct ChunkFetch {
    std::vector<ByteRange> ranges;
    std::vector<Landing> rows;  // in range order, one per row
  };
  absl::flat_hash_map<uint32_t, ChunkFetch> fetches;  // by chunk
  absl::node_hash_map<CacheKey, Entry> fresh;  // stable: rows land in them
  uint64_t fetch_bytes = 0;
  for (const ClusterWant& w : wants) {
    if (w.layer >= index_->layers || w.head >= index_->kv_heads) {
      return absl::InvalidArgumentError(absl::StrCat(
          "want layer ", w.layer, " head ", w.head, " of an index of ",
          index_->layers, " layers and ", index_->kv_heads, " heads"));
    }
    const compress::HeadClusters& h = index_->At(w.layer, w.head);
    for (uint32_t c : w.clusters) {
      if (c >= h.clusters()) {
        return absl::InvalidArgumentError(
            absl::StrCat("cluster ", c, " of layer ", w.layer, " head ", w.head,
                         ", which has ", h.clusters()));
      }
      const CacheKey key{w.layer, w.head, c};
      if (cache_.contains(key) || fresh.contains(key)) continue;
      const absl::Span<const uint32_t> members = h.Members(c);
      Entry& e = fresh[key];
      e.tokens = static_cast<uint32_t>(members.size());
      e.rows.resize(2 * members.size() * row_bytes_);
      fetch_bytes += e.rows.size();
      // K rows, then V rows: consecutive positions merge into one range.
      for (uint64_t half : {uint64_t{0}, uint64_t{1}}) {
        for (size_t i = 0; i < members.size(); ++i) {
          const uint64_t at =
              header + w.layer * layer_bytes + half * tensor_bytes +
              (uint64_t{w.head} * tokens + members[i] % tokens) * row_bytes_;
          ChunkFetch& f = fetches[members[i] / tokens];
          if (!f.ranges.empty() &&
              f.ranges.back().offset + f.ranges.back().length == at) {
            f.ranges.back().length += row_bytes_;
          } else {
            f.ranges.push_back({at, row_bytes_});
          }
          f.rows.push_back({&e, (half * members.size() + i) * row_bytes_});
        }
      }
    }
  }
  if (fetch_bytes > staging_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("recall of ", fetch_bytes,
                     " bytes exceeds staging_bytes=", staging_.size()));
  }
  if (!fetches.empty()) {
    std::vector<GetTarget> targets;
    std::vector<const ChunkFetch*> order;
    uint64_t offset = 0;
    for (auto& [chunk, f] : fetches) {
      const uint64_t bytes = f.rows.size() * row_bytes_;
      targets.push_back(
          {.key = keys_[chunk],
           .whole_object = false,
           .selection = {.ranges = std::move(f.ranges)},
           .dst = absl::MakeSpan(staging_.data() + offset, bytes)});
      order.push_back(&f);
      offset += bytes;
    }
    const std::vector<absl::StatusOr<uint64_t>> got = store_->Get(targets);
    for (size_t k = 0; k < targets.size(); ++k) {
      if (!got[k].ok()) {
        return Annotate(got[k].status(), absl::StrCat("recall from chunk ",
                                                      targets[k].key.Hex()));
      }
      if (*got[k] != targets[k].dst.size()) {
        return absl::DataLossError(absl::StrCat(
            "chunk ", targets[k].key.Hex(), " returned ", *got[k],
            " bytes for ", targets[k].dst.size(), " bytes of rows"));
      }
    }
    for (size_t k = 0; k < targets.size(); ++k) {
      const uint8_t* src = targets[k].dst.data();
      for (const Landing& l : order[k]->rows) {
        std::memcpy(l.entry->rows.data() + l.offset, src, row_bytes_);
        src += row_bytes_;
      }
    }
    stats_.bytes_fetched += offset;
  }
  stats_.clusters_fetched += fresh.size();
  for (auto& [key, e] : fresh) {
    cached_bytes_ += e.rows.size();
    cache_.emplace(key, std::move(e));
  }
  std::vector<std::vector<RecalledCluster>> out;
  out.reserve(wants.size());
  for (const ClusterWant& w : wants) {
    std::vector<RecalledCluster>& rows = out.emplace_back();
    for (uint32_t c : w.clusters) {
      Entry& e = cache_.at(CacheKey{w.layer, w.head, c});
      if (e.last_use != clock_ &&
          !fresh.contains(CacheKey{w.layer, w.head, c})) {
        ++stats_.clusters_cached;
      }
      e.last_use = clock_;
      const absl::Span<const uint8_t> all = e.rows;
      rows.push_back({.k = all.first(all.size() / 2),
                      .v = all.subspan(all.size() / 2),
                      .tokens = e.tokens});
    }
  }
  Evict();
  return out;
}

void ClusterRecall::Evict() {
  if (cached_bytes_ <= options_.cache_bytes) return;
  std::vector<std::pair<uint64_t, CacheKey>> by_age;
  for (const auto& [key, e] : cache_) {
    if (e.last_use != clock_) by_age.push_back({e.last_use, key});
  }
  std::sort(by_age.begin(), by_age.end());
  for (const auto& [age, key] : by_age) {
    if (cached_bytes_ <= options_.cache_bytes) break;
    auto it = cache_.find(key);
    cached_bytes_ -= it->second.rows.size();
    cache_.erase(it);
  }
}

ChunkKey ClusterIndexKey(const ChunkKey& last_chunk) {
  return NextChunkKey(last_chunk, {}, "kvdepot/clusterkv-index/v1");
}

absl::Status PutClusterIndex(ChunkStore* store, const ModelSpec& spec,
                             const ChunkKey& last_chunk,
                             const compress::ClusterIndex& index) {
  if (index.layers != spec.num_layers || index.kv_heads != spec.kv_heads ||
      index.head_dim != spec.head_dim) {
    return absl::InvalidArgumentError(absl::StrCat(
        "index of ", index.layers, " layers, ", index.kv_heads, " heads of ",
        index.head_dim, " for a namespace of ", spec.num_layers, ", ",
        spec.kv_heads, " of ", spec.head_dim));
  }
  const std::vector<std::vector<uint8_t>> layers =
      compress::EncodeClusterIndex(index);
  const std::vector<absl::Span<const uint8_t>> spans(layers.begin(),
                                                     layers.end());
  const ChunkKey key = ClusterIndexKey(last_chunk);
  KVD_ASSIGN_OR_RETURN(std::vector<uint8_t> object,
                       EncodeChunkObject(spec,
                                         {.namespace_fp = spec.Fingerprint(),
                                          .key = key,
                                          .parent = last_chunk,
                                          .token_count = spec.chunk_tokens,
                                          .codec_chain = kIndexCodec},
                                         spans));
  KVD_ASSIGN_OR_RETURN(std::unique_ptr<Registration> registration,
                       store->RegisterBuffer(absl::MakeSpan(object)));
  const absl::Span<const uint8_t> objects[] = {object};
  return store->Put({&key, 1}, objects)[0];
}

absl::StatusOr<compress::ClusterIndex> GetClusterIndex(
    ChunkStore* store, const ModelSpec& spec, const ChunkKey& last_chunk) {
  const ChunkKey key = ClusterIndexKey(last_chunk);
  // The header first (its size is known), then the whole object.
  std::vector<uint8_t> header_bytes(
      ChunkHeaderSize(sizeof(kIndexCodec) - 1, spec.num_layers));
  absl::StatusOr<ChunkHeader> header;
  {
    KVD_ASSIGN_OR_RETURN(std::unique_ptr<Registration> registration,
                         store->RegisterBuffer(absl::MakeSpan(header_bytes)));
    const GetTarget target{.key = key,
                           .whole_object = false,
                           .selection = {.ranges = {{0, header_bytes.size()}}},
                           .dst = absl::MakeSpan(header_bytes)};
    KVD_RETURN_IF_ERROR(store->Get({&target, 1})[0].status());
    header = DecodeChunkHeader(header_bytes);
  }
  auto corrupt = [&key](absl::string_view why) {
    return absl::DataLossError(
        absl::StrCat("cluster index ", key.Hex(), ": ", why));
  };
  if (!header.ok()) return corrupt(header.status().message());
  if (header->key != key || header->namespace_fp != spec.Fingerprint() ||
      header->codec_chain != kIndexCodec ||
      header->num_layers != spec.num_layers) {
    return corrupt(absl::StrCat("the object is chunk ", header->key.Hex(),
                                " of namespace ", header->namespace_fp.Hex(),
                                ", codec chain '", header->codec_chain, "'"));
  }
  std::vector<uint8_t> object(header->ObjectSize());
  {
    KVD_ASSIGN_OR_RETURN(std::unique_ptr<Registration> registration,
                         store->RegisterBuffer(absl::MakeSpan(object)));
    const GetTarget target{.key = key, .dst = absl::MakeSpan(object)};
    absl::StatusOr<uint64_t> got = store->Get({&target, 1})[0];
    if (!got.ok()) return got.status();
    if (*got != object.size()) return corrupt("its size changed");
  }
  absl::StatusOr<ChunkHeader> verified = VerifyChunkObject(object);
  if (!verified.ok()) return corrupt(verified.status().message());
  if (verified->key != key || verified->codec_chain != kIndexCodec) {
    return corrupt("the object changed between reads");
  }
  std::vector<absl::Span<const uint8_t>> layers;
  for (const LayerExtent& l : verified->layers) {
    layers.push_back(absl::MakeConstSpan(object).subspan(l.offset, l.size));
  }
  absl::StatusOr<compress::ClusterIndex> index =
      compress::DecodeClusterIndex(layers);
  if (!index.ok()) return corrupt(index.status().message());
  if (index->kv_heads != spec.kv_heads || index->head_dim != spec.head_dim) {
    return corrupt("its geometry is not the namespace's");
  }
  return index;
}

}  // namespace kvd
