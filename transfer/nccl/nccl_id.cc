#include "transfer/nccl/nccl_id.h"

#include <cstdint>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "core/chunk_format.h"

namespace kvd {
namespace {

constexpr char kHex[] = "0123456789abcdef";

void AppendHex(uint64_t value, int digits, std::string* out) {
  for (int i = digits - 1; i >= 0; --i) {
    out->push_back(kHex[(value >> (4 * i)) & 0xf]);
  }
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Reads `digits` hex digits of `text` at `offset`.
absl::StatusOr<uint64_t> ReadHex(absl::string_view text, size_t offset,
                                 int digits) {
  uint64_t value = 0;
  for (int i = 0; i < digits; ++i) {
    const char c = text[offset + i];
    const int v = HexValue(c);
    if (v < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "nccl id text has ",
          (c >= 0x20 && c < 0x7f)
              ? absl::StrCat("'", std::string(1, c), "'")
              : absl::StrCat("byte 0x", absl::Hex(c & 0xff)),
          " at offset ", offset + i, ", expected a lowercase hex digit"));
    }
    value = value << 4 | static_cast<uint64_t>(v);
  }
  return value;
}

uint64_t IdChecksum(const NcclId& id) {
  return Checksum64(absl::MakeConstSpan(id.bytes));
}

}  // namespace

bool NcclId::IsZero() const {
  for (const uint8_t b : bytes) {
    if (b != 0) return false;
  }
  return true;
}

std::string SerializeNcclId(const NcclId& id) {
  std::string out(kNcclIdPrefix);
  out.reserve(kNcclIdTextSize);
  for (const uint8_t b : id.bytes) AppendHex(b, 2, &out);
  out.push_back(':');
  AppendHex(IdChecksum(id), 16, &out);
  return out;
}

absl::StatusOr<NcclId> ParseNcclId(absl::string_view text) {
  if (!absl::StartsWith(text, kNcclIdPrefix)) {
    return absl::InvalidArgumentError(
        absl::StrCat("nccl id text does not start with \"", kNcclIdPrefix,
                     "\" (an unknown version or not an nccl id)"));
  }
  if (text.size() != kNcclIdTextSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("nccl id text has ", text.size(), " characters, expected ",
                     kNcclIdTextSize));
  }
  const size_t sep = kNcclIdPrefix.size() + 2 * kNcclIdBytes;
  if (text[sep] != ':') {
    return absl::InvalidArgumentError(
        absl::StrCat("nccl id text has no ':' at offset ", sep,
                     " between the id and its checksum"));
  }
  NcclId id;
  for (size_t i = 0; i < kNcclIdBytes; ++i) {
    absl::StatusOr<uint64_t> b = ReadHex(text, kNcclIdPrefix.size() + 2 * i, 2);
    if (!b.ok()) return b.status();
    id.bytes[i] = static_cast<uint8_t>(*b);
  }
  absl::StatusOr<uint64_t> sum = ReadHex(text, sep + 1, 16);
  if (!sum.ok()) return sum.status();
  const uint64_t actual = IdChecksum(id);
  if (*sum != actual) {
    return absl::DataLossError(
        absl::StrCat("nccl id checksum 0x", absl::Hex(*sum, absl::kZeroPad16),
                     " does not match its bytes (0x",
                     absl::Hex(actual, absl::kZeroPad16), ")"));
  }
  if (id.IsZero()) {
    return absl::InvalidArgumentError(
        "nccl id is all zero: ncclGetUniqueId never makes one");
  }
  return id;
}

}  // namespace kvd
