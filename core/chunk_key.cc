#include "core/chunk_key.h"

#include <openssl/evp.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "core/check.h"
#include "core/sha256.h"

namespace kvd {

absl::StatusOr<ChunkKey> ChunkKey::FromHex(absl::string_view hex) {
  if (hex.size() != 2 * kSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "chunk key has ", hex.size(), " hex digits, expected ", 2 * kSize));
  }
  for (char c : hex) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError(absl::StrCat(
          "chunk key contains non-hex character '", std::string(1, c), "'"));
    }
  }
  std::string raw = absl::HexStringToBytes(hex);
  return FromBytes(reinterpret_cast<const uint8_t*>(raw.data()));
}

bool ChunkKey::IsZero() const {
  for (uint8_t b : bytes) {
    if (b != 0) return false;
  }
  return true;
}

std::string ChunkKey::Hex() const {
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(bytes.data()), kSize));
}

ChunkKey NextChunkKey(const ChunkKey& previous,
                      absl::Span<const uint32_t> tokens,
                      absl::string_view extra) {
  Sha256 sha;
  sha.Update(previous.bytes.data(), ChunkKey::kSize);
  uint8_t le[4];
  for (uint32_t t : tokens) {
    le[0] = t & 0xff;
    le[1] = (t >> 8) & 0xff;
    le[2] = (t >> 16) & 0xff;
    le[3] = (t >> 24) & 0xff;
    sha.Update(le, sizeof(le));
  }
  if (!extra.empty()) {
    static constexpr absl::string_view kTag =
        "\xff"
        "kvdepot.extra";
    sha.Update(kTag.data(), kTag.size());
    const uint32_t n = static_cast<uint32_t>(extra.size());
    uint8_t len[4] = {static_cast<uint8_t>(n), static_cast<uint8_t>(n >> 8),
                      static_cast<uint8_t>(n >> 16),
                      static_cast<uint8_t>(n >> 24)};
    sha.Update(len, sizeof(len));
    sha.Update(extra.data(), extra.size());
  }
  return sha.Finish();
}

std::vector<ChunkKey> ChainChunkKeys(const ChunkKey& fingerprint,
                                     absl::Span<const uint32_t> tokens,
                                     uint32_t chunk_tokens) {
  KVD_CHECK(chunk_tokens > 0, "chunk_tokens must be positive");
  std::vector<ChunkKey> keys;
  keys.reserve(tokens.size() / chunk_tokens);
  ChunkKey previous = fingerprint;
  for (size_t start = 0; start + chunk_tokens <= tokens.size();
       start += chunk_tokens) {
    previous = NextChunkKey(previous, tokens.subspan(start, chunk_tokens));
    keys.push_back(previous);
  }
  return keys;
}

}  // namespace kvd
