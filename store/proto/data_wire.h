// The data-path protocol between store/client and kvdepot-node over a
// Transport (DESIGN.md §3.4). Control (the Hello handshake that opens a
// session) is gRPC; everything here is the per-chunk hot path.
//
// Messages (Transport message types):
//   kRequest   client -> node  header: RequestHeader; payload: the request
//                              body (PutBody, GetBody or LookupBody)
//   kPutData   client -> node  header: DataHeader; payload: one chunk object
//                              (active-message sessions only)
//   kResponse  node -> client  header: ResponseHeader; payload: ResultsBody
//   kGetData   node -> client  header: DataHeader; payload: one item's bytes
//                              (active-message sessions only)
//
// Every session moves chunk bytes one way, fixed at Hello:
//   RMA (shared memory, verbs): Put names the client's buffer address + rkey
//     per key; the node reads it with one-sided get. Get names destination
//     addresses; the node writes them with one-sided put, flushes, then acks.
//   AM (tcp): after a Put request, the client sends each object as a kPutData
//     payload, which the node receives (rendezvous) straight into the space it
//     reserved; for a Get the node sends each item as a kGetData payload,
//     which the client receives straight into its destination.
// Either way the node answers every request with one kResponse carrying a
// status per key, in request order.
//
// Encoding: little-endian fixed-width integers, no padding. Decoders validate
// every count, size and length against the bounds below before allocating
// and name the offending field in a kInvalidArgument status.
#ifndef KVDEPOT_STORE_PROTO_DATA_WIRE_H_
#define KVDEPOT_STORE_PROTO_DATA_WIRE_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/chunk_format.h"
#include "core/chunk_key.h"

namespace kvd::wire {

inline constexpr uint32_t kProtocolVersion = 1;
inline constexpr uint16_t kRequest = 1;
inline constexpr uint16_t kPutData = 2;
inline constexpr uint16_t kResponse = 3;
inline constexpr uint16_t kGetData = 4;

// Bounds every decoder enforces.
inline constexpr uint32_t kMaxBatchKeys = 4096;
inline constexpr uint32_t kMaxRangesPerItem = 1u << 20;  // explicit Get ranges
inline constexpr uint64_t kMaxObjectBytes = 1ull << 32;  // exclusive
inline constexpr uint32_t kMaxRkeyBytes = 4096;
inline constexpr uint32_t kMaxMessageBytes = 512;  // per-key error text

using SessionId = std::array<uint8_t, 16>;

enum class Op : uint8_t { kPut = 1, kGet = 2, kLookup = 3 };

struct RequestHeader {
  SessionId session{};
  uint64_t request_id = 0;
  Op op = Op::kPut;
};

struct DataHeader {
  SessionId session{};  // zero in node -> client messages
  uint64_t request_id = 0;
  uint32_t index = 0;  // the item's position in its request
};

struct ResponseHeader {
  uint64_t request_id = 0;
};

struct PutItem {
  ChunkKey key;
  uint64_t size = 0;
  uint64_t address = 0;  // RMA: where the object is in the client's buffer
};
struct PutBody {
  std::string rkey;  // RMA: the client's registration; empty for AM
  std::vector<PutItem> items;
};

struct GetItem {
  ChunkKey key;
  bool whole_object = true;
  ChunkSelection selection;
  uint64_t address = 0;   // RMA: destination in the client's buffer
  uint64_t capacity = 0;  // bytes the destination holds
};
struct GetBody {
  std::string rkey;  // RMA only
  std::vector<GetItem> items;
};

struct LookupBody {
  std::vector<ChunkKey> keys;
};

// One per item: a status, and for OK the bytes moved (Get), or for Lookup a
// single result holding the present-prefix length.
struct Result {
  absl::StatusCode code = absl::StatusCode::kOk;
  uint64_t value = 0;
  std::string message;  // truncated to kMaxMessageBytes
};
struct ResultsBody {
  std::vector<Result> results;
};

std::string Encode(const RequestHeader& h);
std::string Encode(const DataHeader& h);
std::string Encode(const ResponseHeader& h);
std::string Encode(const PutBody& b);
std::string Encode(const GetBody& b);
std::string Encode(const LookupBody& b);
std::string Encode(const ResultsBody& b);

absl::StatusOr<RequestHeader> DecodeRequestHeader(
    absl::Span<const uint8_t> bytes);
absl::StatusOr<DataHeader> DecodeDataHeader(absl::Span<const uint8_t> bytes);
absl::StatusOr<ResponseHeader> DecodeResponseHeader(
    absl::Span<const uint8_t> bytes);
absl::StatusOr<PutBody> DecodePutBody(absl::Span<const uint8_t> bytes);
absl::StatusOr<GetBody> DecodeGetBody(absl::Span<const uint8_t> bytes);
absl::StatusOr<LookupBody> DecodeLookupBody(absl::Span<const uint8_t> bytes);
absl::StatusOr<ResultsBody> DecodeResultsBody(absl::Span<const uint8_t> bytes);

// This host's identity for HelloRequest/Response.host_id (same-host
// transports): the machine id when /etc/machine-id exists, else the host name.
std::string LocalHostId();

// A Result from a status (value 0 unless OK) and back.
Result ResultOf(const absl::Status& status, uint64_t value = 0);
absl::Status StatusOf(const Result& result);

}  // namespace kvd::wire

#endif  // KVDEPOT_STORE_PROTO_DATA_WIRE_H_
