#include "store/server/metrics_http.h"

#include <sys/socket.h>

#include <atomic>
#include <thread>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "httplib.h"
#include "store/server/node_config.h"

namespace kvd {
namespace {

constexpr size_t kWorkerThreads = 2;
constexpr time_t kIoTimeoutSeconds = 5;
constexpr absl::Duration kStartBound = absl::Seconds(10);

}  // namespace

struct MetricsHttpServer::State {
  httplib::Server server;
  std::thread thread;
  std::atomic<bool> finished{false};
  bool stopped = false;
};

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& setting, const std::string& address,
    std::function<std::string()> render) {
  absl::Status valid = ValidateListenAddress(setting, address);
  if (!valid.ok()) return valid;
  const size_t colon = address.rfind(':');
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[') {
    host = host.substr(1, host.size() - 2);
  }
  int port = 0;
  if (!absl::SimpleAtoi(address.substr(colon + 1), &port)) {
    return absl::InvalidArgumentError(
        absl::StrCat(setting, "=\"", address, "\" has a bad port"));
  }

  auto state = std::make_unique<State>();
  httplib::Server& server = state->server;
  server.new_task_queue = [] {
    return new httplib::ThreadPool(kWorkerThreads);
  };
  server.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  server.set_read_timeout(kIoTimeoutSeconds, 0);
  server.set_write_timeout(kIoTimeoutSeconds, 0);
  server.set_keep_alive_max_count(1);
  server.set_keep_alive_timeout(1);
  server.set_payload_max_length(0);
  server.Get("/metrics", [render = std::move(render)](const httplib::Request&,
                                                      httplib::Response& res) {
    res.set_content(render(), "text/plain; version=0.0.4; charset=utf-8");
  });

  const int bound = port == 0 ? server.bind_to_any_port(host)
                              : (server.bind_to_port(host, port) ? port : -1);
  if (bound <= 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", setting, "=", address,
                     " (address in use, not local, or not permitted)"));
  }
  State* raw = state.get();
  state->thread = std::thread([raw] {
    raw->server.listen_after_bind();
    raw->finished.store(true);
  });
  // stop() is a no-op until the server thread runs its accept loop: wait for
  // it, so that Stop() always ends the thread.
  const absl::Time deadline = absl::Now() + kStartBound;
  while (!server.is_running() && !state->finished.load() &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  auto out = std::unique_ptr<MetricsHttpServer>(
      new MetricsHttpServer(std::move(state), bound));
  if (!out->state_->server.is_running()) {
    out->Stop();
    return absl::UnavailableError(absl::StrCat(
        "the metrics server on ", setting, "=", address, " did not start"));
  }
  return out;
}

MetricsHttpServer::MetricsHttpServer(std::unique_ptr<State> state, int port)
    : state_(std::move(state)), port_(port) {}

MetricsHttpServer::~MetricsHttpServer() { Stop(); }

void MetricsHttpServer::Stop() {
  if (state_ == nullptr || state_->stopped) return;
  state_->stopped = true;
  // stop() does nothing before the accept loop runs, and must be called
  // once only (it closes the socket): wait for the loop, then stop it.
  while (!state_->finished.load()) {
    if (state_->server.is_running()) {
      state_->server.stop();
      break;
    }
    absl::SleepFor(absl::Milliseconds(1));
  }
  state_->thread.join();
}

}  // namespace kvd
