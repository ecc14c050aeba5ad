// Test helper: child processes of the real binaries, with stdout and stderr
// going to one log file, bounded waits, and SIGKILL on destruction.
// (node_integration_test.cc has its own copy of this class, from before this
// file existed.)
#ifndef KVDEPOT_TESTS_NODE_CHILD_PROCESS_H_
#define KVDEPOT_TESTS_NODE_CHILD_PROCESS_H_

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

extern char** environ;

namespace kvd {

inline std::string ReadTextFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void WriteTextFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

// A temporary directory under the test's TempDir; the caller removes it.
inline std::string MakeTestTempDir(const std::string& prefix) {
  std::string pattern = ::testing::TempDir() + "/" + prefix + ".XXXXXX";
  char* dir = mkdtemp(pattern.data());
  EXPECT_NE(dir, nullptr);
  return pattern;
}

// Not thread-safe; one owner.
class ChildProcess {
 public:
  ChildProcess(const std::vector<std::string>& argv,
               const std::string& log_path)
      : log_path_(log_path) {
    std::vector<char*> args;
    for (const std::string& a : argv) {
      args.push_back(const_cast<char*>(a.c_str()));
    }
    args.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    int rc =
        posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    EXPECT_EQ(rc, 0) << "spawn " << argv[0];
    if (rc != 0) pid_ = -1;
  }
  ~ChildProcess() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // True when the child exited (or was never started).
  bool Poll() {
    if (pid_ <= 0 || exited_) return true;
    if (waitpid(pid_, &status_, WNOHANG) == pid_) exited_ = true;
    return exited_;
  }

  // Waits up to `bound`; false on timeout.
  bool WaitFor(absl::Duration bound) {
    const absl::Time deadline = absl::Now() + bound;
    while (!Poll()) {
      if (absl::Now() > deadline) return false;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return true;
  }

  // The exit code, or -1 when killed by a signal or not exited.
  int exit_code() const {
    return exited_ && WIFEXITED(status_) ? WEXITSTATUS(status_) : -1;
  }
  pid_t pid() const { return pid_; }
  std::string output() const { return ReadTextFile(log_path_); }

 private:
  const std::string log_path_;
  pid_t pid_ = -1;
  bool exited_ = false;
  int status_ = 0;
};

}  // namespace kvd

#endif  // KVDEPOT_TESTS_NODE_CHILD_PROCESS_H_
