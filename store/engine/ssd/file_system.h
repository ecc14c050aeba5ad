// FileSystem: the disk seam of the SSD tier (STYLE.md §7).
//
// Production code takes a FileSystem*; FileSystem::Default() is the POSIX
// implementation, whose reads and writes go through io_uring (one ring per
// calling thread) with O_DIRECT when asked for. Tests wrap it in a
// FaultInjectionFileSystem to fail writes and syncs, tear writes or drop
// unsynced data.
//
// Direct I/O contract: when a file is open with direct_io() == true, every
// buffer address, file offset and length passed to ReadAt/WriteAt must be a
// multiple of kIoAlignment (4096); violations return kInvalidArgument naming
// the field. When the file system refuses O_DIRECT (EINVAL at open, or on the
// first transfer), the file silently falls back to buffered I/O and
// direct_io() turns false; callers that care report it.
#ifndef KVDEPOT_STORE_ENGINE_SSD_FILE_SYSTEM_H_
#define KVDEPOT_STORE_ENGINE_SSD_FILE_SYSTEM_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "store/engine/ssd/aligned_buffer.h"

namespace kvd {

struct FileOpenOptions {
  bool create = false;     // create the file when missing (mode 0644)
  bool direct_io = false;  // try O_DIRECT; see direct_io() for the outcome
};

// One write of a batch: `data` goes to [offset, offset + data.size()).
struct WriteOp {
  uint64_t offset = 0;
  absl::Span<const uint8_t> data;
};
// One read of a batch: fills `dst` from [offset, offset + dst.size()).
struct ReadOp {
  uint64_t offset = 0;
  absl::Span<uint8_t> dst;
};

// A file open for positional reads and writes. Thread-safe: concurrent calls
// on one file are allowed (the caller keeps their byte ranges apart).
class RandomRWFile {
 public:
  virtual ~RandomRWFile() = default;

  // Writes all of `data` at `offset`, extending the file when needed.
  virtual absl::Status WriteAt(uint64_t offset,
                               absl::Span<const uint8_t> data) = 0;
  // Reads exactly dst.size() bytes at `offset`. kOutOfRange when the file
  // ends first (the message names the offset and the file size).
  virtual absl::Status ReadAt(uint64_t offset, absl::Span<uint8_t> dst) = 0;

  // Several writes / reads kept in flight together (queue depth > 1). OK only
  // when every op completed in full; on error the ops' outcome is unspecified
  // (some may have landed). The default implementation runs them in order.
  virtual absl::Status WriteBatchAt(absl::Span<const WriteOp> ops);
  virtual absl::Status ReadBatchAt(absl::Span<const ReadOp> ops);

  // WriteBatchAt that runs `while_in_flight` once the writes are handed to
  // the device and before waiting for them, so CPU work (checksums) overlaps
  // the transfer. REQUIRES: `while_in_flight` does not touch the ops' bytes
  // in a way that changes them. The default implementation runs it first.
  virtual absl::Status WriteBatchOverlapped(
      absl::Span<const WriteOp> ops, absl::FunctionRef<void()> while_in_flight);

  // fdatasync: every completed write is durable when this returns OK.
  virtual absl::Status Sync() = 0;
  virtual absl::Status Truncate(uint64_t size) = 0;
  virtual absl::StatusOr<uint64_t> Size() = 0;

  // True while the file does direct (O_DIRECT) I/O.
  virtual bool direct_io() const = 0;
  virtual const std::string& path() const = 0;
};

// Thread-safe.
class FileSystem {
 public:
  virtual ~FileSystem() = default;

  // Opens `path` for reading and writing. kNotFound when it is missing and
  // !options.create.
  virtual absl::StatusOr<std::unique_ptr<RandomRWFile>> Open(
      const std::string& path, const FileOpenOptions& options) = 0;
  // Removes a file. kNotFound when missing.
  virtual absl::Status Delete(const std::string& path) = 0;
  // Names (not paths) of the entries of directory `dir`, without "." and "..".
  virtual absl::StatusOr<std::vector<std::string>> List(
      const std::string& dir) = 0;
  // Creates `dir` and missing parents; OK when it already exists.
  virtual absl::Status CreateDir(const std::string& dir) = 0;
  virtual absl::Status Rename(const std::string& from,
                              const std::string& to) = 0;
  // Makes creations, deletions and renames inside `dir` durable.
  virtual absl::Status SyncDir(const std::string& dir) = 0;

  // The process-wide POSIX file system; never destroyed.
  static FileSystem* Default();
};

struct PosixFileSystemOptions {
  // Use io_uring for transfers when the kernel allows it (else pread/pwrite).
  bool use_io_uring = true;
  // Test hook: behave as if the file system refused O_DIRECT with EINVAL, so
  // the buffered fallback path runs on any machine.
  bool simulate_direct_io_refused = false;
};

// A POSIX file system with non-default options (tests, benchmarks).
std::unique_ptr<FileSystem> NewPosixFileSystem(
    const PosixFileSystemOptions& options);

// True when this process can set up an io_uring (probed once).
bool IoUringAvailable();

}  // namespace kvd

#endif  // KVDEPOT_STORE_ENGINE_SSD_FILE_SYSTEM_H_
