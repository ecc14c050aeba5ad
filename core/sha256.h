// Incremental SHA-256 over OpenSSL's EVP interface; the only place kvdepot
// touches OpenSSL's digest API.
#ifndef KVDEPOT_CORE_SHA256_H_
#define KVDEPOT_CORE_SHA256_H_

#include <cstddef>

#include "core/chunk_key.h"

typedef struct evp_md_ctx_st EVP_MD_CTX;

namespace kvd {

// Not thread-safe; one instance per digest.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(const void* data, size_t size);
  // Returns the digest; the object must not be used afterwards.
  ChunkKey Finish();

 private:
  EVP_MD_CTX* ctx_;
};

}  // namespace kvd

#endif  // KVDEPOT_CORE_SHA256_H_
