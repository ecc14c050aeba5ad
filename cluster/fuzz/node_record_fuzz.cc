// Fuzzes the membership record decoder (cluster/membership.h), which reads
// whatever is stored under /kvdepot/<cluster>/nodes/ in etcd: the first byte
// is the length of the id (the key's last segment), the rest is the value.
// Any input must give a Status or a record that passes the same checks again
// after a round trip through EncodeNodeRecord.
#include <cstddef>
#include <cstdint>
#include <string>

#include "cluster/membership.h"
#include "core/check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t id_size = std::min<size_t>(data[0], size - 1);
  const std::string id(reinterpret_cast<const char*>(data + 1), id_size);
  const std::string value(reinterpret_cast<const char*>(data + 1 + id_size),
                          size - 1 - id_size);
  absl::StatusOr<kvdepot::v1::NodeRecord> record =
      kvd::cluster::DecodeNodeRecord(id, value);
  if (!record.ok()) return 0;
  absl::StatusOr<kvdepot::v1::NodeRecord> again =
      kvd::cluster::DecodeNodeRecord(id,
                                     kvd::cluster::EncodeNodeRecord(*record));
  KVD_CHECK(
      again.ok() && again->SerializeAsString() == record->SerializeAsString(),
      "a valid record does not survive a round trip");
  return 0;
}
