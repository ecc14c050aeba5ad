#include "core/chunk_key.h"

#include <numeric>

#include "core/model_spec.h"
#include "gtest/gtest.h"

namespace kvd {
namespace {

ChunkKey CountingFingerprint() {
  ChunkKey fp;
  std::iota(fp.bytes.begin(), fp.bytes.end(), 0);
  return fp;
}

// Expected values computed independently with Python's hashlib:
//   sha256(fp || struct.pack('<I', t) for t in tokens).
TEST(ChunkKeyTest, MatchesTheDesignFormula) {
  std::vector<uint32_t> tokens = {1000, 1001, 1002, 1003, 7, 8, 9, 4000000000u};
  std::vector<ChunkKey> keys = ChainChunkKeys(CountingFingerprint(), tokens, 4);
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[0].Hex(),
            "fd2730c328098153917721e90477e2240ff5fbaf625381a81bad9c8da72600a7");
  EXPECT_EQ(keys[1].Hex(),
            "c25003e1139202190d2e991430b71948bfb303d735c27e8958582f968fbe9f9a");
}

TEST(ChunkKeyTest, PartialTailIsNotKeyed) {
  std::vector<uint32_t> tokens(10, 5);
  EXPECT_EQ(ChainChunkKeys(ChunkKey::Zero(), tokens, 4).size(), 2u);
  EXPECT_TRUE(
      ChainChunkKeys(ChunkKey::Zero(), absl::MakeSpan(tokens).subspan(0, 3), 4)
          .empty());
}

TEST(ChunkKeyTest, ExtraFieldChangesTheKeyAndEmptyExtraDoesNot) {
  std::vector<uint32_t> tokens = {1, 2, 3, 4};
  ChunkKey plain = NextChunkKey(ChunkKey::Zero(), tokens);
  EXPECT_EQ(NextChunkKey(ChunkKey::Zero(), tokens, ""), plain);
  ChunkKey lora_a = NextChunkKey(ChunkKey::Zero(), tokens, "lora:a");
  ChunkKey lora_b = NextChunkKey(ChunkKey::Zero(), tokens, "lora:b");
  EXPECT_NE(lora_a, plain);
  EXPECT_NE(lora_a, lora_b);
}

TEST(ChunkKeyTest, HexRoundTripAndErrors) {
  ChunkKey k = CountingFingerprint();
  auto parsed = ChunkKey::FromHex(k.Hex());
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(*parsed, k);
  EXPECT_EQ(ChunkKey::FromHex("abc").status().code(),
            absl::StatusCode::kInvalidArgument);
  std::string bad(64, 'g');
  EXPECT_EQ(ChunkKey::FromHex(bad).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ChunkKey::Zero().IsZero());
  EXPECT_FALSE(k.IsZero());
}

TEST(ModelSpecTest, FingerprintCoversEveryField) {
  ModelSpec base = ModelSpec::SmolLM2_135M();
  ASSERT_TRUE(base.Validate().ok());
  const ChunkKey fp = base.Fingerprint();
  EXPECT_EQ(base.Fingerprint(), fp) << "fingerprint must be deterministic";
  std::vector<ModelSpec> variants(9, base);
  variants[0].model_id += "x";
  variants[1].revision = "other";
  variants[2].dtype = DType::kFp16;
  variants[3].num_layers = 29;
  variants[4].kv_heads = 4;
  variants[5].head_dim = 128;
  variants[6].rope_theta = 10000;
  variants[7].codec_chain = "zstd";
  variants[8].tenant_salt = "tenant-a";
  for (const ModelSpec& v : variants) EXPECT_NE(v.Fingerprint(), fp);
}

TEST(ModelSpecTest, ValidateNamesTheField) {
  ModelSpec s = ModelSpec::SmolLM2_135M();
  s.num_layers = 0;
  absl::Status st = s.Validate();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("num_layers=0"), std::string::npos) << st;
  s = ModelSpec::SmolLM2_135M();
  s.layout = KvLayout::kLatent;
  EXPECT_NE(s.Validate().message().find("kv_heads"), std::string::npos);
}

TEST(ModelSpecTest, ChunkBytesOfTheReferenceModels) {
  EXPECT_EQ(ModelSpec::SmolLM2_135M().ChunkPayloadBytes(),
            30ull * 2 * 3 * 256 * 64 * 2);
  EXPECT_EQ(ModelSpec::Llama3_8B().ChunkPayloadBytes(), 32ull << 20);
}

}  // namespace
}  // namespace kvd
