// The token reducers (compress/token_reducer.h), each behind a factory
// that checks its parameters and returns kInvalidArgument naming the bad
// one. n = KeepCount(keep, T) (budget.h) is the number of tokens every KV
// head keeps. The reducers are immutable and safe to use from any number
// of threads.
#ifndef KVDEPOT_COMPRESS_REDUCE_REDUCERS_H_
#define KVDEPOT_COMPRESS_REDUCE_REDUCERS_H_

#include <memory>

#include "absl/status/statusor.h"
#include "compress/token_reducer.h"

namespace kvd::compress::reduce {

// StreamingLLM eviction (Xiao et al. 2023): `streaming(keep=F,sinks=4)`.
//
// Keeps, in every KV head, the first min(sinks, n) tokens (attention sinks)
// and the most recent n - min(sinks, n), n = KeepCount(keep, T). Needs no
// queries.
// kInvalidArgument for keep outside (0, 1] or missing, sinks outside
// [0, 2^20], or an unknown parameter.
absl::StatusOr<std::unique_ptr<TokenReducer>> MakeStreamingReducer(
    const StageSpec& spec);

// Key-norm eviction (Devoto et al. 2024): `keynorm(keep=F,window=0)`.
//
// Per KV head, keeps the most recent w = min(window, n) tokens and, of the
// others, the n - w with the SMALLEST key L2 norm (low norm correlates with
// high attention); ties go to the lower position. n = KeepCount(keep, T).
// Needs no queries.
// kInvalidArgument for keep outside (0, 1] or missing, window outside
// [0, 2^20], or an unknown parameter.
absl::StatusOr<std::unique_ptr<TokenReducer>> MakeKeyNormReducer(
    const StageSpec& spec);

// H2O heavy-hitter eviction (Zhang et al. 2023): `h2o(keep=F,recent=0.5)`.
//
// Per KV head, with n = KeepCount(keep, T) and r = ShareOf(recent, n): keeps
// the r most recent tokens and, of the others, the n - r with the largest
// attention accumulated over every given query (attention.h; ties to the
// lower position). `recent` is the fraction of the budget given to the recent
// window (the paper's 20% budget = 10% heavy + 10% recent is recent=0.5).
// Needs queries.
// kInvalidArgument for keep outside (0, 1] or missing, recent outside
// [0, 1], or an unknown parameter.
absl::StatusOr<std::unique_ptr<TokenReducer>> MakeH2oReducer(
    const StageSpec& spec);

// SnapKV eviction (Li et al. 2024):
// `snapkv(keep=F,window=32,kernel=5,pool=max)`.
//
// Per KV head, with n = KeepCount(keep, T) and w = min(window, n): the last
// min(window, q_tokens) given queries score every token by the attention
// they give it (attention.h: summed over those queries, mean over the GQA
// group); over the prefix [0, T - w) the scores are pooled with a centred
// 1-D window of `kernel` tokens (pool=max as in the reference code, or
// pool=avg; the window is clipped at the prefix ends, avg divides by the
// tokens inside it). Keeps the n - w prefix tokens with the largest pooled
// score (ties to the lower position) plus the w most recent tokens.
// Needs queries.
// kInvalidArgument for keep outside (0, 1] or missing, window outside
// [1, 2^20], kernel not odd in [1, 255], pool not max|avg, or an unknown
// parameter.
absl::StatusOr<std::unique_ptr<TokenReducer>> MakeSnapKvReducer(
    const StageSpec& spec);

// KVMerger adjacent-token merging (Wang et al. 2024):
// `kvmerger(keep=F,window=32,heavy=0.25)`.
//
// Per KV head, with n = KeepCount(keep, T) (nothing happens when n == T):
//  1. Protected tokens are never merged: the w = min(window, n - 1) most
//     recent tokens, and the h = min(ShareOf(heavy, n), n - w - 1) heavy
//     hitters with the largest attention accumulated over every given query
//     (attention.h) among the others. `heavy` is the fraction of the budget
//     given to heavy hitters. If the protected tokens cut the unprotected
//     ones into more runs than the n - w - h kept tokens left for them, the
//     lowest-scored heavy hitters are unprotected one at a time until the
//     runs fit (with none protected there is one run, so this ends).
//  2. Merging sets: of the adjacent pairs (i, i+1) of unprotected tokens, the
//     T - n with the largest cos(k_i, k_{i+1}) are joined (ties to the lower
//     i; cos is 1 for two zero keys and 0 for one). That is the paper's rule
//     "consecutive tokens with cos >= eps form a set" with eps chosen per head
//     so that exactly n tokens remain. A set is a run of joined tokens.
//  3. Each set of two or more becomes one token at its pivot's position: the
//     pivot p is the member with the largest accumulated attention (ties to
//     the lower position); g_i = exp(-|k_p - k_i|^2 / (2 sigma^2)) with
//     sigma = (mean over the non-pivot members of |k_p - k_i|) / sqrt(2),
//     i.e. g_i = exp(-(|k_p - k_i| / mean distance)^2); weights g / sum(g)
//     (uniform when every member equals the pivot); k* = sum w_i k_i and
//     v* = sum w_i v_i with the same weights. Its members are the whole set.
// Protected and unjoined tokens are kept unchanged, standing for themselves.
// Needs queries.
// kInvalidArgument for keep outside (0, 1] or missing, window outside
// [0, 2^20], heavy outside [0, 1], or an unknown parameter.
absl::StatusOr<std::unique_ptr<TokenReducer>> MakeKvMergerReducer(
    const StageSpec& spec);

// EMS evict-then-merge (2024): `ems(keep=F,window=32,evict=0.5)`.
//
// Global-local score per KV head and token j:
//   s_j = A_j / mean(A) + L_j / mean(L),
// A = attention accumulated over every given query, L = over the last
// min(window, q_tokens) of them (attention.h; means over all T tokens, so
// each term averages 1 — the "mean-aligned" combination; a zero mean drops
// its term). A favours early tokens, L recent ones.
// Per head, with n = KeepCount(keep, T) (nothing happens when n == T):
//  - centers: the w = min(window, n) most recent tokens, and the n - w others
//    with the largest s (ties to the lower position);
//  - of the T - n other tokens, the e = ShareOf(evict, T - n) with the
//    smallest s are evicted (ties: the higher position goes first) and the
//    rest are merged, each into the center whose key has the largest cosine
//    with its own (ties to the earlier center; zero keys have cosine 0);
//  - a center with merged tokens becomes sum_i w_i x_i over itself and them,
//    for x = k and x = v, with w_i = s_i / sum(s) (the center weighs its own
//    score). Its position is the center's; members the center and its merged
//    tokens.
// EMS's "zero class" (an all-zero center for tokens close to no center) is a
// device for batching heads on a GPU; here eviction is explicit instead.
// Needs queries.
// kInvalidArgument for keep outside (0, 1] or missing, window outside
// [1, 2^20], evict outside [0, 1], or an unknown parameter.
absl::StatusOr<std::unique_ptr<TokenReducer>> MakeEmsReducer(
    const StageSpec& spec);

}  // namespace kvd::compress::reduce

#endif  // KVDEPOT_COMPRESS_REDUCE_REDUCERS_H_
