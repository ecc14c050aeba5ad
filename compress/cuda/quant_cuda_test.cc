// The GPU quantizer against its CPU oracle (quant.h): identical bytes out
// of quantization and identical bf16 out of dequantization, for every
// format. Skipped where no CUDA device is present.
#include "compress/cuda/quant_cuda.h"

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/cuda_status.h"

namespace kvd::compress {
namespace {

struct Case {
  QuantFormat format;
  uint32_t group, heads, tokens, dim;
};

class QuantCudaTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

template <typename T>
T* DeviceCopy(const std::vector<T>& host) {
  void* p = nullptr;
  EXPECT_EQ(cudaMalloc(&p, host.size() * sizeof(T)), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(p, host.data(), host.size() * sizeof(T),
                       cudaMemcpyHostToDevice),
            cudaSuccess);
  return static_cast<T*>(p);
}

template <typename T>
std::vector<T> HostCopy(const void* dev, size_t n) {
  std::vector<T> host(n);
  EXPECT_EQ(cudaMemcpy(host.data(), dev, n * sizeof(T), cudaMemcpyDeviceToHost),
            cudaSuccess);
  return host;
}

TEST_P(QuantCudaTest, MatchesTheCpuOracleBitForBit) {
  const Case c = GetParam();
  std::mt19937 rng(c.tokens * 31 + c.dim);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  HeadTensor x(c.heads, c.tokens, c.dim);
  std::vector<uint16_t> bf16(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const uint32_t ch = i % c.dim;
    bf16[i] =
        FloatToBf16((ch % 16 == 3 ? 8.0f : 1.0f) * normal(rng) + 0.1f * ch);
    x.data[i] = Bf16ToFloat(bf16[i]);
  }
  ByteWriter cpu;
  ASSERT_TRUE(QuantizeTensor(c.format, c.group, false, x, c.tokens, cpu).ok());
  const size_t bytes =
      QuantizedTensorBytes(c.format, c.group, c.heads, c.tokens, c.dim);
  ASSERT_EQ(cpu.bytes().size(), bytes);

  uint16_t* x_dev = DeviceCopy(bf16);
  uint8_t* q_dev = DeviceCopy(std::vector<uint8_t>(bytes, 0xee));
  GpuQuantizer quantizer;
  const absl::Status s = quantizer.Quantize(c.format, c.group, x_dev, c.heads,
                                            c.tokens, c.dim, q_dev, nullptr);
  ASSERT_TRUE(s.ok()) << s;
  const std::vector<uint8_t> gpu = HostCopy<uint8_t>(q_dev, bytes);
  for (size_t i = 0; i < bytes; ++i) {
    ASSERT_EQ(gpu[i], cpu.bytes()[i]) << c.format.Name() << " byte " << i;
  }

  HeadTensor y(c.heads, c.tokens, c.dim);
  ByteReader r(cpu.bytes());
  ASSERT_TRUE(DequantizeTensor(c.format, c.group, false, r, c.tokens, y).ok());
  uint16_t* y_dev = DeviceCopy(std::vector<uint16_t>(x.size(), 0));
  ASSERT_TRUE(DequantizeToBf16OnGpu(c.format, c.group, q_dev, c.heads, c.tokens,
                                    c.dim, y_dev, nullptr)
                  .ok());
  const std::vector<uint16_t> back = HostCopy<uint16_t>(y_dev, x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    ASSERT_EQ(back[i], FloatToBf16(y.data[i]))
        << c.format.Name() << " element " << i;
  }

  // NaN, infinity and a value beyond fp16 are refused, as on the CPU; the
  // flag is cleared between calls, so good input passes again.
  for (const uint16_t bad :
       {uint16_t{0x7fc0}, uint16_t{0xff80}, uint16_t{0x47c3}}) {
    std::vector<uint16_t> with_bad = bf16;
    with_bad[x.size() / 2 + 5] = bad;
    uint16_t* bad_dev = DeviceCopy(with_bad);
    EXPECT_EQ(quantizer
                  .Quantize(c.format, c.group, bad_dev, c.heads, c.tokens,
                            c.dim, q_dev, nullptr)
                  .code(),
              absl::StatusCode::kInvalidArgument)
        << std::hex << bad;
    cudaFree(bad_dev);
    EXPECT_TRUE(quantizer
                    .Quantize(c.format, c.group, x_dev, c.heads, c.tokens,
                              c.dim, q_dev, nullptr)
                    .ok());
  }
  for (void* p : {static_cast<void*>(x_dev), static_cast<void*>(q_dev),
                  static_cast<void*>(y_dev)}) {
    cudaFree(p);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Formats, QuantCudaTest,
    ::testing::Values(Case{{QuantMode::kPerChannel, 8}, 32, 6, 256, 64},
                      Case{{QuantMode::kPerChannel, 4}, 32, 6, 256, 64},
                      Case{{QuantMode::kPerChannel, 2}, 32, 6, 256, 128},
                      Case{{QuantMode::kPerChannel, 4}, 7, 3, 100, 64},
                      Case{{QuantMode::kPerToken, 8}, 32, 6, 256, 64},
                      Case{{QuantMode::kPerToken, 4}, 32, 6, 256, 128},
                      Case{{QuantMode::kPerToken, 2}, 16, 3, 100, 64},
                      Case{{QuantMode::kFp8, 8}, 32, 6, 256, 128},
                      // Rows of 12 lanes (padded to 16), rows over a warp,
                      // groups cached in registers and re-read past them.
                      Case{{QuantMode::kPerChannel, 4}, 32, 5, 77, 96},
                      Case{{QuantMode::kPerChannel, 4}, 300, 2, 700, 64},
                      Case{{QuantMode::kPerChannel, 8}, 64, 2, 130, 1024},
                      // Per-token groups within one thread and across lanes.
                      Case{{QuantMode::kPerToken, 4}, 1, 3, 33, 64},
                      Case{{QuantMode::kPerToken, 4}, 2, 2, 17, 32},
                      Case{{QuantMode::kPerToken, 2}, 4, 3, 33, 96},
                      Case{{QuantMode::kPerToken, 8}, 8, 3, 33, 32},
                      // Odd row counts put the fp8 codes at 2 mod 8.
                      Case{{QuantMode::kFp8, 8}, 32, 3, 33, 96},
                      Case{{QuantMode::kFp8, 8}, 32, 1, 35, 512},
                      Case{{QuantMode::kFp8, 8}, 32, 2, 9, 1024}));

// Checked before any CUDA call, so this runs without a device too.
TEST(QuantCuda, RefusesShapesTheKernelsDoNotTake) {
  GpuQuantizer quantizer;
  EXPECT_EQ(quantizer
                .Quantize({QuantMode::kPerChannel, 4}, 32, nullptr, 1, 16, 48,
                          nullptr, nullptr)
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(quantizer
                .Quantize({QuantMode::kPerToken, 4}, 24, nullptr, 1, 16, 64,
                          nullptr, nullptr)
                .code(),
            absl::StatusCode::kInvalidArgument);
  void* odd = reinterpret_cast<void*>(uintptr_t{2});
  EXPECT_EQ(quantizer
                .Quantize({QuantMode::kPerToken, 4}, 32, odd, 1, 16, 64,
                          nullptr, nullptr)
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DequantizeToBf16OnGpu({QuantMode::kFp8, 8}, 32, nullptr, 1, 16, 64,
                                  odd, nullptr)
                .code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvd::compress
