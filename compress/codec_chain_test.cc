#include "compress/codec_chain.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>

#include "compress/codec_test_util.h"
#include "compress/lowrank.h"
#include "core/chunk_format.h"
#include "core/chunk_key.h"

namespace kvd::compress {
namespace {

using ::testing::HasSubstr;

constexpr uint32_t kLayers = 2, kHeads = 3, kDim = 64, kTokens = 256;

std::shared_ptr<const LowRankBases> Bases() {
  std::vector<LayerKV> cal;
  for (uint32_t l = 0; l < kLayers; ++l)
    cal.push_back(RandomLayer(kHeads, 512, kDim, 50 + l));
  return *LowRankBases::Fit(cal);
}

CodecContext Context() {
  return CodecContext{DType::kBf16, kLayers, kHeads, kDim, Bases()};
}

LayerKV Bf16Layer(uint64_t seed) {
  LayerKV kv = RandomLayer(kHeads, kTokens, kDim, seed);
  RoundToBf16(kv.k);
  RoundToBf16(kv.v);
  return kv;
}

struct ChainCase {
  const char* spec;
  double max_error;  // relative error of K and V after a round trip
};

class ChainContractTest : public ::testing::TestWithParam<ChainCase> {};

TEST_P(ChainContractTest, RoundTripsWithinItsErrorAndDetectsTruncation) {
  auto chain = CodecChain::Create(GetParam().spec, Context());
  ASSERT_TRUE(chain.ok()) << chain.status();
  // The canonical text builds the same chain.
  auto again = CodecChain::Create((*chain)->spec(), Context());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->spec(), (*chain)->spec());

  const LayerKV kv = Bf16Layer(11);
  auto enc = (*chain)->EncodeLayerKV(1, kv);
  ASSERT_TRUE(enc.ok()) << enc.status();
  EXPECT_EQ(*(*chain)->EncodeLayerKV(1, kv), *enc);  // deterministic
  auto dec = (*chain)->DecodeLayerKV(1, kTokens, *enc);
  ASSERT_TRUE(dec.ok()) << dec.status();
  EXPECT_FALSE(dec->Reduced());
  EXPECT_LE(RelativeError(kv.k, dec->k), GetParam().max_error);
  EXPECT_LE(RelativeError(kv.v, dec->v), GetParam().max_error);

