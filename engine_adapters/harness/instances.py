"""Runs vLLM instances (each its own process, harness/run_vllm.py) on
prompts of real text, for the tests, the vllm-ttft benchmark and the main
job's shared-prefix demo."""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

HARNESS = Path(__file__).resolve().parent
ROOT = HARNESS.parent.parent


def text_ids(model: Path) -> list[int]:
    """This repository's documentation and headers, tokenized: long real
    text for prompts."""
    from transformers import AutoTokenizer

    files = sorted(ROOT.glob("*.md")) + sorted(ROOT.glob("docs/*.md")) + \
        sorted(ROOT.glob("*/*.h")) + sorted(ROOT.glob("*/*/*.h"))
    text = "\n\n".join(f.read_text() for f in files)
    return AutoTokenizer.from_pretrained(model).encode(text)


def run(model: Path, prompts: list[list[int]], connector: dict | None = None,
        max_tokens: int = 16, timeout_s: int = 1800) -> dict:
    """One vLLM instance greedy on `prompts` (token-id lists), with the
    connector when `connector` (its extra config plus "kv_role") is given:
    run_vllm.py's JSON (outputs, ttft_s, connector counters). Raises
    RuntimeError with vLLM's stderr when it fails."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(prompts, f)
        f.flush()
        cmd = [sys.executable, str(HARNESS / "run_vllm.py"), str(model), f.name,
               "--max-tokens", str(max_tokens)]
        if connector is not None:
            cmd += ["--connector", json.dumps(connector)]
        done = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"vLLM failed:\n{done.stderr[-6000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
