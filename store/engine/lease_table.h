// LeaseTable: the leases of in-flight reads and their expiry order.
//
// Every lease has the same time to live, so leases expire in the order they
// were granted and a FIFO of (expiry, id) is an exact expiry index; released
// leases are skipped lazily when they reach its front.
//
// Thread-compatible: StoreEngine serializes every call under its mutex.
#ifndef KVDEPOT_STORE_ENGINE_LEASE_TABLE_H_
#define KVDEPOT_STORE_ENGINE_LEASE_TABLE_H_

#include <deque>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "store/engine/chunk_index.h"
#include "store/engine/store_engine.h"

namespace kvd {

struct Lease {
  std::vector<Slot> slots;  // each pinned once by this lease
  absl::Time expiry;
};

class LeaseTable {
 public:
  // REQUIRES: expiry is not earlier than that of any lease added before.
  LeaseId Add(std::vector<Slot> slots, absl::Time expiry) {
    const LeaseId id = next_id_++;
    leases_.emplace(id, Lease{std::move(slots), expiry});
    order_.emplace_back(expiry, id);
    return id;
  }

  // The live lease with this id, or nullptr when unknown, released or expired.
  const Lease* Find(LeaseId id, absl::Time now) const {
    auto it = leases_.find(id);
    if (it == leases_.end() || it->second.expiry <= now) return nullptr;
    return &it->second;
  }

  // Removes and returns a lease (expired or not).
  std::optional<Lease> Take(LeaseId id) {
    auto it = leases_.find(id);
    if (it == leases_.end()) return std::nullopt;
    Lease lease = std::move(it->second);
    leases_.erase(it);
    return lease;
  }

  // Removes and returns every lease whose expiry is <= now.
  std::vector<Lease> TakeExpired(absl::Time now) {
    std::vector<Lease> expired;
    while (!order_.empty() && order_.front().first <= now) {
      if (std::optional<Lease> lease = Take(order_.front().second)) {
        expired.push_back(std::move(*lease));
      }
      order_.pop_front();
    }
    return expired;
  }

  size_t size() const { return leases_.size(); }

 private:
  LeaseId next_id_ = 1;
  absl::flat_hash_map<LeaseId, Lease> leases_;
  std::deque<std::pair<absl::Time, LeaseId>> order_;
};

}  // namespace kvd

#endif  // KVDEPOT_STORE_ENGINE_LEASE_TABLE_H_
