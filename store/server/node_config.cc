#include "store/server/node_config.h"

#include <unistd.h>

#include <climits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cluster/etcd_client.h"
#include "cluster/membership.h"
#include "core/status.h"

namespace kvd {
namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kMinHostCapacity = kMiB;
constexpr uint64_t kMinSegment = kMiB;
constexpr uint64_t kMaxSegment = 16ull << 30;
constexpr uint64_t kSegmentAlign = 4096;
constexpr uint64_t kMaxGpuDevice = 255;
constexpr size_t kMaxNodeIdLength = 63;
constexpr uint64_t kMaxWeight = 1'000'000;

absl::Status OutOfBounds(absl::string_view key, absl::string_view value,
                         absl::string_view bound) {
  return absl::InvalidArgumentError(
      absl::StrCat("config key ", key, "=", value, " ", bound));
}

absl::Status ValidateNodeId(absl::string_view id) {
  if (id.empty() || id.size() > kMaxNodeIdLength) {
    return OutOfBounds(
        "node.id", absl::StrCat("\"", id, "\""),
        absl::StrCat("must have 1 to ", kMaxNodeIdLength, " characters"));
  }
  for (char c : id) {
    if (!absl::ascii_isalnum(c) && c != '-' && c != '_' && c != '.') {
      return OutOfBounds("node.id", absl::StrCat("\"", id, "\""),
                         "may only contain letters, digits, '-', '_' and '.'");
    }
  }
  return absl::OkStatus();
}

std::string HostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') {
    return "kvdepot-node";
  }
  std::string name(buf);
  // The short name, restricted to the node-id alphabet.
  name = name.substr(0, name.find('.'));
  for (char& c : name) {
    if (!absl::ascii_isalnum(c) && c != '-' && c != '_') c = '-';
  }
  if (name.size() > kMaxNodeIdLength) name.resize(kMaxNodeIdLength);
  return name.empty() ? "kvdepot-node" : name;
}

absl::StatusOr<ClusterSettings> ClusterSettingsFromConfig(
    const Config& config) {
  ClusterSettings out;
  KVD_ASSIGN_OR_RETURN(out.name, config.GetString("cluster.name"));
  if (out.name.empty()) return out;  // standalone: the rest is unused
  KVD_RETURN_IF_ERROR(
      cluster::ValidateClusterName("config key cluster.name", out.name));
  KVD_ASSIGN_OR_RETURN(std::string etcd, config.GetString("cluster.etcd"));
  KVD_ASSIGN_OR_RETURN(
      out.etcd, cluster::ParseEtcdEndpoints("config key cluster.etcd", etcd));
  KVD_ASSIGN_OR_RETURN(out.advertise, config.GetString("cluster.advertise"));
  if (!out.advertise.empty()) {
    KVD_RETURN_IF_ERROR(
        ValidateDialAddress("config key cluster.advertise", out.advertise));
  }
  KVD_ASSIGN_OR_RETURN(out.heartbeat_ttl,
                       config.GetDuration("cluster.heartbeat_ttl"));
  if (out.heartbeat_ttl < absl::Seconds(2) ||
      out.heartbeat_ttl > absl::Minutes(10) ||
      out.heartbeat_ttl != absl::Floor(out.heartbeat_ttl, absl::Seconds(1))) {
    return OutOfBounds("cluster.heartbeat_ttl",
                       absl::FormatDuration(out.heartbeat_ttl),
                       "is not whole seconds in [2s, 10m]");
  }
  KVD_ASSIGN_OR_RETURN(uint64_t weight, config.GetUint("cluster.weight"));
  if (weight > kMaxWeight) {
    return OutOfBounds("cluster.weight", absl::StrCat(weight),
                       absl::StrCat("exceeds the maximum ", kMaxWeight));
  }
  out.weight = static_cast<uint32_t>(weight);
  return out;
}

}  // namespace

