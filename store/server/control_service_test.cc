#include "store/server/control_service.h"

#include <memory>

#include "gtest/gtest.h"

namespace kvd {
namespace {

TEST(StoreStatsToProtoTest, CopiesEveryField) {
  StoreStats stats;
  for (int i = 0; i < kNumTiers; ++i) {
    stats.tiers[i] = TierUsage{100u + i, 50u + i, 40u + i, 3u + i};
    stats.demotions[i] = 7u + i;
  }
  stats.tier_enabled[1] = stats.tier_enabled[2] = true;
  stats.chunks = 1;
  stats.puts = 2;
  stats.put_bytes = 3;
  stats.dedup_puts = 4;
  stats.gets = 5;
  stats.get_bytes = 6;
  stats.get_hits = 7;
  stats.get_misses = 8;
  stats.lookups = 9;
  stats.lookup_keys = 10;
  stats.lookup_hits = 11;
  stats.removes = 12;
  stats.promotions = 13;
  stats.evictions = 14;
  stats.corrupt_chunks = 15;
  stats.lease_expiries = 16;
  stats.active_leases = 17;
  stats.host_huge_pages = true;
  stats.index_meta_bytes = 18;

  kvdepot::v1::StatsResponse out;
  StoreStatsToProto(stats, absl::Seconds(2), &out);
  ASSERT_EQ(out.tiers_size(), kNumTiers);
  EXPECT_EQ(out.tiers(0).tier(), kvdepot::v1::TIER_GPU);
  EXPECT_FALSE(out.tiers(0).enabled());
  EXPECT_EQ(out.tiers(1).tier(), kvdepot::v1::TIER_HOST);
  EXPECT_TRUE(out.tiers(1).enabled());
  EXPECT_EQ(out.tiers(2).tier(), kvdepot::v1::TIER_SSD);
  EXPECT_EQ(out.tiers(2).capacity_bytes(), 102u);
  EXPECT_EQ(out.tiers(2).allocated_bytes(), 52u);
  EXPECT_EQ(out.tiers(2).stored_bytes(), 42u);
  EXPECT_EQ(out.tiers(2).objects(), 5u);
  EXPECT_EQ(out.tiers(2).demotions(), 9u);
  EXPECT_EQ(out.chunks(), 1u);
  EXPECT_EQ(out.puts(), 2u);
  EXPECT_EQ(out.put_bytes(), 3u);
  EXPECT_EQ(out.dedup_puts(), 4u);
  EXPECT_EQ(out.gets(), 5u);
  EXPECT_EQ(out.get_bytes(), 6u);
  EXPECT_EQ(out.get_hits(), 7u);
  EXPECT_EQ(out.get_misses(), 8u);
  EXPECT_EQ(out.lookups(), 9u);
  EXPECT_EQ(out.lookup_keys(), 10u);
  EXPECT_EQ(out.lookup_hits(), 11u);
  EXPECT_EQ(out.removes(), 12u);
  EXPECT_EQ(out.promotions(), 13u);
  EXPECT_EQ(out.evictions(), 14u);
  EXPECT_EQ(out.corrupt_chunks(), 15u);
  EXPECT_EQ(out.lease_expiries(), 16u);
  EXPECT_EQ(out.active_leases(), 17u);
  EXPECT_TRUE(out.host_huge_pages());
  EXPECT_EQ(out.index_meta_bytes(), 18u);
  EXPECT_EQ(out.uptime_ms(), 2000u);
}

class ControlServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    StoreOptions options;
    options.host_capacity_bytes = 8ull << 20;
    options.host_huge_pages = false;
    options.clock = &clock_;
    absl::StatusOr<std::unique_ptr<StoreEngine>> engine =
        StoreEngine::Create(options);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(engine).value();
    NodeInfo info{"n1", "9.9.9", "127.0.0.1:0", kvdepot::v1::MODE_STANDALONE,
                  clock_.Now()};
    service_ = std::make_unique<ControlService>(engine_.get(), info, &clock_);
  }

  FakeClock clock_;
  std::unique_ptr<StoreEngine> engine_;
  std::unique_ptr<ControlService> service_;
};

TEST_F(ControlServiceTest, StatusReportsIdentityTiersAndHealth) {
  clock_.Advance(absl::Milliseconds(1500));
  service_->SetListenAddress("127.0.0.1:4242");
  kvdepot::v1::StatusRequest request;
  kvdepot::v1::StatusResponse response;
  ASSERT_TRUE(service_->Status(nullptr, &request, &response).ok());
  EXPECT_EQ(response.node_id(), "n1");
  EXPECT_EQ(response.version(), "9.9.9");
  EXPECT_EQ(response.uptime_ms(), 1500u);
  EXPECT_EQ(response.mode(), kvdepot::v1::MODE_STANDALONE);
  EXPECT_EQ(response.health(), kvdepot::v1::HEALTH_SERVING);
  EXPECT_EQ(response.listen_address(), "127.0.0.1:4242");
  ASSERT_EQ(response.tiers_enabled_size(), 1);
  EXPECT_EQ(response.tiers_enabled(0), kvdepot::v1::TIER_HOST);

  service_->SetHealth(kvdepot::v1::HEALTH_DRAINING);
  ASSERT_TRUE(service_->Status(nullptr, &request, &response).ok());
  EXPECT_EQ(response.health(), kvdepot::v1::HEALTH_DRAINING);
}

TEST_F(ControlServiceTest, StatsReportsHostCapacity) {
  kvdepot::v1::StatsRequest request;
  kvdepot::v1::StatsResponse response;
  ASSERT_TRUE(service_->Stats(nullptr, &request, &response).ok());
  ASSERT_EQ(response.tiers_size(), kNumTiers);
  EXPECT_TRUE(response.tiers(1).enabled());
  EXPECT_EQ(response.tiers(1).capacity_bytes(), 8ull << 20);
  EXPECT_FALSE(response.tiers(2).enabled());
  EXPECT_EQ(response.chunks(), 0u);
}

}  // namespace
}  // namespace kvd
