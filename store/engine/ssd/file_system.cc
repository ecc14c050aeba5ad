#include "store/engine/ssd/file_system.h"

#include <dirent.h>
#include <fcntl.h>
#include <liburing.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <deque>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "core/check.h"
#include "core/status.h"

namespace kvd {
namespace {

// Transfers are cut into pieces of at most this size so one large object
// keeps several requests in flight.
constexpr uint64_t kMaxPieceBytes = 4ull << 20;
constexpr unsigned kRingDepth = 64;

// One io_uring per thread: rings are not thread-safe, and a per-file ring
// would serialise concurrent readers of one segment.
struct ThreadRing {
  io_uring ring;
  int init_error = 0;
  bool broken = false;  // a submit failed; never used again
  ThreadRing() {
    int r = io_uring_queue_init(kRingDepth, &ring, 0);
    init_error = r < 0 ? -r : 0;
  }
  ~ThreadRing() {
    if (init_error == 0) io_uring_queue_exit(&ring);
  }
};

ThreadRing* ThisThreadRing() {
  thread_local ThreadRing ring;
  return ring.init_error == 0 && !ring.broken ? &ring : nullptr;
}

struct Piece {
  uint8_t* buf;
  uint64_t offset;
  uint64_t len;
  uint64_t done = 0;
};

class PosixFile final : public RandomRWFile {
 public:
  PosixFile(int fd, std::string path, bool direct, bool use_uring)
      : fd_(fd),
        path_(std::move(path)),
        direct_(direct),
        use_uring_(use_uring) {}
  ~PosixFile() override { ::close(fd_); }

  absl::Status WriteAt(uint64_t offset,
                       absl::Span<const uint8_t> data) override {
    WriteOp op{offset, data};
    return WriteBatchAt(absl::MakeConstSpan(&op, 1));
  }
  absl::Status ReadAt(uint64_t offset, absl::Span<uint8_t> dst) override {
    ReadOp op{offset, dst};
    return ReadBatchAt(absl::MakeConstSpan(&op, 1));
  }
  absl::Status WriteBatchAt(absl::Span<const WriteOp> ops) override {
    return WriteBatchOverlapped(ops, [] {});
  }
  absl::Status WriteBatchOverlapped(
      absl::Span<const WriteOp> ops,
      absl::FunctionRef<void()> while_in_flight) override {
    std::vector<Piece> pieces;
    for (const WriteOp& op : ops) {
      KVD_RETURN_IF_ERROR(Split(const_cast<uint8_t*>(op.data.data()), op.offset,
                                op.data.size(), &pieces));
    }
    return Transfer(/*write=*/true, pieces, while_in_flight);
  }
  absl::Status ReadBatchAt(absl::Span<const ReadOp> ops) override {
    std::vector<Piece> pieces;
    for (const ReadOp& op : ops) {
      KVD_RETURN_IF_ERROR(
          Split(op.dst.data(), op.offset, op.dst.size(), &pieces));
    }
    return Transfer(/*write=*/false, pieces, [] {});
  }

  absl::Status Sync() override {
    while (::fdatasync(fd_) != 0) {
      if (errno != EINTR)
        return ErrnoToStatus(errno, absl::StrCat("fdatasync(", path_, ")"));
    }
    return absl::OkStatus();
  }
  absl::Status Truncate(uint64_t size) override {
    if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) {
      return ErrnoToStatus(errno,
                           absl::StrCat("ftruncate(", path_, ", ", size, ")"));
    }
    return absl::OkStatus();
  }
  absl::StatusOr<uint64_t> Size() override {
    struct stat st;
    if (::fstat(fd_, &st) != 0)
      return ErrnoToStatus(errno, absl::StrCat("fstat(", path_, ")"));
    return static_cast<uint64_t>(st.st_size);
  }
  bool direct_io() const override {
    return direct_.load(std::memory_order_relaxed);
  }
  const std::string& path() const override { return path_; }

 private:
  absl::Status Split(uint8_t* buf, uint64_t offset, uint64_t len,
                     std::vector<Piece>* out) {
    if (direct_io()) {
      if (!IsAligned(reinterpret_cast<uintptr_t>(buf))) {
        return absl::InvalidArgumentError(
            absl::StrCat(path_, ": buffer address is not ", kIoAlignment,
                         "-byte aligned for O_DIRECT"));
      }
      if (!IsAligned(offset) || !IsAligned(len)) {
        return absl::InvalidArgumentError(absl::StrCat(
            path_, ": offset=", offset, " length=", len,
            " must be multiples of ", kIoAlignment, " for O_DIRECT"));
      }
    }
    for (uint64_t done = 0; done < len;) {
      uint64_t n = std::min(kMaxPieceBytes, len - done);
      out->push_back(Piece{buf + done, offset + done, n});
      done += n;
    }
    return absl::OkStatus();
  }

