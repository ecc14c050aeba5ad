#include "cluster/membership.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/host_port.h"
#include "core/status.h"
#include "google/protobuf/util/json_util.h"
#include "spdlog/spdlog.h"

namespace kvd::cluster {
namespace {

using kvdepot::v1::NodeRecord;

constexpr size_t kMaxClusterNameBytes = 64;
constexpr size_t kMaxWorkerAddressBytes = 64 << 10;
constexpr int kMaxTiers = 8;
constexpr absl::Duration kMinBackoff = absl::Milliseconds(100);
constexpr absl::Duration kMaxBackoff = absl::Seconds(2);

absl::Status ValidateNodeId(absl::string_view key, absl::string_view id) {
  if (id.empty() || id.size() > Placement::kMaxNodeIdBytes ||
      absl::StrContains(id, '/')) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, "=\"", id, "\" must be 1..",
                     Placement::kMaxNodeIdBytes, " bytes without '/'"));
  }
  return absl::OkStatus();
}

// Whether two record sets place keys the same way.
bool SamePlacement(const std::vector<NodeRecord>& a,
                   const std::vector<NodeRecord>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](const NodeRecord& x, const NodeRecord& y) {
                      return x.node_id() == y.node_id() &&
                             x.weight() == y.weight();
                    });
}

}  // namespace

absl::Status ValidateClusterName(absl::string_view key,
                                 absl::string_view name) {
  const bool charset_ok = std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(c) || c == '.' || c == '_' || c == '-';
  });
  if (name.empty() || name.size() > kMaxClusterNameBytes || !charset_ok) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, "=\"", name, "\" must be 1..", kMaxClusterNameBytes,
                     " characters of [A-Za-z0-9._-]"));
  }
  return absl::OkStatus();
}

std::string NodesPrefix(absl::string_view cluster) {
  return absl::StrCat("/kvdepot/", cluster, "/nodes/");
}

std::string EncodeNodeRecord(const NodeRecord& record) {
  std::string out;
  // Cannot fail for a message without Any fields.
  (void)google::protobuf::util::MessageToJsonString(record, &out);
  return out;
}

absl::StatusOr<NodeRecord> DecodeNodeRecord(absl::string_view id,
                                            absl::string_view value) {
  NodeRecord r;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;  // written by a newer node
  auto parsed = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(value.data(), value.size()), &r, options);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "node record ", id, " is not valid JSON: ", parsed.ToString()));
  }
  // Only what this version understands is kept: the JSON parser can leave
  // pieces of unknown input in the message's unknown fields.
  r.DiscardUnknownFields();
  KVD_RETURN_IF_ERROR(ValidateNodeId("node record key", id));
  if (r.node_id() != id) {
    return absl::InvalidArgumentError(absl::StrCat("node record ", id,
                                                   ": node_id=\"", r.node_id(),
                                                   "\" differs from its key"));
  }
  KVD_RETURN_IF_ERROR(
      ValidateDialAddress(absl::StrCat("node record ", id, ": control_address"),
                          r.control_address()));
  if (r.weight() == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("node record ", id, ": weight must be >= 1"));
  }
  if (r.worker_address().size() > kMaxWorkerAddressBytes ||
      r.tiers_size() > kMaxTiers) {
    return absl::InvalidArgumentError(absl::StrCat(
        "node record ", id, ": worker_address over ", kMaxWorkerAddressBytes,
        " bytes or more than ", kMaxTiers, " tiers"));
  }
  return r;
}

// ---------------------------------------------------------------------------
// MembershipWatcher

MembershipWatcher::MembershipWatcher(EtcdClient* etcd, std::string cluster,
                                     Listener listener)
    : etcd_(etcd),
      cluster_(std::move(cluster)),
      prefix_(NodesPrefix(cluster_)),
      listener_(std::move(listener)),
      view_(std::make_shared<MembershipView>()) {
  thread_ = std::thread([this] { Run(); });
}

MembershipWatcher::~MembershipWatcher() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  cancel_.Cancel();
  thread_.join();
}

std::shared_ptr<const MembershipView> MembershipWatcher::view() const {
  absl::MutexLock lock(&mu_);
  return view_;
}

absl::Status MembershipWatcher::WaitForView(absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return view_->revision > 0;
  };
  if (mu_.AwaitWithTimeout(absl::Condition(&ready), timeout)) {
    return absl::OkStatus();
  }
  return absl::UnavailableError(absl::StrCat(
      "no cluster membership from etcd within ", absl::FormatDuration(timeout),
      ": ", last_error_.ok() ? "no answer yet" : last_error_.ToString()));
}

void MembershipWatcher::Publish(int64_t revision, bool live) {
  auto next = std::make_shared<MembershipView>();
  next->revision = revision;
  next->live = live;
  for (const auto& [id, record] : records_) next->nodes.push_back(record);
  next->placement_epoch = view_->placement_epoch;
  if (SamePlacement(next->nodes, view_->nodes) && view_->revision > 0) {
    next->placement = view_->placement;
  } else {
    ++next->placement_epoch;
    std::vector<PlacementNode> nodes;
    for (const NodeRecord& r : next->nodes) {
      nodes.push_back({r.node_id(), r.weight()});
    }
    // Records were validated on the way in, so only "no nodes" can fail.
    if (absl::StatusOr<Placement> p = Placement::Create(std::move(nodes));
        p.ok()) {
      next->placement = *std::move(p);
    }
  }
  view_ = next;
  if (listener_) listener_(*next);
}

