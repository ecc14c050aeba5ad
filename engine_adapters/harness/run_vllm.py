"""One vLLM instance (CPU), greedy, on the prompts of a JSON file; prints one
JSON object: the output token ids per prompt, the time to first token of each
(a generate call with max_tokens=1 first, then the full one; one unrelated
short prompt runs before them all, so no prompt pays for the first call),
and the connector's counters when one is configured (read after the engine
has shut down, so every save has ended).

    python run_vllm.py MODEL_DIR PROMPTS_JSON [--connector JSON] [--max-tokens N]

PROMPTS_JSON is a list of token-id lists. --connector is the
kv_connector_extra_config plus "kv_role"; without it vLLM runs alone.
"""

import argparse
import json
import os
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("prompts")
    parser.add_argument("--connector", default="")
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    # One process: the test reads the connector's counters from here.
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

    from vllm import LLM, SamplingParams
    from vllm.config import KVTransferConfig
    from vllm.inputs import TokensPrompt

    kwargs = {}
    if args.connector:
        extra = json.loads(args.connector)
        role = extra.pop("kv_role")
        kwargs["kv_transfer_config"] = KVTransferConfig(
            kv_connector="KVDepotConnector",
            kv_connector_module_path="kvdepot.vllm",
            kv_role=role,
            kv_load_failure_policy="recompute",
            kv_connector_extra_config=extra)
    llm = LLM(model=args.model, dtype="float32", enforce_eager=True,
              max_model_len=8192, enable_prefix_caching=False, seed=0, **kwargs)
    prompts = [TokensPrompt(prompt_token_ids=p)
               for p in json.load(open(args.prompts))]
    llm.generate([TokensPrompt(prompt_token_ids=list(range(100, 132)))],
                 SamplingParams(temperature=0, max_tokens=2), use_tqdm=False)
    outputs, ttft = [], []
    for prompt in prompts:
        start = time.perf_counter()
        llm.generate([prompt], SamplingParams(temperature=0, max_tokens=1),
                     use_tqdm=False)
        ttft.append(time.perf_counter() - start)
        out = llm.generate([prompt], SamplingParams(
            temperature=0, max_tokens=args.max_tokens), use_tqdm=False)
        outputs.append(list(out[0].outputs[0].token_ids))
    # Shutting the engine down waits for the connector's saves in flight.
    llm.llm_engine.engine_core.shutdown()
    stats = {}
    if args.connector:
        from kvdepot.vllm import KVDepotConnector
        stats = KVDepotConnector.process_stats()
    json.dump({"outputs": outputs, "ttft_s": ttft, "connector": stats},
              sys.stdout)
    print()


if __name__ == "__main__":
    main()