const ConfigSchema& NodeConfigSchema() {
  static const ConfigSchema* schema = [] {
    auto* s = new ConfigSchema;
    s->Add("node.id", ConfigType::kString, "",
           "Node identity; default: the short host name.")
        .Add("node.listen", ConfigType::kString, "127.0.0.1:7400",
             "host:port of the gRPC control service (port 0: any free port).")
        .Add("node.admin_token", ConfigType::kString, "",
             "Shared secret required by admin RPCs.")
        .Add("node.shutdown_grace", ConfigType::kDuration, "10s",
             "How long in-flight RPCs may run once shutdown starts.")
        .Add("log.level", ConfigType::kString, "info",
             "trace, debug, info, warn, error, critical or off.")
        .Add("host.capacity", ConfigType::kBytes, "1GiB",
             "Host DRAM tier capacity.")
        .Add("host.huge_pages", ConfigType::kBool, "true",
             "Try huge pages for the host pool.")
        .Add("gpu.capacity", ConfigType::kBytes, "0",
             "GPU tier capacity; 0 disables it.")
        .Add("gpu.device", ConfigType::kUint, "0", "CUDA device ordinal.")
        .Add("ssd.dir", ConfigType::kString, "",
             "Directory of the SSD tier; empty disables it.")
        .Add("ssd.capacity", ConfigType::kBytes, "16GiB", "SSD tier capacity.")
        .Add("ssd.segment_size", ConfigType::kBytes, "256MiB",
             "Size of one append-only segment file.")
        .Add("ssd.direct_io", ConfigType::kBool, "true",
             "Use O_DIRECT for segment I/O.")
        .Add("lease.ttl", ConfigType::kDuration, "30s",
             "How long a read lease pins its chunks.")
        .Add("transfer.ucx_tls", ConfigType::kString, "",
             "UCX_TLS for the data path, e.g. tcp or posix,cma,self; empty: "
             "UCX's default (shared memory on one host, verbs or tcp "
             "across hosts).")
        .Add("transfer.protocol", ConfigType::kString, "auto",
             "How sessions move bytes: auto, rma (one-sided) or am "
             "(active-message rendezvous).")
        .Add("transfer.request_timeout", ConfigType::kDuration, "10s",
             "A data request that takes longer ends its session.")
        .Add("transfer.threads", ConfigType::kUint, "2",
             "Threads for engine work of the data path.")
        .Add("auth.token", ConfigType::kString, "",
             "Data-path token: Hello needs it (or the admin token).")
        .Add("auth.allow_no_token", ConfigType::kBool, "false",
             "Let empty tokens mean no check. Local development only.")
        .Add("tls.cert", ConfigType::kString, "",
             "PEM server certificate chain; with tls.key enables TLS.")
        .Add("tls.key", ConfigType::kString, "", "PEM server private key.")
        .Add("tls.client_ca", ConfigType::kString, "",
             "PEM CA that must have signed client certificates; empty: none "
             "required.")
        .Add("metrics.listen", ConfigType::kString, "127.0.0.1:9400",
             "host:port of the Prometheus /metrics endpoint; empty disables "
             "it.")
        .Add("cluster.name", ConfigType::kString, "",
             "Cluster to join (cluster mode); empty: standalone.")
        .Add("cluster.etcd", ConfigType::kString, "127.0.0.1:2379",
             "etcd endpoints, comma-separated host:port.")
        .Add("cluster.advertise", ConfigType::kString, "",
             "host:port others reach the control service at; default: the "
             "bound node.listen address.")
        .Add("cluster.heartbeat_ttl", ConfigType::kDuration, "5s",
             "etcd lease TTL: a node silent this long leaves the membership.")
        .Add("cluster.weight", ConfigType::kUint, "0",
             "Placement weight; 0: the node's capacity in GiB (at least 1).");
    return s;
  }();
  return *schema;
}