  // Clears O_DIRECT after the file system refused a direct transfer.
  bool FallBackToBuffered() {
    int flags = ::fcntl(fd_, F_GETFL);
    if (flags < 0 || ::fcntl(fd_, F_SETFL, flags & ~O_DIRECT) != 0)
      return false;
    direct_.store(false, std::memory_order_relaxed);
    return true;
  }

  absl::Status EofError(const Piece& p) {
    absl::StatusOr<uint64_t> size = Size();
    return absl::OutOfRangeError(
        absl::StrCat(path_, ": read of ", p.len - p.done,
                     " bytes at offset=", p.offset + p.done,
                     " passes end of file (size=", size.ok() ? *size : 0, ")"));
  }

  // Moves every piece; `while_in_flight` runs once, after the first
  // submission (before anything when there is no ring or nothing to move).
  absl::Status Transfer(bool write, std::vector<Piece>& pieces,
                        absl::FunctionRef<void()> while_in_flight) {
    ThreadRing* tr = use_uring_ && !pieces.empty() ? ThisThreadRing() : nullptr;
    if (tr == nullptr) {
      while_in_flight();
      return TransferSync(write, pieces);
    }
    bool overlapped = false;
    io_uring* ring = &tr->ring;
    std::deque<size_t> pending;
    for (size_t i = 0; i < pieces.size(); ++i) pending.push_back(i);
    size_t prepared = 0;   // in the submission queue
    size_t submitted = 0;  // owned by the kernel until their completion
    absl::Status error;
    while (true) {
      while (error.ok() && !pending.empty() &&
             prepared + submitted < kRingDepth) {
        io_uring_sqe* sqe = io_uring_get_sqe(ring);
        if (sqe == nullptr) break;
        const size_t idx = pending.front();
        pending.pop_front();
        Piece& p = pieces[idx];
        if (write) {
          io_uring_prep_write(sqe, fd_, p.buf + p.done, p.len - p.done,
                              p.offset + p.done);
        } else {
          io_uring_prep_read(sqe, fd_, p.buf + p.done, p.len - p.done,
                             p.offset + p.done);
        }
        io_uring_sqe_set_data64(sqe, idx);
        ++prepared;
      }
      if (prepared > 0) {
        int r = io_uring_submit(ring);
        if (r >= 0) {
          prepared -= static_cast<size_t>(r);
          submitted += static_cast<size_t>(r);
        } else if (r != -EINTR && r != -EAGAIN && r != -EBUSY) {
          // The prepared entries can never be withdrawn: retire this
          // thread's ring so they are never submitted with stale buffers.
          tr->broken = true;
          if (error.ok()) {
            error =
                ErrnoToStatus(-r, absl::StrCat("io_uring_submit(", path_, ")"));
          }
        }
      }
      if (!overlapped && submitted > 0) {
        overlapped = true;
        while_in_flight();
      }
      if (submitted == 0) {
        if (!error.ok() || (pending.empty() && prepared == 0)) break;
        continue;  // submit was interrupted; try again
      }
      io_uring_cqe* cqe = nullptr;
      int r = io_uring_wait_cqe(ring, &cqe);
      if (r == -EINTR || r == -EAGAIN) continue;
      KVD_CHECK(r == 0, "io_uring_wait_cqe failed with requests in flight");
      const size_t idx = static_cast<size_t>(io_uring_cqe_get_data64(cqe));
      const int res = cqe->res;
      io_uring_cqe_seen(ring, cqe);
      --submitted;
      Piece& p = pieces[idx];
      if (res == -EINTR || res == -EAGAIN) {
        pending.push_back(idx);
      } else if (res == -EINVAL && direct_io() && FallBackToBuffered()) {
        pending.push_back(idx);
      } else if (res < 0) {
        if (error.ok()) {
          error = ErrnoToStatus(
              -res, absl::StrCat(write ? "write(" : "read(", path_,
                                 ", offset=", p.offset + p.done, ")"));
        }
      } else if (res == 0) {
        if (error.ok()) {
          error = write ? absl::InternalError(absl::StrCat(
                              "write(", path_, ") made no progress"))
                        : EofError(p);
        }
      } else {
        p.done += static_cast<uint64_t>(res);
        if (p.done < p.len) pending.push_back(idx);
      }
    }
    if (!overlapped) while_in_flight();  // nothing was ever submitted
    return error;
  }

  absl::Status TransferSync(bool write, std::vector<Piece>& pieces) {
    for (Piece& p : pieces) {
      while (p.done < p.len) {
        ssize_t r = write ? ::pwrite(fd_, p.buf + p.done, p.len - p.done,
                                     p.offset + p.done)
                          : ::pread(fd_, p.buf + p.done, p.len - p.done,
                                    p.offset + p.done);
        if (r < 0) {
          if (errno == EINTR || errno == EAGAIN) continue;
          if (errno == EINVAL && direct_io() && FallBackToBuffered()) continue;
          return ErrnoToStatus(
              errno, absl::StrCat(write ? "pwrite(" : "pread(", path_,
                                  ", offset=", p.offset + p.done, ")"));
        }
        if (r == 0) {
          if (!write) return EofError(p);
          return absl::InternalError(
              absl::StrCat("pwrite(", path_, ") made no progress"));
        }
        p.done += static_cast<uint64_t>(r);
      }
    }
    return absl::OkStatus();
  }

