// Fuzzes DecodeClusterIndex on a one-layer index, twice per input: as given
// (the checksum must catch damage) and with a valid checksum appended, so
// the field validation behind it is reached. A decoded index must re-encode
// to the same bytes and be safe to select from. The seeds in
// cluster_index_corpus/ are valid layers without their checksum.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "compress/cluster/cluster_index.h"
#include "core/check.h"
#include "core/chunk_format.h"

namespace {

void Decode(absl::Span<const uint8_t> bytes) {
  using namespace kvd::compress;
  const absl::Span<const uint8_t> layers[] = {bytes};
  auto index = DecodeClusterIndex(layers);
  if (!index.ok()) return;
  const std::vector<uint8_t> again = EncodeClusterIndex(*index)[0];
  KVD_CHECK(again.size() == bytes.size() &&
                std::memcmp(again.data(), bytes.data(), bytes.size()) == 0,
            "re-encoding");
  const std::vector<float> query(index->head_dim, 1.0f);
  const uint32_t total = index->clustered_end + 1;
  if (total > (1u << 20)) return;  // a valid but huge index: slow, not wrong
  const kvd::compress::Selection kept =
      SelectClusters(*index, index->layers - 1, index->kv_heads - 1, query,
                     total, {.budget = total / 2, .recent = 2});
  KVD_CHECK(!kept.positions.empty() && kept.positions.back() == total - 1,
            "selection");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Decode({data, size});
  std::vector<uint8_t> sealed(data, data + size);
  const uint64_t checksum = kvd::Checksum64(sealed);
  sealed.resize(size + 8);
  std::memcpy(sealed.data() + size, &checksum, 8);
  Decode(sealed);
  return 0;
}
