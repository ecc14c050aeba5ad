// The result of a token reduction for one layer, and writing it into the
// layer (compress/token_reducer.h).
//
// A reducer decides, per KV head, which groups of original positions become
// one kept token and with which weights; Materialize builds the compact K/V
// rows and the TokenMaps from that, the same way for eviction and merging.
#ifndef KVDEPOT_COMPRESS_REDUCE_REDUCTION_H_
#define KVDEPOT_COMPRESS_REDUCE_REDUCTION_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "compress/kv_tensor.h"

namespace kvd::compress::reduce {

// One KV head's kept tokens. Kept token i stands for
// map.members[map.offsets[i] .. map.offsets[i+1]); its K and V rows are
// sum_m weight[m] * row(members[m]) over those members; a token standing
// for itself alone is copied unchanged. `weight` is aligned with
// map.members, non-negative and sums to 1 per kept token.
// Build it only with AddSingle / AddGroup, in ascending position order.
struct HeadReduction {
  TokenMap map{{}, {0}, {}};
  std::vector<float> weight;

  // Adds a kept token standing for itself alone.
  void AddSingle(uint32_t position);
  // Adds a kept token at `position` standing for `members` (ascending) with
  // `weights` (same length; normalized here to sum to 1, uniform when they
  // sum to zero or are not finite).
  void AddGroup(uint32_t position, const std::vector<uint32_t>& members,
                const std::vector<double>& weights);
};

// Checks that `kv` is an unreduced layer a reducer can take:
// kFailedPrecondition when it is already reduced, kInvalidArgument when k and v
// disagree in heads or tokens, a tensor's data does not match its shape, there
// are no heads or no tokens, or a key is not finite. `codec` prefixes the
// message.
absl::Status CheckLayer(const LayerKV& kv, absl::string_view codec);

// A reduction that keeps every token as itself: tokens 0..T-1 per head.
std::vector<HeadReduction> Identity(uint32_t heads, uint32_t tokens);

// A plain eviction: each head keeps `kept[h]` (ascending positions).
std::vector<HeadReduction> Eviction(
    const std::vector<std::vector<uint32_t>>& kept);

// Replaces kv.k / kv.v with the kept rows of `heads` and sets kv.maps.
// REQUIRES: CheckLayer(kv) ok; heads.size() == kv.k.heads; every map valid
// for kv.k.tokens and all of the same kept() (aborts otherwise: a reducer
// bug, not bad input).
void Materialize(std::vector<HeadReduction> heads, LayerKV& kv);

}  // namespace kvd::compress::reduce

#endif  // KVDEPOT_COMPRESS_REDUCE_REDUCTION_H_
