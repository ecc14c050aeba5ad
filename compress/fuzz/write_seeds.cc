// Writes codec_layer_fuzz's seed corpus: one valid encoding per chain and
// layer, and a bases file. Run by hand when the chains change:
//   kvdepot_codec_fuzz_seeds compress/fuzz/codec_layer_corpus
#include <fstream>
#include <iostream>
#include <string>

#include "compress/fuzz/codec_layer_fuzz.h"

int main(int argc, char** argv) {
  using namespace kvd::compress;
  if (argc != 2) {
    std::cerr << "usage: " << argv[0] << " DIR\n";
    return 2;
  }
  auto write = [&](const std::string& name, uint8_t b0, uint8_t b1,
                   const std::vector<uint8_t>& bytes) {
    std::ofstream f(std::string(argv[1]) + "/" + name, std::ios::binary);
    f.put(static_cast<char>(b0));
    f.put(static_cast<char>(b1));
    f.write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  };
  const auto& chains = FuzzChains();
  for (size_t i = 0; i < chains.size(); ++i) {
    for (uint32_t layer = 0; layer < kFuzzLayers; ++layer) {
      const uint32_t tokens = 24 + 8 * layer;
      const LayerKV kv = RandomLayer(kFuzzHeads, tokens, kFuzzDim, 100 + i);
      HeadTensor q = RandomTensor(2 * kFuzzHeads, 8, kFuzzDim, 200 + i);
      auto enc = chains[i]->EncodeLayerKV(layer, kv, CodecInputs{&q});
      KVD_CHECK(enc.ok(), "encoding a seed failed");
      write("chain" + std::to_string(i) + "_layer" + std::to_string(layer),
            static_cast<uint8_t>(i | (layer << 7)),
            static_cast<uint8_t>(tokens - 1), *enc);
    }
  }
  std::vector<LayerKV> cal{RandomLayer(1, 8, 4, 1)};
  write("bases", 0xff, 0, (*LowRankBases::Fit(cal))->Serialize());
  return 0;
}
