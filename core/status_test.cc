#include "core/status.h"

#include <cerrno>

#include "gtest/gtest.h"

namespace kvd {
namespace {

absl::StatusOr<int> Half(int x) {
  if (x % 2 != 0) return absl::InvalidArgumentError("odd");
  return x / 2;
}

absl::StatusOr<int> Quarter(int x) {
  KVD_ASSIGN_OR_RETURN(int h, Half(x));
  KVD_ASSIGN_OR_RETURN(h, Half(h));
  return h;
}

absl::Status CheckEven(int x) {
  KVD_RETURN_IF_ERROR(Half(x).status());
  return absl::OkStatus();
}

TEST(StatusTest, MacrosPropagate) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(Quarter(6).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(CheckEven(2).ok());
  EXPECT_FALSE(CheckEven(3).ok());
}

TEST(StatusTest, ErrnoFollowsRetryPolicy) {
  EXPECT_TRUE(absl::IsUnavailable(ErrnoToStatus(EAGAIN, "read")));
  EXPECT_TRUE(absl::IsResourceExhausted(ErrnoToStatus(ENOSPC, "write")));
  EXPECT_TRUE(absl::IsNotFound(ErrnoToStatus(ENOENT, "open(x)")));
  absl::Status s = ErrnoToStatus(EIO, "pwrite(seg-1)");
  EXPECT_TRUE(absl::IsInternal(s));
  EXPECT_NE(s.message().find("pwrite(seg-1)"), std::string::npos);
  EXPECT_EQ(Annotate(absl::DataLossError("x"), "ctx").message(), "ctx: x");
}

}  // namespace
}  // namespace kvd
