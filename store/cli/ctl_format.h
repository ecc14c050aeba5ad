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

}  // namespace kvd

#endif  // KVDEPOT_STORE_CLI_CTL_FORMAT_H_