  for (size_t cut = 0; cut < enc->size(); cut += 1 + cut / 3) {
    auto bad = (*chain)->DecodeLayerKV(1, kTokens,
                                       absl::MakeConstSpan(*enc).first(cut));
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss) << cut;
  }
  // Flipped bytes decode to an error or to some tensors, never a crash.
  std::mt19937 rng(3);
  for (int i = 0; i < 200; ++i) {
    std::vector<uint8_t> flipped = *enc;
    flipped[rng() % flipped.size()] ^= static_cast<uint8_t>(1 + rng() % 255);
    (void)(*chain)->DecodeLayerKV(1, kTokens, flipped);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Chains, ChainContractTest,
    ::testing::Values(
        ChainCase{"", 0}, ChainCase{"zstd", 0},
        ChainCase{"quant(k=int8/channel,v=int8/token)", 0.01},
        ChainCase{"quant(k=int4/channel,v=int4/token,g=32)", 0.12},
        ChainCase{"quant(k=int4/channel,v=int4/token)|rans", 0.12},
        ChainCase{"quant(k=int2/channel,v=int2/token,window=32)|zstd", 0.6},
        ChainCase{"quant(k=fp8,v=fp8)", 0.05},
        ChainCase{"lowrank(rk=64,rv=64,window=0)", 0.01},
        ChainCase{"lowrank(rk=64,rv=64,window=32)|quant(k=int8/channel,v=int8/"
                  "token)|rans|zstd",
                  0.02}));

TEST(CodecChain, RefusesBadChainsAtConfiguration) {
  const CodecContext ctx = Context();
  auto code = [&](const char* spec) {
    return CodecChain::Create(spec, ctx).status();
  };
  EXPECT_THAT(code("lz4").message(), HasSubstr("unknown codec lz4"));
  EXPECT_THAT(code("zstd|quant").message(), HasSubstr("out of order"));
  EXPECT_THAT(code("quant|quant").message(),
              HasSubstr("out of order or repeated"));
  EXPECT_THAT(code("rans").message(), HasSubstr("must follow quant"));
  EXPECT_THAT(code("quant|zstd|rans").message(),
              HasSubstr("must follow quant"));
  EXPECT_THAT(code("zstd(level=3)").message(),
              HasSubstr("unknown parameter level"));
  EXPECT_EQ(code("quant(").code(), absl::StatusCode::kInvalidArgument);
  CodecContext no_bases = ctx;
  no_bases.bases = nullptr;
  EXPECT_EQ(CodecChain::Create("lowrank|quant", no_bases).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(CodecChain, CanonicalTextListsEveryParameter) {
  auto chain = CodecChain::Create("quant | rans", Context());
  ASSERT_TRUE(chain.ok());
  EXPECT_EQ((*chain)->spec(),
            "quant(k=int4/channel,v=int4/token,g=32,window=0)|rans");
  EXPECT_EQ((*CodecChain::Create("", Context()))->spec(), "");
}

TEST(CodecChain, EncodeRejectsWrongShapes) {
  auto chain = *CodecChain::Create("quant", Context());
  EXPECT_EQ(
      chain->EncodeLayerKV(0, RandomLayer(2, 16, kDim, 1)).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(chain->EncodeLayerKV(kLayers, RandomLayer(kHeads, 16, kDim, 1))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(chain->EncodeLayer(0, 16, std::vector<uint8_t>(10)).status().code(),
            absl::StatusCode::kInvalidArgument);
  // A layer encoded for 256 tokens does not decode as 128.
  auto enc = *chain->EncodeLayerKV(0, Bf16Layer(2));
  EXPECT_EQ(chain->DecodeLayerKV(0, 128, enc).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(CodecChain, TokenReducingChainsDecodeToACompactCache) {
  auto chain = CodecChain::Create(
      "snapkv(keep=0.25,window=16)|quant(k=int4/channel,v=int4/token)|zstd",
      Context());
  ASSERT_TRUE(chain.ok()) << chain.status();
  EXPECT_TRUE((*chain)->ReducesTokens());
  const LayerKV kv = Bf16Layer(5);
  const HeadTensor queries = RandomTensor(3 * kHeads, 32, kDim, 6);
  EXPECT_EQ((*chain)->EncodeLayerKV(0, kv).status().code(),
            absl::StatusCode::kFailedPrecondition);
  auto enc = (*chain)->EncodeLayerKV(0, kv, CodecInputs{&queries});
  ASSERT_TRUE(enc.ok()) << enc.status();
  auto dec = (*chain)->DecodeLayerKV(0, kTokens, *enc);
  ASSERT_TRUE(dec.ok()) << dec.status();
  ASSERT_EQ(dec->maps.size(), kHeads);
  EXPECT_EQ(dec->k.tokens, kTokens / 4);
  for (uint32_t h = 0; h < kHeads; ++h) {
    EXPECT_TRUE(dec->maps[h].Validate(kTokens).ok());
    // The window's last token is kept, and its row survives quantization.
    EXPECT_EQ(dec->maps[h].position.back(), kTokens - 1);
    EXPECT_NEAR(dec->k.Row(h, kTokens / 4 - 1)[0], kv.k.Row(h, kTokens - 1)[0],
                0.6);
  }
  std::vector<uint8_t> raw(2 * 2 * kHeads * kTokens * kDim);
  EXPECT_EQ((*chain)->DecodeLayer(0, kTokens, *enc, absl::MakeSpan(raw)).code(),
            absl::StatusCode::kFailedPrecondition);
  for (size_t cut = 0; cut < enc->size(); cut += 1 + cut / 3) {
    EXPECT_EQ(
        (*chain)
            ->DecodeLayerKV(0, kTokens, absl::MakeConstSpan(*enc).first(cut))
            .status()
            .code(),
        absl::StatusCode::kDataLoss);
  }
}

TEST(CodecChain, CompressedChunksRecordTheChainAndVerify) {
  ModelSpec spec;
  spec.model_id = "test/model";
  spec.num_layers = kLayers;
  spec.kv_heads = kHeads;
  spec.head_dim = kDim;
  spec.chunk_tokens = kTokens;
  spec.codec_chain = "quant|rans|zstd";
  std::vector<std::vector<uint8_t>> layers;
  for (uint32_t l = 0; l < kLayers; ++l) {
    const LayerKV kv = RandomLayer(kHeads, kTokens, kDim, 20 + l);
    auto& bytes = layers.emplace_back(spec.LayerBytes(kTokens));
    FloatToDType(DType::kBf16, kv.k.data.data(), kv.k.size(), bytes.data());
    FloatToDType(DType::kBf16, kv.v.data.data(), kv.v.size(),
                 bytes.data() + bytes.size() / 2);
  }
  const ChunkKey key =
      NextChunkKey(spec.Fingerprint(), std::vector<uint32_t>(kTokens, 7));
  const std::vector<absl::Span<const uint8_t>> spans(layers.begin(),
                                                     layers.end());
  const std::vector<uint8_t> raw = *EncodeChunkObject(
      spec,
      ChunkIdentity{spec.Fingerprint(), key, ChunkKey::Zero(), kTokens, ""},
      spans);
  auto chain = *CodecChain::Create(spec.codec_chain,
                                   CodecChain::ContextFor(spec, nullptr));
  auto packed = CompressChunk(spec, *chain, raw);
  ASSERT_TRUE(packed.ok()) << packed.status();
  EXPECT_LT(packed->size(), raw.size() / 3);
  auto header = VerifyChunkObject(*packed);
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->codec_chain, chain->spec());
  auto unpacked = DecompressChunk(spec, *chain, *packed);
  ASSERT_TRUE(unpacked.ok()) << unpacked.status();
  ASSERT_EQ(unpacked->size(), raw.size());
  auto raw_header = *VerifyChunkObject(*unpacked);
  EXPECT_TRUE(raw_header.IsRaw());
  EXPECT_EQ(raw_header.key, header->key);

  // A flipped payload byte fails the layer checksum: never served.
  std::vector<uint8_t> corrupt = *packed;
  corrupt[corrupt.size() - 5] ^= 0x10;
  EXPECT_EQ(DecompressChunk(spec, *chain, corrupt).status().code(),
            absl::StatusCode::kDataLoss);
  // Another chain does not decode it; an encoded chunk is not compressed twice.
  auto other =
      *CodecChain::Create("quant", CodecChain::ContextFor(spec, nullptr));
  EXPECT_EQ(DecompressChunk(spec, *other, *packed).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(CompressChunk(spec, *chain, *packed).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace kvd::compress
