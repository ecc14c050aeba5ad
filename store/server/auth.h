// Authenticator: the bearer-token check of Control RPCs (DESIGN.md §4).
//
// A call carries `authorization: Bearer <token>` in its gRPC metadata. Two
// tokens exist: the data token (auth.token), which opens the data path
// (Hello), and the admin token (node.admin_token), which the admin RPCs need
// and which also opens the data path. Outcomes of Check:
//   OK                 the token grants the access asked for;
//   kUnauthenticated   no authorization metadata ("missing"), not of the form
//                      "Bearer <token>" ("malformed"), a token that is neither
//                      ("invalid"), or no token configured for that access
//                      while allow_no_token is off ("unconfigured");
//   kPermissionDenied  the data token on an admin RPC ("not_admin").
// A configured token that is empty means "no check" for its access level only
// when allow_no_token is set (local development); the node refuses to start
// with an empty token otherwise (store/server/node_config.h).
//
// Tokens are compared in constant time: both sides are hashed with SHA-256
// and the digests compared with CRYPTO_memcmp, so neither the content nor
// the length of a configured token leaks through timing.
//
// Every failure increments kvdepot_auth_failures_total{reason} and is logged
// with the peer address, at most kMaxLogsPerWindow lines per 10 s (the rest
// are counted and summed up in the next line that gets out).
//
// Thread-safe. The registry passed to the constructor must outlive it.
#ifndef KVDEPOT_STORE_SERVER_AUTH_H_
#define KVDEPOT_STORE_SERVER_AUTH_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/chunk_key.h"
#include "core/metrics.h"

namespace kvd {

enum class Access { kData, kAdmin };

struct AuthOptions {
  std::string data_token;   // auth.token
  std::string admin_token;  // node.admin_token
  bool allow_no_token = false;
};

class Authenticator {
 public:
  static constexpr int kMaxLogsPerWindow = 10;

  // Registers kvdepot_auth_failures_total in `metrics`; KVD_CHECK-fails when
  // the name is taken (one Authenticator per registry).
  Authenticator(const AuthOptions& options, MetricsRegistry* metrics);

  // `authorization`: the value of the call's authorization metadata, nullopt
  // when there is none. `peer` and `rpc` name the caller and the RPC in the
  // log line and the error message.
  absl::Status Check(Access need,
                     std::optional<absl::string_view> authorization,
                     absl::string_view peer, absl::string_view rpc);

 private:
  struct Secret {
    bool set = false;  // false: empty token configured
    ChunkKey digest;   // SHA-256 of the token
  };
  static Secret Digest(absl::string_view token);
  static bool Matches(const Secret& secret, const ChunkKey& presented);
  absl::Status Fail(absl::Status status, absl::string_view reason,
                    absl::string_view peer, absl::string_view rpc);

  const Secret data_;
  const Secret admin_;
  const bool allow_no_token_;
  CounterFamily* failures_;

  absl::Mutex log_mu_;
  absl::Time window_start_ ABSL_GUARDED_BY(log_mu_);
  int logged_in_window_ ABSL_GUARDED_BY(log_mu_) = 0;
  uint64_t suppressed_ ABSL_GUARDED_BY(log_mu_) = 0;
};

}  // namespace kvd

#endif  // KVDEPOT_STORE_SERVER_AUTH_H_
