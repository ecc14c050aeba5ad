#include "cluster/cluster_client.h"

#include <algorithm>
#include <thread>
#include <utility>

#include "absl/container/btree_map.h"
#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "spdlog/spdlog.h"

namespace kvd::cluster {
namespace {

// A node failed (as opposed to answering about the key).
bool NodeFailed(const absl::Status& s) {
  return absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s);
}

// Runs fn(0..n-1) in parallel and waits for all of them.
template <typename Fn>
void RunParallel(size_t n, const Fn& fn) {
  std::vector<std::thread> threads;
  for (size_t i = 1; i < n; ++i) threads.emplace_back([&fn, i] { fn(i); });
  if (n > 0) fn(0);
  for (std::thread& t : threads) t.join();
}

// Keys grouped by the node index they go to in one round; btree for a
// deterministic order.
using Groups = absl::btree_map<uint32_t, std::vector<size_t>>;

// Runs fn(node_index, items) for every group, in parallel, and waits.
template <typename Fn>
void ForEachGroup(const Groups& groups, const Fn& fn) {
  std::vector<std::pair<uint32_t, std::vector<size_t>>> work(groups.begin(),
                                                             groups.end());
  RunParallel(work.size(),
              [&](size_t g) { fn(work[g].first, work[g].second); });
}

}  // namespace

// One node's connection and its registrations of the client's buffers.
class ClusterClient::Node {
 public:
  Node(std::string address, int64_t start_ms)
      : address(std::move(address)), start_ms(start_ms) {}
  ~Node() {
    absl::MutexLock lock(&mu);
    registrations.clear();  // before the client they belong to
    client.reset();
  }

  const std::string address;
  const int64_t start_ms;
  absl::Mutex mu;  // connecting and registering
  std::unique_ptr<Client> client ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<const uint8_t*, std::unique_ptr<Registration>>
      registrations ABSL_GUARDED_BY(mu);
};

class ClusterClient::BufferRegistration final : public Registration {
 public:
  BufferRegistration(ClusterClient* owner, absl::Span<uint8_t> memory)
      : owner_(owner), memory_(memory) {}
  ~BufferRegistration() override { owner_->Unregister(memory_.data()); }
  absl::Span<uint8_t> memory() const override { return memory_; }
  // Each node has its own; the cluster client has none to hand out.
  const std::string& rkey() const override { return no_rkey_; }

 private:
  ClusterClient* const owner_;
  const absl::Span<uint8_t> memory_;
  const std::string no_rkey_;
};

absl::StatusOr<std::unique_ptr<ClusterClient>> ClusterClient::Connect(
    ClusterClientOptions options) {
  KVD_RETURN_IF_ERROR(ValidateClusterName("cluster", options.cluster));
  if (options.replicas < 1 || options.replicas > Placement::kMaxReplicas) {
    return absl::InvalidArgumentError(
        absl::StrCat("replicas=", options.replicas, " is outside 1..",
                     Placement::kMaxReplicas));
  }
  auto client = absl::WrapUnique(new ClusterClient(std::move(options)));
  KVD_ASSIGN_OR_RETURN(
      client->etcd_, EtcdClient::Create({.endpoints = client->options_.etcd}));
  client->watcher_ = std::make_unique<MembershipWatcher>(
      client->etcd_.get(), client->options_.cluster);
  KVD_RETURN_IF_ERROR(
      client->watcher_->WaitForView(client->options_.membership_timeout));
  return client;
}

ClusterClient::ClusterClient(ClusterClientOptions options)
    : options_(std::move(options)) {}

ClusterClient::~ClusterClient() {
  // Nodes lock their own mutex as they go, which must not nest inside mu_.
  absl::flat_hash_map<std::string, std::shared_ptr<Node>> nodes;
  absl::MutexLock lock(&mu_);
  nodes.swap(nodes_);
}

