// Test helper: a throwaway PKI made at test time with the `openssl` command
// line tool (Debian package openssl): a CA, a server certificate for
// localhost / 127.0.0.1 and a client certificate signed by it, and a second
// CA with a client certificate of its own (one the node must refuse). EC
// P-256 keys, valid for one day. Never for anything but tests.
#ifndef KVDEPOT_STORE_SERVER_TEST_CERTS_H_
#define KVDEPOT_STORE_SERVER_TEST_CERTS_H_

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace kvd {

struct TestCerts {
  std::string ca;  // PEM files, all in one directory
  std::string server_cert, server_key;
  std::string client_cert, client_key;
  std::string other_ca;
  std::string other_client_cert, other_client_key;
};

namespace test_certs_internal {

inline bool Run(const std::string& dir, const std::string& command) {
  std::string line =
      absl::StrCat("cd '", dir, "' && ", command, " >>openssl.log 2>&1");
  return std::system(line.c_str()) == 0;
}

inline bool MakeCa(const std::string& dir, const std::string& name) {
  return Run(
      dir, absl::StrCat("openssl req -x509 -newkey ec -pkeyopt "
                        "ec_paramgen_curve:prime256v1 -nodes -days 1 -keyout ",
                        name, ".key -out ", name, ".pem -subj /CN=", name,
                        " -addext basicConstraints=critical,CA:TRUE -addext "
                        "keyUsage=critical,keyCertSign,cRLSign"));
}

inline bool MakeLeaf(const std::string& dir, const std::string& ca,
                     const std::string& name, const std::string& extensions,
                     int serial) {
  {
    std::ofstream ext(absl::StrCat(dir, "/", name, ".ext"));
    ext << extensions;
  }
  return Run(dir,
             absl::StrCat("openssl req -newkey ec -pkeyopt "
                          "ec_paramgen_curve:prime256v1 -nodes -keyout ",
                          name, ".key -out ", name, ".csr -subj /CN=", name)) &&
         Run(dir, absl::StrCat("openssl x509 -req -in ", name, ".csr -CA ", ca,
                               ".pem -CAkey ", ca, ".key -set_serial ", serial,
                               " -days 1 -out ", name, ".pem -extfile ", name,
                               ".ext"));
}

}  // namespace test_certs_internal

// Writes the files into `dir` (which must exist). kInternal when openssl
// fails; its output is in dir/openssl.log.
inline absl::StatusOr<TestCerts> MakeTestCerts(const std::string& dir) {
  namespace t = test_certs_internal;
  const std::string server_ext =
      "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
      "extendedKeyUsage=serverAuth\n";
  const std::string client_ext = "extendedKeyUsage=clientAuth\n";
  if (!t::MakeCa(dir, "ca") || !t::MakeCa(dir, "other-ca") ||
      !t::MakeLeaf(dir, "ca", "server", server_ext, 1001) ||
      !t::MakeLeaf(dir, "ca", "client", client_ext, 1002) ||
      !t::MakeLeaf(dir, "other-ca", "other-client", client_ext, 1003)) {
    return absl::InternalError(
        absl::StrCat("openssl failed; see ", dir, "/openssl.log"));
  }
  auto f = [&](const char* name) { return absl::StrCat(dir, "/", name); };
  return TestCerts{f("ca.pem"),           f("server.pem"),
                   f("server.key"),       f("client.pem"),
                   f("client.key"),       f("other-ca.pem"),
                   f("other-client.pem"), f("other-client.key")};
}

}  // namespace kvd

#endif  // KVDEPOT_STORE_SERVER_TEST_CERTS_H_
