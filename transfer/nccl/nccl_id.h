// NcclId: the 128 bytes of an ncclUniqueId, and the text form in which one
// rank hands it to the others out of band (gRPC, etcd, a config file).
//
//   text = "nccl1:" 256 lowercase hex digits ":" 16 lowercase hex digits
//                   (the id bytes)              (xxh3-64 of the id bytes)
//
// Needs no NCCL: everything that carries an id builds without it.
#ifndef KVDEPOT_TRANSFER_NCCL_NCCL_ID_H_
#define KVDEPOT_TRANSFER_NCCL_NCCL_ID_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvd {

inline constexpr size_t kNcclIdBytes = 128;  // NCCL_UNIQUE_ID_BYTES
inline constexpr absl::string_view kNcclIdPrefix = "nccl1:";
// Length of the text form: prefix, id hex, ':', checksum hex.
inline constexpr size_t kNcclIdTextSize =
    kNcclIdPrefix.size() + 2 * kNcclIdBytes + 1 + 16;

struct NcclId {
  std::array<uint8_t, kNcclIdBytes> bytes{};

  bool IsZero() const;
  friend bool operator==(const NcclId&, const NcclId&) = default;
};

// The text form of `id`.
std::string SerializeNcclId(const NcclId& id);

// Parses the text form. kInvalidArgument, naming the offset and the bound,
// for a wrong prefix (or version), length, separator or a character that is
// not a lowercase hex digit, and for an all-zero id (ncclGetUniqueId never
// makes one); kDataLoss when the checksum does not match the id bytes.
absl::StatusOr<NcclId> ParseNcclId(absl::string_view text);

}  // namespace kvd

#endif  // KVDEPOT_TRANSFER_NCCL_NCCL_ID_H_