absl::Status ValidateSecuritySettings(const NodeSettings& s) {
  if (!s.allow_no_token) {
    for (auto [key, token] : {std::pair<const char*, const std::string*>{
                                  "auth.token", &s.data_token},
                              {"node.admin_token", &s.admin_token}}) {
      if (token->empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "config key ", key,
            " is empty: set auth.token and node.admin_token, or set "
            "auth.allow_no_token=true (local development only)"));
      }
    }
  }
  if (s.tls_cert.empty() != s.tls_key.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config keys tls.cert=\"", s.tls_cert, "\" and tls.key=\"", s.tls_key,
        "\" go together: set both for TLS, or neither"));
  }
  if (!s.tls_client_ca.empty() && s.tls_cert.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config key tls.client_ca=\"", s.tls_client_ca,
                     "\" needs TLS: set tls.cert and tls.key too"));
  }
  return absl::OkStatus();
}

absl::StatusOr<NodeSettings> NodeSettingsFromConfig(const Config& config) {
  NodeSettings out;
  KVD_ASSIGN_OR_RETURN(out.node_id, config.GetString("node.id"));
  if (out.node_id.empty()) out.node_id = HostName();
  KVD_RETURN_IF_ERROR(ValidateNodeId(out.node_id));

  KVD_ASSIGN_OR_RETURN(out.listen, config.GetString("node.listen"));
  KVD_RETURN_IF_ERROR(
      ValidateListenAddress("config key node.listen", out.listen));
  KVD_ASSIGN_OR_RETURN(out.admin_token, config.GetString("node.admin_token"));

  KVD_ASSIGN_OR_RETURN(out.shutdown_grace,
                       config.GetDuration("node.shutdown_grace"));
  if (out.shutdown_grace > absl::Minutes(10)) {
    return OutOfBounds("node.shutdown_grace",
                       absl::FormatDuration(out.shutdown_grace),
                       "exceeds the maximum 10m");
  }

  KVD_ASSIGN_OR_RETURN(out.log_level, config.GetString("log.level"));
  static constexpr absl::string_view kLevels[] = {
      "trace", "debug", "info", "warn", "error", "critical", "off"};
  bool known_level = false;
  for (absl::string_view level : kLevels) known_level |= out.log_level == level;
  if (!known_level) {
    return OutOfBounds(
        "log.level", out.log_level,
        "is not one of trace, debug, info, warn, error, critical, off");
  }

  StoreOptions& store = out.store;
  KVD_ASSIGN_OR_RETURN(store.host_capacity_bytes,
                       config.GetBytes("host.capacity"));
  if (store.host_capacity_bytes < kMinHostCapacity) {
    return OutOfBounds("host.capacity",
                       FormatByteSize(store.host_capacity_bytes),
                       absl::StrCat("is below the minimum ",
                                    FormatByteSize(kMinHostCapacity)));
  }
  KVD_ASSIGN_OR_RETURN(store.host_huge_pages,
                       config.GetBool("host.huge_pages"));

  KVD_ASSIGN_OR_RETURN(store.gpu_capacity_bytes,
                       config.GetBytes("gpu.capacity"));
  KVD_ASSIGN_OR_RETURN(uint64_t device, config.GetUint("gpu.device"));
  if (device > kMaxGpuDevice) {
    return OutOfBounds("gpu.device", absl::StrCat(device),
                       absl::StrCat("exceeds the maximum ", kMaxGpuDevice));
  }
  store.gpu_device = static_cast<int>(device);

  KVD_ASSIGN_OR_RETURN(store.ssd_dir, config.GetString("ssd.dir"));
  KVD_ASSIGN_OR_RETURN(store.ssd_capacity_bytes,
                       config.GetBytes("ssd.capacity"));
  KVD_ASSIGN_OR_RETURN(store.ssd_segment_bytes,
                       config.GetBytes("ssd.segment_size"));
  KVD_ASSIGN_OR_RETURN(store.ssd_direct_io, config.GetBool("ssd.direct_io"));
  const std::string segment = FormatByteSize(store.ssd_segment_bytes);
  if (store.ssd_segment_bytes < kMinSegment ||
      store.ssd_segment_bytes > kMaxSegment) {
    return OutOfBounds("ssd.segment_size", segment,
                       absl::StrCat("is outside [", FormatByteSize(kMinSegment),
                                    ", ", FormatByteSize(kMaxSegment), "]"));
  }
  if (store.ssd_segment_bytes % kSegmentAlign != 0) {
    return OutOfBounds("ssd.segment_size", segment,
                       absl::StrCat("is not a multiple of ", kSegmentAlign));
  }
  if (!store.ssd_dir.empty() &&
      store.ssd_capacity_bytes < store.ssd_segment_bytes) {
    return OutOfBounds(
        "ssd.capacity", FormatByteSize(store.ssd_capacity_bytes),
        absl::StrCat("is smaller than ssd.segment_size=", segment));
  }

  KVD_ASSIGN_OR_RETURN(store.lease_ttl, config.GetDuration("lease.ttl"));
  if (store.lease_ttl < absl::Milliseconds(1) ||
      store.lease_ttl > absl::Hours(1)) {
    return OutOfBounds("lease.ttl", absl::FormatDuration(store.lease_ttl),
                       "is outside [1ms, 1h]");
  }

  KVD_ASSIGN_OR_RETURN(out.ucx_tls, config.GetString("transfer.ucx_tls"));
  KVD_ASSIGN_OR_RETURN(std::string protocol,
                       config.GetString("transfer.protocol"));
  if (protocol == "auto") {
    out.data_protocol = kvdepot::v1::DATA_PROTOCOL_UNSPECIFIED;
  } else if (protocol == "rma") {
    out.data_protocol = kvdepot::v1::DATA_PROTOCOL_RMA;
  } else if (protocol == "am") {
    out.data_protocol = kvdepot::v1::DATA_PROTOCOL_AM;
  } else {
    return OutOfBounds("transfer.protocol", protocol,
                       "is not one of auto, rma, am");
  }
  KVD_ASSIGN_OR_RETURN(out.request_timeout,
                       config.GetDuration("transfer.request_timeout"));
  if (out.request_timeout < absl::Milliseconds(10) ||
      out.request_timeout > absl::Hours(1)) {
    return OutOfBounds("transfer.request_timeout",
                       absl::FormatDuration(out.request_timeout),
                       "is outside [10ms, 1h]");
  }
  KVD_ASSIGN_OR_RETURN(uint64_t threads, config.GetUint("transfer.threads"));
  if (threads < 1 || threads > 64) {
    return OutOfBounds("transfer.threads", absl::StrCat(threads),
                       "is outside [1, 64]");
  }
  out.transfer_threads = static_cast<int>(threads);

  KVD_ASSIGN_OR_RETURN(out.metrics_listen, config.GetString("metrics.listen"));
  if (!out.metrics_listen.empty()) {
    KVD_RETURN_IF_ERROR(
        ValidateListenAddress("config key metrics.listen", out.metrics_listen));
  }
  KVD_ASSIGN_OR_RETURN(out.data_token, config.GetString("auth.token"));
  KVD_ASSIGN_OR_RETURN(out.allow_no_token,
                       config.GetBool("auth.allow_no_token"));
  KVD_ASSIGN_OR_RETURN(out.tls_cert, config.GetString("tls.cert"));
  KVD_ASSIGN_OR_RETURN(out.tls_key, config.GetString("tls.key"));
  KVD_ASSIGN_OR_RETURN(out.tls_client_ca, config.GetString("tls.client_ca"));
  KVD_RETURN_IF_ERROR(ValidateSecuritySettings(out));
  KVD_ASSIGN_OR_RETURN(out.cluster, ClusterSettingsFromConfig(config));
  return out;
}

}  // namespace kvd
