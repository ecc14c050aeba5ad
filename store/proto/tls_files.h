// Reading the PEM files of gRPC TLS (server certificate and key, client CA,
// client certificate and key) with errors that name the setting they came
// from. The one place both the node and the clients read them.
#ifndef KVDEPOT_STORE_PROTO_TLS_FILES_H_
#define KVDEPOT_STORE_PROTO_TLS_FILES_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvd {

// PEM files are small; anything larger is not one.
inline constexpr size_t kMaxPemFileBytes = 1 << 20;

// The contents of the PEM file at `path`. `setting` names where the path came
// from (e.g. "tls.cert", "--tls-ca") in error messages. kInvalidArgument when
// it cannot be read (with the errno text), is larger than kMaxPemFileBytes,
// or holds no "-----BEGIN " block.
absl::StatusOr<std::string> ReadPemFile(absl::string_view setting,
                                        const std::string& path);

}  // namespace kvd

#endif  // KVDEPOT_STORE_PROTO_TLS_FILES_H_
