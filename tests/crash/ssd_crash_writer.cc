// Helper process for ssd_crash_test: writes chunk objects to an SsdTier until
// it is killed, logging each one only after its Put returned OK. When the
// tier is full it removes random live objects (of any round, found in the
// log) and retries; it also keeps the live set under kMaxLive objects so
// that the tier seldom fills up.
//
// Usage: ssd_crash_writer DIR LOG ROUND
// Log lines (each one write(2), so a SIGKILL never leaves half a line):
//   "A <round> <index>"  acknowledged: Put returned OK (durable)
//   "R <round> <index>"  about to be removed (logged before Remove)
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/crash/crash_objects.h"

namespace {

void Log(int fd, char kind, uint32_t round, uint32_t index) {
  const std::string line =
      absl::StrCat(std::string(1, kind), " ", round, " ", index, "\n");
  if (::write(fd, line.data(), line.size()) !=
      static_cast<ssize_t>(line.size())) {
    std::perror("write(log)");
    std::exit(3);
  }
}

// About a third of CrashTierOptions' capacity_bytes, in 4 KiB records.
constexpr size_t kMaxLive = 5000;

[[noreturn]] void Fail(const absl::Status& s, const char* what) {
  std::fprintf(stderr, "ssd_crash_writer: %s: %s\n", what,
               std::string(s.message()).c_str());
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s DIR LOG ROUND\n", argv[0]);
    return 1;
  }
  const std::string dir = argv[1];
  const int log =
      ::open(argv[2], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0) {
    std::perror("open(log)");
    return 1;
  }
  const uint32_t round =
      static_cast<uint32_t>(std::strtoul(argv[3], nullptr, 10));
  // Live objects of earlier rounds, from the log: (round, index).
  std::set<std::pair<uint32_t, uint32_t>> live;
  {
    std::ifstream in(argv[2]);
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      char kind;
      std::pair<uint32_t, uint32_t> id;
      if (!(fields >> kind >> id.first >> id.second)) continue;
      if (kind == 'A') live.insert(id);
      if (kind == 'R') live.erase(id);
    }
  }
  auto tier = kvd::SsdTier::Open(kvd::crash::CrashTierOptions(dir));
  if (!tier.ok()) Fail(tier.status(), "SsdTier::Open");

  std::mt19937 rng(round);
  // Removes a random live object of any round.
  auto remove_random = [&] {
    auto it = live.begin();
    std::advance(it, rng() % live.size());
    const auto [r, i] = *it;
    live.erase(it);
    Log(log, 'R', r, i);
    absl::Status s = (*tier)->Remove(kvd::crash::MakeObject(r, i).key);
    if (!s.ok() && !absl::IsNotFound(s)) Fail(s, "Remove");
  };
  for (uint32_t index = 0; index < 1000000;) {
    // Mostly single Puts, sometimes a batch of up to 8.
    const uint32_t n = rng() % 8 == 0 ? 1 + rng() % 8 : 1;
    std::vector<kvd::crash::CrashObject> objects;
    std::vector<kvd::SsdWriteItem> items;
    for (uint32_t j = 0; j < n; ++j)
      objects.push_back(kvd::crash::MakeObject(round, index + j));
    for (const auto& o : objects)
      items.push_back(kvd::SsdWriteItem{o.key, o.parent, "", o.bytes});
    absl::Status s = (*tier)->Put(items);
    for (int retry = 0; absl::IsResourceExhausted(s) && retry < 8; ++retry) {
      // Full: make room by removing random live objects, then retry.
      for (int k = 0; k < 256 && !live.empty(); ++k) {
        remove_random();
      }
      s = (*tier)->Put(items);
    }
    if (!s.ok()) Fail(s, "Put");
    for (uint32_t j = 0; j < n; ++j) {
      Log(log, 'A', round, index + j);
      live.emplace(round, index + j);
    }
    index += n;
    while (live.size() > kMaxLive) remove_random();
    if (rng() % 4 == 0) {
      const uint32_t victim = rng() % index;
      Log(log, 'R', round, victim);
      live.erase({round, victim});
      s = (*tier)->Remove(kvd::crash::MakeObject(round, victim).key);
      if (!s.ok() && !absl::IsNotFound(s)) Fail(s, "Remove");
    }
    if (rng() % 64 == 0) {
      s = (*tier)->CollectGarbage();
      if (!s.ok()) Fail(s, "CollectGarbage");
    }
  }
  return 0;
}
