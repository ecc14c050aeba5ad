#include "compress/codec.h"

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace kvd::compress {

absl::Status ExpectShape(const HeadTensor& t, uint32_t heads, uint32_t tokens,
                         uint32_t dim, const char* what) {
  if (t.heads == heads && t.tokens == tokens && t.dim == dim &&
      t.size() == size_t{heads} * tokens * dim) {
    return absl::OkStatus();
  }
  return absl::DataLossError(
      absl::StrCat(what, " is [", t.heads, "][", t.tokens, "][", t.dim,
                   "], expected [", heads, "][", tokens, "][", dim, "]"));
}

void PutTokens(DType dtype, const HeadTensor& t, uint32_t begin, uint32_t count,
               ByteWriter& out) {
  const size_t row = size_t{count} * t.dim;
  for (uint32_t h = 0; h < t.heads; ++h) {
    FloatToDType(dtype, t.Row(h, begin), row,
                 out.Extend(row * DTypeSize(dtype)));
  }
}

absl::Status GetTokens(DType dtype, ByteReader& in, uint32_t begin,
                       uint32_t count, HeadTensor& t, const char* what) {
  const size_t row = size_t{count} * t.dim;
  for (uint32_t h = 0; h < t.heads; ++h) {
    const uint8_t* p;
    KVD_RETURN_IF_ERROR(in.Take(what, row * DTypeSize(dtype), &p));
    DTypeToFloat(dtype, p, row, t.Row(h, begin));
  }
  return absl::OkStatus();
}

}  // namespace kvd::compress
