// Metrics: counters, gauges and fixed-bucket histograms with labels, rendered
// in the Prometheus text exposition format (version 0.0.4).
//
// Usage: register a family once at start, resolve the label values you need
// once, keep the returned pointer, and update it on the hot path:
//
//   MetricsRegistry registry;
//   KVD_ASSIGN_OR_RETURN(CounterFamily* puts, registry.AddCounterFamily(
//       "kvdepot_puts_total", "Chunks stored.", {"tier"}));
//   KVD_ASSIGN_OR_RETURN(Counter* host_puts, puts->WithLabels({"host"}));
//   host_puts->Increment();                         // one relaxed atomic add
//   std::string text = registry.RenderText();       // for /metrics
//
// Thread safety: everything is thread-safe. Counter/Gauge/Histogram updates
// are lock-free atomics (relaxed order: a scrape may see one metric's update
// before another's). Registering and resolving labels take a mutex; do them
// off the hot path.
//
// Ownership: the registry owns every family and metric; pointers it returns
// stay valid until the registry is destroyed. Metrics are never removed.
//
// Names: metric names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names
// [a-zA-Z_][a-zA-Z0-9_]* and may not start with "__"; a histogram may not use
// the label "le". Label values are any UTF-8 and are escaped on output.
#ifndef KVDEPOT_CORE_METRICS_H_
#define KVDEPOT_CORE_METRICS_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"

namespace kvd {

// A monotonically increasing count.
class Counter {
 public:
  void Increment(uint64_t n = 1) {
    value_.fetch_add(n, std::memory_order_relaxed);
  }
  uint64_t Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// A value that goes up and down.
class Gauge {
 public:
  void Set(double v);
  void Add(double delta);  // negative to subtract
  double Value() const;

 private:
  std::atomic<uint64_t> bits_{0};  // the bit pattern of a double; 0 == 0.0
};

// Observations counted into fixed buckets. Bucket i counts observations
// v <= bounds[i] (and > bounds[i-1]); the implicit last bucket is +Inf.
class Histogram {
 public:
  // REQUIRES: `bounds` is strictly increasing and finite (the family checks).
  explicit Histogram(std::vector<double> bounds);

  void Observe(double v);

  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t>
        cumulative;  // bounds.size() + 1 entries, last is +Inf
    double sum = 0;
    uint64_t count = 0;  // == cumulative.back()
  };
  // Buckets are read one by one: under concurrent Observe, `sum` may include
  // an observation the buckets do not yet count (or the reverse).
  Snapshot Take() const;

 private:
  const std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // bounds_.size() + 1
  std::atomic<uint64_t> sum_bits_{0};
};

// Exponential bucket bounds: start, start*factor, ... (`count` of them).
// REQUIRES: start > 0, factor > 1, count >= 1.
std::vector<double> ExponentialBuckets(double start, double factor, int count);

enum class MetricType { kCounter, kGauge, kHistogram };

// A named metric with a fixed set of label names; one child per distinct
// tuple of label values.
template <typename T>
class MetricFamily {
 public:
  // The child for these label values, created on first use. kInvalidArgument
  // when the number of values differs from the number of label names.
  absl::StatusOr<T*> WithLabels(absl::Span<const absl::string_view> values);
  absl::StatusOr<T*> WithLabels(
      std::initializer_list<absl::string_view> values) {
    return WithLabels(
        absl::Span<const absl::string_view>(values.begin(), values.size()));
  }

  const std::string& name() const { return name_; }

 private:
  friend class MetricsRegistry;
  MetricFamily(std::string name, std::string help, MetricType type,
               std::vector<std::string> label_names,
               std::vector<double> bounds);
  void Render(std::string* out) const;

  const std::string name_;
  const std::string help_;
  const MetricType type_;
  const std::vector<std::string> label_names_;
  const std::vector<double> bounds_;  // histograms only
  mutable absl::Mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<T>> children_
      ABSL_GUARDED_BY(mu_);
};

using CounterFamily = MetricFamily<Counter>;
using GaugeFamily = MetricFamily<Gauge>;
using HistogramFamily = MetricFamily<Histogram>;

class MetricsRegistry {
 public:
  MetricsRegistry() = default;
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Registers a family. kInvalidArgument for a bad metric or label name (or
  // "le" on a histogram, or bounds that are not strictly increasing and
  // finite); kAlreadyExists when the name is taken.
  absl::StatusOr<CounterFamily*> AddCounterFamily(
      std::string name, std::string help,
      std::vector<std::string> label_names = {});
  absl::StatusOr<GaugeFamily*> AddGaugeFamily(
      std::string name, std::string help,
      std::vector<std::string> label_names = {});
  absl::StatusOr<HistogramFamily*> AddHistogramFamily(
      std::string name, std::string help, std::vector<double> bounds,
      std::vector<std::string> label_names = {});

  // Unlabeled shortcuts: register the family and return its only child.
  absl::StatusOr<Counter*> AddCounter(std::string name, std::string help);
  absl::StatusOr<Gauge*> AddGauge(std::string name, std::string help);
  absl::StatusOr<Histogram*> AddHistogram(std::string name, std::string help,
                                          std::vector<double> bounds);

  // Every family, sorted by name, children sorted by label values, in the
  // Prometheus text format. Families without children are rendered with
  // their HELP and TYPE lines only.
  std::string RenderText() const;

 private:
  absl::Status Reserve(const std::string& name)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<CounterFamily>> counters_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::unique_ptr<GaugeFamily>> gauges_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::unique_ptr<HistogramFamily>> histograms_
      ABSL_GUARDED_BY(mu_);
};

// Exposed for tests: the escaping and number forms of the text format.
std::string EscapeMetricHelp(absl::string_view help);  // \ and newline
std::string EscapeMetricLabelValue(
    absl::string_view value);  // \, " and newline
std::string FormatMetricValue(
    double v);  // shortest round-trip; +Inf, -Inf, NaN

}  // namespace kvd

#endif  // KVDEPOT_CORE_METRICS_H_
