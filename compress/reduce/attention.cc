#include "compress/reduce/attention.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/check.h"

namespace kvd::compress::reduce {
namespace {

using RowMatrix =
    Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Query rows scored per matrix product: large enough for an efficient
// product, small enough that the causal mask wastes little.
constexpr uint32_t kBlockRows = 128;

}  // namespace

absl::Status CheckQueries(const CodecInputs& in, const HeadTensor& keys,
                          absl::string_view codec) {
  if (in.queries == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        codec, ": needs queries to score tokens and CodecInputs has none"));
  }
  const HeadTensor& q = *in.queries;
  if (q.heads == 0 || q.heads % keys.heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(codec, ": queries q_heads=", q.heads,
                     " is not a positive multiple of kv_heads=", keys.heads));
  }
  if (q.dim != keys.dim) {
    return absl::InvalidArgumentError(
        absl::StrCat(codec, ": queries head_dim=", q.dim,
                     " differs from keys head_dim=", keys.dim));
  }
  if (q.tokens == 0 || q.tokens > keys.tokens) {
    return absl::InvalidArgumentError(
        absl::StrCat(codec, ": queries q_tokens=", q.tokens,
                     " is outside [1, tokens=", keys.tokens, "]"));
  }
  if (q.size() != size_t{q.heads} * q.tokens * q.dim) {
    return absl::InvalidArgumentError(
        absl::StrCat(codec, ": queries hold ", q.size(), " floats, not [",
                     q.heads, "][", q.tokens, "][", q.dim, "]"));
  }
  for (size_t i = 0; i < q.size(); ++i) {
    if (!std::isfinite(q.data[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat(codec, ": queries element ", i, " is not finite"));
    }
  }
  return absl::OkStatus();
}

std::vector<double> AccumulatedAttention(const HeadTensor& queries,
                                         const HeadTensor& keys,
                                         uint32_t kv_head,
                                         uint32_t first_query) {
  const uint32_t t = keys.tokens, d = keys.dim, nq = queries.tokens;
  KVD_CHECK(queries.heads % keys.heads == 0 && queries.dim == d && nq <= t &&
                first_query < nq && kv_head < keys.heads,
            "queries checked against keys");
  const uint32_t group = queries.heads / keys.heads;
  const uint32_t offset = t - nq;  // position of query 0
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));

  Eigen::Map<const RowMatrix> k(keys.Row(kv_head, 0), t, d);
  Eigen::VectorXd acc = Eigen::VectorXd::Zero(t);
  RowMatrix s(std::min(kBlockRows, nq - first_query), t);
  Eigen::RowVectorXf colsum(t);  // one block's probabilities per key
  for (uint32_t g = 0; g < group; ++g) {
    Eigen::Map<const RowMatrix> q(queries.Row(kv_head * group + g, 0), nq, d);
    for (uint32_t i0 = first_query; i0 < nq; i0 += kBlockRows) {
      const uint32_t rows = std::min(kBlockRows, nq - i0);
      const uint32_t cols = offset + i0 + rows;  // keys the last row sees
      auto block = s.topLeftCorner(rows, cols);
      block.noalias() =
          (q.middleRows(i0, rows) * scale) * k.topRows(cols).transpose();
      colsum.head(cols).setZero();
      for (uint32_t r = 0; r < rows; ++r) {
        const uint32_t visible = offset + i0 + r + 1;
        auto seen = block.row(r).head(visible);
        const float max = seen.maxCoeff();
        seen = (seen.array() - max).exp();
        colsum.head(visible) += seen * (1.0f / seen.sum());
      }
      acc.head(cols) += colsum.head(cols).transpose().cast<double>();
    }
  }
  acc /= group;
  // A query whose scores overflow float gives NaN rows: it contributes nothing.
  for (Eigen::Index i = 0; i < acc.size(); ++i) {
    if (std::isnan(acc[i])) acc[i] = 0;
  }
  return std::vector<double>(acc.data(), acc.data() + t);
}

}  // namespace kvd::compress::reduce
