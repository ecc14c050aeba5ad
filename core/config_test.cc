#include "core/config.h"

#include <cstdio>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvd {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

ConfigSchema TestSchema() {
  ConfigSchema schema;
  schema.Add("node.id", ConfigType::kString, "", "node id")
      .Add("node.verbose", ConfigType::kBool, "false", "")
      .Add("node.workers", ConfigType::kUint, "4", "")
      .Add("host.capacity", ConfigType::kBytes, "1GiB", "")
      .Add("lease.ttl", ConfigType::kDuration, "30s", "");
  return schema;
}

TEST(ParseByteSizeTest, AcceptsPlainAndUnits) {
  EXPECT_EQ(*ParseByteSize("4096"), 4096u);
  EXPECT_EQ(*ParseByteSize("0"), 0u);
  EXPECT_EQ(*ParseByteSize("17B"), 17u);
  EXPECT_EQ(*ParseByteSize("4KiB"), 4096u);
  EXPECT_EQ(*ParseByteSize("512MiB"), 512ull << 20);
  EXPECT_EQ(*ParseByteSize("64GiB"), 64ull << 30);
  EXPECT_EQ(*ParseByteSize("2TiB"), 2ull << 40);
  EXPECT_EQ(*ParseByteSize("3 GiB"), 3ull << 30);
  EXPECT_EQ(*ParseByteSize("5GB"), 5000000000ull);
  EXPECT_EQ(*ParseByteSize("1kB"), 1000u);
  EXPECT_EQ(*ParseByteSize(" 8MiB "), 8ull << 20);
}

TEST(ParseByteSizeTest, RejectsGarbageAndOverflow) {
  for (const char* bad : {"", "GiB", "-1", "1.5GiB", "64gib", "64 gigs", "12Q",
                          "0x10", "18446744073709551616", "1 2"}) {
    absl::StatusOr<uint64_t> r = ParseByteSize(bad);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  absl::StatusOr<uint64_t> big = ParseByteSize("16777216TiB");
  EXPECT_THAT(big.status().message(), HasSubstr("larger than the maximum"));
  EXPECT_THAT(ParseByteSize("64 gigs").status().message(),
              AllOf(HasSubstr("\"64 gigs\""), HasSubstr("byte size"),
                    HasSubstr("64GiB")));
}

TEST(FormatByteSizeTest, RoundTrips) {
  EXPECT_EQ(FormatByteSize(0), "0B");
  EXPECT_EQ(FormatByteSize(1536), "1536B");
  EXPECT_EQ(FormatByteSize(64ull << 30), "64GiB");
  EXPECT_EQ(FormatByteSize(3ull << 20), "3MiB");
  for (uint64_t v : {0ull, 1ull, 1536ull, 4096ull, 1ull << 40, 12345678ull}) {
    EXPECT_EQ(*ParseByteSize(FormatByteSize(v)), v);
  }
}

TEST(ParseConfigDurationTest, AcceptsAndRejects) {
  EXPECT_EQ(*ParseConfigDuration("30s"), absl::Seconds(30));
  EXPECT_EQ(*ParseConfigDuration("500ms"), absl::Milliseconds(500));
  EXPECT_EQ(*ParseConfigDuration("1h30m"), absl::Minutes(90));
  EXPECT_EQ(*ParseConfigDuration("0"), absl::ZeroDuration());
  for (const char* bad : {"", "30", "-1s", "inf", "soon", "3 s"}) {
    EXPECT_FALSE(ParseConfigDuration(bad).ok()) << bad;
  }
  EXPECT_THAT(ParseConfigDuration("soon").status().message(), HasSubstr("30s"));
}

TEST(ParseConfigBoolTest, AcceptsCommonSpellings) {
  for (const char* t : {"true", "True", "yes", "on", "1"})
    EXPECT_TRUE(*ParseConfigBool(t)) << t;
  for (const char* f : {"false", "FALSE", "no", "off", "0"}) {
    EXPECT_FALSE(*ParseConfigBool(f)) << f;
  }
  EXPECT_FALSE(ParseConfigBool("maybe").ok());
}

TEST(ParseConfigUintTest, AcceptsAndRejects) {
  EXPECT_EQ(*ParseConfigUint("42"), 42u);
  EXPECT_EQ(*ParseConfigUint("18446744073709551615"), UINT64_MAX);
  for (const char* bad :
       {"", "-1", "+1", "1.0", "18446744073709551616", "4k"}) {
    EXPECT_FALSE(ParseConfigUint(bad).ok()) << bad;
  }
}

TEST(ConfigTest, DefaultsWhenEmpty) {
  absl::StatusOr<Config> config = Config::FromYaml(TestSchema(), "", {});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(*config->GetUint("node.workers"), 4u);
  EXPECT_EQ(*config->GetBytes("host.capacity"), 1ull << 30);
  EXPECT_EQ(*config->GetDuration("lease.ttl"), absl::Seconds(30));
  EXPECT_FALSE(*config->GetBool("node.verbose"));
  EXPECT_EQ(*config->GetString("node.id"), "");
  EXPECT_FALSE(config->IsSet("host.capacity"));
}

TEST(ConfigTest, NestedAndDottedYaml) {
  const char* yaml = R"(
node:
  id: n1
  verbose: yes
host:
  capacity: 64GiB
lease.ttl: 500ms
)";
  absl::StatusOr<Config> config = Config::FromYaml(TestSchema(), yaml, {});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(*config->GetString("node.id"), "n1");
  EXPECT_TRUE(*config->GetBool("node.verbose"));
  EXPECT_EQ(*config->GetBytes("host.capacity"), 64ull << 30);
  EXPECT_EQ(*config->GetDuration("lease.ttl"), absl::Milliseconds(500));
  EXPECT_TRUE(config->IsSet("host.capacity"));
  EXPECT_FALSE(config->IsSet("node.workers"));
}

