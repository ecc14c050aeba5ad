"""Checks of the quality harness itself (about a minute on 2 cores):

    build/quality-venv/bin/python -m pytest -q bench/quality

The identity chain must give KL ~0 and top-1 agreement 1.0: that proves the
path that puts a compressed cache into the model. A token-reduced cache made
here must match kvpress's own for the same eviction. KVD_CODEC=<binary> adds
runs of the real kvdepot-codec (its file contract with a lossless chain, and
int8); deploy/test.sh always sets it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from transformers import DynamicCache

import methods as mt
import model as md
import run_quality as rq

WORK = rq.Workload(context_tokens=128, continuation_tokens=16, needles=1, depths=[0.5])


@pytest.fixture(scope="module")
def model() -> md.Model:
    return md.load_model()


@pytest.fixture(scope="module")
def text(model: md.Model) -> rq.EvalText:
    return rq.eval_text(model, md.EVAL_ESSAY, WORK)


def run(model: md.Model, text: rq.EvalText, compress: mt.Compressor) -> rq.Row:
    method = mt.Method("reference", "test")
    return rq.evaluate(model, method, compress, text, [], WORK)


def test_model_shape(model: md.Model, text: rq.EvalText) -> None:
    assert (model.layers, model.kv_heads, model.head_dim) == (30, 3, 64)
    assert tuple(text.ctx.keys.shape) == (30, 3, 128, 64)
    assert tuple(text.ctx.queries.shape) == (30, 9, 128, 64)
    assert tuple(text.queries.shape) == (30, 9, 16, 64)


def test_reference_matches_one_pass_over_context_and_continuation(
    model: md.Model, text: rq.EvalText
) -> None:
    ids = text.ctx.token_ids + text.inputs
    with torch.no_grad():
        logits = model.model(torch.tensor([ids])).logits[0, text.ctx.tokens :]
    assert torch.allclose(logits, text.reference_logits, atol=1e-4)


def test_identity_chain_is_lossless(model: md.Model, text: rq.EvalText) -> None:
    row = run(model, text, mt.reference_compressor(model, "identity"))
    assert row.kl < 1e-6
    assert row.top1 == 1.0
    assert max(row.attn_err) < 1e-6
    assert row.tokens_kept == 128


def test_cache_order_does_not_matter(model: md.Model, text: rq.EvalText) -> None:
    order = torch.randperm(text.ctx.tokens, generator=torch.Generator().manual_seed(1))

    def permuted(ctx: md.Prefill) -> mt.Compressed:
        return mt.Compressed(ctx.keys[:, :, order], ctx.values[:, :, order], 768.0)

    row = run(model, text, permuted)
    assert row.kl < 1e-6 and row.top1 == 1.0 and max(row.attn_err) < 1e-5


def test_token_reduced_cache_matches_kvpress(model: md.Model, text: rq.EvalText) -> None:
    """Sinks + recent tokens dropped in here at their original positions give
    the same predictions as kvpress's StreamingLLM cache (and not the full
    cache's): the continuation positions and the injection are right."""
    import kvpress

    sinks, kept = 4, 32
    keep = list(range(sinks)) + list(range(text.ctx.tokens - (kept - sinks), text.ctx.tokens))

    def streaming(ctx: md.Prefill) -> mt.Compressed:
        return mt.Compressed(*_take(ctx, keep), 192.0)

    ours = md.extend(model, md.make_cache(*_take(text.ctx, keep)), text.inputs, text.ctx.tokens)
    cache = DynamicCache()
    press = kvpress.StreamingLLMPress(compression_ratio=0.75, n_sink=sinks)
    with press(model.model), torch.no_grad():
        model.model.model(torch.tensor([text.ctx.token_ids]), past_key_values=cache)
    assert cache.get_seq_length() == kept
    theirs = md.extend(model, cache, text.inputs, text.ctx.tokens)
    assert torch.allclose(ours, theirs, atol=1e-3)
    row = run(model, text, streaming)
    assert row.kl > 1e-3  # and it is a real loss against the full cache


def _take(ctx: md.Prefill, keep: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    return ctx.keys[:, :, keep], ctx.values[:, :, keep]


def test_needle_found_with_full_cache(model: md.Model) -> None:
    work = rq.Workload(context_tokens=256, continuation_tokens=1, needles=1, depths=[0.5])
    (case,) = rq.needle_cases(model, work)
    full = mt.reference_compressor(model, "identity")
    assert case.fact in rq.answer(model, case, full(case.ctx), work)


@pytest.mark.skipif(
    not os.environ.get("KVD_CODEC"), reason="KVD_CODEC (kvdepot-codec binary) not set"
)
def test_codec_cli_contract_with_a_lossless_chain(
    model: md.Model, text: rq.EvalText, tmp_path: Path
) -> None:
    # zstd over the bf16 cache: only bf16 rounding separates it from the
    # float32 reference, so any mix-up of layers, heads or files shows.
    codec = Path(os.environ["KVD_CODEC"])
    compress = mt.codec_compressor(codec, "zstd", tmp_path / "work", None)
    row = run(model, text, compress)
    assert row.kl < 1e-3 and row.top1 == 1.0
    assert 0 < row.bytes_per_token < 768.0
    meta = json.loads((tmp_path / "work" / "in" / "meta.json").read_text())
    assert meta == {
        "layers": 30,
        "kv_heads": 3,
        "tokens": 128,
        "head_dim": 64,
        "q_heads": 9,
        "q_tokens": 128,
    }


@pytest.mark.skipif(
    not os.environ.get("KVD_CODEC"), reason="KVD_CODEC (kvdepot-codec binary) not set"
)
def test_real_codec_int8_is_nearly_lossless(
    model: md.Model, text: rq.EvalText, tmp_path: Path
) -> None:
    codec = Path(os.environ["KVD_CODEC"])
    compress = mt.codec_compressor(codec, mt.Q8, tmp_path, None)
    row = run(model, text, compress)
    assert row.bytes_per_token < 768  # 32 of the 128 tokens stay bf16 (window)
    assert row.kl < 0.01 and row.top1 >= 0.9
