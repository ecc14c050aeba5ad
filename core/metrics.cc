#include "core/metrics.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/check.h"
#include "core/status.h"

namespace kvd {
namespace {

uint64_t ToBits(double v) { return std::bit_cast<uint64_t>(v); }
double FromBits(uint64_t b) { return std::bit_cast<double>(b); }

void AtomicAddDouble(std::atomic<uint64_t>* bits, double delta) {
  uint64_t old = bits->load(std::memory_order_relaxed);
  while (!bits->compare_exchange_weak(old, ToBits(FromBits(old) + delta),
                                      std::memory_order_relaxed)) {
  }
}

bool ValidMetricName(absl::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = absl::ascii_isalpha(c) || c == '_' || c == ':' ||
              (i > 0 && absl::ascii_isdigit(c));
    if (!ok) return false;
  }
  return true;
}

bool ValidLabelName(absl::string_view name) {
  if (name.empty() || absl::StartsWith(name, "__")) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok =
        absl::ascii_isalpha(c) || c == '_' || (i > 0 && absl::ascii_isdigit(c));
    if (!ok) return false;
  }
  return true;
}

absl::Status ValidateFamily(const std::string& name,
                            const std::vector<std::string>& labels,
                            MetricType type,
                            const std::vector<double>& bounds) {
  if (!ValidMetricName(name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "metric name \"", name, "\" does not match [a-zA-Z_:][a-zA-Z0-9_:]*"));
  }
  for (size_t i = 0; i < labels.size(); ++i) {
    if (!ValidLabelName(labels[i])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "metric ", name, ": label name \"", labels[i],
          "\" does not match [a-zA-Z_][a-zA-Z0-9_]* or starts with __"));
    }
    if (type == MetricType::kHistogram && labels[i] == "le") {
      return absl::InvalidArgumentError(absl::StrCat(
          "metric ", name, ": a histogram may not use the label name le"));
    }
    for (size_t j = 0; j < i; ++j) {
      if (labels[j] == labels[i]) {
        return absl::InvalidArgumentError(absl::StrCat(
            "metric ", name, ": label name ", labels[i], " appears twice"));
      }
    }
  }
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1])) {
      return absl::InvalidArgumentError(
          absl::StrCat("metric ", name, ": bucket bound ", i, "=",
                       FormatMetricValue(bounds[i]),
                       " is not finite and greater than the previous bound"));
    }
  }
  return absl::OkStatus();
}

// `{a="x",b="y"}`, with an optional extra pair (the histogram's le) last;
// empty when there are no labels at all.
std::string LabelBlock(const std::vector<std::string>& names,
                       const std::vector<std::string>& values,
                       absl::string_view extra_name = {},
                       absl::string_view extra_value = {}) {
  if (names.empty() && extra_name.empty()) return "";
  std::string out = "{";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += ',';
    absl::StrAppend(&out, names[i], "=\"", EscapeMetricLabelValue(values[i]),
                    "\"");
  }
  if (!extra_name.empty()) {
    if (!names.empty()) out += ',';
    absl::StrAppend(&out, extra_name, "=\"", extra_value, "\"");
  }
  out += '}';
  return out;
}

absl::string_view TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

void RenderChild(const std::string& name,
                 const std::vector<std::string>& label_names,
                 const std::vector<std::string>& values, const Counter& c,
                 std::string* out) {
  absl::StrAppend(out, name, LabelBlock(label_names, values), " ", c.Value(),
                  "\n");
}

void RenderChild(const std::string& name,
                 const std::vector<std::string>& label_names,
                 const std::vector<std::string>& values, const Gauge& g,
                 std::string* out) {
  absl::StrAppend(out, name, LabelBlock(label_names, values), " ",
                  FormatMetricValue(g.Value()), "\n");
}

void RenderChild(const std::string& name,
                 const std::vector<std::string>& label_names,
                 const std::vector<std::string>& values, const Histogram& h,
                 std::string* out) {
  Histogram::Snapshot s = h.Take();
  for (size_t i = 0; i < s.cumulative.size(); ++i) {
    std::string le =
        i < s.bounds.size() ? FormatMetricValue(s.bounds[i]) : "+Inf";
    absl::StrAppend(out, name, "_bucket",
                    LabelBlock(label_names, values, "le", le), " ",
                    s.cumulative[i], "\n");
  }
  std::string labels = LabelBlock(label_names, values);
  absl::StrAppend(out, name, "_sum", labels, " ", FormatMetricValue(s.sum),
                  "\n");
  absl::StrAppend(out, name, "_count", labels, " ", s.count, "\n");
}

}  // namespace

void Gauge::Set(double v) { bits_.store(ToBits(v), std::memory_order_relaxed); }
void Gauge::Add(double delta) { AtomicAddDouble(&bits_, delta); }
double Gauge::Value() const {
  return FromBits(bits_.load(std::memory_order_relaxed));
}

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)),
      buckets_(std::make_unique<std::atomic<uint64_t>[]>(bounds_.size() + 1)) {}

void Histogram::Observe(double v) {
  // The bucket is the first bound >= v; NaN goes to +Inf.
  size_t i =
      std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  if (std::isnan(v)) i = bounds_.size();
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  AtomicAddDouble(&sum_bits_, v);
}

Histogram::Snapshot Histogram::Take() const {
  Snapshot s;
  s.bounds = bounds_;
  s.cumulative.resize(bounds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = running;
  }
  s.sum = FromBits(sum_bits_.load(std::memory_order_relaxed));
  s.count = running;
  return s;
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  KVD_CHECK(start > 0 && factor > 1 && count >= 1,
            "bad exponential bucket parameters");
  std::vector<double> bounds;
  bounds.reserve(count);
  double b = start;
  for (int i = 0; i < count; ++i, b *= factor) bounds.push_back(b);
  return bounds;
}

