#include "compress/kv_tensor.h"

#include <Eigen/Core>
#include <bit>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace kvd::compress {

absl::Status TokenMap::Validate(uint32_t tokens) const {
  if (offsets.size() != position.size() + 1 || offsets.front() != 0 ||
      offsets.back() != members.size()) {
    return absl::DataLossError(absl::StrCat(
        "token map: ", offsets.size(), " offsets for ", position.size(),
        " kept tokens and ", members.size(), " members"));
  }
  for (size_t i = 0; i < position.size(); ++i) {
    if (position[i] >= tokens || (i > 0 && position[i] <= position[i - 1])) {
      return absl::DataLossError(
          absl::StrCat("token map: position[", i, "]=", position[i],
                       " is not ascending below tokens=", tokens));
    }
    if (offsets[i + 1] <= offsets[i] || offsets[i + 1] > members.size()) {
      return absl::DataLossError(absl::StrCat(
          "token map: kept token ", i, " has members [", offsets[i], ", ",
          offsets[i + 1], ") of ", members.size()));
    }
    for (uint32_t m = offsets[i]; m < offsets[i + 1]; ++m) {
      if (members[m] >= tokens ||
          (m > offsets[i] && members[m] <= members[m - 1])) {
        return absl::DataLossError(
            absl::StrCat("token map: member ", m, "=", members[m],
                         " is not ascending below tokens=", tokens));
      }
    }
  }
  return absl::OkStatus();
}

float Fp16ToFloat(uint16_t h) {
  return static_cast<float>(Eigen::numext::bit_cast<Eigen::half>(h));
}

uint16_t FloatToFp16(float f) {
  return Eigen::numext::bit_cast<uint16_t>(Eigen::half(f));
}

float Fp8E4M3ToFloat(uint8_t b) {
  const float sign = (b & 0x80) ? -1.0f : 1.0f;
  const int exp = (b >> 3) & 0xf;
  const int mant = b & 0x7;
  if (exp == 0xf && mant == 0x7) return std::numeric_limits<float>::quiet_NaN();
  if (exp == 0) return sign * std::ldexp(static_cast<float>(mant), -9);
  return sign * std::ldexp(1.0f + mant / 8.0f, exp - 7);
}

uint8_t FloatToFp8E4M3(float f) {
  if (std::isnan(f)) return 0x7f;
  const uint8_t sign = std::signbit(f) ? 0x80 : 0;
  float a = std::min(std::fabs(f), 448.0f);
  if (a < std::ldexp(1.0f, -6)) {  // subnormal: steps of 2^-9
    return sign | static_cast<uint8_t>(std::nearbyint(a * 512.0f));
  }
  int exp;
  float m = std::frexp(a, &exp);  // a = m * 2^exp, m in [0.5, 1)
  int q = static_cast<int>(std::nearbyint((m * 2.0f - 1.0f) * 8.0f));
  int e = exp - 1 + 7;
  if (q == 8) {
    q = 0;
    ++e;
  }
  if (e > 15 || (e == 15 && q == 7)) return sign | 0x7e;  // saturate to 448
  return sign | static_cast<uint8_t>(e << 3) | static_cast<uint8_t>(q);
}

namespace {

// Element-wise conversion of 16-bit encodings, read and written unaligned.
template <float (*kToFloat)(uint16_t)>
void Widen16(const uint8_t* src, size_t count, float* dst) {
  for (size_t i = 0; i < count; ++i) {
    uint16_t x;
    std::memcpy(&x, src + 2 * i, 2);
    dst[i] = kToFloat(x);
  }
}

template <uint16_t (*kFromFloat)(float)>
void Narrow16(const float* src, size_t count, uint8_t* dst) {
  for (size_t i = 0; i < count; ++i) {
    const uint16_t x = kFromFloat(src[i]);
    std::memcpy(dst + 2 * i, &x, 2);
  }
}

}  // namespace

void DTypeToFloat(DType dtype, const uint8_t* src, size_t count, float* dst) {
  switch (dtype) {
    case DType::kFp32:
      std::memcpy(dst, src, count * sizeof(float));
      return;
    case DType::kBf16:
      return Widen16<Bf16ToFloat>(src, count, dst);
    case DType::kFp16:
      return Widen16<Fp16ToFloat>(src, count, dst);
    case DType::kFp8E4M3:
      for (size_t i = 0; i < count; ++i) dst[i] = Fp8E4M3ToFloat(src[i]);
      return;
  }
}

void FloatToDType(DType dtype, const float* src, size_t count, uint8_t* dst) {
  switch (dtype) {
    case DType::kFp32:
      std::memcpy(dst, src, count * sizeof(float));
      return;
    case DType::kBf16:
      return Narrow16<FloatToBf16>(src, count, dst);
    case DType::kFp16:
      return Narrow16<FloatToFp16>(src, count, dst);
    case DType::kFp8E4M3:
      for (size_t i = 0; i < count; ++i) dst[i] = FloatToFp8E4M3(src[i]);
      return;
  }
}

}  // namespace kvd::compress
