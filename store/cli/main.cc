// kvdepotctl: the admin CLI of kvdepot.
//
//   kvdepotctl [GLOBAL OPTIONS] status
//   kvdepotctl [GLOBAL OPTIONS] stats
//   kvdepotctl [GLOBAL OPTIONS] chunks list [--namespace HEX]
//                                            [--tier gpu|host|ssd] [--limit N]
//   kvdepotctl [GLOBAL OPTIONS] chunks inspect KEY
//   kvdepotctl [GLOBAL OPTIONS] evict KEY...
//   kvdepotctl [GLOBAL OPTIONS] drain
//   kvdepotctl [GLOBAL OPTIONS] bench put|get [...]  (bench_command.h)
//   kvdepotctl [GLOBAL OPTIONS] cluster status|where|prefix|drain [...]
//                                                  (cluster_command.h)
//
// Global options (also accepted after the subcommand): --node HOST:PORT,
// --timeout 3s, --json, --tls-ca FILE, --tls-cert FILE, --tls-key FILE,
// --tls-server-name NAME, --token TOKEN.
//
// Tokens: chunks, evict and drain need the node's admin token: --token, else
// $KVDEPOT_ADMIN_TOKEN, else $KVDEPOT_TOKEN. status and stats need none and
// send --token or $KVDEPOT_TOKEN when given. Prefer the environment: a
// --token value shows in the process list.
//
// `chunks list` follows page tokens until --limit chunks (default 1000, 0:
// all) are printed. `drain` draws a progress bar on a terminal and prints
// plain lines otherwise (JSON Lines with --json); it has no deadline.
//
// Exit codes: 0 success; 1 the node answered with an error, evict failed
// for a key (other than not found), or drain ended with chunks that are not
// durable; 2 usage error; 3 the node is unreachable or did not answer within
// --timeout.

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "core/config.h"
#include "store/cli/bench_command.h"
#include "store/cli/cluster_command.h"
#include "store/cli/control_client.h"
#include "store/cli/ctl_format.h"
#include "store/cli/drain_command.h"

