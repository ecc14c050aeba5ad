// The progress display of a drain, shared by `kvdepotctl drain` (make the
// node's chunks durable) and `kvdepotctl cluster drain NODE` (move them to
// their owners): a bar rewritten in place on a terminal, one line per
// message otherwise, JSON Lines with --json.
#ifndef KVDEPOT_STORE_CLI_DRAIN_COMMAND_H_
#define KVDEPOT_STORE_CLI_DRAIN_COMMAND_H_

#include "absl/status/statusor.h"
#include "store/cli/control_client.h"
#include "store/proto/kvdepot.pb.h"

namespace kvd {

// Runs the drain and shows its progress on stdout; the last message (done
// is false if the stream ended early without an error).
absl::StatusOr<kvdepot::v1::DrainProgress> ShowDrain(
    ControlClient& client, const kvdepot::v1::DrainRequest& request, bool json);

}  // namespace kvd

#endif  // KVDEPOT_STORE_CLI_DRAIN_COMMAND_H_
