#include "store/server/store_metrics.h"

#include "core/test_chunks.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvd {
namespace {

using ::testing::HasSubstr;

TEST(StoreMetricsTest, MirrorsEngineStatsAtRefresh) {
  StoreOptions options;
  options.host_capacity_bytes = 8ull << 20;
  options.host_huge_pages = false;
  absl::StatusOr<std::unique_ptr<StoreEngine>> engine =
      StoreEngine::Create(options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  MetricsRegistry registry;
  absl::StatusOr<std::unique_ptr<StoreMetrics>> metrics =
      StoreMetrics::Create(&registry, engine->get());
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_THAT(registry.RenderText(), HasSubstr("\nkvdepot_chunks 0\n"));

  TestPrompt p = MakeTestPrompt(TestChunkSpec(), 1, 2);
  for (const absl::Status& s : (*engine)->Put(p.keys, p.Spans())) {
    ASSERT_TRUE(s.ok()) << s;
  }
  (*engine)->Put(p.keys, p.Spans());  // dedup
  EXPECT_THAT(registry.RenderText(), HasSubstr("\nkvdepot_chunks 0\n"));
  (*metrics)->Refresh();
  (*metrics)->Refresh();  // counters do not double
  std::string text = registry.RenderText();
  EXPECT_THAT(text, HasSubstr("\nkvdepot_chunks 2\n"));
  EXPECT_THAT(text, HasSubstr("\nkvdepot_store_puts_total 2\n"));
  EXPECT_THAT(text, HasSubstr("\nkvdepot_store_dedup_puts_total 2\n"));
  EXPECT_THAT(text, HasSubstr("kvdepot_tier_objects{tier=\"host\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("kvdepot_tier_enabled{tier=\"gpu\"} 0\n"));
  EXPECT_THAT(text,
              HasSubstr("kvdepot_store_demotions_total{tier=\"host\"} 0"));

  // One set of names per registry.
  EXPECT_EQ(StoreMetrics::Create(&registry, engine->get()).status().code(),
            absl::StatusCode::kAlreadyExists);
}

}  // namespace
}  // namespace kvd