template <typename T>
MetricFamily<T>::MetricFamily(std::string name, std::string help,
                              MetricType type,
                              std::vector<std::string> label_names,
                              std::vector<double> bounds)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(type),
      label_names_(std::move(label_names)),
      bounds_(std::move(bounds)) {}

template <typename T>
absl::StatusOr<T*> MetricFamily<T>::WithLabels(
    absl::Span<const absl::string_view> values) {
  if (values.size() != label_names_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("metric ", name_, ": got ", values.size(),
                     " label values, expected ", label_names_.size()));
  }
  std::vector<std::string> key(values.begin(), values.end());
  absl::MutexLock lock(&mu_);
  std::unique_ptr<T>& child = children_[std::move(key)];
  if (child == nullptr) {
    if constexpr (std::is_same_v<T, Histogram>) {
      child = std::make_unique<Histogram>(bounds_);
    } else {
      child = std::make_unique<T>();
    }
  }
  return child.get();
}

template <typename T>
void MetricFamily<T>::Render(std::string* out) const {
  absl::StrAppend(out, "# HELP ", name_, " ", EscapeMetricHelp(help_), "\n");
  absl::StrAppend(out, "# TYPE ", name_, " ", TypeName(type_), "\n");
  absl::MutexLock lock(&mu_);
  for (const auto& [values, child] : children_) {
    RenderChild(name_, label_names_, values, *child, out);
  }
}

template class MetricFamily<Counter>;
template class MetricFamily<Gauge>;
template class MetricFamily<Histogram>;

absl::Status MetricsRegistry::Reserve(const std::string& name) {
  if (counters_.count(name) || gauges_.count(name) || histograms_.count(name)) {
    return absl::AlreadyExistsError(
        absl::StrCat("metric ", name, " is already registered"));
  }
  return absl::OkStatus();
}

absl::StatusOr<CounterFamily*> MetricsRegistry::AddCounterFamily(
    std::string name, std::string help, std::vector<std::string> label_names) {
  KVD_RETURN_IF_ERROR(
      ValidateFamily(name, label_names, MetricType::kCounter, {}));
  absl::MutexLock lock(&mu_);
  KVD_RETURN_IF_ERROR(Reserve(name));
  auto* family = new CounterFamily(name, std::move(help), MetricType::kCounter,
                                   std::move(label_names), {});
  counters_[name].reset(family);
  return family;
}

absl::StatusOr<GaugeFamily*> MetricsRegistry::AddGaugeFamily(
    std::string name, std::string help, std::vector<std::string> label_names) {
  KVD_RETURN_IF_ERROR(
      ValidateFamily(name, label_names, MetricType::kGauge, {}));
  absl::MutexLock lock(&mu_);
  KVD_RETURN_IF_ERROR(Reserve(name));
  auto* family = new GaugeFamily(name, std::move(help), MetricType::kGauge,
                                 std::move(label_names), {});
  gauges_[name].reset(family);
  return family;
}

absl::StatusOr<HistogramFamily*> MetricsRegistry::AddHistogramFamily(
    std::string name, std::string help, std::vector<double> bounds,
    std::vector<std::string> label_names) {
  KVD_RETURN_IF_ERROR(
      ValidateFamily(name, label_names, MetricType::kHistogram, bounds));
  absl::MutexLock lock(&mu_);
  KVD_RETURN_IF_ERROR(Reserve(name));
  auto* family =
      new HistogramFamily(name, std::move(help), MetricType::kHistogram,
                          std::move(label_names), std::move(bounds));
  histograms_[name].reset(family);
  return family;
}

absl::StatusOr<Counter*> MetricsRegistry::AddCounter(std::string name,
                                                     std::string help) {
  KVD_ASSIGN_OR_RETURN(CounterFamily * family,
                       AddCounterFamily(std::move(name), std::move(help)));
  return family->WithLabels({});
}

absl::StatusOr<Gauge*> MetricsRegistry::AddGauge(std::string name,
                                                 std::string help) {
  KVD_ASSIGN_OR_RETURN(GaugeFamily * family,
                       AddGaugeFamily(std::move(name), std::move(help)));
  return family->WithLabels({});
}

absl::StatusOr<Histogram*> MetricsRegistry::AddHistogram(
    std::string name, std::string help, std::vector<double> bounds) {
  KVD_ASSIGN_OR_RETURN(
      HistogramFamily * family,
      AddHistogramFamily(std::move(name), std::move(help), std::move(bounds)));
  return family->WithLabels({});
}

std::string MetricsRegistry::RenderText() const {
  absl::MutexLock lock(&mu_);
  // Merge the three maps by name so the output is sorted as a whole.
  std::map<absl::string_view, std::pair<int, const void*>> all;
  for (const auto& [name, f] : counters_) all[name] = {0, f.get()};
  for (const auto& [name, f] : gauges_) all[name] = {1, f.get()};
  for (const auto& [name, f] : histograms_) all[name] = {2, f.get()};
  std::string out;
  for (const auto& [name, entry] : all) {
    switch (entry.first) {
      case 0:
        static_cast<const CounterFamily*>(entry.second)->Render(&out);
        break;
      case 1:
        static_cast<const GaugeFamily*>(entry.second)->Render(&out);
        break;
      default:
        static_cast<const HistogramFamily*>(entry.second)->Render(&out);
        break;
    }
  }
  return out;
}

std::string EscapeMetricHelp(absl::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string EscapeMetricLabelValue(absl::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatMetricValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  KVD_CHECK(ec == std::errc(), "to_chars(double) cannot fail with 64 bytes");
  return std::string(buf, end);
}

}  // namespace kvd
