// Deterministic keys and payloads for the SSD tier's unit tests.
#ifndef KVDEPOT_STORE_ENGINE_SSD_SSD_TEST_OBJECTS_H_
#define KVDEPOT_STORE_ENGINE_SSD_SSD_TEST_OBJECTS_H_

#include <cstdint>
#include <cstring>
#include <vector>

#include "core/chunk_key.h"

namespace kvd::testing_objects {

// Key i; `tag` keeps the keys of different suites apart.
inline ChunkKey Key(uint32_t i, uint8_t tag) {
  ChunkKey k;
  std::memcpy(k.bytes.data(), &i, sizeof(i));
  k.bytes[31] = tag;
  return k;
}

// `size` pseudo-random bytes determined by (i, seed).
inline std::vector<uint8_t> Object(uint32_t i, size_t size, uint64_t seed) {
  std::vector<uint8_t> v(size);
  uint64_t x = i * 0x9e3779b97f4a7c15ull + seed;
  for (size_t j = 0; j < size; ++j) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    v[j] = static_cast<uint8_t>(x);
  }
  return v;
}

}  // namespace kvd::testing_objects

#endif  // KVDEPOT_STORE_ENGINE_SSD_SSD_TEST_OBJECTS_H_
