// ControlService, admin RPCs: ListChunks, Inspect and Evict (Drain is in
// control_drain.cc). Each checks the admin token first, then validates every
// request field.
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "spdlog/spdlog.h"
#include "store/proto/grpc_status.h"
#include "store/server/control_service.h"

namespace kvd {
namespace {

namespace pb = kvdepot::v1;

constexpr absl::string_view kPageTokenPrefix = "c1.";

std::string Quoted(absl::string_view text) {
  constexpr size_t kMaxShown = 80;
  if (text.size() > kMaxShown) {
    return absl::StrCat("\"", text.substr(0, kMaxShown), "...\" (", text.size(),
                        " bytes)");
  }
  return absl::StrCat("\"", text, "\"");
}

// A 64-hex-digit key or fingerprint from request field `field`.
absl::StatusOr<ChunkKey> ParseKeyField(absl::string_view field,
                                       absl::string_view hex) {
  absl::StatusOr<ChunkKey> key = ChunkKey::FromHex(hex);
  if (!key.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(field, "=", Quoted(hex),
                                                   " is not 64 hex digits (",
                                                   hex.size(), " characters)"));
  }
  return key;
}

absl::StatusOr<std::optional<TierKind>> ParseTierField(int tier) {
  switch (tier) {
    case pb::TIER_UNSPECIFIED:
      return std::optional<TierKind>();
    case pb::TIER_GPU:
      return std::optional<TierKind>(TierKind::kGpu);
    case pb::TIER_HOST:
      return std::optional<TierKind>(TierKind::kHost);
    case pb::TIER_SSD:
      return std::optional<TierKind>(TierKind::kSsd);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "tier=", tier, " is not a known tier (1 gpu, 2 host, 3 ssd, 0 all)"));
}

std::string EncodePageToken(uint64_t cursor) {
  return absl::StrCat(kPageTokenPrefix, cursor);
}

absl::StatusOr<uint64_t> DecodePageToken(absl::string_view token) {
  uint64_t cursor = 0;
  if (token.empty()) return 0;
  absl::string_view digits = token;
  if (!absl::ConsumePrefix(&digits, kPageTokenPrefix) || digits.empty() ||
      digits.size() > 10 || !absl::ascii_isdigit(digits[0]) ||
      !absl::SimpleAtoi(digits, &cursor) || cursor == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_token=", Quoted(token),
                     " is not a next_page_token this node issued"));
  }
  return cursor;
}

int64_t UnixMillis(absl::Time t) { return absl::ToUnixMillis(t); }

void SummaryToProto(const ChunkSummary& c, pb::ChunkSummary* out) {
  out->set_key(c.key.Hex());
  if (c.namespace_fp) out->set_namespace_fingerprint(c.namespace_fp->Hex());
  out->set_tier(TierToProto(c.tier));
  out->set_on_ssd(c.on_ssd);
  out->set_object_bytes(c.object_bytes);
  out->set_pins(c.pins);
  out->set_children(c.children);
  out->set_last_access_unix_ms(UnixMillis(c.last_access));
}

void ChunkInfoToProto(const ChunkKey& key, const ChunkInfo& info,
                      pb::InspectResponse* out) {
  const ChunkHeader& h = info.header;
  out->set_key(key.Hex());
  out->set_namespace_fingerprint(h.namespace_fp.Hex());
  if (!h.parent.IsZero()) out->set_parent(h.parent.Hex());
  out->set_format_version(h.version);
  out->set_token_count(h.token_count);
  out->set_num_layers(h.num_layers);
  out->set_kv_heads(h.kv_heads);
  out->set_head_dim(h.head_dim);
  out->set_dtype(std::string(DTypeName(h.dtype)));
  out->set_layout(h.layout == KvLayout::kLatent ? "latent" : "separate_kv");
  out->set_codec_chain(h.codec_chain);
  out->set_header_bytes(h.header_size);
  out->set_object_bytes(info.object_bytes);
  for (const LayerExtent& l : h.layers) {
    pb::LayerExtent* layer = out->add_layers();
    layer->set_offset(l.offset);
    layer->set_size(l.size);
    layer->set_checksum(l.checksum);
  }
  out->set_tier(TierToProto(info.tier));
  out->set_on_ssd(info.on_ssd);
  out->set_pins(info.pins);
  out->set_children(info.children);
  out->set_last_access_unix_ms(UnixMillis(info.last_access));
}

}  // namespace

