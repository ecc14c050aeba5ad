#include "bench/transfer/baselines.h"

#include <unistd.h>

#include <string>

#include "absl/strings/match.h"
#include "bench/transfer/internal/subprocess.h"
#include "core/model_spec.h"
#include "gtest/gtest.h"

namespace kvd::bench {
namespace {

constexpr char kPlainOutput[] =
    "+--------------+--------------+------------------------------+----\n"
    "|    Stage     | # iterations | 50.0%ile | average | overall |  ...\n"
    "+--------------+--------------+----------+---------+---------+----\n"
    "                          40      3.010  1364.191  1364.191     "
    "4000.00    4000.00         733         733\n"
    "Final:                   100      3.010  1364.191  1364.191     "
    "4123.32    4123.32         733         735\n";

TEST(ParsePerftestOutputTest, PlainFinalLine) {
  absl::StatusOr<PerftestFinal> f = ParsePerftestOutput(kPlainOutput);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->iterations, 100u);
  EXPECT_DOUBLE_EQ(f->latency_p50_us, 3.010);
  EXPECT_DOUBLE_EQ(f->latency_avg_us, 1364.191);
  EXPECT_DOUBLE_EQ(f->bandwidth_bytes_per_s, 4123.32 * 1024 * 1024);
  EXPECT_DOUBLE_EQ(f->msg_per_s, 735);
}

TEST(ParsePerftestOutputTest, FinalOnlyAndNumericForms) {
  const char kFinalOnly[] =
      "|     Test     | # iterations | 50.0%ile | average | overall |\n"
      "+--------------+--------------+----------+---------+---------+\n"
      "                         100    550.893   561.700   561.700    "
      "10014.24   10014.24        1780        1780\n";
  absl::StatusOr<PerftestFinal> f = ParsePerftestOutput(kFinalOnly);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_DOUBLE_EQ(f->bandwidth_bytes_per_s, 10014.24 * 1024 * 1024);

  const char kNumeric[] =
      "Final:              1,000      3.010  1,364.191  1,364.191     "
      "4,123.32    4,123.32         733         733\n";
  f = ParsePerftestOutput(kNumeric);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->iterations, 1000u);
  EXPECT_DOUBLE_EQ(f->latency_avg_us, 1364.191);
}

TEST(ParsePerftestOutputTest, NoFinalLineIsNotFound) {
  // Progress lines of a killed run are not a result.
  const std::string killed(kPlainOutput, sizeof(kPlainOutput) - 1);
  const std::string progress_only = killed.substr(0, killed.find("Final:"));
  EXPECT_TRUE(absl::IsNotFound(ParsePerftestOutput(progress_only).status()));
  EXPECT_TRUE(absl::IsNotFound(
      ParsePerftestOutput("UCX  ERROR Failed to run test: Destination is "
                          "unreachable\n")
          .status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      ParsePerftestOutput("Final: 100 1.0 2.0\n").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      ParsePerftestOutput("Final: 1 2 3 4 5 x 7 8\n").status()));
}

TEST(ChunkObjectBytesTest, HeaderPlusPayload) {
  const ModelSpec smol = ModelSpec::SmolLM2_135M();
  const ModelSpec llama = ModelSpec::Llama3_8B();
  EXPECT_EQ(smol.ChunkPayloadBytes(), 30ull * 2 * 3 * 256 * 64 * 2);
  EXPECT_EQ(llama.ChunkPayloadBytes(), 32ull << 20);
  EXPECT_GT(ChunkObjectBytes(smol), smol.ChunkPayloadBytes());
  EXPECT_LT(ChunkObjectBytes(llama), llama.ChunkPayloadBytes() + 4096);
}

TEST(SubprocessTest, TimeoutThenKillNeverHangs) {
  absl::StatusOr<std::unique_ptr<TempDir>> dir = TempDir::Create("kvd-sp-");
  ASSERT_TRUE(dir.ok()) << dir.status();
  absl::StatusOr<std::unique_ptr<Subprocess>> p =
      Subprocess::Start({.argv = {"/bin/sh", "-c", "echo started; sleep 60"},
                         .env = {},
                         .output_path = (*dir)->path() + "/out"});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(
      absl::IsUnavailable((*p)->Wait(absl::Milliseconds(100)).status()));
  EXPECT_TRUE((*p)->Running());
  const absl::Time t0 = absl::Now();
  EXPECT_EQ((*p)->Kill(absl::Milliseconds(200)), 128 + SIGTERM);
  EXPECT_LT(absl::Now() - t0, absl::Seconds(2));
  EXPECT_FALSE((*p)->Running());
  EXPECT_EQ((*p)->Output(), "started\n");
}

