#include "store/proto/data_wire.h"

#include <unistd.h>

#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace kvd::wire {
namespace {

class Writer {
 public:
  template <typename T>
  void Int(T v) {
    static_assert(std::is_integral_v<T>);
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));  // little-endian hosts only (x86, arm64)
    out_.append(b, sizeof(T));
  }
  void Bytes(absl::Span<const uint8_t> b) {
    out_.append(reinterpret_cast<const char*>(b.data()), b.size());
  }
  void Key(const ChunkKey& k) { Bytes(k.bytes); }
  void String32(const std::string& s) {
    Int<uint32_t>(static_cast<uint32_t>(s.size()));
    out_ += s;
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(absl::Span<const uint8_t> in) : in_(in) {}

  template <typename T>
  absl::Status Int(const char* field, T* v) {
    KVD_RETURN_IF_ERROR(Need(field, sizeof(T)));
    std::memcpy(v, in_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return absl::OkStatus();
  }
  absl::Status Bytes(const char* field, uint8_t* dst, size_t n) {
    KVD_RETURN_IF_ERROR(Need(field, n));
    std::memcpy(dst, in_.data() + pos_, n);
    pos_ += n;
    return absl::OkStatus();
  }
  absl::Status Key(const char* field, ChunkKey* k) {
    return Bytes(field, k->bytes.data(), ChunkKey::kSize);
  }
  absl::Status String32(const char* field, uint32_t max, std::string* s) {
    uint32_t n;
    KVD_RETURN_IF_ERROR(Int(field, &n));
    if (n > max) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, " is ", n, " bytes, the limit is ", max));
    }
    KVD_RETURN_IF_ERROR(Need(field, n));
    s->assign(reinterpret_cast<const char*>(in_.data() + pos_), n);
    pos_ += n;
    return absl::OkStatus();
  }
  // Reads a count and checks that many items of at least `item_bytes` each
  // can still follow, so nothing is allocated for a lying count.
  absl::Status Count(const char* field, uint32_t max, size_t item_bytes,
                     uint32_t* n) {
    KVD_RETURN_IF_ERROR(Int(field, n));
    if (*n > max) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, "=", *n, " exceeds the limit of ", max));
    }
    if (static_cast<uint64_t>(*n) * item_bytes > in_.size() - pos_) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, "=", *n, " items do not fit the ",
                       in_.size() - pos_, " bytes left"));
    }
    return absl::OkStatus();
  }
  absl::Status Done(const char* what) const {
    if (pos_ != in_.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " has ", in_.size() - pos_, " trailing bytes"));
    }
    return absl::OkStatus();
  }

 private:
  absl::Status Need(const char* field, size_t n) const {
    if (in_.size() - pos_ < n) {
      return absl::InvalidArgumentError(
          absl::StrCat("truncated message: ", field, " needs ", n, " bytes, ",
                       in_.size() - pos_, " left"));
    }
    return absl::OkStatus();
  }

  absl::Span<const uint8_t> in_;
  size_t pos_ = 0;
};

constexpr uint32_t kMagic = 0x5044564b;  // "KVDP"

// What a GetItem reads (its `what` byte).
constexpr uint8_t kGetPart = 0;           // the selection's bytes
constexpr uint8_t kGetWholeObject = 1;    // header and every layer
constexpr uint8_t kGetHeaderAndPart = 2;  // header, then the selection
constexpr uint8_t kGetRanges = 3;         // selection.ranges: count, pairs

absl::Status CheckVersion(Reader& r) {
  uint32_t magic, version;
  KVD_RETURN_IF_ERROR(r.Int("magic", &magic));
  if (magic != kMagic) {
    return absl::InvalidArgumentError("not a kvdepot data-path message");
  }
  KVD_RETURN_IF_ERROR(r.Int("protocol_version", &version));
  if (version != kProtocolVersion) {
    return absl::InvalidArgumentError(absl::StrCat("protocol_version ", version,
                                                   " is not supported (",
                                                   kProtocolVersion, ")"));
  }
  return absl::OkStatus();
}

void Versioned(Writer& w) {
  w.Int(kMagic);
  w.Int(kProtocolVersion);
}

