// The kvdepot-node configuration: its schema (every key the node accepts,
// with defaults) and the mapping from a loaded Config to NodeSettings, which
// carries the StoreOptions for the engine.
//
// Keys (see deploy/kvdepot-node.example.yaml for a commented file):
//   node.id            string    default: the host name
//   node.listen        string    "host:port" of the gRPC control service
//   node.admin_token   string    required by the admin RPCs (ListChunks,
//                                Inspect, Evict, Drain); also opens Hello
//   node.shutdown_grace duration in-flight RPCs get this long at shutdown,
//                                <= 10m
//   log.level          string    trace|debug|info|warn|error|critical|off
//   host.capacity      bytes     host DRAM tier, >= 1MiB
//   host.huge_pages    bool
//   gpu.capacity       bytes     0 disables the GPU tier
//   gpu.device         uint      CUDA device ordinal, <= 255
//   ssd.dir            string    empty disables the SSD tier
//   ssd.capacity       bytes     >= ssd.segment_size when ssd.dir is set
//   ssd.segment_size   bytes     in [1MiB, 16GiB], a multiple of 4096
//   ssd.direct_io      bool
//   lease.ttl          duration  in [1ms, 1h]
//   auth.token         string    data-path token, required by Hello
//   auth.allow_no_token bool     default false: an empty auth.token or
//                                node.admin_token is refused at start; true
//                                lets an empty token mean "no check" (local
//                                development only)
//   tls.cert, tls.key  string    PEM server certificate chain and key, both
//                                or neither; neither: plaintext gRPC
//   tls.client_ca      string    PEM CA; when set, clients must present a
//                                certificate it signed (needs tls.cert)
//   metrics.listen     string    "host:port" of the Prometheus /metrics
//                                endpoint; empty disables it
//   transfer.ucx_tls   string    UCX_TLS of the data path ("" = UCX default)
//   transfer.protocol  string    auto|rma|am
//   transfer.request_timeout duration in [10ms, 1h]
//   transfer.threads   uint      in [1, 64]
//   cluster.name       string    empty: standalone; else 1..64 [A-Za-z0-9._-]
//   cluster.etcd       string    comma-separated etcd endpoints host:port
//   cluster.advertise  string    host:port peers dial; default: bound listen
//   cluster.heartbeat_ttl duration whole seconds in [2s, 10m]
//   cluster.weight     uint      placement weight <= 1000000; 0: capacity
//                                in GiB
//
// Validation failures are kInvalidArgument and name the key, the value and
// the bound, e.g. "ssd.segment_size=1000 is not a multiple of 4096".
#ifndef KVDEPOT_STORE_SERVER_NODE_CONFIG_H_
#define KVDEPOT_STORE_SERVER_NODE_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/config.h"
#include "core/host_port.h"
#include "store/engine/store_engine.h"
#include "store/proto/kvdepot.pb.h"

namespace kvd {

// The schema of the node's configuration file and --set overrides.
const ConfigSchema& NodeConfigSchema();

// Cluster mode (cluster.*); an empty name means standalone.
struct ClusterSettings {
  std::string name;
  std::vector<std::string> etcd;  // validated host:port endpoints
  std::string advertise;          // empty: the bound listen address
  absl::Duration heartbeat_ttl = absl::Seconds(5);
  uint32_t weight = 0;  // 0: capacity in GiB, at least 1
};

struct NodeSettings {
  std::string node_id;
  std::string listen;  // validated "host:port"
  std::string admin_token;
  std::string data_token;  // auth.token
  bool allow_no_token = false;
  // PEM file paths; all empty: plaintext.
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  // "host:port" of /metrics; empty: no metrics endpoint.
  std::string metrics_listen;
  std::string log_level;
  absl::Duration shutdown_grace;
  StoreOptions store;  // clock and fs left null (engine defaults)
  // The data path (transfer.*).
  std::string ucx_tls;
  kvdepot::v1::DataProtocol data_protocol =
      kvdepot::v1::DATA_PROTOCOL_UNSPECIFIED;
  absl::Duration request_timeout = absl::Seconds(10);
  int transfer_threads = 2;
  ClusterSettings cluster;
};

// Maps and validates. See the file comment for bounds and messages.
absl::StatusOr<NodeSettings> NodeSettingsFromConfig(const Config& config);

// The rules on tokens and TLS files that NodeSettingsFromConfig applies, for
// settings built in code (Node::Start checks them too): tokens set unless
// allow_no_token, tls.cert and tls.key together, tls.client_ca only with them.
absl::Status ValidateSecuritySettings(const NodeSettings& settings);

}  // namespace kvd

#endif  // KVDEPOT_STORE_SERVER_NODE_CONFIG_H_
