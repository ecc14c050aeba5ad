#include "store/cli/cluster_command.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "cluster/etcd_client.h"
#include "cluster/membership.h"
#include "cluster/placement.h"
#include "core/chunk_key.h"
#include "core/config.h"
#include "core/model_spec.h"
#include "core/status.h"
#include "nlohmann/json.hpp"
#include "store/cli/control_client.h"
#include "store/cli/ctl_format.h"
#include "store/cli/drain_command.h"

namespace kvd {
namespace {

namespace pb = kvdepot::v1;
using nlohmann::ordered_json;

constexpr int kExitRpcError = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUnreachable = 3;

struct ClusterFlags {
  std::string etcd = "127.0.0.1:2379";
  std::string cluster;
  std::string command;
  std::string key;
  std::string node;
  std::string tokens_file;
  std::string model = "smollm2";
  std::string tenant_salt;
  int replicas = 1;
};

struct Membership {
  std::vector<pb::NodeRecord> nodes;  // sorted by id, as in placement
  int64_t revision = 0;
};

absl::StatusOr<Membership> ReadMembership(const ClusterFlags& flags,
                                          absl::Duration timeout) {
  KVD_ASSIGN_OR_RETURN(std::vector<std::string> endpoints,
                       cluster::ParseEtcdEndpoints("--etcd", flags.etcd));
  KVD_ASSIGN_OR_RETURN(auto etcd,
                       cluster::EtcdClient::Create(
                           {.endpoints = endpoints, .call_timeout = timeout}));
  const std::string prefix = cluster::NodesPrefix(flags.cluster);
  KVD_ASSIGN_OR_RETURN(cluster::EtcdClient::Snapshot snapshot,
                       etcd->GetPrefix(prefix));
  Membership out;
  out.revision = snapshot.revision;
  for (const cluster::EtcdKeyValue& kv : snapshot.kvs) {
    absl::StatusOr<pb::NodeRecord> r = cluster::DecodeNodeRecord(
        absl::string_view(kv.key).substr(prefix.size()), kv.value);
    if (!r.ok()) {
      std::fprintf(stderr, "kvdepotctl: skipping %s: %s\n", kv.key.c_str(),
                   r.status().ToString().c_str());
      continue;
    }
    out.nodes.push_back(*std::move(r));
  }
  return out;
}

// kInvalidArgument for a token gRPC metadata cannot carry (the address was
// validated with the record).
absl::StatusOr<std::unique_ptr<ControlClient>> NodeClient(
    const pb::NodeRecord& node, const std::string& token,
    absl::Duration timeout) {
  ControlChannelOptions options;
  options.address = node.control_address();
  options.token = token;
  return ControlClient::Create(options, timeout);
}

const pb::TierStats* FindTier(const pb::NodeRecord& node, pb::Tier tier) {
  for (const pb::TierStats& t : node.tiers()) {
    if (t.tier() == tier && t.enabled()) return &t;
  }
  return nullptr;
}

int Status(const Membership& m, const std::string& token,
           absl::Duration timeout, bool json) {
  uint64_t total_weight = 0;
  for (const pb::NodeRecord& n : m.nodes) total_weight += n.weight();
  ordered_json out = {{"revision", m.revision},
                      {"nodes", ordered_json::array()}};
  std::string text = absl::StrFormat(
      "%d nodes (etcd revision %d)\n%-16s %-21s %-12s %6s %6s %8s %-19s "
      "%-19s %-8s %s\n",
      m.nodes.size(), m.revision, "NODE", "ADDRESS", "HEALTH", "WEIGHT",
      "SHARE", "CHUNKS", "HOST", "SSD", "PLACEMENT", "HEARTBEAT");
  const int64_t now_ms = absl::ToUnixMillis(absl::Now());
  for (const pb::NodeRecord& n : m.nodes) {
    absl::StatusOr<std::unique_ptr<ControlClient>> c =
        NodeClient(n, token, timeout);
    absl::StatusOr<pb::StatusResponse> live =
        c.ok() ? (*c)->Status() : c.status();
    const std::string health =
        live.ok() ? HealthLabel(live->health()) : "unreachable";
    const double share =
        total_weight == 0 ? 0 : static_cast<double>(n.weight()) / total_weight;
    auto usage = [&](pb::Tier tier) -> std::string {
      const pb::TierStats* t = FindTier(n, tier);
      if (t == nullptr) return "-";
      return absl::StrCat(HumanBytes(t->stored_bytes()), "/",
                          HumanBytes(t->capacity_bytes()));
    };
    const int64_t age_ms = now_ms - n.heartbeat_unix_ms();
    ordered_json node = {
        {"node_id", n.node_id()},
        {"control_address", n.control_address()},
        {"health", health},
        {"weight", n.weight()},
        {"share", share},
        {"chunks", n.chunks()},
        {"version", n.version()},
        {"heartbeat_age_ms", age_ms},
        {"placement_epoch",
         live.ok() ? ordered_json(live->placement_epoch()) : ordered_json()},
        {"placement_fingerprint",
         live.ok() ? ordered_json(absl::StrFormat(
                         "%016x", live->placement_fingerprint()))
                   : ordered_json()},
        {"tiers", ordered_json::array()}};
    for (const pb::TierStats& t : n.tiers()) {
      if (!t.enabled()) continue;
      node["tiers"].push_back({{"tier", TierLabel(t.tier())},
                               {"capacity_bytes", t.capacity_bytes()},
                               {"stored_bytes", t.stored_bytes()},
                               {"objects", t.objects()}});
    }
    out["nodes"].push_back(node);
    absl::StrAppendFormat(
        &text, "%-16s %-21s %-12s %6d %5.1f%% %8d %-19s %-19s %-8s %s ago\n",
        n.node_id(), n.control_address(), health, n.weight(), 100 * share,
        n.chunks(), usage(pb::TIER_HOST), usage(pb::TIER_SSD),
        live.ok() ? absl::StrFormat("%016x", live->placement_fingerprint())
                        .substr(0, 8)
                  : "-",
        HumanDuration(std::max<int64_t>(0, age_ms)));
  }
  std::fputs(json ? (out.dump(2) + "\n").c_str() : text.c_str(), stdout);
  return 0;
}

// Where `key` is: per owner, its tier, "absent" or "unreachable".
ordered_json Locate(const Membership& m, const cluster::Placement& placement,
                    const ChunkKey& key, int replicas, const std::string& token,
                    absl::Duration timeout, bool* present) {
  ordered_json owners = ordered_json::array();
  *present = false;
  for (uint32_t i : placement.OwnersOf(key, replicas)) {
    const pb::NodeRecord& n = m.nodes[i];
    absl::StatusOr<std::unique_ptr<ControlClient>> c =
        NodeClient(n, token, timeout);
    absl::StatusOr<pb::InspectResponse> r =
        c.ok() ? (*c)->Inspect(key.Hex()) : c.status();
    std::string where;
    if (r.ok()) {
      where = TierLabel(r->tier());
      *present = true;
    } else {
      where = absl::IsNotFound(r.status()) ? "absent" : "unreachable";
    }
    owners.push_back({{"node_id", n.node_id()}, {"where", where}});
  }
  return owners;
}

// Moves node `id`'s chunks to their owners among the other nodes, showing
// progress; exit 1 when the node answered with an error or chunks were left.
int Drain(const Membership& m, const ClusterFlags& flags,
          const std::string& token, absl::Duration timeout, bool json) {
  const pb::NodeRecord* node = nullptr;
  for (const pb::NodeRecord& n : m.nodes) {
    if (n.node_id() == flags.node) node = &n;
  }
  if (node == nullptr) {
    std::fprintf(stderr, "kvdepotctl: cluster %s has no node %s\n",
                 flags.cluster.c_str(), flags.node.c_str());
    return kExitRpcError;
  }
  absl::StatusOr<std::unique_ptr<ControlClient>> client =
      NodeClient(*node, token, timeout);
  pb::DrainRequest request;
  request.set_move_to_owners(true);
  request.set_replicas(flags.replicas);
  absl::StatusOr<pb::DrainProgress> last =
      client.ok() ? ShowDrain(**client, request, json) : client.status();
  if (!last.ok()) {
    const bool unreachable = absl::IsUnavailable(last.status()) ||
                             absl::IsDeadlineExceeded(last.status());
    std::fprintf(stderr, "kvdepotctl: drain of %s: %s\n", flags.node.c_str(),
                 last.status().ToString().c_str());
    return unreachable ? kExitUnreachable : kExitRpcError;
  }
  if (!last->done() || !last->moved()) {
    std::fprintf(stderr, "kvdepotctl: %s still holds chunks: %s\n",
                 flags.node.c_str(), last->detail().c_str());
    return kExitRpcError;
  }
  return 0;
}

absl::StatusOr<std::vector<uint32_t>> ReadTokens(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  std::vector<uint32_t> tokens;
  for (absl::string_view t : absl::StrSplit(
           ss.str(), absl::ByAnyChar(" \t\r\n,"), absl::SkipEmpty())) {
    uint32_t v = 0;
    if (!absl::SimpleAtoi(t, &v)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": \"", t, "\" is not a token id (uint32)"));
    }
    tokens.push_back(v);
  }
  return tokens;
}

