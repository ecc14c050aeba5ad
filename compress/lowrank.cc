#include "compress/lowrank.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/chunk_format.h"
#include "core/status.h"

namespace kvd::compress {
namespace {

constexpr uint32_t kBasesMagic = 0x4244564b;  // "KVDB"
constexpr uint32_t kBasesVersion = 1;
constexpr uint32_t kMaxBasesDim = 1024;

using RowMatrix =
    Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

}  // namespace

LowRankBases::LowRankBases(uint32_t layers, uint32_t heads, uint32_t dim)
    : layers_(layers),
      heads_(heads),
      dim_(dim),
      data_(size_t{layers} * heads * 2 * (2 * dim + size_t{dim} * dim)) {}

size_t LowRankBases::Block(uint32_t layer, uint32_t head,
                           uint32_t tensor) const {
  return ((size_t{layer} * heads_ + head) * 2 + tensor) *
         (2 * dim_ + size_t{dim_} * dim_);
}

const float* LowRankBases::Mean(uint32_t layer, uint32_t head,
                                uint32_t tensor) const {
  return data_.data() + Block(layer, head, tensor);
}

const float* LowRankBases::Components(uint32_t layer, uint32_t head,
                                      uint32_t tensor) const {
  return data_.data() + Block(layer, head, tensor) + 2 * dim_;
}

double LowRankBases::ExplainedVariance(uint32_t layer, uint32_t head,
                                       uint32_t tensor, uint32_t r) const {
  const float* var = data_.data() + Block(layer, head, tensor) + dim_;
  double total = 0, top = 0;
  for (uint32_t j = 0; j < dim_; ++j) {
    total += var[j];
    if (j < r) top += var[j];
  }
  return total > 0 ? top / total : 1.0;
}

absl::StatusOr<std::shared_ptr<const LowRankBases>> LowRankBases::Fit(
    absl::Span<const LayerKV> calibration) {
  if (calibration.empty() || calibration[0].k.heads == 0 ||
      calibration[0].k.dim == 0 || calibration[0].k.dim > kMaxBasesDim) {
    return absl::InvalidArgumentError(
        "lowrank fit: calibration needs >= 1 layer with heads > 0 and "
        "0 < head_dim <= 1024");
  }
  const uint32_t heads = calibration[0].k.heads, dim = calibration[0].k.dim;
  std::shared_ptr<LowRankBases> b(
      new LowRankBases(static_cast<uint32_t>(calibration.size()), heads, dim));
  for (uint32_t l = 0; l < b->layers_; ++l) {
    const LayerKV& kv = calibration[l];
    for (uint32_t tensor = 0; tensor < 2; ++tensor) {
      const HeadTensor& t = tensor == 0 ? kv.k : kv.v;
      if (t.heads != heads || t.dim != dim || t.tokens == 0 ||
          t.size() != size_t{heads} * t.tokens * dim) {
        return absl::InvalidArgumentError(
            absl::StrCat("lowrank fit: layer ", l, " tensor ", tensor, " is [",
                         t.heads, "][", t.tokens, "][", t.dim, "], expected [",
                         heads, "][>0][", dim, "]"));
      }
      for (uint32_t h = 0; h < heads; ++h) {
        Eigen::Map<const RowMatrix> x(t.Row(h, 0), t.tokens, dim);
        const Eigen::RowVectorXd mean = x.cast<double>().colwise().mean();
        const Eigen::MatrixXd centered = x.cast<double>().rowwise() - mean;
        const Eigen::MatrixXd cov =
            centered.transpose() * centered / static_cast<double>(t.tokens);
        Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(cov);
        float* block = b->data_.data() + b->Block(l, h, tensor);
        // Eigen orders eigenvalues increasingly; store them decreasing.
        for (uint32_t j = 0; j < dim; ++j) {
          const uint32_t src = dim - 1 - j;
          block[j] = static_cast<float>(mean(j));
          block[dim + j] =
              static_cast<float>(std::max(0.0, eig.eigenvalues()(src)));
          for (uint32_t c = 0; c < dim; ++c) {
            block[2 * dim + size_t{c} * dim + j] =
                static_cast<float>(eig.eigenvectors()(c, src));
          }
        }
      }
    }
  }
  const std::vector<uint8_t> bytes = b->Serialize();
  b->fingerprint_ = Checksum64(bytes);
  return b;
}

std::vector<uint8_t> LowRankBases::Serialize() const {
  ByteWriter w;
  for (uint32_t x : {kBasesMagic, kBasesVersion, layers_, heads_, dim_})
    w.Put(x);
  w.PutArray<float>(data_);
  const uint64_t checksum = Checksum64(w.bytes());
  w.Put(checksum);
  return std::move(w.bytes());
}

absl::StatusOr<std::shared_ptr<const LowRankBases>> LowRankBases::Parse(
    absl::Span<const uint8_t> bytes) {
  ByteReader r(bytes);
  uint32_t magic, version, layers, heads, dim;
  KVD_RETURN_IF_ERROR(r.Get("bases magic", &magic));
  KVD_RETURN_IF_ERROR(r.Get("bases version", &version));
  if (magic != kBasesMagic || version != kBasesVersion) {
    return absl::DataLossError(
        absl::StrCat("lowrank bases: magic ", magic, " version ", version,
                     " is not a version ", kBasesVersion, " bases file"));
  }
  KVD_RETURN_IF_ERROR(r.Get("bases layers", &layers));
  KVD_RETURN_IF_ERROR(r.Get("bases heads", &heads));
  KVD_RETURN_IF_ERROR(r.Get("bases dim", &dim));
  if (layers == 0 || layers > kMaxChunkLayers || heads == 0 || heads > 4096 ||
      dim == 0 || dim > kMaxBasesDim) {
    return absl::DataLossError(
        absl::StrCat("lowrank bases: layers=", layers, " heads=", heads,
                     " dim=", dim, " outside [1,", kMaxChunkLayers,
                     "], [1,4096], [1,", kMaxBasesDim, "]"));
  }
  // Check the size before allocating anything the header asks for.
  const size_t payload = size_t{layers} * heads * 2 *
                         (2 * dim + size_t{dim} * dim) * sizeof(float);
  if (r.remaining() != payload + sizeof(uint64_t)) {
    return absl::DataLossError(absl::StrCat(
        "lowrank bases: ", r.remaining(), " bytes after the header, expected ",
        payload + sizeof(uint64_t)));
  }
  std::shared_ptr<LowRankBases> b(new LowRankBases(layers, heads, dim));
  KVD_RETURN_IF_ERROR(r.GetArray("bases data", b->data_.size(), &b->data_));
  uint64_t checksum;
  KVD_RETURN_IF_ERROR(r.Get("bases checksum", &checksum));
  if (checksum != Checksum64(bytes.first(bytes.size() - sizeof(uint64_t)))) {
    return absl::DataLossError("lowrank bases: checksum mismatch");
  }
  b->fingerprint_ = Checksum64(bytes);
  return b;
}

namespace {

class LowRankStage : public TensorStage {
 public:
  LowRankStage(const CodecContext& ctx, uint32_t rk, uint32_t rv,
               uint32_t window)
      : ctx_(ctx), rank_{rk, rv}, window_(window) {}

