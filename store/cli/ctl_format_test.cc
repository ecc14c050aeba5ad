#include "store/cli/ctl_format.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvd {
namespace {

using ::testing::HasSubstr;

TEST(CtlFormatTest, HumanUnits) {
  EXPECT_EQ(HumanBytes(0), "0 B");
  EXPECT_EQ(HumanBytes(1023), "1023 B");
  EXPECT_EQ(HumanBytes(1536), "1.50 KiB");
  EXPECT_EQ(HumanBytes(512ull << 20), "512.00 MiB");
  EXPECT_EQ(HumanBytes(64ull << 30), "64.00 GiB");
  EXPECT_EQ(HumanDuration(0), "0s");
  EXPECT_EQ(HumanDuration(187000), "3m 07s");
  EXPECT_EQ(HumanDuration(7387000), "2h 03m 07s");
  EXPECT_EQ(HumanDuration(352980000), "4d 02h 03m");
}

TEST(CtlFormatTest, EnumLabels) {
  EXPECT_EQ(TierLabel(kvdepot::v1::TIER_HOST), "host");
  EXPECT_EQ(ModeLabel(kvdepot::v1::MODE_STANDALONE), "standalone");
  EXPECT_EQ(HealthLabel(kvdepot::v1::HEALTH_DRAINING), "draining");
  EXPECT_EQ(TierLabel(42), "unknown(42)");
}

TEST(CtlFormatTest, StatusJsonAndText) {
  kvdepot::v1::StatusResponse s;
  s.set_node_id("n1");
  s.set_version("0.1.0");
  s.set_mode(kvdepot::v1::MODE_STANDALONE);
  s.set_health(kvdepot::v1::HEALTH_SERVING);
  s.set_uptime_ms(61000);
  s.set_listen_address("127.0.0.1:7400");
  s.add_tiers_enabled(kvdepot::v1::TIER_HOST);
  s.add_tiers_enabled(kvdepot::v1::TIER_SSD);
  nlohmann::ordered_json j = StatusToJson(s);
  EXPECT_EQ(j["node_id"], "n1");
  EXPECT_EQ(j["mode"], "standalone");
  EXPECT_EQ(j["health"], "serving");
  EXPECT_EQ(j["uptime_ms"], 61000);
  EXPECT_EQ(j["tiers_enabled"], nlohmann::ordered_json({"host", "ssd"}));
  std::string text = StatusToText(s);
  EXPECT_THAT(text, HasSubstr("node     n1\n"));
  EXPECT_THAT(text, HasSubstr("tiers    host, ssd\n"));
  EXPECT_THAT(text, HasSubstr("uptime   1m 01s\n"));
}

TEST(CtlFormatTest, StatsJsonAndText) {
  kvdepot::v1::StatsResponse s;
  auto* gpu = s.add_tiers();
  gpu->set_tier(kvdepot::v1::TIER_GPU);
  auto* host = s.add_tiers();
  host->set_tier(kvdepot::v1::TIER_HOST);
  host->set_enabled(true);
  host->set_capacity_bytes(4ull << 30);
  host->set_allocated_bytes(1ull << 30);
  host->set_stored_bytes(512ull << 20);
  host->set_objects(7);
  s.set_get_hits(3);
  s.set_get_misses(1);
  s.set_gets(4);
  nlohmann::ordered_json j = StatsToJson(s);
  ASSERT_EQ(j["tiers"].size(), 2u);
  EXPECT_EQ(j["tiers"][1]["tier"], "host");
  EXPECT_EQ(j["tiers"][1]["capacity_bytes"], 4ull << 30);
  EXPECT_DOUBLE_EQ(j["get_hit_rate"].get<double>(), 0.75);
  EXPECT_TRUE(j["lookup_hit_rate"].is_null());
  std::string text = StatsToText(s);
  EXPECT_THAT(text, HasSubstr("4.00 GiB"));
  EXPECT_THAT(text, HasSubstr("25.0%"));  // allocated / capacity
  EXPECT_THAT(text, HasSubstr("75.0% (3 hits, 1 misses)"));
  EXPECT_THAT(text, HasSubstr("gpu   no"));
}

}  // namespace
}  // namespace kvd