int Run(const ClusterFlags& flags, std::string token,
        const std::string& timeout_text, bool json) {
  auto usage = [](const absl::Status& s) {
    std::fprintf(stderr, "kvdepotctl: %s\n", std::string(s.message()).c_str());
    return kExitUsage;
  };
  absl::StatusOr<absl::Duration> timeout = ParseConfigDuration(timeout_text);
  if (!timeout.ok()) return usage(timeout.status());
  if (absl::Status s = cluster::ValidateClusterName("--cluster", flags.cluster);
      !s.ok()) {
    return usage(s);
  }
  if (token.empty() && std::getenv("KVDEPOT_ADMIN_TOKEN") != nullptr) {
    token = std::getenv("KVDEPOT_ADMIN_TOKEN");
  }
  if (token.empty() && std::getenv("KVDEPOT_TOKEN") != nullptr) {
    token = std::getenv("KVDEPOT_TOKEN");
  }
  if (absl::Status s =
          ControlChannel::Create({.address = "127.0.0.1:1", .token = token})
              .status();
      !s.ok()) {
    return usage(s);  // a token gRPC cannot carry
  }
  absl::StatusOr<Membership> m = ReadMembership(flags, *timeout);
  if (!m.ok()) {
    if (absl::IsInvalidArgument(m.status())) return usage(m.status());
    std::fprintf(stderr, "kvdepotctl: etcd unreachable: %s\n",
                 m.status().ToString().c_str());
    return kExitUnreachable;
  }
  if (flags.command == "status") return Status(*m, token, *timeout, json);
  if (flags.command == "drain") return Drain(*m, flags, token, *timeout, json);

  std::vector<cluster::PlacementNode> nodes;
  for (const pb::NodeRecord& n : m->nodes) {
    nodes.push_back({n.node_id(), n.weight()});
  }
  absl::StatusOr<cluster::Placement> placement =
      cluster::Placement::Create(std::move(nodes));
  if (!placement.ok()) {
    std::fprintf(stderr, "kvdepotctl: cluster %s has no nodes\n",
                 flags.cluster.c_str());
    return kExitUnreachable;
  }
  if (flags.command == "where") {
    absl::StatusOr<ChunkKey> key = ChunkKey::FromHex(flags.key);
    if (!key.ok()) return usage(key.status());
    bool present = false;
    ordered_json owners =
        Locate(*m, *placement, *key, flags.replicas, token, *timeout, &present);
    ordered_json out = {{"key", flags.key}, {"owners", owners}};
    if (json) {
      std::printf("%s\n", out.dump(2).c_str());
    } else {
      for (const auto& o : owners) {
        std::printf("%s\t%s\n", o["node_id"].get<std::string>().c_str(),
                    o["where"].get<std::string>().c_str());
      }
    }
    return 0;
  }
  // prefix
  absl::StatusOr<std::vector<uint32_t>> tokens = ReadTokens(flags.tokens_file);
  if (!tokens.ok()) return usage(tokens.status());
  ModelSpec spec = flags.model == "llama3" ? ModelSpec::Llama3_8B()
                                           : ModelSpec::SmolLM2_135M();
  spec.tenant_salt = flags.tenant_salt;
  std::vector<ChunkKey> keys =
      ChainChunkKeys(spec.Fingerprint(), *tokens, spec.chunk_tokens);
  size_t cached = keys.size();
  ordered_json chunks = ordered_json::array();
  for (size_t i = 0; i < keys.size(); ++i) {
    bool present = false;
    ordered_json owners = Locate(*m, *placement, keys[i], flags.replicas, token,
                                 *timeout, &present);
    if (!present && cached == keys.size()) cached = i;
    chunks.push_back({{"index", i},
                      {"key", keys[i].Hex()},
                      {"present", present},
                      {"owners", owners}});
  }
  ordered_json out = {{"tokens", tokens->size()},
                      {"chunk_tokens", spec.chunk_tokens},
                      {"chunks", keys.size()},
                      {"cached_chunks", cached},
                      {"cached_tokens", cached * spec.chunk_tokens},
                      {"per_chunk", chunks}};
  if (json) {
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  std::printf(
      "%zu tokens, %zu full chunks of %u: %zu chunks (%zu tokens) "
      "cached as a prefix\n",
      tokens->size(), keys.size(), spec.chunk_tokens, cached,
      cached * spec.chunk_tokens);
  for (const auto& c : chunks) {
    std::string where;
    for (const auto& o : c["owners"]) {
      absl::StrAppend(&where, where.empty() ? "" : ", ",
                      o["node_id"].get<std::string>(), "=",
                      o["where"].get<std::string>());
    }
    std::printf("  %4zu %s  %s\n", c["index"].get<size_t>(),
                c["key"].get<std::string>().substr(0, 16).c_str(),
                where.c_str());
  }
  return 0;
}

}  // namespace