  std::string Spec() const override {
    return absl::StrFormat("lowrank(rk=%d,rv=%d,window=%d,bases=%016x)",
                           rank_[0], rank_[1], window_,
                           ctx_.bases->fingerprint());
  }

  absl::Status Encode(const LayerShape& shape, const CodecInputs& in,
                      LayerKV& kv, ByteWriter& out) const override {
    if (shape.layer >= ctx_.bases->layers()) {
      return absl::InvalidArgumentError(
          absl::StrCat("lowrank: layer ", shape.layer, " has no bases (",
                       ctx_.bases->layers(), " layers fitted)"));
    }
    HeadTensor* tensors[2] = {&kv.k, &kv.v};
    for (uint32_t i = 0; i < 2; ++i) {
      HeadTensor& x = *tensors[i];
      if (x.heads != ctx_.bases->heads() || x.dim != ctx_.bases->dim()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "lowrank: tensor [", x.heads, "][", x.tokens, "][", x.dim,
            "] does not match the bases' heads=", ctx_.bases->heads(),
            " dim=", ctx_.bases->dim()));
      }
      const uint32_t window = std::min(window_, x.tokens);
      const uint32_t body = x.tokens - window;
      PutTokens(ctx_.dtype, x, body, window, out);
      HeadTensor codes(x.heads, body, rank_[i]);
      for (uint32_t h = 0; h < x.heads; ++h) {
        Eigen::Map<const RowMatrix> src(x.Row(h, 0), body, x.dim);
        Eigen::Map<const Eigen::RowVectorXf> mean(
            ctx_.bases->Mean(shape.layer, h, i), x.dim);
        Eigen::Map<const RowMatrix> p(ctx_.bases->Components(shape.layer, h, i),
                                      x.dim, x.dim);
        Eigen::Map<RowMatrix> dst(codes.Row(h, 0), body, rank_[i]);
        dst.noalias() = (src.rowwise() - mean) * p.leftCols(rank_[i]);
      }
      x = std::move(codes);
    }
    return absl::OkStatus();
  }

