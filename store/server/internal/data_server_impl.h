// DataServer::Impl, the state and handlers behind store/server/data_server.h,
// shared by its two sources: data_server.cc (start, stop, sessions, Hello,
// deadlines) and data_server_requests.cc (put, get and lookup requests).
#ifndef KVDEPOT_STORE_SERVER_INTERNAL_DATA_SERVER_IMPL_H_
#define KVDEPOT_STORE_SERVER_INTERNAL_DATA_SERVER_IMPL_H_

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "core/thread_pool.h"
#include "store/proto/data_wire.h"
#include "store/server/data_server.h"

namespace kvd {

class DataServer::Impl {
 public:
  using DataProtocol = kvdepot::v1::DataProtocol;
  using Op = wire::Op;
  using SessionId = wire::SessionId;

  Impl(StoreEngine* engine, std::unique_ptr<Transport> transport,
       const DataServerOptions& options)
      : engine_(engine),
        transport_(std::move(transport)),
        options_(options),
        info_(transport_->info()),
        pool_(std::make_unique<ThreadPool>(options.engine_threads)) {}

  absl::Status Start(MetricsRegistry* metrics);
  void Shutdown();
  absl::StatusOr<kvdepot::v1::HelloResponse> Hello(
      const kvdepot::v1::HelloRequest& request, absl::string_view peer);
  const TransportInfo& info() const { return info_; }
  std::string worker_address() const { return transport_->address(); }

 private:
  // Put data held for requests not yet reserved, across all sessions.
  static constexpr size_t kMaxEarlyPayloads = 4 * wire::kMaxBatchKeys;

  static std::string SessionKey(const SessionId& id) {
    return std::string(reinterpret_cast<const char*>(id.data()), id.size());
  }
  static absl::string_view OpName(Op op);

  struct Session {
    PeerId peer = 0;
    DataProtocol protocol = kvdepot::v1::DATA_PROTOCOL_AM;
    absl::Time last_seen;
  };

  enum class ItemState { kEngine, kWaitingData, kTransferring, kDone };

  struct Item {
    ChunkKey key;
    uint64_t size = 0;     // put: object bytes; get: selected bytes
    uint64_t address = 0;  // RMA: the client's buffer
    uint64_t capacity = 0;
    bool whole_object = true;
    ChunkSelection selection;
    ItemState state = ItemState::kEngine;
    wire::Result result;
    std::optional<PutReservation> reservation;
    std::optional<PinnedChunk> pinned;
    std::vector<ByteRange> ranges;
    std::vector<uint8_t> gathered;  // AM get of a selection
    int transfers = 0;              // one-sided ops still in flight
    absl::Status transfer_status;
  };

  struct Request {
    SessionId session;
    PeerId peer = 0;
    DataProtocol protocol = kvdepot::v1::DATA_PROTOCOL_AM;
    uint64_t id = 0;
    Op op = Op::kPut;
    std::string rkey;
    std::vector<Item> items;
    size_t remaining = 0;
    absl::Time start, deadline;
  };

  // One op's metrics, resolved once at Start: the hot path only adds.
  struct OpMetrics {
    Histogram* seconds = nullptr;
    Counter* ok = nullptr;
    Counter* miss = nullptr;
    Counter* error = nullptr;
    Counter* bytes = nullptr;
  };
  struct Metrics {
    OpMetrics ops[3];  // by Op: put, get, lookup
    Counter* unknown_session = nullptr;
    Counter* timeouts = nullptr;
    Gauge* sessions = nullptr;
  };
  OpMetrics& MetricsOf(Op op) { return metrics_.ops[static_cast<int>(op) - 1]; }
  absl::Status RegisterMetrics(MetricsRegistry* registry);

  // Loop-thread handlers.
  void OnRequest(absl::Span<const uint8_t> header, IncomingPayload payload);
  void OnPutData(absl::Span<const uint8_t> header, IncomingPayload payload);
  void OnBody(const wire::RequestHeader& h, const Session& s,
              std::vector<uint8_t> body);
  void StartPut(Request* r, wire::PutBody body);
  void StartGet(Request* r, wire::GetBody body);
  void AnswerLookup(const wire::RequestHeader& h, const Session& s,
                    wire::LookupBody body);
  void Reserved(Request* r, size_t i);
  void Received(Request* r, size_t i, absl::Status status);
  void Pinned(Request* r, size_t i);
  void Finish(Request* r, size_t i, const absl::Status& status,
              uint64_t value = 0);
  void Respond(Request* r);
  // The kPutData payload for item i that arrived before its reservation.
  std::optional<IncomingPayload> TakeEarlyData(const Request& r, size_t i);
  void ReceivePutData(Request* r, size_t i, IncomingPayload payload);
  void FailRequest(Request* r, const absl::Status& status);
  static absl::Status CheckRkey(const Request& r, const std::string& rkey);
  void SendResults(PeerId peer, uint64_t request_id,
                   const wire::ResultsBody& results);
  void Sweep();
  void EndSession(const SessionId& id, absl::string_view why);
  std::optional<Session> FindSession(const SessionId& id, bool touch);
  // Counts one key's result: ok, miss (kNotFound) or error.
  void CountResult(Op op, absl::StatusCode code);

  StoreEngine* const engine_;
  std::unique_ptr<Transport> transport_;
  const DataServerOptions options_;
  const TransportInfo info_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<Registration> pool_registration_;
  Metrics metrics_;
  std::unique_ptr<MetricsRegistry> own_metrics_;  // when the node gave none

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Session> sessions_ ABSL_GUARDED_BY(mu_);

  // Loop-thread state.
  absl::flat_hash_map<std::pair<std::string, uint64_t>,
                      std::unique_ptr<Request>>
      requests_;
  // kPutData that arrived before its request, by (session, request, index).
  struct Early {
    absl::Time deadline;
    absl::flat_hash_map<uint32_t, IncomingPayload> payloads;
  };
  absl::flat_hash_map<std::pair<std::string, uint64_t>, Early> early_;
  size_t early_payloads_ = 0;  // across early_
  // Per session, the highest request id seen, and requests whose body is
  // still arriving: data for an id below the highest and not pending belongs
  // to a request already answered.
  absl::flat_hash_map<std::string, uint64_t> highest_request_;
  absl::flat_hash_set<std::pair<std::string, uint64_t>> bodies_pending_;
  bool shutting_down_ = false;
};

}  // namespace kvd

#endif  // KVDEPOT_STORE_SERVER_INTERNAL_DATA_SERVER_IMPL_H_
