#include "store/engine/ssd/ssd_index.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/write_batch.h"

namespace kvd {
namespace {

// The one adapter from rocksdb::Status to absl::Status (STYLE.md §3).
absl::Status FromRocksDb(const rocksdb::Status& s, std::string_view context) {
  if (s.ok()) return absl::OkStatus();
  std::string msg =
      absl::StrCat(std::string(context), ": rocksdb: ", s.ToString());
  switch (s.code()) {
    case rocksdb::Status::kNotFound:
      return absl::NotFoundError(msg);
    case rocksdb::Status::kCorruption:
      return absl::DataLossError(msg);
    case rocksdb::Status::kInvalidArgument:
    case rocksdb::Status::kNotSupported:
      return absl::InvalidArgumentError(msg);
    case rocksdb::Status::kBusy:
    case rocksdb::Status::kTimedOut:
    case rocksdb::Status::kTryAgain:
      return absl::UnavailableError(msg);
    case rocksdb::Status::kAborted:
      return absl::AbortedError(msg);
    case rocksdb::Status::kIncomplete:
    case rocksdb::Status::kShutdownInProgress:
      return absl::FailedPreconditionError(msg);
    case rocksdb::Status::kIOError:
      if (s.subcode() == rocksdb::Status::kNoSpace)
        return absl::ResourceExhaustedError(msg);
      return absl::InternalError(msg);
    default:
      return absl::InternalError(msg);
  }
}

rocksdb::Slice KeySlice(const ChunkKey& key) {
  return rocksdb::Slice(reinterpret_cast<const char*>(key.bytes.data()),
                        ChunkKey::kSize);
}

template <typename T>
void Put(std::string* out, T v) {
  out->append(reinterpret_cast<const char*>(&v), sizeof(T));
}

constexpr std::string_view kWatermarkPrefix = "wm/";
constexpr size_t kFixedValueBytes = 1 + 4 + 8 * 4 + ChunkKey::kSize + 2;

}  // namespace

std::string EncodeIndexValue(const SsdIndexEntry& e) {
  std::string out;
  out.reserve(kFixedValueBytes + e.codec.size());
  Put<uint8_t>(&out, kIndexValueVersion);
  Put<uint32_t>(&out, e.segment);
  Put<uint64_t>(&out, e.offset);
  Put<uint64_t>(&out, e.record_len);
  Put<uint64_t>(&out, e.payload_len);
  Put<uint64_t>(&out, e.payload_checksum);
  out.append(reinterpret_cast<const char*>(e.parent.bytes.data()),
             ChunkKey::kSize);
  Put<uint16_t>(&out, static_cast<uint16_t>(e.codec.size()));
  out.append(e.codec);
  return out;
}

absl::StatusOr<SsdIndexEntry> DecodeIndexValue(std::string_view v) {
  if (v.empty()) return absl::DataLossError("index value is empty");
  if (static_cast<uint8_t>(v[0]) != kIndexValueVersion) {
    return absl::InvalidArgumentError(absl::StrCat(
        "index value version=", static_cast<int>(static_cast<uint8_t>(v[0])),
        " is not supported (want ", kIndexValueVersion, ")"));
  }
  if (v.size() < kFixedValueBytes) {
    return absl::DataLossError(absl::StrCat("index value size=", v.size(),
                                            " < minimum ", kFixedValueBytes));
  }
  const char* p = v.data() + 1;
  auto take = [&p](auto* field) {
    std::memcpy(field, p, sizeof(*field));
    p += sizeof(*field);
  };
  SsdIndexEntry e;
  take(&e.segment);
  take(&e.offset);
  take(&e.record_len);
  take(&e.payload_len);
  take(&e.payload_checksum);
  std::memcpy(e.parent.bytes.data(), p, ChunkKey::kSize);
  p += ChunkKey::kSize;
  uint16_t codec_len;
  take(&codec_len);
  if (v.size() != kFixedValueBytes + codec_len) {
    return absl::DataLossError(absl::StrCat(
        "index value size=", v.size(), " does not match codec_len=", codec_len,
        " (want ", kFixedValueBytes + codec_len, ")"));
  }
  e.codec.assign(p, codec_len);
  return e;
}

std::string WatermarkKey(uint32_t segment) {
  return absl::StrFormat("%s%010u", kWatermarkPrefix, segment);
}

std::optional<uint32_t> ParseWatermarkKey(std::string_view key) {
  if (key.size() != kWatermarkPrefix.size() + 10 ||
      !key.starts_with(kWatermarkPrefix)) {
    return std::nullopt;
  }
  uint64_t id = 0;
  for (char c : key.substr(kWatermarkPrefix.size())) {
    if (c < '0' || c > '9') return std::nullopt;
    id = id * 10 + static_cast<uint64_t>(c - '0');
  }
  if (id > UINT32_MAX) return std::nullopt;
  return static_cast<uint32_t>(id);
}

std::string EncodeWatermark(uint64_t offset) {
  std::string out;
  Put<uint64_t>(&out, offset);
  return out;
}

absl::StatusOr<uint64_t> DecodeWatermark(std::string_view value) {
  if (value.size() != sizeof(uint64_t)) {
    return absl::DataLossError(absl::StrCat(
        "watermark value size=", value.size(), ", want ", sizeof(uint64_t)));
  }
  uint64_t offset;
  std::memcpy(&offset, value.data(), sizeof(offset));
  return offset;
}

SsdIndex::SsdIndex(std::unique_ptr<rocksdb::DB> db) : db_(std::move(db)) {}
SsdIndex::~SsdIndex() = default;

absl::StatusOr<std::unique_ptr<SsdIndex>> SsdIndex::Open(
    const std::string& path) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.paranoid_checks = true;
  options.write_buffer_size = 16 << 20;
  options.max_background_jobs = 2;
  options.keep_log_file_num = 4;
  rocksdb::DB* raw = nullptr;
  KVD_RETURN_IF_ERROR(FromRocksDb(rocksdb::DB::Open(options, path, &raw),
                                  absl::StrCat("open ", path)));
  return std::unique_ptr<SsdIndex>(
      new SsdIndex(std::unique_ptr<rocksdb::DB>(raw)));
}