void ClusterClient::MarkDown(const std::string& id, const absl::Status& why) {
  absl::MutexLock lock(&mu_);
  absl::Time& until = down_until_[id];
  if (until < absl::Now()) {
    spdlog::warn("cluster client: node {} is down for {}: {}", id,
                 absl::FormatDuration(options_.down_cooldown), why.ToString());
  }
  until = absl::Now() + options_.down_cooldown;
}

bool ClusterClient::IsDown(const std::string& id) const {
  absl::MutexLock lock(&mu_);
  auto it = down_until_.find(id);
  return it != down_until_.end() && it->second > absl::Now();
}

ClusterClient::Candidates ClusterClient::Ranked(const MembershipView& view,
                                                const ChunkKey& key) const {
  Candidates out;
  if (!view.placement) return out;
  const int depth = static_cast<int>(
      std::min<size_t>(Placement::kMaxReplicas, view.nodes.size()));
  for (uint32_t i : view.placement->OwnersOf(key, depth)) {
    const kvdepot::v1::NodeRecord& node = view.nodes[i];
    if (IsDown(node.node_id())) continue;
    if (node.health() != kvdepot::v1::HEALTH_DRAINING) {
      out.owners.push_back(i);
    } else if (out.owners.size() < static_cast<size_t>(options_.replicas)) {
      out.leaving.push_back(i);
    }
  }
  return out;
}

std::vector<std::string> ClusterClient::OwnersOf(const ChunkKey& key) const {
  std::shared_ptr<const MembershipView> view = watcher_->view();
  std::vector<std::string> out;
  for (uint32_t i : Ranked(*view, key).owners) {
    if (out.size() == static_cast<size_t>(options_.replicas)) break;
    out.push_back(view->nodes[i].node_id());
  }
  return out;
}

absl::StatusOr<ClusterClient::Connection> ClusterClient::Connected(
    const MembershipView& view, uint32_t index) {
  const kvdepot::v1::NodeRecord& record = view.nodes[index];
  std::shared_ptr<Node> node;
  std::shared_ptr<Node> replaced;  // dropped outside mu_ (see ~ClusterClient)
  {
    absl::MutexLock lock(&mu_);
    std::shared_ptr<Node>& slot = nodes_[record.node_id()];
    // A node that moved or restarted gets a fresh connection.
    if (slot == nullptr || slot->address != record.control_address() ||
        slot->start_ms != record.start_time_unix_ms()) {
      replaced = std::move(slot);
      slot = std::make_shared<Node>(record.control_address(),
                                    record.start_time_unix_ms());
    }
    node = slot;
  }
  absl::MutexLock lock(&node->mu);
  if (node->client != nullptr) return Connection{node, node->client.get()};
  ClientOptions options = options_.node;
  options.address = node->address;
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(options);
  if (!client.ok()) {
    if (NodeFailed(client.status()))
      MarkDown(record.node_id(), client.status());
    return client.status();
  }
  std::vector<absl::Span<uint8_t>> buffers;
  {
    absl::MutexLock l(&mu_);
    buffers = buffers_;
  }
  for (absl::Span<uint8_t> b : buffers) {
    KVD_ASSIGN_OR_RETURN(node->registrations[b.data()],
                         (*client)->RegisterBuffer(b));
  }
  node->client = *std::move(client);
  return Connection{node, node->client.get()};
}

absl::StatusOr<std::unique_ptr<Registration>> ClusterClient::RegisterBuffer(
    absl::Span<uint8_t> memory) {
  std::vector<std::shared_ptr<Node>> nodes;
  {
    absl::MutexLock lock(&mu_);
    buffers_.push_back(memory);
    for (const auto& [id, node] : nodes_) nodes.push_back(node);
  }
  auto registration = std::make_unique<BufferRegistration>(this, memory);
  for (const std::shared_ptr<Node>& node : nodes) {
    absl::MutexLock lock(&node->mu);
    if (node->client == nullptr ||
        node->registrations.contains(memory.data())) {
      continue;  // registers it when it connects
    }
    KVD_ASSIGN_OR_RETURN(node->registrations[memory.data()],
                         node->client->RegisterBuffer(memory));
  }
  return registration;
}

