"""Quality of a compressed cache against the uncompressed one."""

from __future__ import annotations

import math

import torch


def attention_error(
    queries: torch.Tensor,  # [L][Hq][N][D], post-RoPE, positions after the context
    full: tuple[torch.Tensor, torch.Tensor],  # keys, values [L][H][T][D]
    compressed: tuple[torch.Tensor, torch.Tensor],  # keys, values [L][H][T2][D]
) -> list[float]:
    """Per layer: ||o_c - o|| / ||o|| of the attention output of later queries
    over the context cache (query head h reads KV head h // (Hq / H))."""

    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        layers, q_heads, n, dim = q.shape
        group = q_heads // k.shape[1]
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dim), dim=-1)
        return weights @ v

    out_full = attend(queries, *full)
    out_comp = attend(queries, *compressed)
    err = (out_comp - out_full).flatten(1).norm(dim=1) / out_full.flatten(1).norm(dim=1)
    return [float(x) for x in err]


def logit_metrics(
    reference: torch.Tensor,  # [N][vocab] logits with the full cache
    logits: torch.Tensor,  # [N][vocab] logits with the compressed cache
    targets: list[int],  # the N tokens that follow
) -> dict[str, float]:
    """Mean next-token KL(full || compressed) in nats, top-1 agreement, and
    perplexity of the compressed run on the targets."""
    ref_log = torch.log_softmax(reference.double(), dim=-1)
    log = torch.log_softmax(logits.double(), dim=-1)
    kl = (ref_log.exp() * (ref_log - log)).sum(-1).mean()
    top1 = (reference.argmax(-1) == logits.argmax(-1)).double().mean()
    nll = -log[torch.arange(len(targets)), torch.tensor(targets)].mean()
    return {"kl": max(float(kl), 0.0), "top1": float(top1), "ppl": math.exp(float(nll))}


def contains_fact(answer: str, fact: str) -> bool:
    return fact.lower() in answer.lower()
