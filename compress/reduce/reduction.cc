#include "compress/reduce/reduction.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/check.h"

namespace kvd::compress::reduce {

void HeadReduction::AddSingle(uint32_t position) {
  map.position.push_back(position);
  map.members.push_back(position);
  map.offsets.push_back(static_cast<uint32_t>(map.members.size()));
  weight.push_back(1.0f);
}

void HeadReduction::AddGroup(uint32_t position,
                             const std::vector<uint32_t>& members,
                             const std::vector<double>& weights) {
  KVD_CHECK(!members.empty() && members.size() == weights.size(),
            "a group has members and one weight each");
  double sum = 0;
  for (double w : weights) sum += w;
  const bool uniform = !(sum > 0) || !std::isfinite(sum);
  map.position.push_back(position);
  for (size_t i = 0; i < members.size(); ++i) {
    map.members.push_back(members[i]);
    weight.push_back(uniform ? 1.0f / members.size()
                             : static_cast<float>(weights[i] / sum));
  }
  map.offsets.push_back(static_cast<uint32_t>(map.members.size()));
}

namespace {

absl::Status CheckData(const HeadTensor& t, absl::string_view codec,
                       const char* what) {
  if (t.size() != size_t{t.heads} * t.tokens * t.dim) {
    return absl::InvalidArgumentError(
        absl::StrCat(codec, ": ", what, " holds ", t.size(), " floats, not [",
                     t.heads, "][", t.tokens, "][", t.dim, "]"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckLayer(const LayerKV& kv, absl::string_view codec) {
  if (kv.Reduced()) {
    return absl::FailedPreconditionError(
        absl::StrCat(codec, ": the layer is already token-reduced"));
  }
  if (kv.k.heads == 0 || kv.k.tokens == 0 || kv.k.dim == 0 || kv.v.dim == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        codec, ": keys are [", kv.k.heads, "][", kv.k.tokens, "][", kv.k.dim,
        "], values have dim ", kv.v.dim, "; every size must be at least 1"));
  }
  if (kv.v.heads != kv.k.heads || kv.v.tokens != kv.k.tokens) {
    return absl::InvalidArgumentError(absl::StrCat(
        codec, ": values are [", kv.v.heads, "][", kv.v.tokens,
        "][...], keys [", kv.k.heads, "][", kv.k.tokens, "][...]"));
  }
  if (auto s = CheckData(kv.k, codec, "keys"); !s.ok()) return s;
  if (auto s = CheckData(kv.v, codec, "values"); !s.ok()) return s;
  for (size_t i = 0; i < kv.k.size(); ++i) {
    if (!std::isfinite(kv.k.data[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat(codec, ": key element ", i, " is not finite"));
    }
  }
  return absl::OkStatus();
}

std::vector<HeadReduction> Identity(uint32_t heads, uint32_t tokens) {
  std::vector<HeadReduction> out(heads);
  for (HeadReduction& h : out) {
    for (uint32_t t = 0; t < tokens; ++t) h.AddSingle(t);
  }
  return out;
}

std::vector<HeadReduction> Eviction(
    const std::vector<std::vector<uint32_t>>& kept) {
  std::vector<HeadReduction> out(kept.size());
  for (size_t h = 0; h < kept.size(); ++h) {
    for (uint32_t p : kept[h]) out[h].AddSingle(p);
  }
  return out;
}

namespace {

// Writes the kept rows of one head of `src` into head `head` of `dst`.
void WriteRows(const HeadReduction& r, uint32_t head, const HeadTensor& src,
               HeadTensor& dst) {
  const uint32_t d = src.dim;
  for (size_t i = 0; i < r.map.kept(); ++i) {
    float* out = dst.Row(head, static_cast<uint32_t>(i));
    const uint32_t b = r.map.offsets[i], e = r.map.offsets[i + 1];
    if (e - b == 1) {
      std::memcpy(out, src.Row(head, r.map.members[b]), d * sizeof(float));
      continue;
    }
    std::vector<double> acc(d, 0.0);
    for (uint32_t m = b; m < e; ++m) {
      const float* row = src.Row(head, r.map.members[m]);
      const double w = r.weight[m];
      for (uint32_t j = 0; j < d; ++j) acc[j] += w * row[j];
    }
    for (uint32_t j = 0; j < d; ++j) out[j] = static_cast<float>(acc[j]);
  }
}

}  // namespace

void Materialize(std::vector<HeadReduction> heads, LayerKV& kv) {
  const uint32_t tokens = kv.k.tokens;
  KVD_CHECK(heads.size() == kv.k.heads, "one reduction per KV head");
  const uint32_t kept = static_cast<uint32_t>(heads[0].map.kept());
  for (const HeadReduction& h : heads) {
    KVD_CHECK(h.map.kept() == kept, "every head keeps the same count");
    KVD_CHECK(h.weight.size() == h.map.members.size(), "a weight per member");
    KVD_CHECK(h.map.Validate(tokens).ok(), "reducer built a valid TokenMap");
  }
  HeadTensor k(kv.k.heads, kept, kv.k.dim);
  HeadTensor v(kv.v.heads, kept, kv.v.dim);
  for (uint32_t h = 0; h < kv.k.heads; ++h) {
    WriteRows(heads[h], h, kv.k, k);
    WriteRows(heads[h], h, kv.v, v);
  }
  kv.k = std::move(k);
  kv.v = std::move(v);
  kv.maps.clear();
  for (HeadReduction& h : heads) kv.maps.push_back(std::move(h.map));
}

}  // namespace kvd::compress::reduce
