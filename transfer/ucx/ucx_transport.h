// The UCX backend of Transport (DESIGN.md §3.4): one UCP context and one
// worker, driven by the transport's own progress thread, which sleeps on the
// worker's wake-up fd (ucp_worker_arm + epoll) whenever there is nothing to
// progress: an idle transport uses no CPU.
//
// Bytes move with UCP active messages (rendezvous for large payloads, which
// UCX runs as a one-sided get where the transport has one natively) and with
// ucp_put_nbx / ucp_get_nbx on registered memory. Which UCX transports carry
// them is UCX's choice among those allowed by `tls` (UCX_TLS syntax): "tcp"
// for loopback TCP, "posix,cma,self" for shared memory, "" for UCX's default
// (verbs where a NIC exists, shared memory on one host, TCP otherwise).
// Endpoints use UCP_ERR_HANDLING_MODE_PEER when no shared-memory transport
// is allowed, so a dead peer fails its operations instead of hanging them;
// UCX 1.13's shared-memory transports cannot report a dead peer, so with
// them (and with UCX's default list) callers bound operations by deadlines
// (TransportInfo::detects_peer_failure says which).
#ifndef KVDEPOT_TRANSFER_UCX_UCX_TRANSPORT_H_
#define KVDEPOT_TRANSFER_UCX_UCX_TRANSPORT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "transfer/transport.h"

namespace kvd {

struct UcxOptions {
  std::string tls;          // UCX_TLS; empty: UCX's default (or the env)
  std::string net_devices;  // UCX_NET_DEVICES; empty: all
  std::string name = "kvdepot";
};

// Whether endpoints over this UCX_TLS list (split at commas; "default" for
// UCX's own list) ask UCX for peer failure handling. Two peers connect only
// when they agree, so a client compares this with the node's list.
bool UcxDetectsPeerFailure(const std::vector<std::string>& transports);

// kUnavailable when UCX cannot start (no usable transport among `tls`).
absl::StatusOr<std::unique_ptr<Transport>> CreateUcxTransport(
    const UcxOptions& options);

}  // namespace kvd

#endif  // KVDEPOT_TRANSFER_UCX_UCX_TRANSPORT_H_
