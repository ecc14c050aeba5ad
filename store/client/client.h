// Client: the engine-side library for one kvdepot-node (DESIGN.md §3.4); a
// ChunkStore (store/client/chunk_store.h), as ClusterClient is for a cluster.
//
//   auto client = Client::Connect({.address = "10.0.0.5:7400",
//                                  .token = token});
//   auto buffer = (*client)->RegisterBuffer(staging);  // once
//   (*client)->PutAsync(keys, objects, [](std::vector<absl::Status> s) {..});
//   std::vector<absl::StatusOr<uint64_t>> got = (*client)->Get(targets);
//   absl::StatusOr<size_t> cached = (*client)->Lookup(prompt_keys);
//
// Connect runs the gRPC Hello handshake (token, version check, transport
// address exchange) and opens a data-path session over the client's own
// Transport (UCX by default). Requests are batched and asynchronous; each
// completes exactly once, from the client's progress thread, with a status
// per key. Blocking wrappers wait for the async call.
//
// Memory: objects to put and get destinations must lie in buffers registered
// with RegisterBuffer when the session uses one-sided RMA (the node reads and
// writes them directly); all spans of one batch must lie in one registered
// buffer. Spans must stay valid until the batch completes.
//
// Failures: a batch that gets no answer within `timeout` completes with
// kUnavailable for every key, and the session is dropped; the next call
// reconnects (Hello again), so a restarted node is picked up transparently.
// After a timed-out Get, the node may still write into its destinations
// until its own request deadline closes the session.
//
// Thread-safe.
#ifndef KVDEPOT_STORE_CLIENT_CLIENT_H_
#define KVDEPOT_STORE_CLIENT_CLIENT_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "core/chunk_format.h"
#include "core/chunk_key.h"
#include "store/client/chunk_store.h"
#include "store/proto/kvdepot.pb.h"
#include "transfer/transport.h"

namespace kvd {

struct ClientOptions {
  std::string address;  // the node's control address, "host:port"
  std::string token;    // the data token (auth.token); may be empty
  // gRPC TLS, as in ControlChannelOptions (store/client/control_channel.h):
  // PEM file paths; all empty means plaintext.
  std::string tls_ca, tls_cert, tls_key;
  std::string tls_server_name;  // checked against the node's certificate
  // The client's transport; default: UCX with `ucx_tls`.
  std::function<absl::StatusOr<std::unique_ptr<Transport>>()> make_transport;
  std::string ucx_tls;  // UCX_TLS for the default transport ("" = UCX's)
  kvdepot::v1::DataProtocol protocol =
      kvdepot::v1::DATA_PROTOCOL_UNSPECIFIED;  // let the node choose
  absl::Duration timeout = absl::Seconds(10);
};

class Client final : public ChunkStore {
 public:
  using PutCallback = std::function<void(std::vector<absl::Status>)>;
  using GetCallback =
      std::function<void(std::vector<absl::StatusOr<uint64_t>>)>;
  using LookupCallback = std::function<void(absl::StatusOr<size_t>)>;

  // Connects and opens a session. kUnauthenticated for a refused token,
  // kUnavailable when the node cannot be reached.
  static absl::StatusOr<std::unique_ptr<Client>> Connect(
      const ClientOptions& options);
  ~Client();

  // Registers memory for zero-copy transfers; it stays registered while the
  // returned handle lives (destroy handles before the client).
  absl::StatusOr<std::unique_ptr<Registration>> RegisterBuffer(
      absl::Span<uint8_t> memory) override;

  void PutAsync(absl::Span<const ChunkKey> keys,
                absl::Span<const absl::Span<const uint8_t>> objects,
                PutCallback done);
  void GetAsync(absl::Span<const GetTarget> targets, GetCallback done);
  void LookupAsync(absl::Span<const ChunkKey> keys, LookupCallback done);

  std::vector<absl::Status> Put(
      absl::Span<const ChunkKey> keys,
      absl::Span<const absl::Span<const uint8_t>> objects) override;
  std::vector<absl::StatusOr<uint64_t>> Get(
      absl::Span<const GetTarget> targets) override;
  absl::StatusOr<size_t> Lookup(absl::Span<const ChunkKey> keys) override;

  // The session's protocol and the node's id (after the latest Hello).
  kvdepot::v1::HelloResponse hello() const;

  class Impl;

 private:
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvd

#endif  // KVDEPOT_STORE_CLIENT_CLIENT_H_