  absl::Status Decode(const LayerShape& shape, ByteReader& in,
                      LayerKV& kv) const override {
    if (shape.layer >= ctx_.bases->layers()) {
      return absl::DataLossError(
          absl::StrCat("lowrank: layer ", shape.layer, " has no bases"));
    }
    const uint32_t dim = ctx_.bases->dim();
    HeadTensor* tensors[2] = {&kv.k, &kv.v};
    for (uint32_t i = 0; i < 2; ++i) {
      HeadTensor& codes = *tensors[i];
      const uint32_t window = std::min(window_, shape.tokens);
      const uint32_t body = shape.tokens - window;
      KVD_RETURN_IF_ERROR(ExpectShape(codes, ctx_.bases->heads(), body,
                                      rank_[i], "lowrank codes"));
      HeadTensor x(codes.heads, shape.tokens, dim);
      KVD_RETURN_IF_ERROR(
          GetTokens(ctx_.dtype, in, body, window, x, "lowrank window"));
      for (uint32_t h = 0; h < x.heads; ++h) {
        Eigen::Map<const RowMatrix> c(codes.Row(h, 0), body, rank_[i]);
        Eigen::Map<const Eigen::RowVectorXf> mean(
            ctx_.bases->Mean(shape.layer, h, i), dim);
        Eigen::Map<const RowMatrix> p(ctx_.bases->Components(shape.layer, h, i),
                                      dim, dim);
        Eigen::Map<RowMatrix> dst(x.Row(h, 0), body, dim);
        dst.noalias() = c * p.leftCols(rank_[i]).transpose();
        dst.rowwise() += mean;
      }
      codes = std::move(x);
    }
    return absl::OkStatus();
  }

 private:
  const CodecContext ctx_;
  const uint32_t rank_[2];
  const uint32_t window_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<TensorStage>> MakeLowRankStage(
    const StageSpec& spec, const CodecContext& ctx) {
  StageParams p(spec);
  const int64_t dim = std::max<int64_t>(1, ctx.head_dim);
  KVD_ASSIGN_OR_RETURN(int64_t rk, p.Int("rk", dim / 2, 1, dim));
  KVD_ASSIGN_OR_RETURN(int64_t rv, p.Int("rv", dim / 2, 1, dim));
  KVD_ASSIGN_OR_RETURN(int64_t window, p.Int("window", 32, 0, 1 << 20));
  KVD_ASSIGN_OR_RETURN(std::string named, p.String("bases", ""));
  KVD_RETURN_IF_ERROR(p.Finish());
  if (ctx.bases == nullptr) {
    return absl::FailedPreconditionError(
        "lowrank needs projection bases fitted for this namespace (none "
        "loaded)");
  }
  if (ctx.bases->heads() != ctx.kv_heads || ctx.bases->dim() != ctx.head_dim ||
      ctx.bases->layers() != ctx.num_layers) {
    return absl::FailedPreconditionError(absl::StrCat(
        "lowrank bases are for layers=", ctx.bases->layers(), " heads=",
        ctx.bases->heads(), " dim=", ctx.bases->dim(), ", the namespace has ",
        ctx.num_layers, ", ", ctx.kv_heads, ", ", ctx.head_dim));
  }
  if (!named.empty()) {
    uint64_t fp = 0;
    if (!absl::SimpleHexAtoi(named, &fp) || fp != ctx.bases->fingerprint()) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "lowrank: chain names bases=%s, the namespace's are %016x", named,
          ctx.bases->fingerprint()));
    }
  }
  return std::make_unique<LowRankStage>(ctx, static_cast<uint32_t>(rk),
                                        static_cast<uint32_t>(rv),
                                        static_cast<uint32_t>(window));
}

}  // namespace kvd::compress