void MembershipWatcher::Apply(absl::string_view key, absl::string_view value) {
  absl::string_view id = key.substr(prefix_.size());
  absl::StatusOr<NodeRecord> r = DecodeNodeRecord(id, value);
  if (!r.ok()) {
    spdlog::warn("membership: ignoring {}: {}", std::string(key),
                 r.status().ToString());
    records_.erase(std::string(id));
    return;
  }
  records_[std::string(id)] = *std::move(r);
}

void MembershipWatcher::Run() {
  absl::Duration backoff = kMinBackoff;
  while (true) {
    absl::StatusOr<EtcdClient::Snapshot> snapshot = etcd_->GetPrefix(prefix_);
    absl::Status ended;
    if (snapshot.ok()) {
      backoff = kMinBackoff;
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      records_.clear();
      for (const EtcdKeyValue& kv : snapshot->kvs) Apply(kv.key, kv.value);
      Publish(snapshot->revision, true);
      last_error_ = absl::OkStatus();
    }
    if (snapshot.ok()) {
      ended = etcd_->Watch(
          prefix_, snapshot->revision + 1,
          [&](std::vector<EtcdEvent> events) {
            absl::MutexLock lock(&mu_);
            for (const EtcdEvent& e : events) {
              if (e.deleted) {
                records_.erase(e.key.substr(prefix_.size()));
              } else {
                Apply(e.key, e.value);
              }
            }
            Publish(events.back().revision, true);
          },
          &cancel_);
    } else {
      ended = snapshot.status();
    }
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    if (view_->live) {
      spdlog::warn("membership: lost etcd ({}); keeping the last view",
                   ended.ToString());
      Publish(view_->revision, false);
    }
    last_error_ = ended;
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), backoff);
    if (stopping_) return;
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
}

// ---------------------------------------------------------------------------
// Registrar

absl::StatusOr<std::unique_ptr<Registrar>> Registrar::Start(
    EtcdClient* etcd, RegistrarOptions options) {
  KVD_RETURN_IF_ERROR(ValidateClusterName("cluster.name", options.cluster));
  KVD_RETURN_IF_ERROR(ValidateNodeId("node.id", options.node_id));
  if (options.ttl < absl::Seconds(2) ||
      options.ttl != absl::Floor(options.ttl, absl::Seconds(1))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cluster.heartbeat_ttl=", absl::FormatDuration(options.ttl),
        " must be whole seconds, at least 2s"));
  }
  if (!options.record || options.refresh <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "registrar needs a record builder and a positive refresh interval");
  }
  auto registrar = absl::WrapUnique(new Registrar(etcd, std::move(options)));
  registrar->thread_ = std::thread([r = registrar.get()] { r->Run(); });
  return registrar;
}

Registrar::Registrar(EtcdClient* etcd, RegistrarOptions options)
    : etcd_(etcd),
      options_(std::move(options)),
      key_(NodesPrefix(options_.cluster) + options_.node_id) {}

Registrar::~Registrar() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

bool Registrar::registered() const {
  absl::MutexLock lock(&mu_);
  return lease_ != 0;
}

bool Registrar::Wait(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(this, &Registrar::Woken), d);
  return !stopping_;
}

void Registrar::Refresh() {
  absl::MutexLock lock(&mu_);
  rewrite_ = true;
}

absl::Status Registrar::Leave() {
  int64_t lease;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    lease = lease_;
  }
  if (thread_.joinable()) thread_.join();
  absl::MutexLock lock(&mu_);
  lease_ = 0;
  if (lease == 0) return absl::OkStatus();
  return etcd_->RevokeLease(lease);
}

void Registrar::Run() {
  const absl::Duration beat = options_.ttl / 3;
  absl::Duration backoff = absl::ZeroDuration();
  bool failing = false;
  absl::Time next_write = absl::InfinitePast();
  int64_t lease = 0;
  auto fail = [&](absl::string_view what, const absl::Status& s) {
    spdlog::warn("cluster registration: {} failed: {}", std::string(what),
                 s.ToString());
    if (absl::IsNotFound(s)) lease = 0;  // expired: register anew
    backoff = failing ? std::min(backoff * 2, kMaxBackoff) : kMinBackoff;
    failing = true;
    absl::MutexLock lock(&mu_);
    lease_ = lease;
  };
  do {
    if (lease == 0) {
      absl::StatusOr<int64_t> granted = etcd_->GrantLease(options_.ttl);
      if (!granted.ok()) {
        fail("lease grant", granted.status());
        continue;
      }
      lease = *granted;
      next_write = absl::InfinitePast();
    } else if (absl::StatusOr<absl::Duration> ttl = etcd_->KeepAlive(lease);
               !ttl.ok()) {
      fail("lease renewal", ttl.status());
      continue;
    }
    {
      absl::MutexLock lock(&mu_);
      if (rewrite_) next_write = absl::InfinitePast();
      rewrite_ = false;
    }
    if (absl::Now() >= next_write) {
      absl::Status put =
          etcd_->Put(key_, EncodeNodeRecord(options_.record()), lease);
      if (!put.ok()) {
        fail("record write", put);
        continue;
      }
      next_write = absl::Now() + options_.refresh;
      bool first;
      {
        absl::MutexLock lock(&mu_);
        first = lease_ == 0;
        lease_ = lease;
      }
      if (first) spdlog::info("cluster: registered as {}", key_);
    }
    backoff = beat;
    failing = false;
  } while (Wait(backoff));
}

}  // namespace kvd::cluster
