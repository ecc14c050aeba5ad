// Test helper: chunk objects of small synthetic prompts, for tests of the
// engine and of what sits on it (server, control plane). Not for quality
// numbers: the bytes are random.
#ifndef KVDEPOT_STORE_ENGINE_TEST_CHUNKS_H_
#define KVDEPOT_STORE_ENGINE_TEST_CHUNKS_H_

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "core/chunk_format.h"
#include "core/chunk_key.h"
#include "core/model_spec.h"

namespace kvd {

// 4 layers x 2 heads x 64 tokens x 64 dims x bf16: 128 KiB of layers per
// chunk. The model id names the namespace.
inline ModelSpec TestChunkSpec(const std::string& model_id = "test/chunks") {
  ModelSpec s;
  s.model_id = model_id;
  s.num_layers = 4;
  s.kv_heads = 2;
  s.head_dim = 64;
  s.chunk_tokens = 64;
  return s;
}

// The chunks of one prompt: chunk i has chunk i-1 as parent; `seed` varies
// the prompt and the bytes.
struct TestPrompt {
  std::vector<ChunkKey> keys;
  std::vector<std::vector<uint8_t>> objects;

  std::vector<absl::Span<const uint8_t>> spans() const {
    return {objects.begin(), objects.end()};
  }
};

// REQUIRES: the spec encodes (it does for TestChunkSpec()).
inline TestPrompt MakeTestPrompt(const ModelSpec& spec, uint32_t seed,
                                 int chunks) {
  TestPrompt p;
  ChunkKey prev = spec.Fingerprint();
  ChunkKey parent = ChunkKey::Zero();
  std::mt19937 rng(seed);
  for (int c = 0; c < chunks; ++c) {
    std::vector<uint32_t> tokens(spec.chunk_tokens);
    for (auto& t : tokens) t = rng() % 50000;
    tokens[0] = seed;  // prompts differ from their first chunk
    prev = NextChunkKey(prev, tokens);
    std::vector<std::vector<uint8_t>> layers(spec.num_layers);
    std::vector<absl::Span<const uint8_t>> spans;
    for (auto& l : layers) {
      l.resize(spec.LayerBytes(spec.chunk_tokens));
      for (auto& b : l) b = static_cast<uint8_t>(rng());
      spans.emplace_back(l);
    }
    ChunkIdentity id{spec.Fingerprint(), prev, parent, spec.chunk_tokens, ""};
    p.keys.push_back(prev);
    p.objects.push_back(*EncodeChunkObject(spec, id, spans));
    parent = prev;
  }
  return p;
}

}  // namespace kvd

#endif  // KVDEPOT_STORE_ENGINE_TEST_CHUNKS_H_
