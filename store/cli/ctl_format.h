// Rendering of Control responses for kvdepotctl: JSON (stable snake_case
// keys, enums as lower-case names, byte counts as integers, hit rates as
// fractions in [0, 1] or null when there were no requests) and
// human-readable tables (bytes in KiB/MiB/GiB, rates in percent).
//
// Pure functions; thread-safe.
#ifndef KVDEPOT_STORE_CLI_CTL_FORMAT_H_
#define KVDEPOT_STORE_CLI_CTL_FORMAT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "store/proto/kvdepot.pb.h"

namespace kvd {

// "512 B", "1.50 KiB", "64.00 GiB".
std::string HumanBytes(uint64_t bytes);
// "0s", "59s", "3m 07s", "2h 03m 07s", "4d 02h 03m".
std::string HumanDuration(uint64_t ms);
// "host" for TIER_HOST, "standalone" for MODE_STANDALONE, "serving" for
// HEALTH_SERVING; "unknown(N)" for values newer than this build.
std::string TierLabel(int tier);
std::string ModeLabel(int mode);
std::string HealthLabel(int health);

nlohmann::ordered_json StatusToJson(const kvdepot::v1::StatusResponse& status);
nlohmann::ordered_json StatsToJson(const kvdepot::v1::StatsResponse& stats);

std::string StatusToText(const kvdepot::v1::StatusResponse& status);
std::string StatsToText(const kvdepot::v1::StatsResponse& stats);

// "ok", "not_found", ... for a google.rpc.Code number.
std::string CodeLabel(int code);
// "2026-11-22 17:35:47 UTC"; "-" for 0.
std::string HumanUnixMillis(int64_t ms);

// A chunk listing gathered over pages: {"chunks": [...], "count": N,
// "namespace_unknown": M, "truncated": bool}; the text form is a table with
// full keys (to paste into inspect / evict) and short namespaces.
nlohmann::ordered_json ChunkSummaryToJson(const kvdepot::v1::ChunkSummary& c);
nlohmann::ordered_json ChunkListToJson(
    const std::vector<kvdepot::v1::ChunkSummary>& chunks,
    uint64_t namespace_unknown, bool truncated);
std::string ChunkListToText(
    const std::vector<kvdepot::v1::ChunkSummary>& chunks,
    uint64_t namespace_unknown, bool truncated);

nlohmann::ordered_json InspectToJson(const kvdepot::v1::InspectResponse& r);
std::string InspectToText(const kvdepot::v1::InspectResponse& r);

nlohmann::ordered_json EvictToJson(const kvdepot::v1::EvictResponse& r);
std::string EvictToText(const kvdepot::v1::EvictResponse& r);

// One JSON object per progress message (kvdepotctl drain --json prints JSON
// Lines).
nlohmann::ordered_json DrainProgressToJson(const kvdepot::v1::DrainProgress& p);
// "drain: 3/10 chunks (30.0%), 1.50 MiB of 5.00 MiB, 0 failed"; the last
// message adds the outcome (durable, or moved when `move`: a drain with
// move_to_owners) and the node's detail.
std::string DrainProgressLine(const kvdepot::v1::DrainProgress& p,
                              bool move = false);
// "[##########..........]  50.0%  5/10 chunks  2.50 MiB/5.00 MiB", `width`
// characters of bar, for a terminal line rewritten in place.
std::string DrainProgressBar(const kvdepot::v1::DrainProgress& p, int width);

}  // namespace kvd

#endif  // KVDEPOT_STORE_CLI_CTL_FORMAT_H_