  const int fd_;
  const std::string path_;
  std::atomic<bool> direct_;
  const bool use_uring_;
};

class PosixFileSystem final : public FileSystem {
 public:
  explicit PosixFileSystem(const PosixFileSystemOptions& options)
      : options_(options) {}

  absl::StatusOr<std::unique_ptr<RandomRWFile>> Open(
      const std::string& path, const FileOpenOptions& options) override {
    int flags = O_RDWR | O_CLOEXEC | (options.create ? O_CREAT : 0);
    bool direct = options.direct_io && !options_.simulate_direct_io_refused;
    int fd = -1;
    if (direct) {
      fd = ::open(path.c_str(), flags | O_DIRECT, 0644);
      if (fd < 0 && errno == EINVAL) direct = false;  // no O_DIRECT here
      if (fd < 0 && errno != EINVAL)
        return ErrnoToStatus(errno, absl::StrCat("open(", path, ")"));
    }
    if (fd < 0) {
      fd = ::open(path.c_str(), flags, 0644);
      if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("open(", path, ")"));
    }
    return std::unique_ptr<RandomRWFile>(new PosixFile(
        fd, path, direct, options_.use_io_uring && IoUringAvailable()));
  }

  absl::Status Delete(const std::string& path) override {
    if (::unlink(path.c_str()) != 0)
      return ErrnoToStatus(errno, absl::StrCat("unlink(", path, ")"));
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<std::string>> List(
      const std::string& dir) override {
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr)
      return ErrnoToStatus(errno, absl::StrCat("opendir(", dir, ")"));
    std::vector<std::string> names;
    errno = 0;
    while (dirent* e = ::readdir(d)) {
      std::string_view name = e->d_name;
      if (name != "." && name != "..") names.emplace_back(name);
    }
    int err = errno;
    ::closedir(d);
    if (err != 0) return ErrnoToStatus(err, absl::StrCat("readdir(", dir, ")"));
    return names;
  }

  absl::Status CreateDir(const std::string& dir) override {
    if (dir.empty())
      return absl::InvalidArgumentError("CreateDir: dir is empty");
    for (size_t pos = 1; pos <= dir.size(); ++pos) {
      if (pos != dir.size() && dir[pos] != '/') continue;
      std::string prefix = dir.substr(0, pos);
      if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
        return ErrnoToStatus(errno, absl::StrCat("mkdir(", prefix, ")"));
      }
    }
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0)
      return ErrnoToStatus(errno, absl::StrCat("stat(", dir, ")"));
    if (!S_ISDIR(st.st_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat(dir, " exists and is not a directory"));
    }
    return absl::OkStatus();
  }

  absl::Status Rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) {
      return ErrnoToStatus(errno, absl::StrCat("rename(", from, ", ", to, ")"));
    }
    return absl::OkStatus();
  }

  absl::Status SyncDir(const std::string& dir) override {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("open(", dir, ")"));
    int r = ::fsync(fd);
    int err = errno;
    ::close(fd);
    if (r != 0) return ErrnoToStatus(err, absl::StrCat("fsync(", dir, ")"));
    return absl::OkStatus();
  }

 private:
  const PosixFileSystemOptions options_;
};

}  // namespace

absl::Status RandomRWFile::WriteBatchAt(absl::Span<const WriteOp> ops) {
  for (const WriteOp& op : ops)
    KVD_RETURN_IF_ERROR(WriteAt(op.offset, op.data));
  return absl::OkStatus();
}

absl::Status RandomRWFile::WriteBatchOverlapped(
    absl::Span<const WriteOp> ops, absl::FunctionRef<void()> while_in_flight) {
  while_in_flight();
  return WriteBatchAt(ops);
}

absl::Status RandomRWFile::ReadBatchAt(absl::Span<const ReadOp> ops) {
  for (const ReadOp& op : ops) KVD_RETURN_IF_ERROR(ReadAt(op.offset, op.dst));
  return absl::OkStatus();
}

bool IoUringAvailable() {
  static const bool available = [] {
    io_uring ring;
    if (io_uring_queue_init(4, &ring, 0) != 0) return false;
    io_uring_queue_exit(&ring);
    return true;
  }();
  return available;
}

FileSystem* FileSystem::Default() {
  static FileSystem* fs = new PosixFileSystem(PosixFileSystemOptions{});
  return fs;
}

std::unique_ptr<FileSystem> NewPosixFileSystem(
    const PosixFileSystemOptions& options) {
  return std::make_unique<PosixFileSystem>(options);
}

}  // namespace kvd
