#include "store/proto/grpc_status.h"

#include "gtest/gtest.h"

namespace kvd {
namespace {

TEST(GrpcStatusTest, RoundTripsEveryCode) {
  for (int code = 0; code <= 16; ++code) {
    absl::Status original(static_cast<absl::StatusCode>(code),
                          code == 0 ? "" : "boom");
    grpc::Status wire = ToGrpcStatus(original);
    EXPECT_EQ(static_cast<int>(wire.error_code()), code);
    absl::Status back = FromGrpcStatus(wire);
    EXPECT_EQ(back, original) << code;
  }
}

TEST(GrpcStatusTest, ContextIsPrefixed) {
  absl::Status s = FromGrpcStatus(
      grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection refused"),
      "Control.Status on 127.0.0.1:1");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(s.message(), "Control.Status on 127.0.0.1:1: connection refused");
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK, "ctx").ok());
}

}  // namespace
}  // namespace kvd