void ClusterClient::Unregister(const uint8_t* memory) {
  std::vector<std::shared_ptr<Node>> nodes;
  {
    absl::MutexLock lock(&mu_);
    buffers_.erase(std::remove_if(buffers_.begin(), buffers_.end(),
                                  [&](absl::Span<uint8_t> b) {
                                    return b.data() == memory;
                                  }),
                   buffers_.end());
    for (const auto& [id, node] : nodes_) nodes.push_back(node);
  }
  for (const std::shared_ptr<Node>& node : nodes) {
    absl::MutexLock lock(&node->mu);
    node->registrations.erase(memory);
  }
}

std::vector<absl::Status> ClusterClient::Put(
    absl::Span<const ChunkKey> keys,
    absl::Span<const absl::Span<const uint8_t>> objects) {
  const size_t n = keys.size();
  if (objects.size() != n) {
    return std::vector<absl::Status>(
        n, absl::InvalidArgumentError(
               absl::StrCat(objects.size(), " objects for ", n, " keys")));
  }
  std::vector<absl::Status> result(
      n, absl::UnavailableError("no live node could store it"));
  std::shared_ptr<const MembershipView> view = watcher_->view();
  std::vector<std::vector<uint32_t>> ranked(n);
  for (size_t i = 0; i < n; ++i) ranked[i] = Ranked(*view, keys[i]).owners;
  std::vector<size_t> next(n, 0);  // next candidate to try
  std::vector<int> stored(n, 0);   // replicas written
  std::vector<bool> settled(n, false);
  const absl::Time deadline = absl::Now() + 2 * options_.node.timeout;
  while (absl::Now() < deadline) {
    Groups groups;
    for (size_t i = 0; i < n; ++i) {
      for (int want = options_.replicas - stored[i];
           !settled[i] && want > 0 && next[i] < ranked[i].size(); ++next[i]) {
        const uint32_t node = ranked[i][next[i]];
        if (IsDown(view->nodes[node].node_id())) continue;
        groups[node].push_back(i);
        --want;
      }
    }
    if (groups.empty()) break;
    absl::Mutex result_mu;
    ForEachGroup(groups, [&](uint32_t node_index,
                             const std::vector<size_t>& items) {
      std::vector<ChunkKey> sub_keys;
      std::vector<absl::Span<const uint8_t>> sub_objects;
      for (size_t i : items) {
        sub_keys.push_back(keys[i]);
        sub_objects.push_back(objects[i]);
      }
      absl::StatusOr<Connection> node = Connected(*view, node_index);
      std::vector<absl::Status> got =
          node.ok() ? node->client->Put(sub_keys, sub_objects)
                    : std::vector<absl::Status>(items.size(), node.status());
      absl::MutexLock lock(&result_mu);
      for (size_t k = 0; k < items.size(); ++k) {
        const size_t i = items[k];
        if (got[k].ok()) {
          ++stored[i];
          result[i] = absl::OkStatus();
        } else if (NodeFailed(got[k])) {
          if (node.ok()) MarkDown(view->nodes[node_index].node_id(), got[k]);
        } else if (stored[i] == 0) {
          result[i] = got[k];  // the node answered: no use trying elsewhere
          settled[i] = true;
        }
      }
    });
  }
  return result;
}

