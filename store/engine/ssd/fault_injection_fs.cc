#include "store/engine/ssd/fault_injection_fs.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace kvd {

class FaultInjectionFileSystem::File final : public RandomRWFile {
 public:
  File(FaultInjectionFileSystem* fs, std::unique_ptr<RandomRWFile> base)
      : fs_(fs), base_(std::move(base)) {}

  absl::Status WriteAt(uint64_t offset,
                       absl::Span<const uint8_t> data) override {
    return fs_->WriteAt(base_.get(), offset, data);
  }
  absl::Status ReadAt(uint64_t offset, absl::Span<uint8_t> dst) override {
    return base_->ReadAt(offset, dst);
  }
  absl::Status ReadBatchAt(absl::Span<const ReadOp> ops) override {
    return base_->ReadBatchAt(ops);
  }
  absl::Status Sync() override { return fs_->Sync(base_.get()); }
  absl::Status Truncate(uint64_t size) override {
    return fs_->Truncate(base_.get(), size);
  }
  absl::StatusOr<uint64_t> Size() override { return base_->Size(); }
  bool direct_io() const override { return base_->direct_io(); }
  const std::string& path() const override { return base_->path(); }

 private:
  FaultInjectionFileSystem* const fs_;
  const std::unique_ptr<RandomRWFile> base_;
};

FaultInjectionFileSystem::FaultInjectionFileSystem(FileSystem* base)
    : base_(base) {}
FaultInjectionFileSystem::~FaultInjectionFileSystem() = default;

void FaultInjectionFileSystem::FailNthWrite(uint64_t n) {
  absl::MutexLock lock(&mu_);
  fail_write_at_ = writes_ + n;
}

void FaultInjectionFileSystem::TearNthWrite(uint64_t n, uint64_t keep_bytes) {
  absl::MutexLock lock(&mu_);
  tear_write_at_ = writes_ + n;
  tear_keep_ = keep_bytes;
}

void FaultInjectionFileSystem::FailNthSync(uint64_t n) {
  absl::MutexLock lock(&mu_);
  fail_sync_at_ = syncs_ + n;
}

void FaultInjectionFileSystem::ClearFaults() {
  absl::MutexLock lock(&mu_);
  fail_write_at_ = tear_write_at_ = fail_sync_at_ = 0;
}

void FaultInjectionFileSystem::SetActive(bool active) {
  absl::MutexLock lock(&mu_);
  active_ = active;
}

uint64_t FaultInjectionFileSystem::writes() const {
  absl::MutexLock lock(&mu_);
  return writes_;
}

uint64_t FaultInjectionFileSystem::syncs() const {
  absl::MutexLock lock(&mu_);
  return syncs_;
}

absl::Status FaultInjectionFileSystem::InactiveError(
    std::string_view op) const {
  return absl::UnavailableError(absl::StrCat(
      std::string(op), ": file system inactive (simulated crash)"));
}

absl::Status FaultInjectionFileSystem::ShadowLocked(FileState& state,
                                                    const std::string& path) {
  if (state.shadow != nullptr) return absl::OkStatus();
  KVD_ASSIGN_OR_RETURN(state.shadow, base_->Open(path, FileOpenOptions{}));
  return absl::OkStatus();
}

