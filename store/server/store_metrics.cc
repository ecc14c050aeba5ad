#include "store/server/store_metrics.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace kvd {

absl::StatusOr<std::unique_ptr<StoreMetrics>> StoreMetrics::Create(
    MetricsRegistry* registry, StoreEngine* engine) {
  auto metrics = std::unique_ptr<StoreMetrics>(new StoreMetrics(engine));
  KVD_RETURN_IF_ERROR(metrics->Register(registry));
  metrics->Refresh();
  return metrics;
}

absl::Status StoreMetrics::Register(MetricsRegistry* registry) {
  absl::MutexLock lock(&mu_);
  struct CounterSpec {
    const char* name;
    const char* help;
    uint64_t StoreStats::*field;
  };
  static constexpr CounterSpec kCounters[] = {
      {"puts", "Chunks stored.", &StoreStats::puts},
      {"put_bytes", "Bytes of chunks stored.", &StoreStats::put_bytes},
      {"dedup_puts", "Puts of a chunk already present (no copy).",
       &StoreStats::dedup_puts},
      {"gets", "Chunk reads.", &StoreStats::gets},
      {"get_bytes", "Bytes read.", &StoreStats::get_bytes},
      {"get_hits", "Reads that found their chunk.", &StoreStats::get_hits},
      {"get_misses", "Reads that found no (or a corrupt) chunk.",
       &StoreStats::get_misses},
      {"lookups", "Prefix lookups.", &StoreStats::lookups},
      {"lookup_keys", "Keys asked for by lookups.", &StoreStats::lookup_keys},
      {"lookup_hits", "Keys found by lookups.", &StoreStats::lookup_hits},
      {"removes", "Chunks removed on request.", &StoreStats::removes},
      {"promotions", "Chunks promoted from SSD to host memory on read.",
       &StoreStats::promotions},
      {"evictions", "Chunks dropped from the coldest tier.",
       &StoreStats::evictions},
      {"lease_expiries", "Read leases that expired.",
       &StoreStats::lease_expiries},
      {"corrupt_chunks", "Chunks that failed verification (served as misses).",
       &StoreStats::corrupt_chunks},
  };
  for (const CounterSpec& spec : kCounters) {
    KVD_ASSIGN_OR_RETURN(
        Counter * counter,
        registry->AddCounter(
            absl::StrCat("kvdepot_store_", spec.name, "_total"), spec.help));
    counters_.push_back({counter, spec.field});
  }
  KVD_ASSIGN_OR_RETURN(
      GaugeFamily * enabled,
      registry->AddGaugeFamily("kvdepot_tier_enabled",
                               "1 when the tier is configured.", {"tier"}));
  KVD_ASSIGN_OR_RETURN(
      GaugeFamily * capacity,
      registry->AddGaugeFamily("kvdepot_tier_capacity_bytes",
                               "Bytes the tier may hold.", {"tier"}));
  KVD_ASSIGN_OR_RETURN(
      GaugeFamily * allocated,
      registry->AddGaugeFamily(
          "kvdepot_tier_allocated_bytes",
          "Bytes taken from the tier, with allocator rounding.", {"tier"}));
  KVD_ASSIGN_OR_RETURN(
      GaugeFamily * stored,
      registry->AddGaugeFamily("kvdepot_tier_stored_bytes",
                               "Bytes of the chunk objects in the tier.",
                               {"tier"}));
  KVD_ASSIGN_OR_RETURN(
      GaugeFamily * objects,
      registry->AddGaugeFamily("kvdepot_tier_objects",
                               "Chunk objects in the tier.", {"tier"}));
  KVD_ASSIGN_OR_RETURN(
      CounterFamily * demotions,
      registry->AddCounterFamily(
          "kvdepot_store_demotions_total",
          "Chunks moved out of the tier into the next colder one.", {"tier"}));
  for (int i = 0; i < kNumTiers; ++i) {
    const absl::string_view tier = TierName(static_cast<TierKind>(i));
    TierGauges& t = tiers_[i];
    KVD_ASSIGN_OR_RETURN(t.enabled, enabled->WithLabels({tier}));
    KVD_ASSIGN_OR_RETURN(t.capacity, capacity->WithLabels({tier}));
    KVD_ASSIGN_OR_RETURN(t.allocated, allocated->WithLabels({tier}));
    KVD_ASSIGN_OR_RETURN(t.stored, stored->WithLabels({tier}));
    KVD_ASSIGN_OR_RETURN(t.objects, objects->WithLabels({tier}));
    KVD_ASSIGN_OR_RETURN(t.demotions, demotions->WithLabels({tier}));
  }
  KVD_ASSIGN_OR_RETURN(
      chunks_, registry->AddGauge("kvdepot_chunks", "Chunks in the index."));
  KVD_ASSIGN_OR_RETURN(
      active_leases_,
      registry->AddGauge("kvdepot_active_leases", "Read leases in force."));
  KVD_ASSIGN_OR_RETURN(
      index_meta_bytes_,
      registry->AddGauge("kvdepot_index_meta_bytes",
                         "DRAM held by the index for its entries."));
  return absl::OkStatus();
}

void StoreMetrics::Refresh() {
  const StoreStats stats = engine_->Stats();
  absl::MutexLock lock(&mu_);
  auto advance = [](Counter* counter, uint64_t now, uint64_t* last) {
    if (now > *last) counter->Increment(now - *last);
    *last = now;
  };
  for (Mirrored& m : counters_) advance(m.counter, stats.*(m.field), &m.last);
  for (int i = 0; i < kNumTiers; ++i) {
    TierGauges& t = tiers_[i];
    t.enabled->Set(stats.tier_enabled[i] ? 1 : 0);
    t.capacity->Set(static_cast<double>(stats.tiers[i].capacity_bytes));
    t.allocated->Set(static_cast<double>(stats.tiers[i].allocated_bytes));
    t.stored->Set(static_cast<double>(stats.tiers[i].stored_bytes));
    t.objects->Set(static_cast<double>(stats.tiers[i].objects));
    advance(t.demotions, stats.demotions[i], &t.last_demotions);
  }
  chunks_->Set(static_cast<double>(stats.chunks));
  active_leases_->Set(static_cast<double>(stats.active_leases));
  index_meta_bytes_->Set(static_cast<double>(stats.index_meta_bytes));
}

}  // namespace kvd
