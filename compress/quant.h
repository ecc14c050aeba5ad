// KIVI-style asymmetric quantization (COMPRESSION.md "KIVI") and fp8, as the
// terminal tensor stage of a chain:
//
//   quant(k=int4/channel,v=int4/token,g=32,window=0)
//
// k / v: intB/channel (one scale and minimum per channel per group of g
// tokens, KIVI's choice for keys), intB/token (per token, per group of g
// channels, KIVI's choice for values), or fp8 (e4m3 with one scale per
// token), B in {8, 4, 2}. window: the last `window` tokens stay in the
// namespace dtype (KIVI's full-precision residual). Scales and minimums are
// fp16. Codes are bit-packed, or entropy coded per (tensor, channel) when
// the chain continues with `rans` (CacheGen's idea).
//
// Section layout: u32 shape {k heads, tokens, dim, v heads, tokens, dim},
// then for K and V: params (fp16 pairs), codes, window tokens.
#ifndef KVDEPOT_COMPRESS_QUANT_H_
#define KVDEPOT_COMPRESS_QUANT_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "compress/codec.h"
#include "compress/codec_spec.h"

namespace kvd::compress {

enum class QuantMode : uint8_t { kPerChannel, kPerToken, kFp8 };

struct QuantFormat {
  QuantMode mode = QuantMode::kPerChannel;
  uint32_t bits = 4;  // 8, 4 or 2; 8 for fp8

  std::string Name() const;  // "int4/channel", "fp8"
};

struct QuantParams {
  QuantFormat k{QuantMode::kPerChannel, 4};
  QuantFormat v{QuantMode::kPerToken, 4};
  uint32_t group = 32;
  uint32_t window = 0;
  bool entropy = false;  // codes entropy coded (`|rans`) instead of packed
};

// Parses the stage's parameters; kInvalidArgument names the bad one.
absl::StatusOr<QuantParams> ParseQuantParams(const StageSpec& spec);

// Bytes QuantizeTensor writes without entropy coding: the fp16 parameters
// (ParamBytes) followed by the packed codes.
size_t QuantParamBytes(const QuantFormat& f, uint32_t group, uint32_t heads,
                       uint32_t tokens, uint32_t dim);
size_t QuantizedTensorBytes(const QuantFormat& f, uint32_t group,
                            uint32_t heads, uint32_t tokens, uint32_t dim);

// Quantizes one tensor [heads][tokens][dim] (the first `tokens` rows of
// each head) into `out`, and the inverse. Exposed for the benchmark and the
// CUDA kernels' cross-check; the chain uses QuantStage.
absl::Status QuantizeTensor(const QuantFormat& f, uint32_t group, bool entropy,
                            const HeadTensor& x, uint32_t tokens,
                            ByteWriter& out);
absl::Status DequantizeTensor(const QuantFormat& f, uint32_t group,
                              bool entropy, ByteReader& in, uint32_t tokens,
                              HeadTensor& x);

// The terminal stage; window tokens are kept in ctx.dtype.
std::unique_ptr<TensorStage> MakeQuantStage(const QuantParams& params,
                                            const CodecContext& ctx);

// The terminal stage of a chain without a quantizer: tensors stored in the
// namespace dtype.
std::unique_ptr<TensorStage> MakeRawStage(const CodecContext& ctx);

}  // namespace kvd::compress

#endif  // KVDEPOT_COMPRESS_QUANT_H_