absl::Status SsdIndex::Write(
    absl::Span<const std::pair<ChunkKey, std::string>> puts,
    absl::Span<const ChunkKey> deletes, bool sync) {
  rocksdb::WriteBatch batch;
  for (const auto& [key, value] : puts) {
    KVD_RETURN_IF_ERROR(
        FromRocksDb(batch.Put(KeySlice(key), value), "index batch put"));
  }
  for (const ChunkKey& key : deletes) {
    KVD_RETURN_IF_ERROR(
        FromRocksDb(batch.Delete(KeySlice(key)), "index batch delete"));
  }
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  return FromRocksDb(db_->Write(wo, &batch), "index write");
}

absl::Status SsdIndex::DeleteRaw(absl::Span<const std::string> keys,
                                 bool sync) {
  return WriteRaw(keys, {}, sync);
}

absl::Status SsdIndex::WriteRaw(
    absl::Span<const std::string> deletes,
    absl::Span<const std::pair<std::string, std::string>> puts, bool sync) {
  rocksdb::WriteBatch batch;
  for (const std::string& key : deletes) {
    KVD_RETURN_IF_ERROR(FromRocksDb(batch.Delete(key), "index batch delete"));
  }
  for (const auto& [key, value] : puts) {
    KVD_RETURN_IF_ERROR(FromRocksDb(batch.Put(key, value), "index batch put"));
  }
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  return FromRocksDb(db_->Write(wo, &batch), "index write");
}

absl::Status SsdIndex::ForEach(
    absl::FunctionRef<absl::Status(std::string_view, std::string_view)> fn) {
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions()));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    KVD_RETURN_IF_ERROR(
        fn(std::string_view(it->key().data(), it->key().size()),
           std::string_view(it->value().data(), it->value().size())));
  }
  return FromRocksDb(it->status(), "index scan");
}

absl::Status SsdIndex::SyncWal() {
  return FromRocksDb(db_->SyncWAL(), "index SyncWAL");
}

}  // namespace kvd
