// "host:port" addresses from configuration and flags: host a name, IPv4 or
// [IPv6]. `key` names where the address came from in the error message
// (kInvalidArgument), e.g. "config key node.listen".
#ifndef KVDEPOT_CORE_HOST_PORT_H_
#define KVDEPOT_CORE_HOST_PORT_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace kvd {

// An address to listen on: port 0..65535 (0 picks a free port).
absl::Status ValidateListenAddress(absl::string_view key,
                                   absl::string_view address);

// An address to connect to: port 1..65535.
absl::Status ValidateDialAddress(absl::string_view key,
                                 absl::string_view address);

}  // namespace kvd

#endif  // KVDEPOT_CORE_HOST_PORT_H_
