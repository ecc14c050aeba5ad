#include "store/proto/tls_files.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace kvd {

absl::StatusOr<std::string> ReadPemFile(absl::string_view setting,
                                        const std::string& path) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat(setting, "=\"", path, "\" ", why));
  };
  if (path.empty()) return bad("is empty");
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    return bad(absl::StrCat("cannot be read: ", std::strerror(errno)));
  }
  std::string text;
  char buf[8192];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) {
    text.append(buf, n);
    if (text.size() > kMaxPemFileBytes) break;
  }
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) return bad("cannot be read: I/O error");
  if (text.size() > kMaxPemFileBytes) {
    return bad(absl::StrCat("is larger than ", kMaxPemFileBytes,
                            " bytes; not a PEM file"));
  }
  if (text.find("-----BEGIN ") == std::string::npos) {
    return bad("holds no PEM block (\"-----BEGIN ...\")");
  }
  return text;
}

}  // namespace kvd
