// Test helpers around core/child_process.h: temporary directories under the
// test's TempDir.
#ifndef KVDEPOT_TESTS_NODE_CHILD_PROCESS_H_
#define KVDEPOT_TESTS_NODE_CHILD_PROCESS_H_

#include <cstdlib>
#include <string>

#include "core/child_process.h"
#include "gtest/gtest.h"

namespace kvd {

// A temporary directory under the test's TempDir; the caller removes it.
inline std::string MakeTestTempDir(const std::string& prefix) {
  std::string pattern = ::testing::TempDir() + "/" + prefix + ".XXXXXX";
  char* dir = mkdtemp(pattern.data());
  EXPECT_NE(dir, nullptr);
  return pattern;
}

}  // namespace kvd

#endif  // KVDEPOT_TESTS_NODE_CHILD_PROCESS_H_