void AddClusterCommand(CLI::App& app, const std::string* token,
                       const std::string* timeout, const bool* json,
                       int* exit_code) {
  auto flags = std::make_shared<ClusterFlags>();
  CLI::App* c = app.add_subcommand(
      "cluster", "The cluster's membership in etcd, placement and contents.");
  c->require_subcommand(1);
  c->fallthrough();
  c->add_option("--etcd", flags->etcd, "etcd endpoints host:port[,...].")
      ->capture_default_str();
  c->add_option("--cluster", flags->cluster, "Cluster name.")->required();
  c->add_option("--replicas", flags->replicas, "Replication factor R.")
      ->check(CLI::Range(1, cluster::Placement::kMaxReplicas))
      ->capture_default_str();
  c->add_subcommand("status", "Nodes, health, capacity, tier usage, epoch.")
      ->fallthrough()
      ->callback([flags] { flags->command = "status"; });
  CLI::App* where =
      c->add_subcommand("where", "Owners of a chunk and which tier holds it.");
  where->fallthrough();
  where->add_option("KEY", flags->key, "Chunk key (64 hex digits).")
      ->required();
  where->callback([flags] { flags->command = "where"; });
  CLI::App* prefix =
      c->add_subcommand("prefix", "How much of a prompt is cached, and where.");
  prefix->fallthrough();
  prefix->add_option("TOKENS-FILE", flags->tokens_file, "Token ids.")
      ->required();
  prefix->add_option("--model", flags->model, "smollm2 or llama3 geometry.")
      ->check(CLI::IsMember({"smollm2", "llama3"}))
      ->capture_default_str();
  prefix->add_option("--tenant-salt", flags->tenant_salt,
                     "The namespace's tenant salt, if any.");
  prefix->callback([flags] { flags->command = "prefix"; });
  CLI::App* drain = c->add_subcommand(
      "drain", "Move a node's chunks to their owners before it leaves.");
  drain->fallthrough();
  drain->add_option("NODE", flags->node, "Node id.")->required();
  drain->callback([flags] { flags->command = "drain"; });
  c->callback([flags, token, timeout, json, exit_code] {
    *exit_code = Run(*flags, *token, *timeout, *json);
  });
}

}  // namespace kvd