TEST(ConfigTest, OverridesWinInOrder) {
  std::vector<std::string> overrides = {"host.capacity=2GiB", "node.id=a",
                                        "node.id=b=c"};
  absl::StatusOr<Config> config =
      Config::FromYaml(TestSchema(), "host: {capacity: 1MiB}\n", overrides);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(*config->GetBytes("host.capacity"), 2ull << 30);
  EXPECT_EQ(*config->GetString("node.id"), "b=c");
}

TEST(ConfigTest, UnknownKeyIsNamed) {
  absl::StatusOr<Config> config = Config::FromYaml(
      TestSchema(), "host:\n  capacty: 1GiB\n", {}, "node.yaml");
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(),
              AllOf(HasSubstr("unknown config key host.capacty"),
                    HasSubstr("node.yaml:2")));

  std::vector<std::string> overrides = {"gpu.capacity=1GiB"};
  config = Config::FromYaml(TestSchema(), "", overrides);
  EXPECT_THAT(config.status().message(),
              AllOf(HasSubstr("--set gpu.capacity=1GiB"),
                    HasSubstr("unknown config key")));
}

TEST(ConfigTest, BadValueNamesKeyValueAndForm) {
  absl::StatusOr<Config> config = Config::FromYaml(
      TestSchema(), "host:\n  capacity: 64 gigs\n", {}, "node.yaml");
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(),
              AllOf(HasSubstr("host.capacity"), HasSubstr("\"64 gigs\""),
                    HasSubstr("byte size"), HasSubstr("512MiB")));

  std::vector<std::string> overrides = {"lease.ttl=forever"};
  config = Config::FromYaml(TestSchema(), "", overrides);
  EXPECT_THAT(config.status().message(),
              AllOf(HasSubstr("lease.ttl"), HasSubstr("forever"),
                    HasSubstr("duration")));
}

TEST(ConfigTest, StructuralErrors) {
  // A section given a scalar.
  EXPECT_THAT(
      Config::FromYaml(TestSchema(), "host: 5\n", {}).status().message(),
      HasSubstr("host is a section"));
  // Lists.
  EXPECT_THAT(Config::FromYaml(TestSchema(), "node:\n  id: [a, b]\n", {})
                  .status()
                  .message(),
              HasSubstr("lists are not supported"));
  // Duplicates, including nested vs dotted spelling.
  EXPECT_THAT(Config::FromYaml(TestSchema(), "node:\n  id: a\nnode.id: b\n", {})
                  .status()
                  .message(),
              HasSubstr("node.id is set twice"));
  // Not a mapping at the top.
  EXPECT_THAT(
      Config::FromYaml(TestSchema(), "- a\n- b\n", {}).status().message(),
      HasSubstr("must be a mapping"));
  // Broken YAML: reported, not thrown.
  absl::StatusOr<Config> broken =
      Config::FromYaml(TestSchema(), "node: {id: a\n", {}, "x.yaml");
  EXPECT_EQ(broken.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(broken.status().message(), HasSubstr("x.yaml"));
  // Malformed override.
  std::vector<std::string> overrides = {"node.id"};
  EXPECT_THAT(Config::FromYaml(TestSchema(), "", overrides).status().message(),
              HasSubstr("expected section.key=value"));
}

TEST(ConfigTest, NullValueIsEmptyString) {
  absl::StatusOr<Config> config =
      Config::FromYaml(TestSchema(), "node:\n  id:\n", {});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(*config->GetString("node.id"), "");
  EXPECT_FALSE(Config::FromYaml(TestSchema(), "node:\n  workers:\n", {}).ok());
}

TEST(ConfigTest, WrongAccessorTypeIsAnError) {
  absl::StatusOr<Config> config = Config::FromYaml(TestSchema(), "", {});
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->GetBool("host.capacity").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(config->GetString("nope").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(ConfigTest, LoadFromFile) {
  std::string path = ::testing::TempDir() + "/config_test.yaml";
  FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs("node:\n  workers: 9\n", f);
  std::fclose(f);
  absl::StatusOr<Config> config = Config::Load(TestSchema(), path, {});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(*config->GetUint("node.workers"), 9u);
  std::remove(path.c_str());

  absl::StatusOr<Config> missing = Config::Load(TestSchema(), path, {});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr(path));
}

}  // namespace
}  // namespace kvd
