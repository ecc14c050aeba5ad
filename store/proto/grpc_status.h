// The one adapter between grpc::Status and absl::Status (STYLE.md §3).
//
// Both status spaces share the canonical code numbering (google.rpc.Code),
// so the code maps one to one and the message is kept. Servers return
// ToGrpcStatus(engine_status); clients return FromGrpcStatus(rpc_status),
// so a kUnavailable from a peer stays "retry this call".
#ifndef KVDEPOT_STORE_PROTO_GRPC_STATUS_H_
#define KVDEPOT_STORE_PROTO_GRPC_STATUS_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "grpcpp/support/status.h"

namespace kvd {

// Converts in either direction. FromGrpcStatus prefixes `context` (e.g.
// "Control.Stats on 10.0.0.5:7400") to a non-OK message when it is not empty.
grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status,
                            absl::string_view context = {});

}  // namespace kvd

#endif  // KVDEPOT_STORE_PROTO_GRPC_STATUS_H_
