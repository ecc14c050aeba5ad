#include "transfer/nccl/internal/poll.h"

#include "gtest/gtest.h"

namespace kvd::internal {
namespace {

TEST(PollUntilTest, ReturnsOkOnceDone) {
  int calls = 0;
  const absl::Status s =
      PollUntil(Clock::Real(), absl::Seconds(10), absl::ZeroDuration(),
                [&]() -> absl::StatusOr<bool> { return ++calls == 3; });
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(calls, 3);
}

TEST(PollUntilTest, ReturnsTheFirstError) {
  int calls = 0;
  const absl::Status s =
      PollUntil(Clock::Real(), absl::Seconds(10), absl::ZeroDuration(),
                [&]() -> absl::StatusOr<bool> {
                  if (++calls == 2) return absl::UnavailableError("peer gone");
                  return false;
                });
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(calls, 2);
}

TEST(PollUntilTest, DeadlineOnTheGivenClock) {
  FakeClock clock;
  int calls = 0;
  const absl::Status s =
      PollUntil(&clock, absl::Seconds(5), absl::ZeroDuration(),
                [&]() -> absl::StatusOr<bool> {
                  ++calls;
                  clock.Advance(absl::Seconds(1));
                  return false;
                });
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(calls, 6);  // at t=0..4 before the deadline, one at t=5 after it
}

TEST(PollUntilTest, PollsOnceEvenWithZeroTimeout) {
  FakeClock clock;
  int calls = 0;
  EXPECT_TRUE(PollUntil(&clock, absl::ZeroDuration(), absl::ZeroDuration(),
                        [&]() -> absl::StatusOr<bool> {
                          ++calls;
                          return true;
                        })
                  .ok());
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(PollUntil(&clock, absl::ZeroDuration(), absl::ZeroDuration(),
                      [&]() -> absl::StatusOr<bool> {
                        ++calls;
                        return false;
                      })
                .code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(calls, 2);
}

TEST(PollUntilTest, DoneOnTheLastCallAfterTheDeadlineIsOk) {
  FakeClock clock;
  int calls = 0;
  const absl::Status s =
      PollUntil(&clock, absl::Seconds(1), absl::ZeroDuration(),
                [&]() -> absl::StatusOr<bool> {
                  ++calls;
                  clock.Advance(absl::Seconds(2));
                  return calls == 2;
                });
  EXPECT_TRUE(s.ok()) << s;
}

}  // namespace
}  // namespace kvd::internal