namespace kvd {
namespace {

namespace pb = kvdepot::v1;

constexpr int kExitRpcError = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUnreachable = 3;
constexpr int kMaxPageSize = 1000;  // the node's bound
constexpr int kMaxEvictBatch = 1000;

struct Flags {
  std::string node = "127.0.0.1:7400";
  std::string timeout = "3s";
  bool json = false;
  std::string tls_ca, tls_cert, tls_key, tls_server_name;
  std::string token;
  // chunks list
  std::string ns;
  std::string tier;
  int64_t limit = 1000;
  // chunks inspect / evict
  std::string key;
  std::vector<std::string> keys;
};

int Fail(const absl::Status& status) {
  bool unreachable = status.code() == absl::StatusCode::kUnavailable ||
                     status.code() == absl::StatusCode::kDeadlineExceeded;
  std::fprintf(stderr, "kvdepotctl: %s%s\n",
               unreachable ? "node unreachable: " : "",
               status.ToString().c_str());
  return unreachable ? kExitUnreachable : kExitRpcError;
}

int Usage(absl::string_view message) {
  std::fprintf(stderr, "kvdepotctl: %s\n", std::string(message).c_str());
  return kExitUsage;
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

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : "";
}

int ListChunks(ControlClient& client, const Flags& flags) {
  pb::ListChunksRequest request;
  request.set_namespace_fingerprint(flags.ns);
  if (flags.tier == "gpu") {
    request.set_tier(pb::TIER_GPU);
  } else if (flags.tier == "host") {
    request.set_tier(pb::TIER_HOST);
  } else if (flags.tier == "ssd") {
    request.set_tier(pb::TIER_SSD);
  } else if (!flags.tier.empty()) {
    return Usage(absl::StrCat("--tier=\"", flags.tier,
                              "\" is not one of gpu, host, ssd"));
  }
  if (flags.limit < 0) {
    return Usage(absl::StrCat("--limit=", flags.limit, " must be >= 0"));
  }
  std::vector<pb::ChunkSummary> chunks;
  uint64_t namespace_unknown = 0;
  bool truncated = false;
  for (;;) {
    int64_t want = kMaxPageSize;
    if (flags.limit > 0) {
      want = std::min<int64_t>(
          want, flags.limit - static_cast<int64_t>(chunks.size()));
    }
    request.set_page_size(static_cast<uint32_t>(want));
    absl::StatusOr<pb::ListChunksResponse> page = client.ListChunks(request);
    if (!page.ok()) return Fail(page.status());
    namespace_unknown += page->namespace_unknown();
    for (const pb::ChunkSummary& c : page->chunks()) chunks.push_back(c);
    if (page->next_page_token().empty()) break;
    if (flags.limit > 0 && static_cast<int64_t>(chunks.size()) >= flags.limit) {
      truncated = true;
      break;
    }
    request.set_page_token(page->next_page_token());
  }
  if (flags.json) {
    return Print(ChunkListToJson(chunks, namespace_unknown, truncated).dump(2) +
                 "\n");
  }
  return Print(ChunkListToText(chunks, namespace_unknown, truncated));
}

int Evict(ControlClient& client, const Flags& flags) {
  pb::EvictResponse all;
  for (size_t begin = 0; begin < flags.keys.size(); begin += kMaxEvictBatch) {
    std::vector<std::string> batch(
        flags.keys.begin() + begin,
        flags.keys.begin() +
            std::min(flags.keys.size(), begin + kMaxEvictBatch));
    absl::StatusOr<pb::EvictResponse> r = client.Evict(batch);
    if (!r.ok()) return Fail(r.status());
    for (const pb::EvictResult& e : r->results()) *all.add_results() = e;
    all.set_evicted(all.evicted() + r->evicted());
  }
  Print(flags.json ? EvictToJson(all).dump(2) + "\n" : EvictToText(all));
  for (const pb::EvictResult& e : all.results()) {
    if (e.code() != 0 &&
        e.code() != static_cast<int>(absl::StatusCode::kNotFound)) {
      return kExitRpcError;
    }
  }
  return 0;
}

int Drain(ControlClient& client, const Flags& flags) {
  absl::StatusOr<pb::DrainProgress> last =
      ShowDrain(client, pb::DrainRequest(), flags.json);
  if (!last.ok()) return Fail(last.status());
  if (!last->done() || !last->durable()) {
    std::fprintf(stderr,
                 "kvdepotctl: drain ended with chunks that are not durable: "
                 "%s\n",
                 last->detail().c_str());
    return kExitRpcError;
  }
  return 0;
}

int Run(const Flags& flags, const std::string& command) {
  absl::StatusOr<absl::Duration> timeout = ParseConfigDuration(flags.timeout);
  if (!timeout.ok()) {
    return Usage(absl::StrCat("--timeout: ", timeout.status().message()));
  }
  const bool admin = command != "status" && command != "stats";
  ControlChannelOptions options;
  options.address = flags.node;
  options.tls_ca = flags.tls_ca;
  options.tls_cert = flags.tls_cert;
  options.tls_key = flags.tls_key;
  options.tls_server_name = flags.tls_server_name;
  options.token = flags.token;
  if (options.token.empty() && admin) {
    options.token = Env("KVDEPOT_ADMIN_TOKEN");
  }
  if (options.token.empty()) options.token = Env("KVDEPOT_TOKEN");
  absl::StatusOr<std::unique_ptr<ControlClient>> client =
      ControlClient::Create(options, *timeout);
  if (!client.ok()) return Usage(client.status().message());
  ControlClient& c = **client;
  if (command == "status") {
    return Render<pb::StatusResponse>(c.Status(), flags.json, &StatusToJson,
                                      &StatusToText);
  }
  if (command == "stats") {
    return Render<pb::StatsResponse>(c.Stats(), flags.json, &StatsToJson,
                                     &StatsToText);
  }
  if (command == "chunks list") return ListChunks(c, flags);
  if (command == "chunks inspect") {
    return Render<pb::InspectResponse>(c.Inspect(flags.key), flags.json,
                                       &InspectToJson, &InspectToText);
  }
  if (command == "evict") return Evict(c, flags);
  return Drain(c, flags);
}

}  // namespace
}  // namespace kvd

