// kvdepot-node: one kvdepot storage node.
//
//   kvdepot-node [--standalone] [--config FILE] [--set section.key=value ...]
//                [--listen HOST:PORT] [--data-dir DIR] [--port-file PATH]
//                [--check-config]
//
// Modes (DESIGN.md §3.6): --standalone runs one node with no etcd (the
// cluster.* keys are ignored); without it, cluster.name must be set and the
// node joins that cluster through the etcd at cluster.etcd.
//
// Precedence: defaults < config file < --set (in order) < --listen/--data-dir.
// Exit codes: 0 clean shutdown (SIGTERM/SIGINT) or --check-config success;
// 1 runtime failure (engine, bind, sync); 2 usage or configuration error.
// Logs go to stderr; one "ready" line, with the bound address, once serving.
#include <pthread.h>
#include <signal.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/config.h"
#include "core/status.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"
#include "store/engine/tier.h"
#include "store/server/node.h"
#include "store/server/node_config.h"

namespace kvd {
namespace {

constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;

struct Flags {
  bool standalone = false;
  std::string config_path;
  std::vector<std::string> sets;
  std::string listen;
  std::string data_dir;
  std::string port_file;
  bool check_config = false;
};

// Writes `port` to `path` atomically (temp file + rename), so a reader
// polling for the file never sees a partial number.
absl::Status WritePortFile(const std::string& path, int port) {
  std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) return ErrnoToStatus(errno, absl::StrCat("open ", tmp));
  std::string text = absl::StrCat(port, "\n");
  bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  int err = errno;
  if (std::fclose(f) != 0 && ok) {
    ok = false;
    err = errno;
  }
  if (!ok) return ErrnoToStatus(err, absl::StrCat("write ", tmp));
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

std::string EnabledTiers(StoreEngine* engine) {
  StoreStats stats = engine->Stats();
  std::vector<std::string> names;
  for (int i = 0; i < kNumTiers; ++i) {
    if (stats.tier_enabled[i]) {
      names.emplace_back(TierName(static_cast<TierKind>(i)));
    }
  }
  return absl::StrJoin(names, ",");
}

int Run(const Flags& flags) {
  std::vector<std::string> overrides = flags.sets;
  if (!flags.listen.empty()) overrides.push_back("node.listen=" + flags.listen);
  if (!flags.data_dir.empty()) overrides.push_back("ssd.dir=" + flags.data_dir);

  absl::StatusOr<Config> config =
      Config::Load(NodeConfigSchema(), flags.config_path, overrides);
  if (!config.ok()) {
    spdlog::error("invalid configuration: {}",
                  std::string(config.status().message()));
    return kExitUsage;
  }
  absl::StatusOr<NodeSettings> settings = NodeSettingsFromConfig(*config);
  if (!settings.ok()) {
    spdlog::error("invalid configuration: {}",
                  std::string(settings.status().message()));
    return kExitUsage;
  }
  if (flags.standalone) {
    settings->cluster = ClusterSettings{};
  } else if (settings->cluster.name.empty()) {
    spdlog::error(
        "no mode: set cluster.name (and cluster.etcd) to join a cluster, or "
        "run with --standalone");
    return kExitUsage;
  }
  if (flags.check_config) {
    for (const auto& [key, value] : config->values()) {
      const bool secret = key == "node.admin_token" || key == "auth.token";
      std::printf("%s: %s\n", key.c_str(),
                  secret && !value.empty() ? "<redacted>" : value.c_str());
    }
    return 0;
  }
  spdlog::set_level(spdlog::level::from_str(settings->log_level));

  if (!flags.data_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(flags.data_dir, ec);
    if (ec) {
      spdlog::error("cannot create --data-dir {}: {}", flags.data_dir,
                    ec.message());
      return kExitRuntime;
    }
  }

  // Signals are taken synchronously by this thread (sigwait); block them
  // before any thread exists so every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<std::unique_ptr<Node>> node = Node::Start(*settings);
  if (!node.ok()) {
    spdlog::error("cannot start: {}", node.status().ToString());
    return kExitRuntime;
  }
  if (!flags.port_file.empty()) {
    absl::Status written = WritePortFile(flags.port_file, (*node)->port());
    if (!written.ok()) {
      spdlog::error("cannot write --port-file: {}", written.ToString());
      (*node)->Shutdown(absl::ZeroDuration()).IgnoreError();
      return kExitRuntime;
    }
  }
  if (settings->allow_no_token &&
      (settings->data_token.empty() || settings->admin_token.empty())) {
    spdlog::warn(
        "auth.allow_no_token is on and a token is empty: calls of that level "
        "are not authenticated (local development only)");
  }
  if (settings->tls_cert.empty() &&
      !absl::StartsWith(settings->listen, "127.") &&
      !absl::StartsWith(settings->listen, "[::1]") &&
      !absl::StartsWith(settings->listen, "localhost:")) {
    spdlog::warn(
        "node.listen={} is not loopback and TLS is off: tokens "
        "travel in clear",
        settings->listen);
  }
  std::string metrics =
      (*node)->metrics_port() > 0
          ? absl::StrCat(settings->metrics_listen.substr(
                             0, settings->metrics_listen.rfind(':')),
                         ":", (*node)->metrics_port())
          : std::string("off");
  spdlog::info(
      "kvdepot-node ready: node_id={} version={} mode={} "
      "listening on {} tls={} metrics={} tiers={}",
      (*node)->info().node_id, (*node)->info().version,
      settings->cluster.name.empty()
          ? std::string("standalone")
          : absl::StrCat("cluster:", settings->cluster.name,
                         " etcd=", absl::StrJoin(settings->cluster.etcd, ",")),
      (*node)->address(),
      settings->tls_cert.empty()
          ? "off"
          : (settings->tls_client_ca.empty() ? "on" : "on+client-certs"),
      metrics, EnabledTiers((*node)->engine()));

  int sig = 0;
  while (sigwait(&signals, &sig) != 0) {
  }
  spdlog::info("received {}, shutting down (grace {})",
               sig == SIGTERM ? "SIGTERM" : "SIGINT",
               absl::FormatDuration(settings->shutdown_grace));
  absl::Status stopped = (*node)->Shutdown(settings->shutdown_grace);
  node->reset();
  if (!stopped.ok()) {
    spdlog::error("shutdown failed: {}", stopped.ToString());
    return kExitRuntime;
  }
  spdlog::info("kvdepot-node stopped cleanly");
  return 0;
}

}  // namespace
}  // namespace kvd

int main(int argc, char** argv) {
  spdlog::set_default_logger(spdlog::stderr_logger_mt("kvdepot-node"));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%n] %v");

  kvd::Flags flags;
  CLI::App app{"kvdepot-node: a kvdepot KV-cache storage node."};
  app.add_flag("--standalone", flags.standalone,
               "Run one node with static config and no etcd; without it "
               "the node joins cluster.name.");
  app.add_option("--config", flags.config_path, "YAML config file.")
      ->check(CLI::ExistingFile);
  app.add_option("--set", flags.sets,
                 "Override a config key: section.key=value (repeatable).")
      ->allow_extra_args(false);
  app.add_option("--listen", flags.listen,
                 "Control address HOST:PORT (same as --set node.listen=).");
  app.add_option("--data-dir", flags.data_dir,
                 "SSD tier directory, created if missing (same as --set "
                 "ssd.dir=).");
  app.add_option("--port-file", flags.port_file,
                 "Write the bound port to this file once serving.");
  app.add_flag("--check-config", flags.check_config,
               "Validate the configuration, print it, and exit.");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : kvd::kExitUsage;
  }
  return kvd::Run(flags);
}
