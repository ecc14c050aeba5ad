// Fuzzes every data-path decoder (store/proto/data_wire.h): the first byte
// picks the decoder, the rest is the message. Any input must give a Status or
// a value that re-encodes to exactly the input, never a crash, an
// out-of-bounds read or an allocation beyond the message's own size.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/check.h"
#include "store/proto/data_wire.h"

namespace {

template <typename T>
void RoundTrip(const absl::StatusOr<T>& decoded,
               absl::Span<const uint8_t> input) {
  if (!decoded.ok()) return;
  const std::string again = kvd::wire::Encode(*decoded);
  KVD_CHECK(again.size() == input.size() &&
                std::equal(again.begin(), again.end(),
                           reinterpret_cast<const char*>(input.data())),
            "decoded message does not re-encode to its input");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const absl::Span<const uint8_t> body(data + 1, size - 1);
  namespace w = kvd::wire;
  switch (data[0] % 7) {
    case 0:
      RoundTrip(w::DecodeRequestHeader(body), body);
      break;
    case 1:
      RoundTrip(w::DecodeDataHeader(body), body);
      break;
    case 2:
      RoundTrip(w::DecodeResponseHeader(body), body);
      break;
    case 3:
      RoundTrip(w::DecodePutBody(body), body);
      break;
    case 4:
      RoundTrip(w::DecodeGetBody(body), body);
      break;
    case 5:
      RoundTrip(w::DecodeLookupBody(body), body);
      break;
    case 6: {
      // Results re-encode their messages truncated; check decoding only.
      auto results = w::DecodeResultsBody(body);
      if (results.ok()) {
        KVD_CHECK(results->results.size() * 16 <= body.size(),
                  "more results than bytes");
      }
      break;
    }
  }
  return 0;
}
