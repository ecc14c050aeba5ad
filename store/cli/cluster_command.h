// `kvdepotctl cluster ...`: the cluster as its membership in etcd shows it
// (DESIGN.md §3.6), checked against the nodes themselves.
//
//   kvdepotctl cluster --etcd HOST:PORT[,..] --cluster NAME status
//   kvdepotctl cluster ... where KEY [--replicas R]
//   kvdepotctl cluster ... prefix TOKENS-FILE [--model smollm2|llama3]
//       [--replicas R] [--tenant-salt S]
//   kvdepotctl cluster ... drain NODE [--replicas R]
// (the cluster options may also follow the subcommand)
//
// status   every registered node: address, health (its record and a live
//          Status call), placement weight and share of the keys, chunks,
//          tier usage from its last heartbeat, and the placement it uses
//          (fingerprint of the node set; equal when nodes agree, JSON also
//          has the number of placement changes it has seen, its epoch).
// where    the R owners of KEY by placement, and for each the tier holding
//          the chunk (admin Inspect), "absent" or "unreachable".
// prefix   the chunk keys of a prompt (token ids in TOKENS-FILE, separated
//          by white space or commas) and how much of it is cached: the
//          longest prefix whose every chunk some owner holds, and where.
// drain    NODE stops taking writes and announces it is draining (clients
//          then place keys on the other nodes and read NODE's chunks from
//          it until they moved); it copies every chunk to its R owners among
//          the other nodes, with progress as `kvdepotctl drain` shows it.
//          Then the node can be stopped; it stays registered as draining.
//
// where, prefix and drain need the admin token (--token,
// $KVDEPOT_ADMIN_TOKEN or $KVDEPOT_TOKEN). --json prints one JSON object
// (drain: JSON Lines). Exit codes: 0 success (also for a prompt with nothing
// cached); 1 drain failed or left chunks; 2 usage error; 3 etcd (or, for
// drain, the node) unreachable.
#ifndef KVDEPOT_STORE_CLI_CLUSTER_COMMAND_H_
#define KVDEPOT_STORE_CLI_CLUSTER_COMMAND_H_

#include <string>

#include "CLI/CLI.hpp"

namespace kvd {

// Adds `cluster` (status, where, prefix, drain) to `app`. `token`, `timeout`
// and `json` are the app's globals, read when the subcommand runs; it runs from
// its parse callback and stores its exit code in `*exit_code` (initialized
// to -1 by the caller).
void AddClusterCommand(CLI::App& app, const std::string* token,
                       const std::string* timeout, const bool* json,
                       int* exit_code);

}  // namespace kvd

#endif  // KVDEPOT_STORE_CLI_CLUSTER_COMMAND_H_
