#include "compress/codec_spec.h"

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace kvd::compress {
namespace {

bool IsNameChar(char c) {
  return absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '_';
}
bool IsValueChar(char c) {
  return absl::ascii_isalnum(c) || c == '_' || c == '.' || c == '/' || c == '-';
}

// A cursor over the spec text that skips spaces and reports positions.
class Lexer {
 public:
  explicit Lexer(absl::string_view text) : text_(text) {}

  void SkipSpaces() {
    while (pos_ < text_.size() && text_[pos_] == ' ') ++pos_;
  }
  bool AtEnd() {
    SkipSpaces();
    return pos_ == text_.size();
  }
  bool Consume(char c) {
    SkipSpaces();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  absl::StatusOr<std::string> Word(bool (*allowed)(char),
                                   absl::string_view what) {
    SkipSpaces();
    const size_t start = pos_;
    while (pos_ < text_.size() && allowed(text_[pos_])) ++pos_;
    if (pos_ == start) return Error(absl::StrCat("expected ", what));
    return std::string(text_.substr(start, pos_ - start));
  }
  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(
        "codec chain \"", text_, "\" at offset ", pos_, ": ", what));
  }

 private:
  absl::string_view text_;
  size_t pos_ = 0;
};

}  // namespace

absl::StatusOr<std::vector<StageSpec>> ParseChainSpec(absl::string_view text) {
  std::vector<StageSpec> stages;
  Lexer lex(text);
  if (lex.AtEnd()) return stages;
  do {
    if (stages.size() == kMaxStages) {
      return lex.Error(absl::StrCat("more than ", kMaxStages, " stages"));
    }
    StageSpec stage;
    auto name = lex.Word(IsNameChar, "a codec name [a-z0-9_]");
    if (!name.ok()) return name.status();
    stage.name = *std::move(name);
    if (lex.Consume('(')) {
      do {
        auto key = lex.Word(IsNameChar, "a parameter name [a-z0-9_]");
        if (!key.ok()) return key.status();
        if (!lex.Consume('=')) return lex.Error("expected '='");
        auto value = lex.Word(IsValueChar, "a parameter value");
        if (!value.ok()) return value.status();
        for (const auto& [k, v] : stage.params) {
          if (k == *key)
            return lex.Error(absl::StrCat("parameter ", k, " repeated"));
        }
        stage.params.emplace_back(*std::move(key), *std::move(value));
      } while (lex.Consume(','));
      if (!lex.Consume(')')) return lex.Error("expected ',' or ')'");
    }
    stages.push_back(std::move(stage));
  } while (lex.Consume('|'));
  if (!lex.AtEnd()) return lex.Error("expected '|' or the end");
  return stages;
}

StageParams::StageParams(const StageSpec& spec)
    : stage_(spec.name), params_(spec.params) {}

const std::string* StageParams::Find(absl::string_view key) {
  for (const auto& [k, v] : params_) {
    if (k == key) {
      used_.insert(k);
      return &v;
    }
  }
  return nullptr;
}

absl::StatusOr<int64_t> StageParams::Int(absl::string_view key, int64_t def,
                                         int64_t lo, int64_t hi) {
  const std::string* v = Find(key);
  int64_t x = def;
  if (v != nullptr && !absl::SimpleAtoi(*v, &x)) {
    return absl::InvalidArgumentError(
        absl::StrCat(stage_, ": ", key, "=", *v, " is not an integer"));
  }
  if (x < lo || x > hi) {
    return absl::InvalidArgumentError(absl::StrCat(
        stage_, ": ", key, "=", x, " is outside [", lo, ", ", hi, "]"));
  }
  return x;
}

absl::StatusOr<double> StageParams::Double(absl::string_view key, double def,
                                           double lo, double hi) {
  const std::string* v = Find(key);
  double x = def;
  if (v != nullptr && !absl::SimpleAtod(*v, &x)) {
    return absl::InvalidArgumentError(
        absl::StrCat(stage_, ": ", key, "=", *v, " is not a number"));
  }
  if (!(x >= lo && x <= hi)) {
    return absl::InvalidArgumentError(absl::StrCat(
        stage_, ": ", key, "=", x, " is outside [", lo, ", ", hi, "]"));
  }
  return x;
}

absl::StatusOr<std::string> StageParams::Enum(
    absl::string_view key, absl::string_view def,
    const std::vector<std::string>& allowed) {
  const std::string* v = Find(key);
  std::string x = v != nullptr ? *v : std::string(def);
  for (const std::string& a : allowed) {
    if (a == x) return x;
  }
  return absl::InvalidArgumentError(absl::StrCat(stage_, ": ", key, "=", x,
                                                 " is not one of ",
                                                 absl::StrJoin(allowed, ", ")));
}

absl::StatusOr<std::string> StageParams::String(absl::string_view key,
                                                absl::string_view def) {
  const std::string* v = Find(key);
  return v != nullptr ? *v : std::string(def);
}

absl::Status StageParams::Finish() const {
  for (const auto& [k, v] : params_) {
    if (!used_.contains(k)) {
      return absl::InvalidArgumentError(
          absl::StrCat(stage_, ": unknown parameter ", k));
    }
  }
  return absl::OkStatus();
}

}  // namespace kvd::compress
