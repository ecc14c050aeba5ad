#!/usr/bin/env python3
"""ClusterKV on a real model: budgeted decode attention over recalled
clusters (kvdepot.ClusterIndex, the C++ compress/cluster/) against full
attention and against StreamingLLM and key-norm eviction at the same budget,
on SmolLM2-135M-Instruct and Paul Graham essays (as bench/quality/).

    bench/run.sh clusterkv --quick   # CI: 512-token context, ~1 minute
    bench/run.sh clusterkv           # 2048-token context, budgets 5/10/20%
    (directly: build/quality-venv/bin/python bench/quality/clusterkv.py
     [--quick] [--node-bin build-bench/store/server/kvdepot-node])

How one (method, budget) is scored:
1. The context is prefilled with full attention (model.prefill); its
   post-RoPE keys are clustered once (ClusterKV: 4 sinks, 8 tokens a
   cluster, 20 k-means rounds).
2. Every later token runs one at a time (teacher-forced continuation, or the
   needle question and the greedy answer), with each layer's attention
   replaced: per KV head, the mean of its query group picks positions
   (SelectFn) and the group's queries attend only to them. budget =
   round(fraction * context tokens) positions per head, sinks and the last
   16 positions included for every method. Decoded tokens past the index are
   attended directly and clustered every 64 tokens.
3. Next-token top-1 agreement and KL against the same loop with full
   attention; attention-output error ||o_budget - o_full|| / ||o_full|| of
   the same queries, per layer; needle retrieval (the greedy answer
   contains the fact).

Recall from the store (with --node-bin): the context's K/V is saved as
chunks (64 tokens each) to a kvdepot-node on loopback (UCX tcp), and the
clusters ClusterKV picked at each continuation step of the 10% run are
recalled with kvdepot.ClusterRecall (one batched Get for the clusters not
cached) through the cluster index as stored with the chunks and read back; per step latency p50/p99 of the C++ call, against the step time of
this CPU decode loop. The first step's rows are checked against the
context's own K/V.

Writes docs/clusterkv.{md,png,json} (a --quick run: build/clusterkv-quick/)
and prints one JSON line. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

import kvdepot
import model as md
from kvdepot._adapter import rope_theta
from metrics import contains_fact, logit_metrics
from run_quality import FULL, QUICK, NeedleCase, Workload, needle_cases

ROOT = Path(__file__).resolve().parent.parent.parent
SINKS = 4
RECENT = 16
TOKENS_PER_CLUSTER = 8
RECLUSTER_EVERY = 64  # W: decoded tokens clustered in one go
CHUNK_TOKENS = 64  # chunks of the stored context, for the recall
TOKEN = "clusterkv-bench-token"
METHODS = ("clusterkv", "streaming", "keynorm")
QUICK_BUDGETS = (0.1,)
FULL_BUDGETS = (0.05, 0.1, 0.2)

# positions(layer, kv_head, query [D] float32, total) -> positions to attend
SelectFn = Callable[[int, int, np.ndarray, int], list[int]]


@dataclass
class Row:
    method: str
    budget: float
    top1: float = float("nan")
    kl: float = float("nan")
    attn_err: float = float("nan")  # mean over layers and steps
    needle: float = float("nan")
    seconds: float = 0.0


@dataclass
class Decoder:
    """The state of one budgeted decode: the cache, the method, and what the
    attention hook measured."""

    model: md.Model
    context_keys: torch.Tensor  # [L][H][T][D] at prefill, post-RoPE
    method: str
    budget: int
    index: kvdepot.ClusterIndex | None = None
    prefill_index: kvdepot.ClusterIndex | None = None  # before decoding
    stored_clusters: list[list[int]] = field(default_factory=list)  # [L][H] in it
    norm_order: list[list[list[int]]] = field(default_factory=list)  # [L][H]
    attn_err: list[float] = field(default_factory=list)
    # Per decode step: (layer, head, clusters of the prefill index chosen).
    wants: list[list[tuple[int, int, list[int]]]] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        keys = self.context_keys
        if self.method == "clusterkv":
            self.index = kvdepot.ClusterIndex.build(
                keys.contiguous().numpy(), sinks=SINKS, tokens_per_cluster=TOKENS_PER_CLUSTER)
            self.prefill_index = kvdepot.ClusterIndex.decode(self.index.encode())
            self.stored_clusters = [
                [len(self.index.clusters(l, h)[0]) - 1 for h in range(keys.shape[1])]
                for l in range(keys.shape[0])]
            self.wants.append([])
        elif self.method == "keynorm":
            # Key-norm eviction: the context positions of lowest key norm.
            norms = keys.norm(dim=-1)  # [L][H][T]
            self.norm_order = [[torch.argsort(norms[l, h], stable=True).tolist()
                                for h in range(keys.shape[1])] for l in range(keys.shape[0])]

    def select(self, layer: int, head: int, query: np.ndarray, total: int) -> list[int]:
        if self.method == "full" or total <= self.budget:
            return list(range(total))
        recent = list(range(total - RECENT, total))
        if self.method == "clusterkv":
            assert self.index is not None and self.prefill_index is not None
            positions, clusters = self.index.select(layer, head, query, total, self.budget,
                                                    RECENT)
            stored = self.stored_clusters[layer][head]
            self.wants[-1].append((layer, head, [c for c in clusters if c < stored]))
            return positions
        if self.method == "streaming":
            return list(range(SINKS)) + list(range(total - (self.budget - SINKS), total))
        if self.method == "keynorm":
            kept = [p for p in self.norm_order[layer][head] if p < total - RECENT]
            return sorted(kept[: self.budget - RECENT] + recent)
        raise ValueError(self.method)

    def after_step(self, cache) -> None:
        """Clusters decoded tokens every RECLUSTER_EVERY (ClusterKV)."""
        if self.index is None:
            return
        self.wants.append([])
        keys, _ = md.cache_tensors(cache)
        if keys.shape[2] - self.index.clustered_end >= RECLUSTER_EVERY:
            self.index.extend(keys.contiguous().numpy(), tokens_per_cluster=TOKENS_PER_CLUSTER)


def budgeted_attention(decoder: Decoder, inner: Callable):
    """An attention function (transformers' interface) that lets each decode
    query attend only to the positions decoder.select picks; prefill (more
    than one query) runs the model's own attention."""

    def attend(module, query, key, value, attention_mask, scaling=None, **kwargs):
        if query.shape[2] != 1:
            return inner(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
        layer = int(module.layer_idx)
        q_heads, kv_heads, total = query.shape[1], key.shape[1], key.shape[2]
        group = q_heads // kv_heads
        scale = scaling if scaling is not None else 1.0 / math.sqrt(query.shape[-1])
        out = torch.empty(q_heads, query.shape[-1], dtype=query.dtype)
        full = torch.empty_like(out)
        for h in range(kv_heads):
            q = query[0, h * group:(h + 1) * group, 0]  # [g][D]
            k, v = key[0, h], value[0, h]  # [T][D]
            mean = q.mean(0).contiguous().numpy()
            picked = torch.tensor(decoder.select(layer, h, mean, total), dtype=torch.long)
            out[h * group:(h + 1) * group] = torch.softmax(q @ k[picked].T * scale, -1) @ v[picked]
            full[h * group:(h + 1) * group] = torch.softmax(q @ k.T * scale, -1) @ v
        decoder.attn_err.append(float((out - full).norm() / full.norm()))
        return out[None, None], None  # [B][q_len][Hq][D]

    return attend


@torch.no_grad()
def decode(model: md.Model, decoder: Decoder, ctx: md.Prefill, inputs: list[int],
           greedy_tokens: int = 0) -> tuple[torch.Tensor, list[int]]:
    """Feeds `inputs` one token at a time after the context, then generates up
    to greedy_tokens greedily; returns the logits after each input [N][vocab]
    and the generated tokens."""
    name = model.model.config._attn_implementation
    inner = ALL_ATTENTION_FUNCTIONS[name]
    ALL_ATTENTION_FUNCTIONS[name] = budgeted_attention(decoder, inner)
    try:
        cache = md.make_cache(ctx.keys, ctx.values)
        position = ctx.tokens
        logits = []
        for token in inputs:
            start = time.monotonic()
            logits.append(md.extend(model, cache, [token], position)[-1])
            decoder.step_seconds.append(time.monotonic() - start)
            position += 1
            decoder.after_step(cache)
        generated: list[int] = []
        stop = model.stop_ids()
        while len(generated) < greedy_tokens:
            token = int(logits[-1].argmax())
            if token in stop:
                break
            generated.append(token)
            logits.append(md.extend(model, cache, [token], position)[-1])
            position += 1
            decoder.after_step(cache)
        return torch.stack(logits[:len(inputs)]), generated
    finally:
        ALL_ATTENTION_FUNCTIONS[name] = inner


def score(model: md.Model, method: str, fraction: float, text: tuple[md.Prefill, list[int]],
          reference: torch.Tensor, needles: list[NeedleCase],
          work: Workload) -> tuple[Row, Decoder]:
    ctx, continuation = text
    start = time.monotonic()
    decoder = Decoder(model, ctx.keys, method, round(fraction * ctx.tokens))
    logits, _ = decode(model, decoder, ctx, continuation[:-1])
    m = logit_metrics(reference, logits, continuation[1:])
    row = Row(method, fraction, top1=m["top1"], kl=m["kl"],
              attn_err=statistics.fmean(decoder.attn_err))
    hits = 0
    for case in needles:
        d = Decoder(model, case.ctx.keys, method, round(fraction * case.ctx.tokens))
        _, answer = decode(model, d, case.ctx, case.question_ids, work.answer_tokens)
        hits += contains_fact(model.tokenizer.decode(answer, skip_special_tokens=True), case.fact)
    row.needle = hits / len(needles)
    row.seconds = time.monotonic() - start
    return row, decoder


def measure_recall(node_bin: str, model: md.Model, ctx: md.Prefill, decoder: Decoder) -> dict:
    """Saves the context as chunks to a real node and replays the decoder's
    per-step cluster choices through kvdepot.ClusterRecall."""
    import tempfile

    sys.path.insert(0, str(ROOT / "bench"))
    from node_process import running_node

    assert decoder.prefill_index is not None
    layers, heads, tokens, dim = ctx.keys.shape
    spec = kvdepot.ModelSpec()
    spec.model_id = "HuggingFaceTB/SmolLM2-135M-Instruct"
    spec.dtype = kvdepot.DType.f32
    spec.num_layers, spec.kv_heads, spec.head_dim = layers, heads, dim
    spec.rope_theta = rope_theta(model.model.config)
    spec.chunk_tokens = CHUNK_TOKENS
    keys = kvdepot.chunk_keys(spec, ctx.token_ids)
    blocks = tokens // CHUNK_TOKENS

    def paged(t: torch.Tensor) -> torch.Tensor:  # [H][T][D] -> [blocks][H][64][D]
        return t.view(heads, blocks, CHUNK_TOKENS, dim).permute(1, 0, 2, 3)

    views = [(paged(ctx.keys[l]), paged(ctx.values[l])) for l in range(layers)]
    with tempfile.TemporaryDirectory(prefix="kvd-clusterkv-") as tmp, \
            running_node(node_bin, Path(tmp), TOKEN) as address:
        store = kvdepot.Store.connect(address, token=TOKEN, ucx_tls="tcp")
        kv = kvdepot.PagedKV(store, spec, views, dims="NHTD")
        saved = kv.save([(keys[i], keys[i - 1] if i else b"", [i], 0)
                         for i in range(blocks)])
        if not all(s.ok for s in saved):
            raise RuntimeError(f"saving the context failed: {saved}")
        # The index travels with the chunks: what is recalled through is the
        # index read back from the node.
        kvdepot.put_cluster_index(store, spec, keys[-1], decoder.prefill_index)
        stored_index = kvdepot.get_cluster_index(store, spec, keys[-1])
        if stored_index.encode() != decoder.prefill_index.encode():
            raise RuntimeError("the cluster index read back differs")
        recall = kvdepot.ClusterRecall(store, spec, keys, stored_index)
        seconds, moved = [], []
        steps = [w for w in decoder.wants if w]
        for step, wants in enumerate(steps):
            before = recall.stats[3]
            rows = recall.recall(wants)
            seconds.append(recall.last_seconds)
            moved.append(recall.stats[3] - before)
            if step == 0:  # the rows are the context's own K/V
                for (layer, head, clusters), got in zip(wants, rows):
                    offsets, positions = decoder.prefill_index.clusters(layer, head)
                    for c, (k, v) in zip(clusters, got):
                        members = positions[offsets[c]:offsets[c + 1]]
                        want_k = ctx.keys[layer, head, members].contiguous().numpy().tobytes()
                        want_v = ctx.values[layer, head, members].contiguous().numpy().tobytes()
                        if k != want_k or v != want_v:
                            raise RuntimeError(f"recalled rows of layer {layer} head {head} "
                                               f"cluster {c} differ from the context")
        _, fetched, cached, total_bytes = recall.stats
    us = sorted(1e6 * s for s in seconds)
    step = statistics.median(decoder.step_seconds)
    return {
        "recall_steps": len(us),
        "recall_p50_us": round(statistics.median(us), 1),
        "recall_p99_us": round(us[min(len(us) - 1, math.ceil(0.99 * len(us)) - 1)], 1),
        "recall_first_step_us": round(1e6 * seconds[0], 1),
        "recall_first_step_bytes": moved[0],
        "recall_later_steps_mean_bytes": round(statistics.fmean(moved[1:]), 1)
        if len(moved) > 1 else 0.0,
        "clusters_fetched": fetched,
        "clusters_from_cache": cached,
        "bytes_fetched": total_bytes,
        "decode_step_p50_s": round(step, 4),
        "recall_p50_share_of_step": round(statistics.median(us) * 1e-6 / step, 5),
    }


def write_report(rows: list[Row], params: dict, recall: dict, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "clusterkv.json").write_text(
        json.dumps({"params": params, "rows": [asdict(r) for r in rows], "recall": recall},
                   indent=1) + "\n")
    lines = [
        "# ClusterKV: budgeted decode attention on SmolLM2-135M-Instruct",
        "",
        f"Written by `bench/run.sh clusterkv` ({params['context_tokens']}-token context of "
        f"`{md.EVAL_ESSAY}`, {params['continuation_tokens']} teacher-forced tokens, "
        f"{params['needle_cases']} needle cases). Budget: positions each KV head attends to, "
        f"as a fraction of the context; every method keeps the last {RECENT} positions, "
        f"ClusterKV and StreamingLLM {SINKS} sinks. ClusterKV: {TOKENS_PER_CLUSTER} tokens "
        "a cluster, spherical k-means, clusters chosen by the GQA group's mean query.",
        "",
        "| method | budget | top-1 vs full | KL (nats) | attention-output error | needle |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r.method} | {r.budget:.0%} | {r.top1:.3f} | {r.kl:.4f} | "
                     f"{r.attn_err:.3f} | {r.needle:.2f} |")
    if recall:
        lines += [
            "",
            "Recall from a kvdepot-node (host tier, UCX tcp on loopback) of the clusters the "
            f"10% run chose at each of {recall['recall_steps']} steps, cache included: "
            f"p50 {recall['recall_p50_us']} us, p99 {recall['recall_p99_us']} us; first step "
            f"{recall['recall_first_step_us']} us for {recall['recall_first_step_bytes']} bytes, "
            f"later steps {recall['recall_later_steps_mean_bytes']} bytes on average. "
            f"A step of this CPU decode loop takes {recall['decode_step_p50_s']} s (p50), so "
            f"recall is {recall['recall_p50_share_of_step']:.2%} of it.",
        ]
    (out_dir / "clusterkv.md").write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in METHODS:
        pts = sorted((r.budget, r.top1) for r in rows if r.method == method)
        ax.plot([100 * b for b, _ in pts], [t for _, t in pts], marker="o", label=method)
    ax.set_xlabel("budget (% of context positions per KV head)")
    ax.set_ylabel("next-token top-1 agreement with full attention")
    ax.set_title("SmolLM2-135M-Instruct, budgeted decode attention")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "clusterkv.png", dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--node-bin", help="kvdepot-node, for the recall latency")
    args = parser.parse_args()
    work = QUICK if args.quick else FULL
    budgets = QUICK_BUDGETS if args.quick else FULL_BUDGETS
    out_dir = ROOT / ("build/clusterkv-quick" if args.quick else "docs")
    torch.manual_seed(0)
    model = md.load_model()
    ids = model.encode(md.read_essay(md.EVAL_ESSAY))
    t, n = work.context_tokens, work.continuation_tokens
    ctx = md.prefill(model, ids[:t])
    continuation = ids[t:t + n + 1]
    needles = needle_cases(model, work)
    # The reference: the same one-token loop with full attention.
    full = Decoder(model, ctx.keys, "full", t)
    reference, _ = decode(model, full, ctx, continuation[:-1])
    batch = md.extend(model, md.make_cache(ctx.keys, ctx.values), continuation[:-1], t)
    drift = float((reference - batch).abs().max())
    if drift > 1e-2:  # the hook must be attention, not an approximation of it
        sys.exit(f"full-attention hook differs from the model's attention by {drift}")
    rows = []
    recall: dict = {}
    for fraction in budgets:
        for method in METHODS:
            row, decoder = score(model, method, fraction, (ctx, continuation), reference,
                                 needles, work)
            if method == "clusterkv" and abs(fraction - 0.1) < 1e-9 and args.node_bin:
                recall = measure_recall(args.node_bin, model, ctx, decoder)
                print(f"recall: {recall}", file=sys.stderr)
            print(f"{method} {fraction:.0%}: top1 {row.top1:.3f} kl {row.kl:.4f} "
                  f"attn_err {row.attn_err:.3f} needle {row.needle:.2f} ({row.seconds:.1f} s)",
                  file=sys.stderr)
            rows.append(row)
    params = {"model": "SmolLM2-135M-Instruct", "context_tokens": t, "continuation_tokens": n,
              "needle_cases": len(needles), "sinks": SINKS, "recent": RECENT,
              "tokens_per_cluster": TOKENS_PER_CLUSTER, "recluster_every": RECLUSTER_EVERY,
              "budgets": list(budgets), "hook_max_logit_drift": drift}
    write_report(rows, params, recall, out_dir)
    at10 = {r.method: r for r in rows if abs(r.budget - 0.1) < 1e-9}
    baseline = max((at10[m] for m in METHODS if m != "clusterkv"), key=lambda r: r.top1)
    print(json.dumps({
        "bench": "clusterkv",
        "params": params,
        "metrics": {
            "top1_at_10pct": round(at10["clusterkv"].top1, 4),
            "best_baseline_top1_at_10pct": round(baseline.top1, 4),
            "best_baseline_at_10pct": baseline.method,
            "kl_at_10pct": round(at10["clusterkv"].kl, 5),
            "needle_at_10pct": at10["clusterkv"].needle,
            "recall_p99_us": recall.get("recall_p99_us"),  # None without --node-bin
        },
        "recall": recall,
        "rows": [asdict(r) for r in rows],
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
