// The chains and geometry codec_layer_fuzz decodes with, shared with the
// program that wrote its seed corpus.
#ifndef KVDEPOT_COMPRESS_FUZZ_CODEC_LAYER_FUZZ_H_
#define KVDEPOT_COMPRESS_FUZZ_CODEC_LAYER_FUZZ_H_

#include <memory>
#include <vector>

#include "compress/codec_chain.h"
#include "compress/codec_test_util.h"
#include "compress/lowrank.h"
#include "core/check.h"

namespace kvd::compress {

inline constexpr uint32_t kFuzzLayers = 2, kFuzzHeads = 2, kFuzzDim = 32;

inline const std::vector<std::unique_ptr<const CodecChain>>& FuzzChains() {
  static const auto* chains = [] {
    std::vector<LayerKV> cal;
    for (uint32_t l = 0; l < kFuzzLayers; ++l)
      cal.push_back(RandomLayer(kFuzzHeads, 64, kFuzzDim, l));
    auto bases = LowRankBases::Fit(cal);
    KVD_CHECK(bases.ok(), "fitting fuzz bases failed");
    const CodecContext ctx{DType::kBf16, kFuzzLayers, kFuzzHeads, kFuzzDim,
                           *bases};
    auto* v = new std::vector<std::unique_ptr<const CodecChain>>();
    for (const char* spec :
         {"", "zstd", "quant(k=int4/channel,v=int4/token,g=8)",
          "quant(k=int2/channel,v=fp8,g=16,window=8)|rans",
          "quant(k=int8/token,v=int4/channel)|rans|zstd",
          "lowrank(rk=8,rv=12,window=4)|quant(g=4)",
          "snapkv(keep=0.5,window=4)|quant", "kvmerger(keep=0.5,window=4)"}) {
      auto chain = CodecChain::Create(spec, ctx);
      KVD_CHECK(chain.ok(), "building a fuzz chain failed");
      v->push_back(*std::move(chain));
    }
    return v;
  }();
  return *chains;
}

}  // namespace kvd::compress

#endif  // KVDEPOT_COMPRESS_FUZZ_CODEC_LAYER_FUZZ_H_
