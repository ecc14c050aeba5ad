#include "store/engine/ssd/file_system.h"

#include <unistd.h>

#include <algorithm>
#include <numeric>
#include <string>

#include "gtest/gtest.h"

namespace kvd {
namespace {

std::string TestDir(const std::string& name) {
  std::string dir = ::testing::TempDir() + "/ssd_fs_" + name + "_" +
                    std::to_string(::getpid());
  return dir;
}

AlignedBuffer Pattern(uint64_t size, uint8_t seed) {
  AlignedBuffer buf(size);
  for (uint64_t i = 0; i < size; ++i)
    buf.data()[i] = static_cast<uint8_t>(i * 31 + seed);
  return buf;
}

class FileSystemTest : public ::testing::TestWithParam<bool> {};

TEST_P(FileSystemTest, DirectRoundTripAndBatches) {
  const bool use_uring = GetParam();
  auto fs =
      NewPosixFileSystem(PosixFileSystemOptions{.use_io_uring = use_uring});
  const std::string dir = TestDir(use_uring ? "uring" : "sync");
  ASSERT_TRUE(fs->CreateDir(dir + "/a/b").ok());
  const std::string path = dir + "/a/b/f";
  auto file = fs->Open(path, {.create = true, .direct_io = true});
  ASSERT_TRUE(file.ok()) << file.status();
  RandomRWFile& f = **file;

  // 3 MiB + 8 KiB: several pieces in flight.
  const uint64_t n = (3ull << 20) + 8192;
  AlignedBuffer a = Pattern(n, 1), b = Pattern(8192, 7);
  WriteOp ops[] = {{0, absl::MakeConstSpan(a.data(), n)},
                   {n, absl::MakeConstSpan(b.data(), 8192)}};
  ASSERT_TRUE(f.WriteBatchAt(ops).ok());
  ASSERT_TRUE(f.Sync().ok());
  EXPECT_EQ(*f.Size(), n + 8192);

  AlignedBuffer ra(n), rb(8192);
  ReadOp reads[] = {{0, ra.span(n)}, {n, rb.span(8192)}};
  ASSERT_TRUE(f.ReadBatchAt(reads).ok());
  EXPECT_TRUE(std::equal(a.data(), a.data() + n, ra.data()));
  EXPECT_TRUE(std::equal(b.data(), b.data() + 8192, rb.data()));

  // Reading past the end is kOutOfRange.
  AlignedBuffer past(8192);
  EXPECT_TRUE(absl::IsOutOfRange(f.ReadAt(n + 4096, past.span(8192))));
  EXPECT_TRUE(absl::IsOutOfRange(f.ReadAt(n + 8192, past.span(4096))));

  if (f.direct_io()) {
    // Misaligned arguments are refused before reaching the kernel.
    EXPECT_TRUE(absl::IsInvalidArgument(
        f.WriteAt(100, absl::MakeConstSpan(a.data(), 4096))));
    EXPECT_TRUE(absl::IsInvalidArgument(
        f.WriteAt(0, absl::MakeConstSpan(a.data(), 100))));
    EXPECT_TRUE(absl::IsInvalidArgument(
        f.ReadAt(0, absl::MakeSpan(ra.data() + 1, 4096))));
  }

  ASSERT_TRUE(f.Truncate(4096).ok());
  EXPECT_EQ(*f.Size(), 4096u);

  auto names = fs->List(dir + "/a/b");
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, std::vector<std::string>{"f"});
  ASSERT_TRUE(fs->Rename(path, path + "2").ok());
  ASSERT_TRUE(fs->SyncDir(dir + "/a/b").ok());
  EXPECT_TRUE(absl::IsNotFound(fs->Open(path, {}).status()));
  EXPECT_TRUE(fs->Delete(path + "2").ok());
  EXPECT_TRUE(absl::IsNotFound(fs->Delete(path + "2")));
}

INSTANTIATE_TEST_SUITE_P(Uring, FileSystemTest, ::testing::Bool());

TEST(FileSystem, BufferedFallbackWhenDirectRefused) {
  auto fs = NewPosixFileSystem(
      PosixFileSystemOptions{.simulate_direct_io_refused = true});
  const std::string dir = TestDir("fallback");
  ASSERT_TRUE(fs->CreateDir(dir).ok());
  auto file = fs->Open(dir + "/f", {.create = true, .direct_io = true});
  ASSERT_TRUE(file.ok());
  EXPECT_FALSE((*file)->direct_io());
  // Buffered files take unaligned I/O.
  std::string text = "hello, buffered world";
  ASSERT_TRUE(
      (*file)
          ->WriteAt(3, absl::MakeConstSpan(
                           reinterpret_cast<const uint8_t*>(text.data()),
                           text.size()))
          .ok());
  std::string back(text.size(), '\0');
  ASSERT_TRUE(
      (*file)
          ->ReadAt(3, absl::MakeSpan(reinterpret_cast<uint8_t*>(back.data()),
                                     back.size()))
          .ok());
  EXPECT_EQ(back, text);
}

TEST(FileSystem, DefaultReportsModes) {
  const std::string dir = TestDir("default");
  ASSERT_TRUE(FileSystem::Default()->CreateDir(dir).ok());
  auto file = FileSystem::Default()->Open(dir + "/f",
                                          {.create = true, .direct_io = true});
  ASSERT_TRUE(file.ok());
  std::printf("io_uring available: %d, O_DIRECT active in %s: %d\n",
              IoUringAvailable(), dir.c_str(), (*file)->direct_io());
  EXPECT_TRUE(absl::IsNotFound(
      FileSystem::Default()->Open(dir + "/missing", {}).status()));
  EXPECT_TRUE(
      absl::IsNotFound(FileSystem::Default()->List(dir + "/missing").status()));
}

}  // namespace
}  // namespace kvd
