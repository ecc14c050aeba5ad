// StoreMetrics: a node's engine figures as Prometheus metrics in a
// MetricsRegistry, taken from StoreEngine::Stats() when Refresh() runs (the
// node calls it before each /metrics render), so the engine's hot path pays
// nothing for them.
//
//   kvdepot_tier_enabled{tier}, kvdepot_tier_capacity_bytes{tier},
//   kvdepot_tier_allocated_bytes{tier}, kvdepot_tier_stored_bytes{tier},
//   kvdepot_tier_objects{tier}                               gauges
//   kvdepot_chunks, kvdepot_active_leases, kvdepot_index_meta_bytes  gauges
//   kvdepot_store_{puts,put_bytes,dedup_puts,gets,get_bytes,get_hits,
//   get_misses,lookups,lookup_keys,lookup_hits,removes,promotions,evictions,
//   lease_expiries,corrupt_chunks}_total                     counters
//   kvdepot_store_demotions_total{tier}  chunks moved out of `tier` (counter)
//
// Engine counters only grow, so each counter advances by the difference
// since the last refresh. Thread-safe; refreshes are serialized.
// REQUIRES: the registry and the engine outlive this object.
#ifndef KVDEPOT_STORE_SERVER_STORE_METRICS_H_
#define KVDEPOT_STORE_SERVER_STORE_METRICS_H_

#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/metrics.h"
#include "store/engine/store_engine.h"

namespace kvd {

class StoreMetrics {
 public:
  // kAlreadyExists when the registry already has one of the names.
  static absl::StatusOr<std::unique_ptr<StoreMetrics>> Create(
      MetricsRegistry* registry, StoreEngine* engine);

  void Refresh() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // A registry counter fed from an engine counter.
  struct Mirrored {
    Counter* counter;
    uint64_t StoreStats::*field;
    uint64_t last = 0;
  };
  struct TierGauges {
    Gauge *enabled, *capacity, *allocated, *stored, *objects;
    Counter* demotions;
    uint64_t last_demotions = 0;
  };

  explicit StoreMetrics(StoreEngine* engine) : engine_(engine) {}
  absl::Status Register(MetricsRegistry* registry);

  StoreEngine* const engine_;
  absl::Mutex mu_;
  std::vector<Mirrored> counters_ ABSL_GUARDED_BY(mu_);
  TierGauges tiers_[kNumTiers] ABSL_GUARDED_BY(mu_) = {};
  Gauge* chunks_ = nullptr;
  Gauge* active_leases_ = nullptr;
  Gauge* index_meta_bytes_ = nullptr;
};

}  // namespace kvd

#endif  // KVDEPOT_STORE_SERVER_STORE_METRICS_H_
