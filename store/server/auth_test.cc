#include "store/server/auth.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvd {
namespace {

using ::testing::HasSubstr;

constexpr absl::string_view kPeer = "ipv4:127.0.0.1:5555";

class AuthTest : public ::testing::Test {
 protected:
  Authenticator& Make(AuthOptions options) {
    auth_ = std::make_unique<Authenticator>(options, &metrics_);
    return *auth_;
  }
  absl::Status Check(Access need, std::optional<absl::string_view> header) {
    return auth_->Check(need, header, kPeer, "Control.Test");
  }
  std::string Failures(absl::string_view reason) {
    std::string line =
        absl::StrCat("kvdepot_auth_failures_total{reason=\"", reason, "\"} ");
    std::string text = metrics_.RenderText();
    size_t at = text.find(line);
    if (at == std::string::npos) return "absent";
    return text.substr(at + line.size(),
                       text.find('\n', at) - at - line.size());
  }

  MetricsRegistry metrics_;
  std::unique_ptr<Authenticator> auth_;
};

TEST_F(AuthTest, AdminTokenGrantsBothDataTokenOnlyData) {
  Make({.data_token = "data-secret", .admin_token = "admin-secret"});
  EXPECT_TRUE(Check(Access::kAdmin, "Bearer admin-secret").ok());
  EXPECT_TRUE(Check(Access::kData, "Bearer admin-secret").ok());
  EXPECT_TRUE(Check(Access::kData, "Bearer data-secret").ok());
  EXPECT_TRUE(Check(Access::kData, "bearer  data-secret ").ok());
  absl::Status s = Check(Access::kAdmin, "Bearer data-secret");
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(s.message(), HasSubstr("admin token"));
  EXPECT_EQ(Failures("not_admin"), "1");
  EXPECT_EQ(Failures("invalid"), "0");
}

TEST_F(AuthTest, MissingMalformedAndWrongAreUnauthenticatedAndCounted) {
  Make({.data_token = "data-secret", .admin_token = "admin-secret"});
  absl::Status s = Check(Access::kData, std::nullopt);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(s.message(), HasSubstr("Bearer <token>"));
  EXPECT_EQ(Check(Access::kData, "Basic abc").code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(Check(Access::kData, "Bearer ").code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(Check(Access::kAdmin, "Bearer admin-secreT").code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(Check(Access::kData, "Bearer data-secret-and-more").code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(Check(Access::kData, "Bearer data").code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(Failures("missing"), "1");
  EXPECT_EQ(Failures("malformed"), "2");
  EXPECT_EQ(Failures("invalid"), "3");
}

TEST_F(AuthTest, EmptyTokensRefuseUnlessAllowed) {
  Make({});
  absl::Status s = Check(Access::kAdmin, "Bearer anything");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(s.message(), HasSubstr("node.admin_token"));
  EXPECT_EQ(Check(Access::kData, std::nullopt).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(Failures("unconfigured"), "2");
}

TEST_F(AuthTest, AllowNoTokenOpensOnlyTheLevelsWithoutOne) {
  Make({.admin_token = "admin-secret", .allow_no_token = true});
  EXPECT_TRUE(Check(Access::kData, std::nullopt).ok());
  EXPECT_EQ(Check(Access::kAdmin, std::nullopt).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(Check(Access::kAdmin, "Bearer admin-secret").ok());
}

TEST_F(AuthTest, AdminTokenOpensTheDataPathWhenNoDataTokenIsSet) {
  Make({.admin_token = "admin-secret"});
  EXPECT_TRUE(Check(Access::kData, "Bearer admin-secret").ok());
  EXPECT_EQ(Check(Access::kData, std::nullopt).code(),
            absl::StatusCode::kUnauthenticated);
}

TEST_F(AuthTest, ManyFailuresAreAllCounted) {
  Make({.data_token = "d", .admin_token = "a"});
  for (int i = 0; i < 3 * Authenticator::kMaxLogsPerWindow; ++i) {
    EXPECT_FALSE(Check(Access::kData, "Bearer wrong").ok());
  }
  EXPECT_EQ(Failures("invalid"),
            absl::StrCat(3 * Authenticator::kMaxLogsPerWindow));
}

}  // namespace
}  // namespace kvd
