// Test helper: a real etcd (Debian's etcd-server) on loopback (or another
// local address), on free ports, with its data in a temporary directory. Stop()
// kills it (SIGKILL); Start() brings it back on the same ports and data, as
// after an outage.
#ifndef KVDEPOT_TESTS_CLUSTER_ETCD_SERVER_H_
#define KVDEPOT_TESTS_CLUSTER_ETCD_SERVER_H_

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "cluster/etcd_client.h"
#include "gtest/gtest.h"
#include "tests/node/child_process.h"

namespace kvd {

// A port that was free a moment ago (the kernel's pick for port 0).
inline int PickFreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

// Polls `pred` every 20 ms for up to `bound`.
template <typename Pred>
bool Eventually(Pred pred, absl::Duration bound) {
  const absl::Time deadline = absl::Now() + bound;
  while (!pred()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

class EtcdServer {
 public:
  explicit EtcdServer(std::string host = "127.0.0.1")
      : host_(std::move(host)),
        dir_(MakeTestTempDir("etcd")),
        client_port_(PickFreePort()),
        peer_port_(PickFreePort()) {}
  ~EtcdServer() {
    process_.reset();
    std::filesystem::remove_all(dir_);
  }

  // "host:port" of the client API.
  std::string endpoint() const {
    return absl::StrCat(host_, ":", client_port_);
  }

  // Starts etcd and waits until it answers (at most 30 s).
  ::testing::AssertionResult Start() {
    const std::string client = absl::StrCat("http://", endpoint());
    const std::string peer = absl::StrCat("http://", host_, ":", peer_port_);
    process_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{
            "/usr/bin/etcd", "--name", "kvd-test", "--data-dir", dir_ + "/data",
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", absl::StrCat("kvd-test=", peer), "--logger",
            "zap", "--log-outputs", "stderr"},
        dir_ + "/etcd.log");
    auto etcd = cluster::EtcdClient::Create(
        {.endpoints = {endpoint()}, .call_timeout = absl::Seconds(1)});
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (absl::Now() < deadline) {
      if (process_->Poll()) break;
      if ((*etcd)->GetPrefix("/").ok()) return ::testing::AssertionSuccess();
      absl::SleepFor(absl::Milliseconds(100));
    }
    return ::testing::AssertionFailure() << "etcd did not come up; its log:\n"
                                         << process_->output();
  }

  void Stop() { process_.reset(); }

 private:
  const std::string host_;
  const std::string dir_;
  const int client_port_;
  const int peer_port_;
  std::unique_ptr<ChildProcess> process_;
};

}  // namespace kvd

#endif  // KVDEPOT_TESTS_CLUSTER_ETCD_SERVER_H_
