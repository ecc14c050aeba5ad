// ControlService::Drain: stops new writes, then either makes every chunk
// durable on SSD (a node that will restart) or, in cluster mode with
// move_to_owners, copies every chunk to its owners among the other nodes (a
// node that leaves). Progress is streamed throughout.
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "cluster/placement.h"
#include "spdlog/spdlog.h"
#include "store/proto/grpc_status.h"
#include "store/server/control_service.h"

namespace kvd {
namespace {

namespace pb = kvdepot::v1;

// Progress goes out at most this often (and always at the start and end).
constexpr absl::Duration kDrainProgressInterval = absl::Milliseconds(200);

}  // namespace

// Drain's progress messages.
class DrainStream {
 public:
  DrainStream(::grpc::ServerContext* context,
              ::grpc::ServerWriter<pb::DrainProgress>* writer, Clock* clock)
      : context_(context), writer_(writer), clock_(clock) {}

  // Sends `p` unless one went out less than kDrainProgressInterval ago
  // (`force` sends anyway); false when the caller went away.
  bool Send(const pb::DrainProgress& p, bool force = false) {
    if (context_ != nullptr && context_->IsCancelled()) return false;
    const absl::Time now = clock_->Now();
    if (!force && now - last_sent_ < kDrainProgressInterval) return true;
    last_sent_ = now;
    return writer_->Write(p);
  }

