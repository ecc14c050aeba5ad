#include "core/metrics.h"

#include <cmath>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvd {
namespace {

using ::testing::HasSubstr;

TEST(MetricsTest, CounterAndGaugeRender) {
  MetricsRegistry registry;
  absl::StatusOr<Counter*> puts =
      registry.AddCounter("kvdepot_puts_total", "Chunks stored.");
  ASSERT_TRUE(puts.ok()) << puts.status();
  (*puts)->Increment();
  (*puts)->Increment(4);
  absl::StatusOr<Gauge*> used =
      registry.AddGauge("kvdepot_used_bytes", "Bytes in use.");
  ASSERT_TRUE(used.ok());
  (*used)->Set(10);
  (*used)->Add(-2.5);
  EXPECT_EQ((*puts)->Value(), 5u);
  EXPECT_DOUBLE_EQ((*used)->Value(), 7.5);
  EXPECT_EQ(registry.RenderText(),
            "# HELP kvdepot_puts_total Chunks stored.\n"
            "# TYPE kvdepot_puts_total counter\n"
            "kvdepot_puts_total 5\n"
            "# HELP kvdepot_used_bytes Bytes in use.\n"
            "# TYPE kvdepot_used_bytes gauge\n"
            "kvdepot_used_bytes 7.5\n");
}

TEST(MetricsTest, LabelsAreSortedAndEscaped) {
  MetricsRegistry registry;
  absl::StatusOr<CounterFamily*> family = registry.AddCounterFamily(
      "x_total", "Help with \\ and\nnewline.", {"tier", "note"});
  ASSERT_TRUE(family.ok()) << family.status();
  (*(*family)->WithLabels({"ssd", "a\"b\\c\nd"}))->Increment(2);
  (*(*family)->WithLabels({"host", ""}))->Increment();
  // Same labels: same child.
  EXPECT_EQ(*(*family)->WithLabels({"host", ""}),
            *(*family)->WithLabels({"host", ""}));
  EXPECT_EQ(registry.RenderText(),
            "# HELP x_total Help with \\\\ and\\nnewline.\n"
            "# TYPE x_total counter\n"
            "x_total{tier=\"host\",note=\"\"} 1\n"
            "x_total{tier=\"ssd\",note=\"a\\\"b\\\\c\\nd\"} 2\n");
  EXPECT_EQ((*family)->WithLabels({"host"}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(MetricsTest, HistogramBucketsSumCount) {
  MetricsRegistry registry;
  absl::StatusOr<HistogramFamily*> family = registry.AddHistogramFamily(
      "lat_seconds", "Latency.", {0.001, 0.01, 0.1}, {"op"});
  ASSERT_TRUE(family.ok()) << family.status();
  Histogram* get = *(*family)->WithLabels({"get"});
  get->Observe(0.0005);  // bucket 0.001
  get->Observe(0.001);   // le is inclusive: bucket 0.001
  get->Observe(0.05);    // bucket 0.1
  get->Observe(7);       // +Inf
  Histogram::Snapshot s = get->Take();
  EXPECT_EQ(s.count, 4u);
  EXPECT_DOUBLE_EQ(s.sum, 0.0005 + 0.001 + 0.05 + 7);
  EXPECT_EQ(registry.RenderText(),
            "# HELP lat_seconds Latency.\n"
            "# TYPE lat_seconds histogram\n"
            "lat_seconds_bucket{op=\"get\",le=\"0.001\"} 2\n"
            "lat_seconds_bucket{op=\"get\",le=\"0.01\"} 2\n"
            "lat_seconds_bucket{op=\"get\",le=\"0.1\"} 3\n"
            "lat_seconds_bucket{op=\"get\",le=\"+Inf\"} 4\n"
            "lat_seconds_sum{op=\"get\"} 7.0515\n"
            "lat_seconds_count{op=\"get\"} 4\n");
}

TEST(MetricsTest, UnlabeledHistogram) {
  MetricsRegistry registry;
  absl::StatusOr<Histogram*> h =
      registry.AddHistogram("size_bytes", "Sizes.", {1024});
  ASSERT_TRUE(h.ok());
  (*h)->Observe(10);
  EXPECT_THAT(registry.RenderText(),
              HasSubstr("size_bytes_bucket{le=\"1024\"} 1\n"
                        "size_bytes_bucket{le=\"+Inf\"} 1\n"
                        "size_bytes_sum 10\n"
                        "size_bytes_count 1\n"));
}

TEST(MetricsTest, RegistrationErrors) {
  MetricsRegistry registry;
  EXPECT_TRUE(registry.AddCounter("a_total", "").ok());
  EXPECT_EQ(registry.AddGauge("a_total", "").status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(registry.AddCounter("1bad", "").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry.AddCounter("bad-name", "").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(registry.AddCounterFamily("b_total", "", {"__reserved"}).ok());
  EXPECT_FALSE(registry.AddCounterFamily("c_total", "", {"x", "x"}).ok());
  EXPECT_FALSE(registry.AddHistogramFamily("h1", "", {1, 2}, {"le"}).ok());
  absl::StatusOr<HistogramFamily*> unsorted =
      registry.AddHistogramFamily("h2", "", {2, 1});
  EXPECT_THAT(unsorted.status().message(), HasSubstr("bucket bound 1=1"));
  EXPECT_FALSE(
      registry
          .AddHistogram("h3", "", {1, std::numeric_limits<double>::infinity()})
          .ok());
  // Families with no children still announce themselves.
  EXPECT_TRUE(registry.AddGaugeFamily("g", "Gauge.", {"x"}).ok());
  EXPECT_THAT(registry.RenderText(), HasSubstr("# TYPE g gauge\n"));
}

TEST(MetricsTest, FormatValue) {
  EXPECT_EQ(FormatMetricValue(1), "1");
  EXPECT_EQ(FormatMetricValue(0.1), "0.1");
  EXPECT_EQ(FormatMetricValue(-2.5), "-2.5");
  EXPECT_EQ(FormatMetricValue(1e21), "1e+21");
  EXPECT_EQ(FormatMetricValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatMetricValue(-std::numeric_limits<double>::infinity()),
            "-Inf");
  EXPECT_EQ(FormatMetricValue(std::nan("")), "NaN");
}

TEST(MetricsTest, ExponentialBuckets) {
  EXPECT_THAT(ExponentialBuckets(1, 2, 4), ::testing::ElementsAre(1, 2, 4, 8));
}

TEST(MetricsTest, ConcurrentUpdatesAreNotLost) {
  MetricsRegistry registry;
  Counter* c = *registry.AddCounter("c_total", "");
  Gauge* g = *registry.AddGauge("g", "");
  Histogram* h = *registry.AddHistogram("h", "", {0.5});
  absl::StatusOr<CounterFamily*> family =
      registry.AddCounterFamily("f_total", "", {"t"});
  constexpr int kThreads = 4, kIters = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Counter* mine = *(*family)->WithLabels({t % 2 ? "odd" : "even"});
      for (int i = 0; i < kIters; ++i) {
        c->Increment();
        g->Add(1);
        h->Observe(1);
        mine->Increment();
        if (i % 1000 == 0) registry.RenderText();  // scrape while writing
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c->Value(), uint64_t{kThreads} * kIters);
  EXPECT_DOUBLE_EQ(g->Value(), double{kThreads} * kIters);
  Histogram::Snapshot s = h->Take();
  EXPECT_EQ(s.count, uint64_t{kThreads} * kIters);
  EXPECT_DOUBLE_EQ(s.sum, double{kThreads} * kIters);
  EXPECT_EQ((*(*family)->WithLabels({"odd"}))->Value(),
            uint64_t{kThreads / 2} * kIters);
}

}  // namespace
}  // namespace kvd