std::vector<absl::StatusOr<uint64_t>> ClusterClient::Get(
    absl::Span<const GetTarget> targets) {
  const size_t n = targets.size();
  std::vector<absl::StatusOr<uint64_t>> result(
      n, absl::NotFoundError("no live owner has the chunk"));
  std::shared_ptr<const MembershipView> view = watcher_->view();
  std::vector<Candidates> ranked(n);
  for (size_t i = 0; i < n; ++i) ranked[i] = Ranked(*view, targets[i].key);
  std::vector<size_t> next(n, 0);  // into owners, then into leaving
  std::vector<int> misses(n, 0);   // owners that answered "not here"
  std::vector<bool> settled(n, false);
  const absl::Time deadline = absl::Now() + 2 * options_.node.timeout;
  while (absl::Now() < deadline) {
    Groups groups;
    for (size_t i = 0; i < n; ++i) {
      const Candidates& c = ranked[i];
      // R owners missed: the draining nodes that held the key are left.
      if (misses[i] >= options_.replicas) {
        next[i] = std::max(next[i], c.owners.size());
      }
      while (!settled[i] && next[i] < c.owners.size() + c.leaving.size()) {
        const size_t at = next[i]++;
        const uint32_t node = at < c.owners.size()
                                  ? c.owners[at]
                                  : c.leaving[at - c.owners.size()];
        if (IsDown(view->nodes[node].node_id())) continue;
        groups[node].push_back(i);
        break;
      }
    }
    if (groups.empty()) break;
    absl::Mutex result_mu;
    ForEachGroup(
        groups, [&](uint32_t node_index, const std::vector<size_t>& items) {
          std::vector<GetTarget> sub;
          for (size_t i : items) sub.push_back(targets[i]);
          absl::StatusOr<Connection> node = Connected(*view, node_index);
          std::vector<absl::StatusOr<uint64_t>> got =
              node.ok() ? node->client->Get(sub)
                        : std::vector<absl::StatusOr<uint64_t>>(items.size(),
                                                                node.status());
          absl::MutexLock lock(&result_mu);
          for (size_t k = 0; k < items.size(); ++k) {
            const size_t i = items[k];
            if (got[k].ok()) {
              result[i] = got[k];
              settled[i] = true;
            } else if (absl::IsNotFound(got[k].status())) {
              ++misses[i];
            } else if (NodeFailed(got[k].status())) {
              if (node.ok()) {
                MarkDown(view->nodes[node_index].node_id(), got[k].status());
              }
            } else {
              result[i] = got[k];
              settled[i] = true;
            }
          }
        });
  }
  return result;
}

absl::StatusOr<size_t> ClusterClient::Lookup(absl::Span<const ChunkKey> keys) {
  constexpr int kRounds = 3;
  size_t present = 0;
  for (int round = 0; round < kRounds; ++round) {
    std::shared_ptr<const MembershipView> view = watcher_->view();
    present = keys.size();
    Groups groups;
    for (size_t i = 0; i < keys.size(); ++i) {
      std::vector<uint32_t> ranked = Ranked(*view, keys[i]).owners;
      if (ranked.empty()) {
        present = i;  // nobody to ask: the prefix ends here
        break;
      }
      groups[ranked[0]].push_back(i);
    }
    absl::Mutex result_mu;
    bool node_failed = false;
    absl::Status error;
    ForEachGroup(
        groups, [&](uint32_t node_index, const std::vector<size_t>& items) {
          std::vector<ChunkKey> sub;
          for (size_t i : items) sub.push_back(keys[i]);
          absl::StatusOr<Connection> node = Connected(*view, node_index);
          absl::StatusOr<size_t> got =
              node.ok() ? node->client->Lookup(sub) : node.status();
          absl::MutexLock lock(&result_mu);
          if (got.ok()) {
            // Its keys up to the first one it lacks are present.
            if (*got < items.size()) present = std::min(present, items[*got]);
            return;
          }
          present = std::min(present, items[0]);
          if (NodeFailed(got.status())) {
            if (node.ok()) {
              MarkDown(view->nodes[node_index].node_id(), got.status());
            }
            node_failed = true;
          } else {
            error = got.status();
          }
        });
    if (!error.ok()) return error;
    if (!node_failed) break;  // else ask again without the failed nodes
  }
  return present;
}

}  // namespace kvd::cluster
