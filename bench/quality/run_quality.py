#!/usr/bin/env python3
"""Compression quality on a real model: kvdepot codec chains and NVIDIA
kvpress presses, side by side, on SmolLM2-135M-Instruct and Paul Graham essays.

    bench/run.sh quality --quick     # CI: 512-token context, a few methods
    bench/run.sh quality             # every method, 2048-token context

or directly, after bench/quality/setup.sh:
    build/quality-venv/bin/python bench/quality/run_quality.py \
        --codec build-bench/compress/kvdepot-codec [--quick]

Writes docs/compression_quality.md and .png (a --quick run: under
build/quality-quick/); its JSON line is printed last. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

import methods as mt
import model as md
from metrics import attention_error, contains_fact, logit_metrics
from report import Row, summary_json, write_markdown, write_plot, write_rows

NEEDLES = [  # (needle sentence, question, fact the answer must contain)
    ("The special magic number is 7215.", "What is the special magic number?", "7215"),
    (
        "The best thing to do in San Francisco is eat a sandwich and sit in "
        "Dolores Park on a sunny day.",
        "What is the best thing to do in San Francisco?",
        "Dolores Park",
    ),
]


@dataclass
class Workload:
    context_tokens: int
    continuation_tokens: int
    needles: int  # how many of NEEDLES
    depths: list[float]  # needle depths, fraction of the haystack before it
    answer_tokens: int = 24


QUICK = Workload(context_tokens=512, continuation_tokens=32, needles=1, depths=[0.25, 0.75])
FULL = Workload(context_tokens=2048, continuation_tokens=128, needles=2, depths=[0.25, 0.75])


@dataclass
class EvalText:
    """The context, the tokens that follow it, and the full-cache reference."""

    ctx: md.Prefill
    continuation: list[int]  # N + 1 tokens: N inputs, N targets shifted by one
    reference_logits: torch.Tensor  # [N][vocab]
    queries: torch.Tensor  # [L][Hq][N][D] of the continuation, full cache

    @property
    def inputs(self) -> list[int]:
        return self.continuation[:-1]

    @property
    def targets(self) -> list[int]:
        return self.continuation[1:]


@dataclass
class NeedleCase:
    ctx: md.Prefill  # chat header + haystack with the needle
    question_ids: list[int]  # question + assistant header, after the context
    fact: str
    full_answer: str = ""


@dataclass
class Baseline:
    ppl: float
    needle: float
    answers: list[str] = field(default_factory=list)


def eval_text(model: md.Model, essay: str, work: Workload) -> EvalText:
    ids = model.encode(md.read_essay(essay))
    t, n = work.context_tokens, work.continuation_tokens
    if len(ids) < t + n + 1:
        raise ValueError(f"{essay} has {len(ids)} tokens, fewer than {t + n + 1}")
    ctx = md.prefill(model, ids[:t])
    continuation = ids[t : t + n + 1]
    queries: dict[int, list[torch.Tensor]] = {}
    cache = md.make_cache(ctx.keys, ctx.values)
    logits = md.extend(model, cache, continuation[:-1], t, queries)
    return EvalText(ctx, continuation, logits, md.stack_queries(queries))


def needle_cases(model: md.Model, work: Workload) -> list[NeedleCase]:
    """Each needle at each depth in a haystack of essays (neither the
    evaluation nor the calibration essay), context_tokens long in all."""
    names = sorted(p.name for p in md.essay_dir().glob("*.txt"))
    hay: list[int] = []
    for name in names:
        if name not in (md.EVAL_ESSAY, md.CALIB_ESSAY):
            hay += model.encode(md.read_essay(name))
        if len(hay) >= work.context_tokens:
            break
    template = model.tokenizer.apply_chat_template(
        [{"role": "user", "content": "@@"}], tokenize=False, add_generation_prompt=True
    )
    head, tail = str(template).split("@@")
    cases = []
    for needle, question, fact in NEEDLES[: work.needles]:
        needle_ids = model.encode("\n" + needle + "\n")
        head_ids = model.encode(head)
        budget = work.context_tokens - len(head_ids) - len(needle_ids)
        for depth in work.depths:
            cut = int(budget * depth)
            ids = head_ids + hay[:cut] + needle_ids + hay[cut:budget]
            q_ids = model.encode(f"\n\nAnswer in a few words. {question}{tail}")
            cases.append(NeedleCase(md.prefill(model, ids), q_ids, fact))
    return cases


def answer(model: md.Model, case: NeedleCase, comp: mt.Compressed, work: Workload) -> str:
    cache = md.make_cache(comp.keys, comp.values)
    return md.greedy_answer(model, cache, case.question_ids, case.ctx.tokens, work.answer_tokens)


def evaluate(
    model: md.Model,
    method: mt.Method,
    compress: mt.Compressor,
    text: EvalText,
    needles: list[NeedleCase],
    work: Workload,
) -> Row:
    start = time.monotonic()
    comp = compress(text.ctx)
    logits = md.extend(model, md.make_cache(comp.keys, comp.values), text.inputs, text.ctx.tokens)
    scores = logit_metrics(text.reference_logits, logits, text.targets)
    layer_err = attention_error(
        text.queries, (text.ctx.keys, text.ctx.values), (comp.keys, comp.values)
    )
    found = 0
    for case in needles:
        found += contains_fact(answer(model, case, compress(case.ctx), work), case.fact)
    return Row(
        family=method.family,
        spec=method.spec,
        bytes_per_token=comp.bytes_per_token,
        tokens_kept=int(comp.keys.shape[2]),
        kl=scores["kl"],
        top1=scores["top1"],
        ppl=scores["ppl"],
        attn_err=layer_err,
        needle=found / max(len(needles), 1),
        seconds=time.monotonic() - start,
    )


def baseline(
    model: md.Model, text: EvalText, needles: list[NeedleCase], work: Workload
) -> Baseline:
    full = mt.reference_compressor(model, "identity")
    scores = logit_metrics(text.reference_logits, text.reference_logits, text.targets)
    answers = [answer(model, case, full(case.ctx), work) for case in needles]
    found = sum(contains_fact(a, c.fact) for a, c in zip(answers, needles, strict=True))
    return Baseline(ppl=scores["ppl"], needle=found / max(len(needles), 1), answers=answers)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="short context, few methods (CI)")
    p.add_argument("--codec", type=Path, help="kvdepot-codec binary; without it chains are skipped")
    p.add_argument(
        "--docs",
        type=Path,
        help="where compression_quality.md and .png go (default: docs/, or "
        "build/quality-quick/ with --quick so a quick run leaves the committed results alone)",
    )
    p.add_argument("--only", default="", help="regex: run only methods whose spec matches")
    p.add_argument("--context", type=int, help="context tokens (overrides the mode)")
    p.add_argument("--continuation", type=int, help="continuation tokens (overrides the mode)")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    root = Path(__file__).resolve().parents[2]
    docs = args.docs or (root / "build" / "quality-quick" if args.quick else root / "docs")
    work = QUICK if args.quick else FULL
    if args.context:
        work = replace(work, context_tokens=args.context)
    if args.continuation:
        work = replace(work, continuation_tokens=args.continuation)
    codec = args.codec if args.codec and args.codec.is_file() else None
    if args.codec and codec is None:
        print(f"quality: no codec binary at {args.codec}; kvdepot chains skipped", file=sys.stderr)
    torch.set_num_threads(max(torch.get_num_threads(), 1))

    started = time.monotonic()
    model = md.load_model()
    text = eval_text(model, md.EVAL_ESSAY, work)
    needles = needle_cases(model, work)
    base = baseline(model, text, needles, work)
    print(f"quality: full cache ppl {base.ppl:.3f}, needle {base.needle:.2f}", file=sys.stderr)

    chosen = [m for m in mt.METHODS if (m.quick or not args.quick) and re.search(args.only, m.spec)]
    rows: list[Row] = []
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="kvd-quality-") as tmp:
        work_dir = Path(tmp)
        bases: Path | None = None
        if codec and any(m.needs_bases for m in chosen if m.family == "kvdepot"):
            calib = md.prefill(
                model, model.encode(md.read_essay(md.CALIB_ESSAY))[: work.context_tokens]
            )
            try:
                bases = mt.fit_bases(codec, calib, work_dir)
            except RuntimeError as e:
                print(f"quality: fit-lowrank failed: {e}", file=sys.stderr)
        for method in chosen:
            if method.family == "kvdepot":
                if codec is None:
                    skipped.append(method.spec)
                    continue
                use_bases = bases if method.needs_bases else None
                compress = mt.codec_compressor(codec, method.spec, work_dir, use_bases)
            elif method.family == "kvpress":
                compress = mt.press_compressor(model, method.spec)
            else:
                compress = mt.reference_compressor(model, method.spec)
            try:
                row = evaluate(model, method, compress, text, needles, work)
            except (RuntimeError, ValueError, OSError) as e:
                row = Row.failed(method.family, method.spec, str(e))
            rows.append(row)
            print(f"quality: {row.progress_line()}", file=sys.stderr)

    params = {
        "mode": "quick" if args.quick else "full",
        "model": "SmolLM2-135M-Instruct (Q4_1 GGUF, float32 on CPU)",
        "context_tokens": work.context_tokens,
        "continuation_tokens": work.continuation_tokens,
        "needle_cases": len(needles),
        "methods": len(rows),
        "codec": codec is not None,
        "bf16_bytes_per_token": mt.bf16_bytes_per_token(model),
        "seconds": round(time.monotonic() - started, 1),
    }
    docs.mkdir(parents=True, exist_ok=True)
    write_plot(rows, params, docs / "compression_quality.png")
    write_markdown(rows, params, base.ppl, base.needle, skipped, docs / "compression_quality.md")
    write_rows(rows, params, base.answers, docs / "compression_quality.json")
    print(f"quality: wrote {docs}/compression_quality.md, .png, .json", file=sys.stderr)
    print(summary_json(rows, params, base.ppl, base.needle), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
