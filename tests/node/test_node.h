// Tests that run a kvdepot Node in their own process: its settings (a free
// loopback port, UCX tcp, small host tier, no huge pages, tokens set) and a
// Client of it.
#ifndef KVDEPOT_TESTS_NODE_TEST_NODE_H_
#define KVDEPOT_TESTS_NODE_TEST_NODE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "store/client/client.h"
#include "store/server/node.h"

namespace kvd {

inline NodeSettings LoopbackNodeSettings(const std::string& id,
                                         const std::string& token,
                                         uint64_t host_bytes) {
  NodeSettings s;
  s.node_id = id;
  s.listen = "127.0.0.1:0";
  s.shutdown_grace = absl::Seconds(1);
  s.store.host_capacity_bytes = host_bytes;
  s.store.host_huge_pages = false;
  s.ucx_tls = "tcp";
  s.data_token = token;
  s.admin_token = token + "-admin";
  return s;
}

inline absl::StatusOr<std::unique_ptr<Client>> ConnectTo(
    const Node& node, const std::string& token) {
  return Client::Connect({.address = node.address(),
                          .token = token,
                          .ucx_tls = "tcp",
                          .timeout = absl::Seconds(5)});
}

}  // namespace kvd

#endif  // KVDEPOT_TESTS_NODE_TEST_NODE_H_
