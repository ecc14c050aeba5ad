#include "store/engine/ssd/fault_injection_fs.h"

#include <unistd.h>

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace kvd {
namespace {

std::vector<uint8_t> Bytes(size_t n, uint8_t v) {
  return std::vector<uint8_t>(n, v);
}

std::vector<uint8_t> ReadAll(RandomRWFile& f) {
  std::vector<uint8_t> out(*f.Size());
  EXPECT_TRUE(f.ReadAt(0, absl::MakeSpan(out)).ok());
  return out;
}

class FaultFsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/fault_fs_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name() +
           "_" + std::to_string(::getpid());
    ASSERT_TRUE(fs_.CreateDir(dir_).ok());
  }
  FaultInjectionFileSystem fs_{FileSystem::Default()};
  std::string dir_;
};

TEST_F(FaultFsTest, DropUnsyncedRollsBackToLastSync) {
  auto f = fs_.Open(dir_ + "/a", {.create = true});
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(fs_.SyncDir(dir_).ok());
  ASSERT_TRUE((*f)->WriteAt(0, Bytes(100, 1)).ok());
  ASSERT_TRUE((*f)->Sync().ok());
  ASSERT_TRUE((*f)->WriteAt(50, Bytes(100, 2)).ok());  // overwrite + extend
  ASSERT_TRUE((*f)->WriteAt(10, Bytes(5, 3)).ok());
  ASSERT_TRUE(fs_.DropUnsyncedData().ok());
  EXPECT_EQ(ReadAll(**f), Bytes(100, 1));
}

TEST_F(FaultFsTest, UnsyncedCreationDisappears) {
  auto f = fs_.Open(dir_ + "/new", {.create = true});
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->WriteAt(0, Bytes(10, 1)).ok());
  ASSERT_TRUE((*f)->Sync().ok());
  f->reset();
  ASSERT_TRUE(fs_.DropUnsyncedData().ok());
  EXPECT_TRUE(absl::IsNotFound(fs_.Open(dir_ + "/new", {}).status()));
}

TEST_F(FaultFsTest, InjectedFailures) {
  auto f = fs_.Open(dir_ + "/b", {.create = true});
  ASSERT_TRUE(fs_.SyncDir(dir_).ok());
  fs_.FailNthWrite(2);
  EXPECT_TRUE((*f)->WriteAt(0, Bytes(10, 1)).ok());
  absl::Status s = (*f)->WriteAt(10, Bytes(10, 2));
  EXPECT_TRUE(absl::IsInternal(s)) << s;
  EXPECT_NE(s.message().find("injected"), std::string::npos);
  EXPECT_TRUE((*f)->WriteAt(10, Bytes(10, 2)).ok());

  fs_.TearNthWrite(1, 4);
  EXPECT_FALSE((*f)->WriteAt(20, Bytes(10, 3)).ok());
  EXPECT_EQ(*(*f)->Size(), 24u);

  fs_.FailNthSync(1);
  EXPECT_FALSE((*f)->Sync().ok());
  ASSERT_TRUE(fs_.DropUnsyncedData().ok());  // the failed sync synced nothing
  EXPECT_EQ(*(*f)->Size(), 0u);

  fs_.SetActive(false);
  EXPECT_TRUE(absl::IsUnavailable((*f)->WriteAt(0, Bytes(1, 1))));
  EXPECT_TRUE(absl::IsUnavailable((*f)->Sync()));
  fs_.SetActive(true);
  EXPECT_TRUE((*f)->WriteAt(0, Bytes(1, 1)).ok());
}

TEST_F(FaultFsTest, DirectIoTearKeepsWholeBlocks) {
  auto f = fs_.Open(dir_ + "/c", {.create = true, .direct_io = true});
  ASSERT_TRUE(f.ok());
  AlignedBuffer buf(3 * 4096);
  fs_.TearNthWrite(1, 5000);
  EXPECT_FALSE((*f)->WriteAt(0, buf.span(3 * 4096)).ok());
  EXPECT_EQ(*(*f)->Size(), (*f)->direct_io() ? 4096u : 5000u);
}

}  // namespace
}  // namespace kvd