 private:
  ::grpc::ServerContext* const context_;
  ::grpc::ServerWriter<pb::DrainProgress>* const writer_;
  Clock* const clock_;
  absl::Time last_sent_ = absl::InfinitePast();
};

namespace {

absl::Status Cancelled(const pb::DrainProgress& progress) {
  return absl::CancelledError(
      absl::StrCat("drain cancelled after ", progress.chunks_done(), " of ",
                   progress.chunks_total(), " chunks; writes stay stopped"));
}

}  // namespace

::grpc::Status ControlService::Drain(
    ::grpc::ServerContext* context, const pb::DrainRequest* request,
    ::grpc::ServerWriter<pb::DrainProgress>* writer) {
  absl::Status allowed = Authorize(context, Access::kAdmin, "Control.Drain");
  if (!allowed.ok()) return ToGrpcStatus(allowed);
  if (request->move_to_owners()) {
    if (!move_chunks_) {
      return ToGrpcStatus(absl::FailedPreconditionError(
          "move_to_owners needs a node in cluster mode; a standalone node "
          "can only make its chunks durable (plain Drain)"));
    }
    if (request->replicas() > cluster::Placement::kMaxReplicas) {
      return ToGrpcStatus(absl::InvalidArgumentError(
          absl::StrCat("replicas=", request->replicas(), " is above ",
                       cluster::Placement::kMaxReplicas)));
    }
  }
  if (drain_running_.exchange(true)) {
    return ToGrpcStatus(absl::FailedPreconditionError(
        "a drain is already running on this node"));
  }
  absl::Cleanup done_running = [this] { drain_running_.store(false); };
  const std::string peer = context != nullptr ? context->peer() : "unknown";

  engine_->StopWrites();
  SetHealth(pb::HEALTH_DRAINING);
  SetHealthDetail("drained: new chunks are refused");
  DrainStream stream(context, writer, clock_);
  pb::DrainProgress progress;
  absl::Status s = request->move_to_owners()
                       ? MoveToOwners(peer, std::max(1u, request->replicas()),
                                      &progress, stream)
                       : MakeDurable(peer, &progress, stream);
  if (absl::IsCancelled(s)) {
    spdlog::warn("Control.Drain from {}: {}", peer, s.ToString());
    return ToGrpcStatus(s);
  }
  progress.set_done(true);
  stream.Send(progress, /*force=*/true);
  return ToGrpcStatus(absl::OkStatus());
}

absl::Status ControlService::MakeDurable(const std::string& peer,
                                         pb::DrainProgress* progress,
                                         DrainStream& stream) {
  if (!engine_->Stats().tier_enabled[static_cast<int>(TierKind::kSsd)]) {
    spdlog::warn(
        "Control.Drain from {}: no SSD tier; writes stopped, "
        "nothing made durable",
        peer);
    progress->set_durable(false);
    progress->set_detail(
        "no SSD tier: nothing can be made durable; new writes are refused");
    return absl::OkStatus();
  }

  const std::vector<ChunkExtent> volatile_chunks = engine_->VolatileChunks();
  uint64_t bytes_total = 0;
  for (const ChunkExtent& c : volatile_chunks) bytes_total += c.object_bytes;
  progress->set_chunks_total(volatile_chunks.size());
  progress->set_bytes_total(bytes_total);
  spdlog::info(
      "Control.Drain from {}: writes stopped; {} chunks ({} bytes) "
      "to make durable",
      peer, volatile_chunks.size(), bytes_total);
  if (!stream.Send(*progress, /*force=*/true)) return Cancelled(*progress);

  absl::Status first_error;
  size_t i = 0;
  for (; i < volatile_chunks.size(); ++i) {
    absl::Status s = engine_->MakeDurable(volatile_chunks[i].key);
    if (s.ok() || absl::IsNotFound(s)) {  // NotFound: removed meanwhile
      progress->set_chunks_done(progress->chunks_done() + 1);
      progress->set_bytes_done(progress->bytes_done() +
                               volatile_chunks[i].object_bytes);
    } else {
      progress->set_chunks_failed(progress->chunks_failed() + 1);
      if (first_error.ok()) first_error = s;
      // A full SSD tier stays full: the rest would fail the same way.
      if (absl::IsResourceExhausted(s)) {
        ++i;
        break;
      }
    }
    if (!stream.Send(*progress)) return Cancelled(*progress);
  }
  progress->set_chunks_failed(progress->chunks_failed() +
                              (volatile_chunks.size() - i));
  absl::Status synced = engine_->Sync();
  if (first_error.ok() && !synced.ok()) first_error = synced;
  const bool durable = first_error.ok() && engine_->VolatileChunks().empty();
  progress->set_durable(durable);
  if (durable) {
    progress->set_detail("every chunk is durable; new writes are refused");
  } else if (!first_error.ok()) {
    progress->set_detail(
        absl::StrCat(progress->chunks_failed(),
                     " chunks are not durable: ", first_error.ToString()));
  } else {
    progress->set_detail("some chunks are not durable yet; run Drain again");
  }
  spdlog::info(
      "Control.Drain from {}: {} of {} chunks made durable, {} failed; {}",
      peer, progress->chunks_done(), volatile_chunks.size(),
      progress->chunks_failed(), progress->detail());
  return absl::OkStatus();
}

absl::Status ControlService::MoveToOwners(const std::string& peer, int replicas,
                                          pb::DrainProgress* progress,
                                          DrainStream& stream) {
  spdlog::info(
      "Control.Drain from {}: writes stopped; moving every chunk to its {} "
      "owner(s) among the other nodes",
      peer, replicas);
  absl::Status s =
      move_chunks_(replicas, progress, [&] { return stream.Send(*progress); });
  if (absl::IsCancelled(s)) return Cancelled(*progress);
  const bool moved = s.ok() && progress->chunks_failed() == 0;
  progress->set_moved(moved);
  if (moved) {
    progress->set_detail(
        "every chunk is on its owners; the node can be stopped");
  } else if (!s.ok()) {
    progress->set_detail(absl::StrCat("move failed: ", s.ToString()));
  } else {
    progress->set_detail(
        absl::StrCat(progress->chunks_failed(),
                     " chunks could not be moved; run the drain again"));
  }
  SetHealthDetail(moved ? "drained: chunks moved to their owners"
                        : "draining: " + progress->detail());
  spdlog::info("Control.Drain from {}: {} of {} chunks moved, {} failed; {}",
               peer, progress->chunks_done(), progress->chunks_total(),
               progress->chunks_failed(), progress->detail());
  return absl::OkStatus();
}

}  // namespace kvd
