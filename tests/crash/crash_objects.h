// Deterministic chunk objects for the SSD crash tests: the writer process and
// the verifying parent derive the same bytes from (round, index).
#ifndef KVDEPOT_TESTS_CRASH_CRASH_OBJECTS_H_
#define KVDEPOT_TESTS_CRASH_CRASH_OBJECTS_H_

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "core/check.h"
#include "core/chunk_format.h"
#include "core/chunk_key.h"
#include "core/model_spec.h"
#include "store/engine/ssd/ssd_tier.h"

namespace kvd::crash {

// The seed of a randomized crash test: KVD_CRASH_SEED when set (to replay a
// failure), else a fresh one; printed so a failing run can be replayed.
inline uint32_t CrashSeed() {
  const char* env_seed = std::getenv("KVD_CRASH_SEED");
  const uint32_t seed = env_seed != nullptr
                            ? static_cast<uint32_t>(std::atoi(env_seed))
                            : static_cast<uint32_t>(std::random_device{}());
  std::printf("KVD_CRASH_SEED=%u\n", seed);
  return seed;
}

// 2 layers x K,V x 1 head x 16 tokens x 16 dims, bf16: 2 KiB of payload.
inline ModelSpec SmallSpec() {
  ModelSpec spec;
  spec.model_id = "kvdepot/crash-test";
  spec.revision = "1";
  spec.dtype = DType::kBf16;
  spec.layout = KvLayout::kSeparateKV;
  spec.num_layers = 2;
  spec.kv_heads = 1;
  spec.head_dim = 16;
  spec.chunk_tokens = 16;
  return spec;
}

struct CrashObject {
  ChunkKey key;
  ChunkKey parent;
  std::vector<uint8_t> bytes;  // a complete chunk object
};

inline std::vector<uint32_t> Tokens(uint32_t round, uint32_t index,
                                    uint32_t n) {
  std::vector<uint32_t> t(n);
  for (uint32_t j = 0; j < n; ++j) t[j] = round * 7919u + index * 104729u + j;
  return t;
}

// Object `index` of `round`; its parent is object index-1 of the same round.
inline CrashObject MakeObject(uint32_t round, uint32_t index) {
  const ModelSpec spec = SmallSpec();
  const ChunkKey fp = spec.Fingerprint();
  const ChunkKey parent =
      index == 0
          ? ChunkKey::Zero()
          : NextChunkKey(fp, Tokens(round, index - 1, spec.chunk_tokens));
  const ChunkKey key =
      NextChunkKey(fp, Tokens(round, index, spec.chunk_tokens));
  const uint64_t layer_bytes = spec.LayerBytes(spec.chunk_tokens);
  std::vector<std::vector<uint8_t>> layers(spec.num_layers,
                                           std::vector<uint8_t>(layer_bytes));
  uint64_t x = (uint64_t{round} << 32 | index) * 0x9e3779b97f4a7c15ull + 1;
  for (auto& layer : layers) {
    for (uint8_t& b : layer) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      b = static_cast<uint8_t>(x);
    }
  }
  std::vector<absl::Span<const uint8_t>> spans(layers.begin(), layers.end());
  ChunkIdentity id;
  id.namespace_fp = fp;
  id.key = key;
  id.parent = parent;
  id.token_count = spec.chunk_tokens;
  absl::StatusOr<std::vector<uint8_t>> object =
      EncodeChunkObject(spec, id, spans);
  KVD_CHECK(object.ok(), "EncodeChunkObject failed for the crash-test spec");
  return CrashObject{key, parent, std::move(*object)};
}

// Options shared by the writer and the verifier: small segments so that the
// writer seals many of them and garbage collection moves records.
inline SsdTierOptions CrashTierOptions(const std::string& dir) {
  SsdTierOptions o;
  o.dir = dir;
  o.capacity_bytes = 64ull << 20;
  o.segment_bytes = 256ull << 10;
  o.gc_live_ratio = 0.9;
  return o;
}

}  // namespace kvd::crash

#endif  // KVDEPOT_TESTS_CRASH_CRASH_OBJECTS_H_