absl::Status FaultInjectionFileSystem::SaveUndoLocked(FileState& state,
                                                      const std::string& path,
                                                      uint64_t offset,
                                                      uint64_t end) {
  end = std::min(end, state.synced_size);
  if (offset >= end) return absl::OkStatus();
  KVD_RETURN_IF_ERROR(ShadowLocked(state, path));
  Undo undo{offset, std::vector<uint8_t>(end - offset)};
  KVD_RETURN_IF_ERROR(
      state.shadow->ReadAt(offset, absl::MakeSpan(undo.old_bytes)));
  state.undo.push_back(std::move(undo));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<RandomRWFile>> FaultInjectionFileSystem::Open(
    const std::string& path, const FileOpenOptions& options) {
  absl::MutexLock lock(&mu_);
  bool existed = true;
  if (options.create) {
    if (!active_) return InactiveError(absl::StrCat("open(", path, ")"));
    absl::StatusOr<std::unique_ptr<RandomRWFile>> probe =
        base_->Open(path, FileOpenOptions{});
    if (absl::IsNotFound(probe.status())) existed = false;
  }
  KVD_ASSIGN_OR_RETURN(std::unique_ptr<RandomRWFile> file,
                       base_->Open(path, options));
  if (!files_.contains(path)) {
    FileState state;
    KVD_ASSIGN_OR_RETURN(state.synced_size, file->Size());
    state.name_synced = existed;
    files_.emplace(path, std::move(state));
  }
  return std::unique_ptr<RandomRWFile>(new File(this, std::move(file)));
}

absl::Status FaultInjectionFileSystem::WriteAt(RandomRWFile* base,
                                               uint64_t offset,
                                               absl::Span<const uint8_t> data) {
  absl::MutexLock lock(&mu_);
  const std::string& path = base->path();
  if (!active_) return InactiveError(absl::StrCat("write(", path, ")"));
  const uint64_t n = ++writes_;
  if (n == fail_write_at_) {
    return absl::InternalError(
        absl::StrCat("injected write failure: write #", n, " to ", path));
  }
  FileState& state = files_[path];
  KVD_RETURN_IF_ERROR(
      SaveUndoLocked(state, path, offset, offset + data.size()));
  if (n == tear_write_at_) {
    uint64_t keep = std::min<uint64_t>(tear_keep_, data.size());
    if (base->direct_io()) keep -= keep % kIoAlignment;
    if (keep > 0) KVD_RETURN_IF_ERROR(base->WriteAt(offset, data.first(keep)));
    return absl::InternalError(absl::StrCat("injected torn write: write #", n,
                                            " to ", path, " kept ", keep,
                                            " of ", data.size(), " bytes"));
  }
  return base->WriteAt(offset, data);
}

absl::Status FaultInjectionFileSystem::Sync(RandomRWFile* base) {
  absl::MutexLock lock(&mu_);
  const std::string& path = base->path();
  if (!active_) return InactiveError(absl::StrCat("sync(", path, ")"));
  const uint64_t n = ++syncs_;
  if (n == fail_sync_at_) {
    return absl::InternalError(
        absl::StrCat("injected sync failure: sync #", n, " of ", path));
  }
  KVD_RETURN_IF_ERROR(base->Sync());
  FileState& state = files_[path];
  KVD_ASSIGN_OR_RETURN(state.synced_size, base->Size());
  state.undo.clear();
  return absl::OkStatus();
}

absl::Status FaultInjectionFileSystem::Truncate(RandomRWFile* base,
                                                uint64_t size) {
  absl::MutexLock lock(&mu_);
  const std::string& path = base->path();
  if (!active_) return InactiveError(absl::StrCat("truncate(", path, ")"));
  FileState& state = files_[path];
  KVD_RETURN_IF_ERROR(SaveUndoLocked(state, path, size, state.synced_size));
  return base->Truncate(size);
}

absl::Status FaultInjectionFileSystem::DropUnsyncedData() {
  absl::MutexLock lock(&mu_);
  for (auto it = files_.begin(); it != files_.end();) {
    const std::string& path = it->first;
    FileState& state = it->second;
    if (!state.name_synced) {
      state.shadow.reset();
      absl::Status s = base_->Delete(path);
      if (!s.ok() && !absl::IsNotFound(s)) return s;
      files_.erase(it++);
      continue;
    }
    KVD_RETURN_IF_ERROR(ShadowLocked(state, path));
    for (auto u = state.undo.rbegin(); u != state.undo.rend(); ++u) {
      KVD_RETURN_IF_ERROR(state.shadow->WriteAt(u->offset, u->old_bytes));
    }
    KVD_RETURN_IF_ERROR(state.shadow->Truncate(state.synced_size));
    KVD_RETURN_IF_ERROR(state.shadow->Sync());
    state.undo.clear();
    state.shadow.reset();
    ++it;
  }
  return absl::OkStatus();
}

absl::Status FaultInjectionFileSystem::Delete(const std::string& path) {
  absl::MutexLock lock(&mu_);
  if (!active_) return InactiveError(absl::StrCat("delete(", path, ")"));
  KVD_RETURN_IF_ERROR(base_->Delete(path));
  files_.erase(path);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> FaultInjectionFileSystem::List(
    const std::string& dir) {
  return base_->List(dir);
}

absl::Status FaultInjectionFileSystem::CreateDir(const std::string& dir) {
  {
    absl::MutexLock lock(&mu_);
    if (!active_) return InactiveError(absl::StrCat("mkdir(", dir, ")"));
  }
  return base_->CreateDir(dir);
}

absl::Status FaultInjectionFileSystem::Rename(const std::string& from,
                                              const std::string& to) {
  absl::MutexLock lock(&mu_);
  if (!active_) return InactiveError(absl::StrCat("rename(", from, ")"));
  KVD_RETURN_IF_ERROR(base_->Rename(from, to));
  auto node = files_.extract(from);
  files_.erase(to);
  if (!node.empty()) {
    node.key() = to;
    node.mapped().shadow.reset();
    node.mapped().name_synced = false;
    files_.insert(std::move(node));
  }
  return absl::OkStatus();
}

absl::Status FaultInjectionFileSystem::SyncDir(const std::string& dir) {
  absl::MutexLock lock(&mu_);
  if (!active_) return InactiveError(absl::StrCat("syncdir(", dir, ")"));
  KVD_RETURN_IF_ERROR(base_->SyncDir(dir));
  const std::string prefix = dir.empty() || dir.back() == '/' ? dir : dir + "/";
  for (auto& [path, state] : files_) {
    if (path.size() > prefix.size() &&
        path.compare(0, prefix.size(), prefix) == 0 &&
        path.find('/', prefix.size()) == std::string::npos) {
      state.name_synced = true;
    }
  }
  return absl::OkStatus();
}

}  // namespace kvd
