// Chunk keys: chained SHA-256 over token ids (DESIGN.md §3.1).
//
//   key(chunk -1) = namespace fingerprint
//   key(chunk i)  = SHA-256(key(chunk i-1) || token ids of chunk i as u32 LE
//                           [|| 0xFF "kvdepot.extra" || u32 LE len || extra])
//
// The optional extra field carries engine inputs that change the KV (LoRA
// adapter, multimodal input hashes); an empty extra leaves the key exactly as
// the plain formula, so every engine computes the same keys.
#ifndef KVDEPOT_CORE_CHUNK_KEY_H_
#define KVDEPOT_CORE_CHUNK_KEY_H_

#include <array>
#include <compare>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace kvd {

// A 32-byte SHA-256 value: a chunk key or a namespace fingerprint.
// Trivially copyable; the all-zero value means "no key" (a chunk without a
// parent in the store).
struct ChunkKey {
  static constexpr size_t kSize = 32;
  std::array<uint8_t, kSize> bytes{};

  static ChunkKey Zero() { return ChunkKey{}; }
  // Parses 64 hex digits (either case). kInvalidArgument otherwise.
  static absl::StatusOr<ChunkKey> FromHex(absl::string_view hex);
  static ChunkKey FromBytes(const uint8_t* data) {
    ChunkKey k;
    std::memcpy(k.bytes.data(), data, kSize);
    return k;
  }

  bool IsZero() const;
  std::string Hex() const;
  // The first 8 hex digits, for logs.
  std::string ShortHex() const { return Hex().substr(0, 16); }

  friend bool operator==(const ChunkKey&, const ChunkKey&) = default;
  friend auto operator<=>(const ChunkKey&, const ChunkKey&) = default;

  // SHA-256 output is uniform, so the first eight bytes are a good hash.
  template <typename H>
  friend H AbslHashValue(H h, const ChunkKey& k) {
    uint64_t prefix;
    std::memcpy(&prefix, k.bytes.data(), sizeof(prefix));
    return H::combine(std::move(h), prefix);
  }
};

// key(chunk i) from key(chunk i-1) and the chunk's token ids.
ChunkKey NextChunkKey(const ChunkKey& previous,
                      absl::Span<const uint32_t> tokens,
                      absl::string_view extra = {});

// Keys of every full chunk of `tokens` (a partial tail is not keyed).
// REQUIRES: chunk_tokens > 0.
std::vector<ChunkKey> ChainChunkKeys(const ChunkKey& fingerprint,
                                     absl::Span<const uint32_t> tokens,
                                     uint32_t chunk_tokens);

}  // namespace kvd

#endif  // KVDEPOT_CORE_CHUNK_KEY_H_
