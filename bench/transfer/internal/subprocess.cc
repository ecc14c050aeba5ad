#include "bench/transfer/internal/subprocess.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "core/status.h"

extern char** environ;

namespace kvd::bench {

absl::StatusOr<std::unique_ptr<Subprocess>> Subprocess::Start(
    const Options& options) {
  if (options.argv.empty()) {
    return absl::InvalidArgumentError("Subprocess: argv is empty");
  }
  if (options.output_path.empty()) {
    return absl::InvalidArgumentError("Subprocess: output_path is empty");
  }
  // Everything the child needs is built before fork: after it, only
  // async-signal-safe calls.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    absl::string_view entry(*e);
    const absl::string_view name = entry.substr(0, entry.find('='));
    bool replaced = false;
    for (const auto& [k, v] : options.env) replaced |= (k == name);
    if (!replaced) env_strings.emplace_back(entry);
  }
  for (const auto& [k, v] : options.env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp, argv;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_strings = options.argv;
  for (auto& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);

  const int out_fd = open(options.output_path.c_str(),
                          O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out_fd < 0) {
    return ErrnoToStatus(errno,
                         absl::StrCat("open(", options.output_path, ")"));
  }
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    const int err = errno;
    close(out_fd);
    return ErrnoToStatus(err, "fork");
  }
  if (pid == 0) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    dup2(out_fd, STDOUT_FILENO);
    dup2(out_fd, STDERR_FILENO);
    const int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0) dup2(null_fd, STDIN_FILENO);
    execve(argv[0], argv.data(), envp.data());
    const char* msg = "Subprocess: execve failed: ";
    (void)!write(STDERR_FILENO, msg, strlen(msg));
    const char* why = strerror(errno);
    (void)!write(STDERR_FILENO, why, strlen(why));
    (void)!write(STDERR_FILENO, "\n", 1);
    _exit(127);
  }
  close(out_fd);
  setpgid(pid, pid);  // also in the parent, so Kill() cannot race the child
  return std::unique_ptr<Subprocess>(new Subprocess(pid, options.output_path));
}

Subprocess::~Subprocess() { Kill(); }

bool Subprocess::Reap() {
  if (exited_) return true;
  int wstatus = 0;
  const pid_t r = waitpid(pid_, &wstatus, WNOHANG);
  if (r == 0) return false;
  exited_ = true;
  if (r < 0) {
    exit_status_ = 255;  // not our child any more (ECHILD): treat as gone
  } else if (WIFEXITED(wstatus)) {
    exit_status_ = WEXITSTATUS(wstatus);
  } else if (WIFSIGNALED(wstatus)) {
    exit_status_ = 128 + WTERMSIG(wstatus);
  }
  return true;
}

bool Subprocess::Running() { return !Reap(); }

absl::StatusOr<int> Subprocess::Wait(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::Duration nap = absl::Milliseconds(1);
  while (!Reap()) {
    if (absl::Now() >= deadline) {
      return absl::UnavailableError(
          absl::StrCat("pid ", pid_, " still running after ",
                       absl::FormatDuration(timeout)));
    }
    std::this_thread::sleep_for(absl::ToChronoMilliseconds(nap));
    nap = std::min(nap * 2, absl::Milliseconds(20));
  }
  return exit_status_;
}

int Subprocess::Kill(absl::Duration grace) {
  if (Reap()) {
    kill(-pid_, SIGKILL);  // leftovers of its group, if any
    return exit_status_;
  }
  kill(-pid_, SIGTERM);
  if (!Wait(grace).ok()) {
    kill(-pid_, SIGKILL);
    kill(pid_, SIGKILL);
    while (!Reap()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  kill(-pid_, SIGKILL);
  return exit_status_;
}

std::string Subprocess::Output() const {
  std::ifstream in(output_path_, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::StatusOr<int> PickFreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoToStatus(errno, "socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int err = errno;
    close(fd);
    return ErrnoToStatus(err, "bind(127.0.0.1:0)");
  }
  close(fd);
  return static_cast<int>(ntohs(addr.sin_port));
}

bool PortListening(int port) {
  constexpr absl::string_view kListen = "0A";  // TCP_LISTEN in /proc/net/tcp
  for (const char* path : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      // "  sl  local_address rem_address   st ..."; local is HEXADDR:HEXPORT.
      std::vector<absl::string_view> f =
          absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (f.size() < 4 || f[3] != kListen) continue;
      const size_t colon = f[1].rfind(':');
      if (colon == absl::string_view::npos) continue;
      int p = 0;
      if (absl::SimpleHexAtoi(f[1].substr(colon + 1), &p) && p == port) {
        return true;
      }
    }
  }
  return false;
}

std::string TailLines(const std::string& text, int max_lines) {
  size_t pos = text.size();
  if (pos > 0 && text[pos - 1] == '\n') --pos;
  for (int i = 0; i < max_lines && pos > 0; ++i) {
    pos = text.rfind('\n', pos - 1);
    if (pos == std::string::npos) return text;
  }
  return text.substr(pos == 0 ? 0 : pos + 1);
}

absl::StatusOr<std::unique_ptr<TempDir>> TempDir::Create(
    const std::string& prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = absl::StrCat(tmp != nullptr && *tmp ? tmp : "/tmp", "/",
                                   prefix, "XXXXXX");
  if (mkdtemp(templ.data()) == nullptr) {
    return ErrnoToStatus(errno, absl::StrCat("mkdtemp(", templ, ")"));
  }
  return std::unique_ptr<TempDir>(new TempDir(std::move(templ)));
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace kvd::bench
