// An in-process Transport: peers are other InProc transports of the same
// process, found by address; bytes move by memcpy on the progress threads.
// It keeps every contract of transfer/transport.h (ordering per peer,
// completion on the progress thread, one-sided access only inside memory the
// target registered, kUnavailable after the peer is destroyed), so the node
// and client run against it in tests that need no network, and the transport
// contract suite checks it beside UCX.
#ifndef KVDEPOT_TRANSFER_INPROC_INPROC_TRANSPORT_H_
#define KVDEPOT_TRANSFER_INPROC_INPROC_TRANSPORT_H_

#include <memory>

#include "transfer/transport.h"

namespace kvd {

std::unique_ptr<Transport> CreateInProcTransport();

}  // namespace kvd

#endif  // KVDEPOT_TRANSFER_INPROC_INPROC_TRANSPORT_H_