int main(int argc, char** argv) {
  kvd::Flags flags;
  CLI::App app{"kvdepotctl: inspect and administer kvdepot nodes."};
  app.add_option("--node", flags.node, "Node control address HOST:PORT.")
      ->capture_default_str();
  app.add_option("--timeout", flags.timeout,
                 "Deadline of each call (not drain), e.g. 3s or 500ms.")
      ->capture_default_str();
  app.add_flag("--json", flags.json, "Print JSON instead of tables.");
  app.add_option("--tls-ca", flags.tls_ca,
                 "PEM CA that signed the node's certificate (enables TLS).");
  app.add_option("--tls-cert", flags.tls_cert,
                 "PEM client certificate, for nodes that require one.");
  app.add_option("--tls-key", flags.tls_key, "PEM client private key.");
  app.add_option("--tls-server-name", flags.tls_server_name,
                 "Name to verify in the node's certificate instead of the "
                 "--node host.");
  app.add_option("--token", flags.token,
                 "Bearer token (default: $KVDEPOT_ADMIN_TOKEN for admin "
                 "commands, else $KVDEPOT_TOKEN).");
  app.require_subcommand(1);
  // Subcommands hand unknown options to the app, so globals work anywhere.
  app.fallthrough();
  std::string command;
  app.add_subcommand("status", "Identity, mode, health and tiers of a node.")
      ->callback([&] { command = "status"; });
  app.add_subcommand("stats", "Tier usage and operation counters of a node.")
      ->callback([&] { command = "stats"; });
  CLI::App* chunks =
      app.add_subcommand("chunks", "List or inspect a node's chunks (admin).");
  chunks->require_subcommand(1);
  chunks->fallthrough();
  CLI::App* list = chunks->add_subcommand("list", "List chunks, paged.");
  list->fallthrough();
  list->add_option("--namespace", flags.ns,
                   "Only this namespace fingerprint (64 hex digits).");
  list->add_option("--tier", flags.tier,
                   "Only chunks whose hottest copy is here: gpu, host, ssd.");
  list->add_option("--limit", flags.limit, "Print at most N chunks; 0: all.")
      ->capture_default_str();
  list->callback([&] { command = "chunks list"; });
  CLI::App* inspect = chunks->add_subcommand(
      "inspect", "Header, sizes, placement and pins of one chunk.");
  inspect->fallthrough();
  inspect->add_option("KEY", flags.key, "Chunk key (64 hex digits).")
      ->required();
  inspect->callback([&] { command = "chunks inspect"; });
  CLI::App* evict =
      app.add_subcommand("evict", "Drop chunks from the node (admin).");
  evict->fallthrough();
  evict->add_option("KEY", flags.keys, "Chunk keys (64 hex digits).")
      ->required();
  evict->callback([&] { command = "evict"; });
  app.add_subcommand("drain",
                     "Stop new writes and make every chunk durable on SSD "
                     "(admin; the node stays draining).")
      ->fallthrough()
      ->callback([&] { command = "drain"; });
  int bench_rc = -1;
  kvd::AddBenchCommand(app, &flags.node, &flags.token, &flags.json, &bench_rc);
  kvd::AddClusterCommand(app, &flags.token, &flags.timeout, &flags.json,
                         &bench_rc);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : kvd::kExitUsage;
  }
  if (bench_rc >= 0) return bench_rc;
  return kvd::Run(flags, command);
}
