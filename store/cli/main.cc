// kvdepotctl: the admin CLI of kvdepot.
//
//   kvdepotctl [--node HOST:PORT] [--timeout 3s] [--json] status
//   kvdepotctl [--node HOST:PORT] [--timeout 3s] [--json] stats
//   kvdepotctl [--node HOST:PORT] [--json] bench put|get  (bench_command.h)
//
// Global options may also follow the subcommand ("kvdepotctl stats --json").
// Exit codes: 0 success; 1 the node answered with an error; 2 usage error;
// 3 the node is unreachable or did not answer within --timeout.
#include <cstdio>
#include <memory>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/config.h"
#include "store/cli/bench_command.h"
#include "store/cli/control_client.h"
#include "store/cli/ctl_format.h"

namespace kvd {
namespace {

constexpr int kExitRpcError = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUnreachable = 3;

struct Flags {
  std::string node = "127.0.0.1:7400";
  std::string timeout = "3s";
  bool json = false;
};

int Fail(const absl::Status& status) {
  bool unreachable = status.code() == absl::StatusCode::kUnavailable ||
                     status.code() == absl::StatusCode::kDeadlineExceeded;
  std::fprintf(stderr, "kvdepotctl: %s%s\n",
               unreachable ? "node unreachable: " : "",
               status.ToString().c_str());
  return unreachable ? kExitUnreachable : kExitRpcError;
}

int Print(const std::string& text) {
  std::fputs(text.c_str(), stdout);
  return 0;
}

template <typename Response>
int Render(const absl::StatusOr<Response>& response, bool json,
           nlohmann::ordered_json (*to_json)(const Response&),
           std::string (*to_text)(const Response&)) {
  if (!response.ok()) return Fail(response.status());
  if (json) return Print(to_json(*response).dump(2) + "\n");
  return Print(to_text(*response));
}

int Run(const Flags& flags, const std::string& command) {
  absl::StatusOr<absl::Duration> timeout = ParseConfigDuration(flags.timeout);
  if (!timeout.ok()) {
    std::fprintf(stderr, "kvdepotctl: --timeout: %s\n",
                 std::string(timeout.status().message()).c_str());
    return kExitUsage;
  }
  absl::StatusOr<std::unique_ptr<ControlClient>> client =
      ControlClient::Create(flags.node, *timeout);
  if (!client.ok()) {
    std::fprintf(stderr, "kvdepotctl: %s\n",
                 std::string(client.status().message()).c_str());
    return kExitUsage;
  }
  if (command == "status") {
    return Render<kvdepot::v1::StatusResponse>((*client)->Status(), flags.json,
                                               &StatusToJson, &StatusToText);
  }
  return Render<kvdepot::v1::StatsResponse>((*client)->Stats(), flags.json,
                                            &StatsToJson, &StatsToText);
}

}  // namespace
}  // namespace kvd

int main(int argc, char** argv) {
  kvd::Flags flags;
  CLI::App app{"kvdepotctl: inspect and administer kvdepot nodes."};
  app.add_option("--node", flags.node, "Node control address HOST:PORT.")
      ->capture_default_str();
  app.add_option("--timeout", flags.timeout,
                 "Deadline of each call, e.g. 3s or 500ms.")
      ->capture_default_str();
  app.add_flag("--json", flags.json, "Print JSON instead of tables.");
  app.require_subcommand(1);
  // Subcommands hand unknown options to the app, so globals work anywhere.
  app.fallthrough();
  std::string command;
  app.add_subcommand("status", "Identity, mode, health and tiers of a node.")
      ->callback([&] { command = "status"; });
  app.add_subcommand("stats", "Tier usage and operation counters of a node.")
      ->callback([&] { command = "stats"; });
  int bench_rc = -1;
  kvd::AddBenchCommand(app, &flags.node, &flags.json, &bench_rc);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : kvd::kExitUsage;
  }
  if (bench_rc >= 0) return bench_rc;
  return kvd::Run(flags, command);
}
