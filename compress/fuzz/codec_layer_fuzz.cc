// Fuzzes the codec decoders: an encoded layer for one of a fixed set of
// chains (input byte 0 picks the chain and layer, byte 1 the token count),
// or, when byte 0 is 0xff, a low-rank bases file. Any input must yield a
// Status or tensors of the namespace's shape, never a crash.
#include "compress/fuzz/codec_layer_fuzz.h"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kvd::compress;
  if (size < 2) return 0;
  const absl::Span<const uint8_t> payload(data + 2, size - 2);
  if (data[0] == 0xff) {
    auto bases = LowRankBases::Parse(payload);
    if (bases.ok())
      KVD_CHECK((*bases)->Serialize().size() == payload.size(), "bases size");
    return 0;
  }
  const auto& chains = FuzzChains();
  const auto& chain = chains[(data[0] & 0x7f) % chains.size()];
  const uint32_t layer = data[0] >> 7;
  const uint32_t tokens = 1 + data[1] % 64;
  auto kv = chain->DecodeLayerKV(layer, tokens, payload);
  if (kv.ok()) {
    const uint32_t kept = kv->k.tokens;
    KVD_CHECK(kept >= 1 && kept <= tokens &&
                  kv->k.size() == size_t{kFuzzHeads} * kept * kFuzzDim &&
                  kv->v.size() == kv->k.size(),
              "decoded shape");
    KVD_CHECK(kv->Reduced() == chain->ReducesTokens(), "maps");
  }
  return 0;
}
