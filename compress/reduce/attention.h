// Attention scores of the caller's queries over one layer's keys, the
// signal the attention-based reducers (H2O, SnapKV, KVMerger, EMS) rank
// tokens by.
//
// Queries (CodecInputs::queries) are [q_heads][q_tokens][head_dim], post-RoPE,
// for the LAST q_tokens positions of the layer's T tokens: query i sits at
// position T - q_tokens + i and sees keys 0 .. that position (causal mask).
// Probabilities are softmax(q . k / sqrt(head_dim)) over the visible keys.
// GQA: query head j reads KV head j / group (group = q_heads / kv_heads), and
// a KV head's score is the MEAN over its group's query heads, so a score
// summed over all keys equals the number of queries it accumulates.
#ifndef KVDEPOT_COMPRESS_REDUCE_ATTENTION_H_
#define KVDEPOT_COMPRESS_REDUCE_ATTENTION_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "compress/codec.h"
#include "compress/kv_tensor.h"

namespace kvd::compress::reduce {

// Checks `in.queries` against `keys` ([kv_heads][T][head_dim]):
// kFailedPrecondition naming `codec` when they are null; kInvalidArgument
// naming the field when q_heads is 0 or not a multiple of kv_heads, head_dim
// differs from the keys', q_tokens is 0 or more than T, the data does not
// match the shape, or an element is not finite.
absl::Status CheckQueries(const CodecInputs& in, const HeadTensor& keys,
                          absl::string_view codec);

// acc[t] = mean over the query heads g of KV head `kv_head` of
//          sum over queries i in [first_query, q_tokens) of P_g(i, t),
// for t in [0, T); P_g(i, t) = 0 for keys query i cannot see. A query whose
// scores overflow float contributes nothing (acc holds no NaN).
// REQUIRES: CheckQueries(queries, keys) ok; first_query < q_tokens.
// Cost O((q_tokens - first_query) * T * head_dim) per query head, about half
// that when the queries cover the whole layer (the mask skips the rest).
std::vector<double> AccumulatedAttention(const HeadTensor& queries,
                                         const HeadTensor& keys,
                                         uint32_t kv_head,
                                         uint32_t first_query);

}  // namespace kvd::compress::reduce

#endif  // KVDEPOT_COMPRESS_REDUCE_ATTENTION_H_
