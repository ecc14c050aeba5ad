"""What gets compared: kvdepot codec chains (run by the kvdepot-codec CLI),
NVIDIA kvpress presses, and two in-Python references. Edit METHODS to change
the methods and ratios of a run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import DynamicCache

from model import Model, Prefill, cache_tensors

Q8 = "quant(k=int8/channel,v=int8/token,g=32,window=32)"
Q4 = "quant(k=int4/channel,v=int4/token,g=32,window=32)"
Q2 = "quant(k=int2/channel,v=int2/token,g=32,window=32)"
Q4_NOWINDOW = "quant(k=int4/channel,v=int4/token,g=32)"
# Groups of 64: half the scale/minimum overhead of g=32 (0.5 bit/element).
Q4G64 = "quant(k=int4/channel,v=int4/token,g=64,window=32)"
Q4G64_NOWINDOW = "quant(k=int4/channel,v=int4/token,g=64)"
LOWRANK = "lowrank(rk=32,rv=48,window=32)"


def _keep(spec: str, keeps: tuple[float, ...]) -> list[str]:
    return [spec.format(keep=k) for k in keeps]


@dataclass(frozen=True)
class Method:
    family: str  # "kvdepot" (a codec chain), "kvpress" (a press), "reference"
    spec: str  # chain spec, or "<Press>:<compression_ratio>", or "bf16"
    quick: bool = False  # part of the --quick run

    @property
    def needs_bases(self) -> bool:
        return "lowrank(" in self.spec


# The one table of methods and ratios. keep = fraction of tokens kept;
# a press's compression_ratio = fraction of tokens removed.
_TOKEN_REDUCERS = [
    "h2o(keep={keep},recent=0.5)",
    "snapkv(keep={keep},window=32,kernel=5)",
    "streaming(keep={keep},sinks=4)",
    "keynorm(keep={keep})",
    "kvmerger(keep={keep},window=32)",
    "ems(keep={keep},window=32)",
]
_QUICK = {
    Q4,
    f"{Q2}|rans",
    f"{LOWRANK}|{Q4}",
    "snapkv(keep=0.25,window=32,kernel=5)",
    "snapkv(keep=0.125,window=32,kernel=5)",
    "streaming(keep=0.25,sinks=4)",
    f"snapkv(keep=0.5)|{Q4_NOWINDOW}",
    f"snapkv(keep=0.25)|{Q4_NOWINDOW}",
    f"{Q4G64}|rans",
    f"snapkv(keep=0.5)|{Q4G64_NOWINDOW}|rans",
}
_CHAINS = [
    Q8,
    "quant(k=fp8,v=fp8)",
    Q4,
    Q2,
    f"{Q4}|rans",
    f"{Q2}|rans",
    f"{Q4}|zstd",
    f"{Q4G64}|rans",
    f"{Q4G64}|zstd",
    LOWRANK,
    f"{LOWRANK}|{Q4}",
    f"{LOWRANK}|{Q2}",
    *[s for r in _TOKEN_REDUCERS for s in _keep(r, (0.5, 0.25, 0.125))],
    f"snapkv(keep=0.5)|{Q4_NOWINDOW}",
    f"snapkv(keep=0.25)|{Q4_NOWINDOW}",
    f"snapkv(keep=0.5)|{Q4G64_NOWINDOW}|rans",
    f"snapkv(keep=0.25)|{Q4G64_NOWINDOW}|rans",
    f"h2o(keep=0.5,recent=0.5)|{Q4_NOWINDOW}",
    f"kvmerger(keep=0.5,window=32)|{Q4_NOWINDOW}",
]
_PRESSES = ["SnapKVPress", "KnormPress", "ExpectedAttentionPress", "StreamingLLMPress"]

METHODS: list[Method] = [
    Method("reference", "bf16", quick=True),
    *[Method("kvdepot", s, quick=s in _QUICK) for s in _CHAINS],
    *[Method("kvpress", f"{p}:{r}", quick=r != 0.5) for p in _PRESSES for r in (0.5, 0.75, 0.875)],
]


@dataclass
class Compressed:
    """A context cache after compression, ready to be put into a DynamicCache."""

    keys: torch.Tensor  # [L][H][T2][D] float32, post-RoPE
    values: torch.Tensor  # [L][H][T2][D] float32
    bytes_per_token: float  # encoded bytes / original tokens / layers
    chain: str = ""  # canonical spec as the codec printed it


def bf16_bytes_per_token(model: Model) -> int:
    return 2 * model.kv_heads * model.head_dim * 2  # K and V, 2 bytes each


Compressor = Callable[[Prefill], Compressed]


def reference_compressor(model: Model, spec: str) -> Compressor:
    if spec not in ("identity", "bf16"):
        raise ValueError(f"unknown reference method {spec}")

    def run(ctx: Prefill) -> Compressed:
        k, v = ctx.keys.clone(), ctx.values.clone()
        if spec == "bf16":
            k, v = k.bfloat16().float(), v.bfloat16().float()
        return Compressed(k, v, float(bf16_bytes_per_token(model)), spec)

    return run


def press_compressor(model: Model, spec: str) -> Compressor:
    """Re-runs the context's prefill under the kvpress press (presses act
    during prefill), and returns the cache the press left."""
    import kvpress

    name, ratio_text = spec.split(":")
    ratio = float(ratio_text)
    kwargs: dict[str, object] = {"compression_ratio": ratio}
    if name == "SnapKVPress":
        kwargs["window_size"] = 32  # as our snapkv chains; kvpress's default is 64
    press = getattr(kvpress, name)(**kwargs)

    @torch.no_grad()
    def run(ctx: Prefill) -> Compressed:
        cache = DynamicCache()
        with press(model.model):
            model.model.model(torch.tensor([ctx.token_ids]), past_key_values=cache)
        keys, values = cache_tensors(cache)
        bpt = bf16_bytes_per_token(model) * (1.0 - ratio)
        return Compressed(keys, values, bpt, spec)

    return run


def _write_f32(path: Path, tensor: torch.Tensor) -> None:
    tensor.detach().to(torch.float32).contiguous().numpy().astype("<f4").tofile(path)


def write_codec_input(ctx: Prefill, in_dir: Path, with_queries: bool = True) -> None:
    """IN_DIR of the kvdepot-codec contract: meta.json, k.f32, v.f32, q.f32."""
    in_dir.mkdir(parents=True, exist_ok=True)
    layers, heads, tokens, dim = ctx.keys.shape
    meta = {"layers": layers, "kv_heads": heads, "tokens": tokens, "head_dim": dim}
    _write_f32(in_dir / "k.f32", ctx.keys)
    _write_f32(in_dir / "v.f32", ctx.values)
    if with_queries:
        meta["q_heads"] = int(ctx.queries.shape[1])
        meta["q_tokens"] = int(ctx.queries.shape[2])
        _write_f32(in_dir / "q.f32", ctx.queries)
    (in_dir / "meta.json").write_text(json.dumps(meta))


def read_codec_output(out_dir: Path, ctx: Prefill) -> Compressed:
    """Reads OUT_DIR (k.f32, v.f32, positions.u32, result.json) and checks
    it against the contract."""
    result = json.loads((out_dir / "result.json").read_text())
    layers, heads, tokens, dim = ctx.keys.shape
    kept = int(result["tokens_kept"])
    shape = (layers, heads, kept, dim)
    keys = torch.from_numpy(np.fromfile(out_dir / "k.f32", dtype="<f4").reshape(shape))
    values = torch.from_numpy(np.fromfile(out_dir / "v.f32", dtype="<f4").reshape(shape))
    positions = np.fromfile(out_dir / "positions.u32", dtype="<u4").reshape(shape[:3])
    if not 0 < kept <= tokens or positions.max(initial=0) >= tokens:
        raise ValueError(f"codec output out of range: tokens_kept={kept}, tokens={tokens}")
    if not (torch.isfinite(keys).all() and torch.isfinite(values).all()):
        raise ValueError("codec output has non-finite values")
    return Compressed(keys, values, float(result["bytes_per_token"]), str(result["chain"]))


def _run_cli(args: list[str]) -> str:
    """Runs the codec CLI; returns its stdout."""
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"{' '.join(args[:3])} exited {done.returncode}: {' / '.join(tail)}")
    return done.stdout


def fit_bases(codec: Path, calibration: Prefill, work: Path) -> Path:
    """PCA bases for the lowrank chains, fitted on calibration text."""
    in_dir, bases = work / "calibration", work / "bases.bin"
    write_codec_input(calibration, in_dir, with_queries=False)
    report = _run_cli([str(codec), "fit-lowrank", "--in", str(in_dir), "--out", str(bases)])
    print(f"quality: fit-lowrank: {report.strip()}", file=sys.stderr)
    return bases


def codec_compressor(codec: Path, spec: str, work: Path, bases: Path | None) -> Compressor:
    """The one place a kvdepot codec chain runs: through the CLI."""

    def run(ctx: Prefill) -> Compressed:
        in_dir, out_dir = work / "in", work / "out"
        shutil.rmtree(out_dir, ignore_errors=True)
        write_codec_input(ctx, in_dir)
        out_dir.mkdir(parents=True)
        args = [str(codec), "apply", "--chain", spec, "--in", str(in_dir), "--out", str(out_dir)]
        if bases is not None:
            args += ["--bases", str(bases)]
        _run_cli(args)
        return read_codec_output(out_dir, ctx)

    return run
