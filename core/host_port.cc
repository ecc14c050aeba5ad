#include "core/host_port.h"

#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace kvd {
namespace {

absl::Status ValidateHostPort(absl::string_view key, absl::string_view address,
                              uint32_t min_port) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        key, "=\"", address, "\" ", why,
        " (expected host:port, e.g. 127.0.0.1:7400 or [::1]:7400)"));
  };
  size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos) return bad("has no port");
  absl::string_view host = address.substr(0, colon);
  absl::string_view port = address.substr(colon + 1);
  if (host.empty()) return bad("has no host");
  if (host.front() == '[' ? host.back() != ']'
                          : host.find(':') != absl::string_view::npos) {
    return bad("has an IPv6 host without brackets");
  }
  uint32_t port_number = 0;
  if (port.empty() || !absl::ascii_isdigit(port[0]) ||
      !absl::SimpleAtoi(port, &port_number) || port_number > 65535 ||
      port_number < min_port) {
    return bad(absl::StrCat("has a port outside ", min_port, "..65535"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateListenAddress(absl::string_view key,
                                   absl::string_view address) {
  return ValidateHostPort(key, address, 0);
}

absl::Status ValidateDialAddress(absl::string_view key,
                                 absl::string_view address) {
  return ValidateHostPort(key, address, 1);
}

}  // namespace kvd
