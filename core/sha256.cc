#include "core/sha256.h"

#include <openssl/evp.h>

#include "core/check.h"

namespace kvd {

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  KVD_CHECK(ctx_ != nullptr, "EVP_MD_CTX_new failed");
  KVD_CHECK(EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) == 1,
            "SHA-256 init failed");
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }

void Sha256::Update(const void* data, size_t size) {
  KVD_CHECK(EVP_DigestUpdate(ctx_, data, size) == 1, "SHA-256 update failed");
}

ChunkKey Sha256::Finish() {
  ChunkKey out;
  unsigned int len = 0;
  KVD_CHECK(EVP_DigestFinal_ex(ctx_, out.bytes.data(), &len) == 1 &&
                len == ChunkKey::kSize,
            "SHA-256 final failed");
  return out;
}

}  // namespace kvd
