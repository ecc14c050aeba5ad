// Test and benchmark helper: the chunk objects of one synthetic prompt, in
// the real object format (core/chunk_format.h) and key chain (chunk_key.h).
// Chunk i has chunk i-1 as parent; `seed` varies the tokens and the bytes.
#ifndef KVDEPOT_CORE_TEST_CHUNKS_H_
#define KVDEPOT_CORE_TEST_CHUNKS_H_

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/chunk_format.h"
#include "core/chunk_key.h"
#include "core/model_spec.h"

namespace kvd {

// A small namespace for tests: 4 layers x 2 KV heads x 64 tokens x 64 dims,
// bf16: 128 KiB of layers per chunk. The model id names the namespace.
inline ModelSpec TestChunkSpec(const std::string& model_id = "test/chunks") {
  ModelSpec s;
  s.model_id = model_id;
  s.num_layers = 4;
  s.kv_heads = 2;
  s.head_dim = 64;
  s.chunk_tokens = 64;
  return s;
}

struct TestPrompt {
  std::vector<ChunkKey> keys;
  std::vector<std::vector<uint8_t>> objects;

  std::vector<absl::Span<const uint8_t>> Spans() const {
    return {objects.begin(), objects.end()};
  }
};

inline TestPrompt MakeTestPrompt(const ModelSpec& spec, uint32_t seed,
                                 int chunks) {
  TestPrompt p;
  ChunkKey prev = spec.Fingerprint();
  ChunkKey parent = ChunkKey::Zero();
  std::mt19937_64 rng(seed);
  for (int c = 0; c < chunks; ++c) {
    std::vector<uint32_t> tokens(spec.chunk_tokens);
    for (auto& t : tokens) t = static_cast<uint32_t>(rng() % 50000);
    tokens[0] = seed;  // prompts differ from their first chunk
    prev = NextChunkKey(prev, tokens);
    std::vector<std::vector<uint8_t>> layers(spec.num_layers);
    std::vector<absl::Span<const uint8_t>> spans;
    for (auto& l : layers) {
      l.resize(spec.LayerBytes(spec.chunk_tokens));
      for (size_t i = 0; i + 8 <= l.size(); i += 8) {
        const uint64_t v = rng();
        std::memcpy(l.data() + i, &v, 8);
      }
      spans.emplace_back(l);
    }
    ChunkIdentity id{spec.Fingerprint(), prev, parent, spec.chunk_tokens, ""};
    absl::StatusOr<std::vector<uint8_t>> obj =
        EncodeChunkObject(spec, id, spans);
    KVD_CHECK(obj.ok(), "encoding a test chunk failed");
    p.keys.push_back(prev);
    p.objects.push_back(*std::move(obj));
    parent = prev;
  }
  return p;
}

}  // namespace kvd

#endif  // KVDEPOT_CORE_TEST_CHUNKS_H_
