// DataServer: the node's side of the data path (DESIGN.md §3.4 and the
// protocol in store/proto/data_wire.h) over a Transport.
//
// Hello (from the gRPC control service, after the token check) opens a
// session: the server connects to the client's transport address, picks the
// session's byte-moving protocol, and returns its own address and a random
// 16-byte session id. Requests name their session; a request for an unknown
// session is dropped and counted.
//
// Protocol choice (DataServerOptions::protocol = kAuto): one-sided RMA when
// the bytes can move natively one-sided (client on the same host and the
// transport allows shared memory, or an RDMA NIC is present and allowed);
// active-message rendezvous otherwise (TCP, where UCX emulates RMA slowly).
//
// Threads: all session and request state lives on the transport's progress
// thread; engine calls that may block (reservations that demote to SSD,
// checksum verification, reads that promote from SSD) run on a small pool
// and post their results back. Lookups are answered inline from the index.
//
// Failure: every request has a deadline (request_timeout). A request that
// misses it, or whose client fails, ends its session: the connection is
// closed, which cancels its transfers, and every reservation and pinned
// chunk is released when those cancellations complete; nothing leaks. An
// idle session is closed after session_idle_timeout.
#ifndef KVDEPOT_STORE_SERVER_DATA_SERVER_H_
#define KVDEPOT_STORE_SERVER_DATA_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/metrics.h"
#include "store/engine/store_engine.h"
#include "store/proto/kvdepot.pb.h"
#include "store/server/data_path_handshake.h"
#include "transfer/transport.h"

namespace kvd {

struct DataServerOptions {
  std::string node_id;
  std::string version;
  std::string host_id;  // this host's identity, compared with the client's
  kvdepot::v1::DataProtocol protocol = kvdepot::v1::DATA_PROTOCOL_UNSPECIFIED;
  absl::Duration request_timeout = absl::Seconds(10);
  absl::Duration session_idle_timeout = absl::Minutes(10);
  int engine_threads = 2;
  uint32_t max_sessions = 1024;
};

class DataServer final : public DataPathHandshake {
 public:
  // `engine` and `metrics` (may be null) must outlive the server. The host
  // pool is registered with the transport once, here.
  static absl::StatusOr<std::unique_ptr<DataServer>> Create(
      StoreEngine* engine, std::unique_ptr<Transport> transport,
      const DataServerOptions& options, MetricsRegistry* metrics);
  ~DataServer() override;

  // Opens a session. kInvalidArgument for a bad request (names the field),
  // kFailedPrecondition for a protocol version mismatch, kResourceExhausted
  // beyond max_sessions, kUnavailable when the client's address cannot be
  // reached. Thread-safe.
  absl::StatusOr<kvdepot::v1::HelloResponse> Hello(
      const kvdepot::v1::HelloRequest& request,
      absl::string_view peer) override;

  const TransportInfo& transport_info() const;
  // The transport address clients connect to (what Hello returns).
  std::string worker_address() const;

  class Impl;

 private:
  explicit DataServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvd

#endif  // KVDEPOT_STORE_SERVER_DATA_SERVER_H_
