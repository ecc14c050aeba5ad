#include "store/server/auth.h"

#include <openssl/crypto.h>

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/check.h"
#include "core/sha256.h"
#include "spdlog/spdlog.h"

namespace kvd {
namespace {

constexpr absl::Duration kLogWindow = absl::Seconds(10);

absl::string_view AccessName(Access access) {
  return access == Access::kAdmin ? "admin" : "data";
}

}  // namespace

Authenticator::Secret Authenticator::Digest(absl::string_view token) {
  Secret s;
  s.set = !token.empty();
  Sha256 sha;
  sha.Update(token.data(), token.size());
  s.digest = sha.Finish();
  return s;
}

bool Authenticator::Matches(const Secret& secret, const ChunkKey& presented) {
  return secret.set &&
         CRYPTO_memcmp(secret.digest.bytes.data(), presented.bytes.data(),
                       ChunkKey::kSize) == 0;
}

Authenticator::Authenticator(const AuthOptions& options,
                             MetricsRegistry* metrics)
    : data_(Digest(options.data_token)),
      admin_(Digest(options.admin_token)),
      allow_no_token_(options.allow_no_token) {
  absl::StatusOr<CounterFamily*> family = metrics->AddCounterFamily(
      "kvdepot_auth_failures_total",
      "Control calls refused for their token, by reason: missing, malformed, "
      "invalid, not_admin, unconfigured.",
      {"reason"});
  KVD_CHECK(family.ok(), "kvdepot_auth_failures_total registered twice");
  failures_ = *family;
  // Every reason shows up at 0 from the first scrape.
  for (absl::string_view reason :
       {"missing", "malformed", "invalid", "not_admin", "unconfigured"}) {
    KVD_CHECK(failures_->WithLabels({reason}).ok(), "one label");
  }
}

absl::Status Authenticator::Check(
    Access need, std::optional<absl::string_view> authorization,
    absl::string_view peer, absl::string_view rpc) {
  const Secret& required = need == Access::kAdmin ? admin_ : data_;
  if (!required.set) {
    if (allow_no_token_) return absl::OkStatus();
    // The admin token also opens the data path.
    if (need == Access::kAdmin || !admin_.set) {
      return Fail(
          absl::UnauthenticatedError(absl::StrCat(
              rpc, " is disabled: no ", AccessName(need),
              " token is configured on the node (",
              need == Access::kAdmin ? "node.admin_token" : "auth.token", ")")),
          "unconfigured", peer, rpc);
    }
  }
  if (!authorization.has_value()) {
    return Fail(
        absl::UnauthenticatedError(absl::StrCat(
            rpc, " needs the ", AccessName(need),
            " token in the authorization metadata (\"Bearer <token>\")")),
        "missing", peer, rpc);
  }
  absl::string_view value = absl::StripAsciiWhitespace(*authorization);
  constexpr absl::string_view kScheme = "bearer ";
  if (value.size() <= kScheme.size() ||
      !absl::StartsWithIgnoreCase(value, kScheme)) {
    return Fail(absl::UnauthenticatedError(
                    "the authorization metadata is not \"Bearer <token>\""),
                "malformed", peer, rpc);
  }
  absl::string_view token =
      absl::StripLeadingAsciiWhitespace(value.substr(kScheme.size()));
  const ChunkKey presented = Digest(token).digest;
  // Both comparisons always run: the time taken does not say which matched.
  const bool admin = Matches(admin_, presented);
  const bool data = Matches(data_, presented);
  if (admin || (need == Access::kData && data)) return absl::OkStatus();
  if (data) {
    return Fail(absl::PermissionDeniedError(absl::StrCat(
                    rpc,
                    " needs the admin token (node.admin_token); the data token "
                    "does not grant it")),
                "not_admin", peer, rpc);
  }
  return Fail(absl::UnauthenticatedError(absl::StrCat(
                  "the token is not valid for ", rpc, " on this node")),
              "invalid", peer, rpc);
}

absl::Status Authenticator::Fail(absl::Status status, absl::string_view reason,
                                 absl::string_view peer,
                                 absl::string_view rpc) {
  absl::StatusOr<Counter*> counter = failures_->WithLabels({reason});
  if (counter.ok()) (*counter)->Increment();
  uint64_t suppressed = 0;
  {
    absl::MutexLock lock(&log_mu_);
    const absl::Time now = absl::Now();
    if (now - window_start_ >= kLogWindow) {
      window_start_ = now;
      logged_in_window_ = 0;
    }
    if (logged_in_window_ >= kMaxLogsPerWindow) {
      suppressed_++;
      return status;
    }
    logged_in_window_++;
    suppressed = std::exchange(suppressed_, 0);
  }
  spdlog::warn("auth: refused {} from {} ({}){}", std::string(rpc),
               std::string(peer), std::string(reason),
               suppressed > 0 ? absl::StrCat(" [", suppressed,
                                             " more refusals not logged]")
                              : std::string());
  return status;
}

}  // namespace kvd
