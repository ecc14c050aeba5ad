// MetricsHttpServer: serves `GET /metrics` in the Prometheus text format
// (version 0.0.4) on its own address, from a render callback called per
// scrape. Other paths are 404.
//
// Built on cpp-httplib (Debian libcpp-httplib-dev), with bounds that suit a
// scrape endpoint: two worker threads, one request per connection, 5 s read
// and write timeouts, no request bodies. The listening socket is bound
// without SO_REUSEPORT, so a second server on the same port fails to start.
//
// Lifecycle: Start() binds and serves from a background thread; Stop() (or
// the destructor) closes the socket and waits for in-flight scrapes.
// Thread safety: port() from any thread; Stop() from one thread at a time.
// `render` is called concurrently from the worker threads and must outlive
// the server.
#ifndef KVDEPOT_STORE_SERVER_METRICS_HTTP_H_
#define KVDEPOT_STORE_SERVER_METRICS_HTTP_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace kvd {

class MetricsHttpServer {
 public:
  // `address` is "host:port" (port 0: any free port; host a name, IPv4 or
  // [IPv6]) and `setting` names it in errors. kInvalidArgument for a
  // malformed address; kUnavailable when it cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& setting, const std::string& address,
      std::function<std::string()> render);

  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // The bound port.
  int port() const { return port_; }
  // Idempotent.
  void Stop();

 private:
  struct State;
  explicit MetricsHttpServer(std::unique_ptr<State> state, int port);

  std::unique_ptr<State> state_;
  const int port_;
};

}  // namespace kvd

#endif  // KVDEPOT_STORE_SERVER_METRICS_HTTP_H_