TEST(SubprocessTest, ExitStatusEnvAndExecFailure) {
  absl::StatusOr<std::unique_ptr<TempDir>> dir = TempDir::Create("kvd-sp-");
  ASSERT_TRUE(dir.ok()) << dir.status();
  absl::StatusOr<std::unique_ptr<Subprocess>> p =
      Subprocess::Start({.argv = {"/bin/sh", "-c", "echo $KVD_SP_TEST; exit 3"},
                         .env = {{"KVD_SP_TEST", "hello"}},
                         .output_path = (*dir)->path() + "/out"});
  ASSERT_TRUE(p.ok()) << p.status();
  absl::StatusOr<int> rc = (*p)->Wait(absl::Seconds(10));
  ASSERT_TRUE(rc.ok()) << rc.status();
  EXPECT_EQ(*rc, 3);
  EXPECT_EQ((*p)->Output(), "hello\n");

  p = Subprocess::Start({.argv = {"/nonexistent/binary"},
                         .env = {},
                         .output_path = (*dir)->path() + "/out2"});
  ASSERT_TRUE(p.ok()) << p.status();
  rc = (*p)->Wait(absl::Seconds(10));
  ASSERT_TRUE(rc.ok()) << rc.status();
  EXPECT_EQ(*rc, 127);
  EXPECT_TRUE(absl::StrContains((*p)->Output(), "execve failed"));
}

TEST(SubprocessTest, TailLines) {
  EXPECT_EQ(TailLines("a\nb\nc\n", 2), "b\nc\n");
  EXPECT_EQ(TailLines("a\nb\nc", 2), "b\nc");
  EXPECT_EQ(TailLines("a\nb\n", 5), "a\nb\n");
  EXPECT_EQ(TailLines("", 3), "");
}

TEST(UcxPerftestTest, RejectsBadOptions) {
  EXPECT_TRUE(absl::IsInvalidArgument(UcxPerftest::Create({}).status()));
  UcxPerftestOptions o;
  o.message_bytes = 1 << 20;
  o.binary = "/nonexistent/ucx_perftest";
  EXPECT_TRUE(absl::IsFailedPrecondition(UcxPerftest::Create(o).status()));
}

// Live runs, small and short; skipped where the tools are not installed.
TEST(UcxPerftestTest, TagBwOverShmAndAnUnsupportedTransport) {
  UcxPerftestOptions o;
  if (access(o.binary.c_str(), X_OK) != 0) GTEST_SKIP() << "no ucx_perftest";
  o.message_bytes = 1 << 20;
  o.bytes_per_test = 64 << 20;
  o.timeout = absl::Seconds(20);
  o.tests = {"tag_bw", "no_such_test"};
  absl::StatusOr<std::unique_ptr<UcxPerftest>> p = UcxPerftest::Create(o);
  ASSERT_TRUE(p.ok()) << p.status();
  const UcxTransportResult r = (*p)->RunAll(UcxTransport::kShm);
  ASSERT_EQ(r.tests.size(), 2u);
  EXPECT_TRUE(r.tests[0].status.ok()) << r.tests[0].status;
  EXPECT_GT(r.tests[0].bytes_per_s, 0);
  EXPECT_EQ(r.tests[0].iterations, 64u);
  EXPECT_FALSE(r.tests[1].status.ok());
  EXPECT_EQ(r.best_test, "tag_bw");
}

TEST(RedisBaselineTest, SetGetOverTcpAndUnix) {
  RedisServerOptions ro;
  if (access(ro.binary.c_str(), X_OK) != 0) GTEST_SKIP() << "no redis-server";
  ro.max_value_bytes = 1 << 20;
  absl::StatusOr<std::unique_ptr<RedisBaseline>> redis =
      RedisBaseline::Start(ro);
  ASSERT_TRUE(redis.ok()) << redis.status();
  for (RedisTransport tr : {RedisTransport::kTcp, RedisTransport::kUnix}) {
    absl::StatusOr<RedisResult> r =
        (*redis)->Run(tr, {.value_bytes = 1 << 20, .values = 8, .threads = 2});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->set.ops, 8u);
    EXPECT_EQ(r->get.bytes, 8u << 20);
    EXPECT_GT(r->get.bytes_per_s, 0);
    EXPECT_LE(r->get.latency_p50_us, r->get.latency_p99_us);
  }
  EXPECT_TRUE(absl::IsInvalidArgument(
      (*redis)
          ->Run(RedisTransport::kTcp,
                {.value_bytes = 2 << 20, .values = 8, .threads = 2})
          .status()));
  EXPECT_TRUE((*redis)->Shutdown().ok());
  EXPECT_TRUE((*redis)->Shutdown().ok());  // idempotent
}

}  // namespace
}  // namespace kvd::bench
