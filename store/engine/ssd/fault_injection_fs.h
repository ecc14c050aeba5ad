// FaultInjectionFileSystem: a FileSystem wrapper for fault tests, after
// RocksDB's utilities/fault_injection_fs.h and leveldb's ErrorEnv.
//
// It forwards to a base FileSystem and can
//   - fail the Nth write or sync (counted from the plan, over all files),
//   - tear the Nth write: persist only a prefix of it, then fail,
//   - stop working altogether (SetActive(false): every mutation fails with
//     kUnavailable, as in a process that has just lost power),
//   - DropUnsyncedData(): roll every file it has written back to the bytes it
//     held at its last successful Sync (and delete files created since their
//     directory was last synced), simulating a power loss.
// A failed sync leaves the file's data unsynced, as a real fsync error does.
//
// Only what goes through this wrapper is tracked: RocksDB (the SSD tier's
// index) writes through its own Env and is not rolled back.
//
// Thread-safe. Writes and syncs are serialised by one mutex (this is a test
// tool; it trades speed for exact bookkeeping).
#ifndef KVDEPOT_STORE_ENGINE_SSD_FAULT_INJECTION_FS_H_
#define KVDEPOT_STORE_ENGINE_SSD_FAULT_INJECTION_FS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "store/engine/ssd/file_system.h"

namespace kvd {

class FaultInjectionFileSystem : public FileSystem {
 public:
  // `base` is not owned and must outlive this object and its files.
  explicit FaultInjectionFileSystem(FileSystem* base);
  ~FaultInjectionFileSystem() override;

  // Fault plans; n >= 1 counts writes (each op of a batch is one write) or
  // syncs from now on. A plan fires once. Injected errors are kInternal and
  // say "injected".
  void FailNthWrite(uint64_t n);
  // The Nth write persists only its first `keep_bytes` (rounded down to a
  // multiple of 4096 on direct-I/O files) and then fails.
  void TearNthWrite(uint64_t n, uint64_t keep_bytes);
  void FailNthSync(uint64_t n);
  void ClearFaults();

  // While inactive, Open(create), writes, syncs, truncates, deletes, renames
  // and directory syncs fail with kUnavailable; reads still work.
  void SetActive(bool active);

  // Rolls every tracked file back to its last synced state. REQUIRES: no
  // file of this file system is being written concurrently.
  absl::Status DropUnsyncedData();

  uint64_t writes() const;
  uint64_t syncs() const;

  absl::StatusOr<std::unique_ptr<RandomRWFile>> Open(
      const std::string& path, const FileOpenOptions& options) override;
  absl::Status Delete(const std::string& path) override;
  absl::StatusOr<std::vector<std::string>> List(
      const std::string& dir) override;
  absl::Status CreateDir(const std::string& dir) override;
  absl::Status Rename(const std::string& from, const std::string& to) override;
  absl::Status SyncDir(const std::string& dir) override;

 private:
  class File;
  friend class File;
  struct Undo {
    uint64_t offset;
    std::vector<uint8_t> old_bytes;
  };
  struct FileState {
    uint64_t synced_size = 0;
    std::vector<Undo> undo;   // oldest first
    bool name_synced = true;  // false: created since its dir was synced
    std::unique_ptr<RandomRWFile> shadow;  // buffered handle for undo I/O
  };

  absl::Status WriteAt(RandomRWFile* base, uint64_t offset,
                       absl::Span<const uint8_t> data);
  absl::Status Sync(RandomRWFile* base);
  absl::Status Truncate(RandomRWFile* base, uint64_t size);
  // Saves the synced bytes of [offset, end) that are about to change.
  absl::Status SaveUndoLocked(FileState& state, const std::string& path,
                              uint64_t offset, uint64_t end)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ShadowLocked(FileState& state, const std::string& path)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status InactiveError(std::string_view op) const;

  FileSystem* const base_;
  mutable absl::Mutex mu_;
  bool active_ ABSL_GUARDED_BY(mu_) = true;
  uint64_t writes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t syncs_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t fail_write_at_ ABSL_GUARDED_BY(mu_) = 0;  // absolute count; 0: none
  uint64_t tear_write_at_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t tear_keep_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t fail_sync_at_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, FileState> files_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvd

#endif  // KVDEPOT_STORE_ENGINE_SSD_FAULT_INJECTION_FS_H_