absl::Status CheckSize(const char* field, uint64_t size) {
  if (size == 0 || size >= kMaxObjectBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, "=", size, " is outside [1, ", kMaxObjectBytes, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

std::string Encode(const RequestHeader& h) {
  Writer w;
  Versioned(w);
  w.Bytes(h.session);
  w.Int(h.request_id);
  w.Int(static_cast<uint8_t>(h.op));
  return w.Take();
}

absl::StatusOr<RequestHeader> DecodeRequestHeader(
    absl::Span<const uint8_t> bytes) {
  Reader r(bytes);
  KVD_RETURN_IF_ERROR(CheckVersion(r));
  RequestHeader h;
  uint8_t op;
  KVD_RETURN_IF_ERROR(r.Bytes("session", h.session.data(), h.session.size()));
  KVD_RETURN_IF_ERROR(r.Int("request_id", &h.request_id));
  KVD_RETURN_IF_ERROR(r.Int("op", &op));
  if (op < 1 || op > 3) {
    return absl::InvalidArgumentError(absl::StrCat("op ", op, " is unknown"));
  }
  h.op = static_cast<Op>(op);
  KVD_RETURN_IF_ERROR(r.Done("request header"));
  return h;
}

std::string Encode(const DataHeader& h) {
  Writer w;
  Versioned(w);
  w.Bytes(h.session);
  w.Int(h.request_id);
  w.Int(h.index);
  return w.Take();
}

absl::StatusOr<DataHeader> DecodeDataHeader(absl::Span<const uint8_t> bytes) {
  Reader r(bytes);
  KVD_RETURN_IF_ERROR(CheckVersion(r));
  DataHeader h;
  KVD_RETURN_IF_ERROR(r.Bytes("session", h.session.data(), h.session.size()));
  KVD_RETURN_IF_ERROR(r.Int("request_id", &h.request_id));
  KVD_RETURN_IF_ERROR(r.Int("index", &h.index));
  if (h.index >= kMaxBatchKeys) {
    return absl::InvalidArgumentError(
        absl::StrCat("index=", h.index, " exceeds ", kMaxBatchKeys));
  }
  KVD_RETURN_IF_ERROR(r.Done("data header"));
  return h;
}

std::string Encode(const ResponseHeader& h) {
  Writer w;
  Versioned(w);
  w.Int(h.request_id);
  return w.Take();
}

absl::StatusOr<ResponseHeader> DecodeResponseHeader(
    absl::Span<const uint8_t> bytes) {
  Reader r(bytes);
  KVD_RETURN_IF_ERROR(CheckVersion(r));
  ResponseHeader h;
  KVD_RETURN_IF_ERROR(r.Int("request_id", &h.request_id));
  KVD_RETURN_IF_ERROR(r.Done("response header"));
  return h;
}

std::string Encode(const PutBody& b) {
  Writer w;
  w.String32(b.rkey);
  w.Int(static_cast<uint32_t>(b.items.size()));
  for (const PutItem& it : b.items) {
    w.Key(it.key);
    w.Int(it.size);
    w.Int(it.address);
  }
  return w.Take();
}

absl::StatusOr<PutBody> DecodePutBody(absl::Span<const uint8_t> bytes) {
  Reader r(bytes);
  PutBody b;
  uint32_t n;
  KVD_RETURN_IF_ERROR(r.String32("rkey", kMaxRkeyBytes, &b.rkey));
  KVD_RETURN_IF_ERROR(r.Count("put.count", kMaxBatchKeys, 48, &n));
  b.items.resize(n);
  for (PutItem& it : b.items) {
    KVD_RETURN_IF_ERROR(r.Key("put.key", &it.key));
    KVD_RETURN_IF_ERROR(r.Int("put.size", &it.size));
    KVD_RETURN_IF_ERROR(CheckSize("put.size", it.size));
    KVD_RETURN_IF_ERROR(r.Int("put.address", &it.address));
  }
  KVD_RETURN_IF_ERROR(r.Done("put request"));
  return b;
}

std::string Encode(const GetBody& b) {
  Writer w;
  w.String32(b.rkey);
  w.Int(static_cast<uint32_t>(b.items.size()));
  for (const GetItem& it : b.items) {
    w.Key(it.key);
    const ChunkSelection& s = it.selection;
    if (!it.whole_object && !s.ranges.empty()) {
      w.Int(kGetRanges);
      w.Int(static_cast<uint32_t>(s.ranges.size()));
      for (const ByteRange& r : s.ranges) {
        w.Int(r.offset);
        w.Int(r.length);
      }
    } else {
      w.Int(it.whole_object ? kGetWholeObject
            : s.with_header ? kGetHeaderAndPart
                            : kGetPart);
      w.Int(s.layer_begin);
      w.Int(s.layer_end);
      w.Int(s.head_begin);
      w.Int(s.head_end);
    }
    w.Int(it.address);
    w.Int(it.capacity);
  }
  return w.Take();
}

namespace {

// Explicit ranges of one get item: a count, then (offset, length) pairs.
absl::Status DecodeRanges(Reader& r, std::vector<ByteRange>& ranges) {
  uint32_t count;
  KVD_RETURN_IF_ERROR(
      r.Count("get.ranges", kMaxRangesPerItem, 2 * sizeof(uint64_t), &count));
  if (count == 0) return absl::InvalidArgumentError("get.ranges is empty");
  ranges.resize(count);
  for (ByteRange& range : ranges) {
    KVD_RETURN_IF_ERROR(r.Int("get.range.offset", &range.offset));
    KVD_RETURN_IF_ERROR(r.Int("get.range.length", &range.length));
    if (range.length == 0 || range.offset >= kMaxObjectBytes ||
        range.length > kMaxObjectBytes - range.offset) {
      return absl::InvalidArgumentError(
          absl::StrCat("get.range [", range.offset, ", +", range.length,
                       ") is empty or past the largest object"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<GetBody> DecodeGetBody(absl::Span<const uint8_t> bytes) {
  Reader r(bytes);
  GetBody b;
  uint32_t n;
  KVD_RETURN_IF_ERROR(r.String32("rkey", kMaxRkeyBytes, &b.rkey));
  KVD_RETURN_IF_ERROR(r.Count("get.count", kMaxBatchKeys, 65, &n));
  b.items.resize(n);
  for (GetItem& it : b.items) {
    uint8_t what;
    KVD_RETURN_IF_ERROR(r.Key("get.key", &it.key));
    KVD_RETURN_IF_ERROR(r.Int("get.what", &what));
    if (what > kGetRanges) {
      return absl::InvalidArgumentError(
          absl::StrCat("get.what=", what, " is not 0, 1, 2 or 3"));
    }
    it.whole_object = what == kGetWholeObject;
    ChunkSelection& s = it.selection;
    s.with_header = what == kGetHeaderAndPart;
    if (what == kGetRanges) {
      KVD_RETURN_IF_ERROR(DecodeRanges(r, s.ranges));
    } else {
      KVD_RETURN_IF_ERROR(r.Int("get.layer_begin", &s.layer_begin));
      KVD_RETURN_IF_ERROR(r.Int("get.layer_end", &s.layer_end));
      KVD_RETURN_IF_ERROR(r.Int("get.head_begin", &s.head_begin));
      KVD_RETURN_IF_ERROR(r.Int("get.head_end", &s.head_end));
      if (s.layer_begin >= s.layer_end || s.head_begin >= s.head_end) {
        return absl::InvalidArgumentError(absl::StrCat(
            "get selection layers [", s.layer_begin, ", ", s.layer_end,
            ") heads [", s.head_begin, ", ", s.head_end, ") is empty"));
      }
    }
    KVD_RETURN_IF_ERROR(r.Int("get.address", &it.address));
    KVD_RETURN_IF_ERROR(r.Int("get.capacity", &it.capacity));
    KVD_RETURN_IF_ERROR(CheckSize("get.capacity", it.capacity));
  }
  KVD_RETURN_IF_ERROR(r.Done("get request"));
  return b;
}

std::string Encode(const LookupBody& b) {
  Writer w;
  w.Int(static_cast<uint32_t>(b.keys.size()));
  for (const ChunkKey& k : b.keys) w.Key(k);
  return w.Take();
}

absl::StatusOr<LookupBody> DecodeLookupBody(absl::Span<const uint8_t> bytes) {
  Reader r(bytes);
  LookupBody b;
  uint32_t n;
  KVD_RETURN_IF_ERROR(
      r.Count("lookup.count", kMaxBatchKeys, ChunkKey::kSize, &n));
  b.keys.resize(n);
  for (ChunkKey& k : b.keys) KVD_RETURN_IF_ERROR(r.Key("lookup.key", &k));
  KVD_RETURN_IF_ERROR(r.Done("lookup request"));
  return b;
}

std::string Encode(const ResultsBody& b) {
  Writer w;
  w.Int(static_cast<uint32_t>(b.results.size()));
  for (const Result& res : b.results) {
    w.Int(static_cast<uint32_t>(res.code));
    w.Int(res.value);
    w.String32(res.message.substr(0, kMaxMessageBytes));
  }
  return w.Take();
}

absl::StatusOr<ResultsBody> DecodeResultsBody(absl::Span<const uint8_t> bytes) {
  Reader r(bytes);
  ResultsBody b;
  uint32_t n;
  KVD_RETURN_IF_ERROR(r.Count("results.count", kMaxBatchKeys, 16, &n));
  b.results.resize(n);
  for (Result& res : b.results) {
    uint32_t code;
    KVD_RETURN_IF_ERROR(r.Int("result.code", &code));
    if (code > static_cast<uint32_t>(absl::StatusCode::kUnauthenticated)) {
      return absl::InvalidArgumentError(
          absl::StrCat("result.code=", code, " is not a status code"));
    }
    res.code = static_cast<absl::StatusCode>(code);
    KVD_RETURN_IF_ERROR(r.Int("result.value", &res.value));
    KVD_RETURN_IF_ERROR(
        r.String32("result.message", kMaxMessageBytes, &res.message));
  }
  KVD_RETURN_IF_ERROR(r.Done("results"));
  return b;
}

std::string LocalHostId() {
  std::ifstream in("/etc/machine-id");
  std::string id;
  if (in && std::getline(in, id) && !id.empty()) return id;
  char name[256] = {};
  gethostname(name, sizeof(name) - 1);
  return name;
}

Result ResultOf(const absl::Status& status, uint64_t value) {
  if (status.ok()) return Result{absl::StatusCode::kOk, value, {}};
  return Result{status.code(), 0,
                std::string(status.message().substr(0, kMaxMessageBytes))};
}

absl::Status StatusOf(const Result& result) {
  return absl::Status(result.code, result.message);
}

}  // namespace kvd::wire