::grpc::Status ControlService::ListChunks(::grpc::ServerContext* context,
                                          const pb::ListChunksRequest* request,
                                          pb::ListChunksResponse* response) {
  absl::Status allowed =
      Authorize(context, Access::kAdmin, "Control.ListChunks");
  if (!allowed.ok()) return ToGrpcStatus(allowed);
  ListChunksOptions options;
  if (!request->namespace_fingerprint().empty()) {
    absl::StatusOr<ChunkKey> fp = ParseKeyField(
        "namespace_fingerprint", request->namespace_fingerprint());
    if (!fp.ok()) return ToGrpcStatus(fp.status());
    options.namespace_fp = *fp;
  }
  absl::StatusOr<std::optional<TierKind>> tier =
      ParseTierField(request->tier());
  if (!tier.ok()) return ToGrpcStatus(tier.status());
  options.tier = *tier;
  if (request->page_size() > kMaxListPageSize) {
    return ToGrpcStatus(absl::InvalidArgumentError(
        absl::StrCat("page_size=", request->page_size(),
                     " exceeds the maximum ", kMaxListPageSize)));
  }
  options.limit =
      request->page_size() == 0 ? kDefaultListPageSize : request->page_size();
  absl::StatusOr<uint64_t> cursor = DecodePageToken(request->page_token());
  if (!cursor.ok()) return ToGrpcStatus(cursor.status());
  options.cursor = *cursor;

  ChunkPage page = engine_->ListChunks(options);
  for (const ChunkSummary& c : page.chunks) {
    SummaryToProto(c, response->add_chunks());
  }
  if (page.next_cursor != 0) {
    response->set_next_page_token(EncodePageToken(page.next_cursor));
  }
  response->set_namespace_unknown(page.namespace_unknown);
  return ToGrpcStatus(absl::OkStatus());
}

::grpc::Status ControlService::Inspect(::grpc::ServerContext* context,
                                       const pb::InspectRequest* request,
                                       pb::InspectResponse* response) {
  absl::Status allowed = Authorize(context, Access::kAdmin, "Control.Inspect");
  if (!allowed.ok()) return ToGrpcStatus(allowed);
  absl::StatusOr<ChunkKey> key = ParseKeyField("key", request->key());
  if (!key.ok()) return ToGrpcStatus(key.status());
  absl::StatusOr<ChunkInfo> info = engine_->Inspect(*key);
  if (!info.ok()) return ToGrpcStatus(info.status());
  ChunkInfoToProto(*key, *info, response);
  return ToGrpcStatus(absl::OkStatus());
}

::grpc::Status ControlService::Evict(::grpc::ServerContext* context,
                                     const pb::EvictRequest* request,
                                     pb::EvictResponse* response) {
  absl::Status allowed = Authorize(context, Access::kAdmin, "Control.Evict");
  if (!allowed.ok()) return ToGrpcStatus(allowed);
  if (request->keys_size() == 0 || request->keys_size() > kMaxEvictKeys) {
    return ToGrpcStatus(absl::InvalidArgumentError(
        absl::StrCat("keys has ", request->keys_size(),
                     " entries; between 1 and ", kMaxEvictKeys, " allowed")));
  }
  std::vector<ChunkKey> keys;
  keys.reserve(request->keys_size());
  for (int i = 0; i < request->keys_size(); ++i) {
    absl::StatusOr<ChunkKey> key =
        ParseKeyField(absl::StrCat("keys[", i, "]"), request->keys(i));
    if (!key.ok()) return ToGrpcStatus(key.status());
    keys.push_back(*key);
  }
  std::vector<absl::Status> removed = engine_->Remove(keys);
  uint32_t evicted = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    pb::EvictResult* result = response->add_results();
    result->set_key(keys[i].Hex());
    result->set_code(static_cast<int32_t>(removed[i].code()));
    result->set_message(std::string(removed[i].message()));
    if (removed[i].ok()) ++evicted;
  }
  response->set_evicted(evicted);
  spdlog::info("Control.Evict from {}: {} of {} chunks evicted",
               context != nullptr ? context->peer() : "unknown", evicted,
               keys.size());
  return ToGrpcStatus(absl::OkStatus());
}

}  // namespace kvd
