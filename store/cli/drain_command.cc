#include "store/cli/drain_command.h"

#include <unistd.h>

#include <cstdio>

#include "store/cli/ctl_format.h"

namespace kvd {

absl::StatusOr<kvdepot::v1::DrainProgress> ShowDrain(
    ControlClient& client, const kvdepot::v1::DrainRequest& request,
    bool json) {
  constexpr int kProgressBarWidth = 30;
  const bool tty = !json && isatty(fileno(stdout)) != 0;
  const bool move = request.move_to_owners();
  kvdepot::v1::DrainProgress last;
  absl::Status s =
      client.Drain(request, [&](const kvdepot::v1::DrainProgress& p) {
        last = p;
        if (json) {
          std::printf("%s\n", DrainProgressToJson(p).dump().c_str());
        } else if (tty) {
          std::printf("\r%s", DrainProgressBar(p, kProgressBarWidth).c_str());
          if (p.done())
            std::printf("\n%s\n", DrainProgressLine(p, move).c_str());
        } else {
          std::printf("%s\n", DrainProgressLine(p, move).c_str());
        }
        std::fflush(stdout);
      });
  if (!s.ok()) {
    if (tty) std::printf("\n");
    return s;
  }
  return last;
}

}  // namespace kvd
