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

TEST(CtlFormatTest, ChunkListJsonAndText) {
  std::vector<kvdepot::v1::ChunkSummary> chunks(2);
  chunks[0].set_key(std::string(64, 'a'));
  chunks[0].set_namespace_fingerprint(std::string(64, 'f'));
  chunks[0].set_tier(kvdepot::v1::TIER_HOST);
  chunks[0].set_object_bytes(132 << 10);
  chunks[0].set_children(1);
  chunks[0].set_last_access_unix_ms(1700000000000);
  chunks[1].set_key(std::string(64, 'b'));
  chunks[1].set_tier(kvdepot::v1::TIER_SSD);
  chunks[1].set_on_ssd(true);
  nlohmann::ordered_json j = ChunkListToJson(chunks, 3, true);
  EXPECT_EQ(j["count"], 2);
  EXPECT_EQ(j["namespace_unknown"], 3);
  EXPECT_EQ(j["truncated"], true);
  EXPECT_EQ(j["chunks"][0]["key"], std::string(64, 'a'));
  EXPECT_EQ(j["chunks"][0]["tier"], "host");
  EXPECT_EQ(j["chunks"][0]["object_bytes"], 132 << 10);
  EXPECT_EQ(j["chunks"][1]["on_ssd"], true);
  EXPECT_EQ(j["chunks"][1]["namespace_fingerprint"], "");
  std::string text = ChunkListToText(chunks, 3, true);
  EXPECT_THAT(text, HasSubstr("KEY"));
  EXPECT_THAT(text,
              HasSubstr(std::string(64, 'a') + "  host  no   132.00 KiB"));
  EXPECT_THAT(text, HasSubstr("2023-11-14 22:13:20 UTC"));
  EXPECT_THAT(text, HasSubstr("ffffffffffffffff\n"));
  EXPECT_THAT(text, HasSubstr("ssd   yes"));
  EXPECT_THAT(text, HasSubstr("2 chunks (more not shown: raise --limit)"));
  EXPECT_THAT(text, HasSubstr("3 chunks skipped"));
  EXPECT_THAT(ChunkListToText({}, 0, false), HasSubstr("0 chunks\n"));
}

TEST(CtlFormatTest, InspectJsonAndText) {
  kvdepot::v1::InspectResponse r;
  r.set_key(std::string(64, 'a'));
  r.set_namespace_fingerprint(std::string(64, 'f'));
  r.set_format_version(1);
  r.set_token_count(256);
  r.set_num_layers(2);
  r.set_kv_heads(3);
  r.set_head_dim(64);
  r.set_dtype("bf16");
  r.set_layout("separate_kv");
  r.set_header_bytes(232);
  r.set_object_bytes(232 + 2 * 196608);
  r.set_tier(kvdepot::v1::TIER_SSD);
  r.set_on_ssd(true);
  for (int i = 0; i < 2; ++i) {
    auto* l = r.add_layers();
    l->set_offset(232 + i * 196608);
    l->set_size(196608);
    l->set_checksum(0xabcdefu + i);
  }
  nlohmann::ordered_json j = InspectToJson(r);
  EXPECT_EQ(j["tier"], "ssd");
  EXPECT_EQ(j["parent"], "");
  EXPECT_EQ(j["layers"].size(), 2u);
  EXPECT_EQ(j["layers"][1]["offset"], 232 + 196608);
  EXPECT_EQ(j["layers"][0]["checksum"], "0000000000abcdef");
  std::string text = InspectToText(r);
  EXPECT_THAT(text, HasSubstr("parent       - (first chunk)"));
  EXPECT_THAT(text, HasSubstr("ssd (SSD copy: yes)"));
  EXPECT_THAT(text, HasSubstr("2 layers x 3 kv heads x 64 dims, bf16"));
  EXPECT_THAT(text, HasSubstr("codecs       none (raw)"));
  EXPECT_THAT(text, HasSubstr("1      196840  192.00 KiB  0000000000abcdf0"));
}

TEST(CtlFormatTest, EvictJsonAndText) {
  kvdepot::v1::EvictResponse r;
  auto* ok = r.add_results();
  ok->set_key("k1");
  auto* missing = r.add_results();
  missing->set_key("k2");
  missing->set_code(5);
  missing->set_message("chunk k2 is not stored");
  r.set_evicted(1);
  nlohmann::ordered_json j = EvictToJson(r);
  EXPECT_EQ(j["evicted"], 1);
  EXPECT_EQ(j["results"][0]["status"], "ok");
  EXPECT_EQ(j["results"][1]["status"], "not_found");
  std::string text = EvictToText(r);
  EXPECT_THAT(text, HasSubstr("k1  evicted"));
  EXPECT_THAT(text, HasSubstr("k2  not_found  chunk k2 is not stored"));
  EXPECT_THAT(text, HasSubstr("1 of 2 evicted\n"));
}

TEST(CtlFormatTest, DrainProgressRenderings) {
  kvdepot::v1::DrainProgress p;
  p.set_chunks_total(10);
  p.set_chunks_done(5);
  p.set_bytes_total(5ull << 20);
  p.set_bytes_done(5ull << 19);
  EXPECT_EQ(DrainProgressBar(p, 10),
            "[#####.....]  50.0%  5/10 chunks  2.50 MiB/5.00 MiB");
  EXPECT_EQ(DrainProgressLine(p),
            "drain: 5/10 chunks (50.0%), 2.50 MiB of 5.00 MiB, 0 failed");
  p.set_chunks_done(10);
  p.set_done(true);
  p.set_durable(true);
  p.set_detail("every chunk is durable");
  EXPECT_THAT(DrainProgressLine(p),
              HasSubstr("; done, durable: every chunk is durable"));
  nlohmann::ordered_json j = DrainProgressToJson(p);
  EXPECT_EQ(j["chunks_done"], 10);
  EXPECT_EQ(j["durable"], true);
  kvdepot::v1::DrainProgress empty;
  empty.set_done(true);
  EXPECT_EQ(DrainProgressBar(empty, 4), "[####] 100.0%  0/0 chunks  0 B/0 B");
  EXPECT_THAT(DrainProgressLine(empty), HasSubstr("NOT durable"));
  // A cluster drain reports whether every chunk moved.
  p.set_moved(true);
  p.set_detail("every chunk is on its owners");
  EXPECT_THAT(DrainProgressLine(p, /*move=*/true),
              HasSubstr("; done, moved: every chunk is on its owners"));
  EXPECT_EQ(DrainProgressToJson(p)["moved"], true);
  EXPECT_THAT(DrainProgressLine(empty, /*move=*/true), HasSubstr("NOT moved"));
}

TEST(CtlFormatTest, CodeLabels) {
  EXPECT_EQ(CodeLabel(0), "ok");
  EXPECT_EQ(CodeLabel(5), "not_found");
  EXPECT_EQ(CodeLabel(16), "unauthenticated");
}

}  // namespace
}  // namespace kvd
