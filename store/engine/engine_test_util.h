// Test helpers shared by the StoreEngine tests: chunk objects in the real
// format, and a fixture with a private SSD directory and a fake clock.
#ifndef KVDEPOT_STORE_ENGINE_ENGINE_TEST_UTIL_H_
#define KVDEPOT_STORE_ENGINE_ENGINE_TEST_UTIL_H_

#include <unistd.h>

#include <filesystem>
#include <memory>

#include "absl/strings/str_cat.h"
#include "core/clock.h"
#include "core/test_chunks.h"
#include "gtest/gtest.h"
#include "store/engine/store_engine.h"

namespace kvd {

inline constexpr uint64_t kMiB = 1 << 20;

using Prompt = TestPrompt;

// A prompt of `chunks` chunks in the small test namespace (128 KiB each).
inline Prompt MakePrompt(uint32_t seed, int chunks,
                         const ModelSpec& spec = TestChunkSpec("test/engine")) {
  return MakeTestPrompt(spec, seed, chunks);
}

inline void PutAll(StoreEngine& e, const Prompt& p) {
  for (const absl::Status& s : e.Put(p.keys, p.Spans())) {
    ASSERT_TRUE(s.ok()) << s;
  }
}

class StoreEngineTestBase : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           absl::StrCat(
               "kvd_engine_test_", getpid(), "_",
               ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<StoreEngine> Open(uint64_t host_bytes, bool with_ssd,
                                    uint64_t ssd_bytes = 64 * kMiB) {
    StoreOptions o;
    o.host_capacity_bytes = host_bytes;
    o.host_huge_pages = false;
    if (with_ssd) {
      o.ssd_dir = dir_.string();
      o.ssd_capacity_bytes = ssd_bytes;
      o.ssd_segment_bytes = 4 * kMiB;
      o.ssd_direct_io = ssd_direct_io_;
    }
    o.clock = &clock_;
    o.lease_ttl = absl::Seconds(10);
    auto e = StoreEngine::Create(o);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? *std::move(e) : nullptr;
  }

  std::filesystem::path dir_;
  FakeClock clock_;
  bool ssd_direct_io_ = true;
};

}  // namespace kvd

#endif  // KVDEPOT_STORE_ENGINE_ENGINE_TEST_UTIL_H_
