"""One runner for the five methods: FO full, FO-LoRA, ZO full, ZO-LoRA and hybrid.

===========  =========================================  ===============  ====================
method       zo block (lr_x, two forward passes)        fo block (lr_y)  frozen
===========  =========================================  ===============  ====================
fo           none                                       every weight     none
fo-lora      none                                       LoRA + head      base
zo           every weight (MeZO)                        none             none
zo-lora      LoRA + head                                none             base
hybrid       base (``*.base_layer.*`` and the rest)     LoRA + head      peft's head copy
===========  =========================================  ===============  ====================

Every method runs through the same :class:`~.optimizer.HybridZOFO` (a method without a ZO
block is plain SGD / Adam), the same :class:`~.sampler.ReshufflingSampler` and the same loop,
so steps, forward passes, wall time and memory are comparable side by side. Training runs
whole epochs (a mid-epoch stop is a different algorithm); the test set is evaluated before
training (epoch 0) and after every epoch.

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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from .._io import write_text_atomic
from .groups import hybrid_param_groups, is_adapter_name
from .memory import peak_memory, reset_peak
from .optimizer import DIFFERENCES, FO_GRADIENTS, FO_OPTIMIZERS, HybridZOFO
from .sampler import SAMPLINGS, ReshufflingSampler

__all__ = ["METHODS", "METHOD_DEFAULTS", "FinetuneConfig", "finetune", "build_optimizer"]

METHODS = ("fo", "fo-lora", "zo", "zo-lora", "hybrid")
METHOD_DEFAULTS: dict[str, dict[str, float]] = {
    # plain SGD on every block (the theorem's optimizer), chosen by the sweep of
    # docs/finetune_sweep.csv (scripts/finetune_results.py sweep): per method, the highest
    # final test accuracy among runs whose final training loss is below ln 2 (they learned),
    # ties to the lower training loss
    "fo": dict(lr_y=1e-2),
    "fo-lora": dict(lr_y=5e-2),
    "zo": dict(lr_x=1e-3, mu=1e-3),
    "zo-lora": dict(lr_x=1e-3, mu=1e-2),
    "hybrid": dict(lr_x=1e-4, lr_y=5e-2, mu=1e-3),
}
"""Learning rates and smoothing radius used when the command line does not give them."""


@dataclass
class FinetuneConfig:
    """A fine-tuning run (CLI: ``hybridconv finetune``). ``None`` rates take
    :data:`METHOD_DEFAULTS`."""

    model: str = "minilm"
    task: str = "mr"
    method: str = "hybrid"
    epochs: int = 5
    batch_size: int = 16
    lr_x: float | None = None
    lr_y: float | None = None
    mu: float | None = None
    q: int = 1
    seed: int = 0
    k_shot: int | None = 16
    test_size: int | None = 1000
    max_length: int = 64
    lora_r: int = 8
    lora_alpha: int = 16
    fo_optimizer: str = "sgd"
    directions: str = "gaussian"
    difference: str = "central"
    fo_gradient: str = "clean"
    sampling: str = "rr"
    eval_batch_size: int = 64
    device: str = "cpu"
    dtype: str = "float32"
    diagnostics_every: int = 0
    diagnostics_examples: int = 32
    diagnostics_probes: int = 8
    autocast: str = "none"

    def __post_init__(self) -> None:
        choices = {"method": METHODS, "fo_optimizer": FO_OPTIMIZERS,
                   "difference": DIFFERENCES, "fo_gradient": FO_GRADIENTS,
                   "sampling": SAMPLINGS, "dtype": ("float32", "bfloat16", "float16"),
                   "directions": ("gaussian", "sphere", "rademacher"),
                   "autocast": ("none", "bfloat16", "float16")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name, low in (("epochs", 1), ("batch_size", 1), ("q", 1), ("seed", 0),
                          ("max_length", 8), ("lora_r", 1), ("lora_alpha", 1),
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
        except RuntimeError:
            raise ValueError(f"device must be a torch device, got {self.device!r}") from None
        if self.diagnostics_every and self.method not in ("fo-lora", "zo-lora", "hybrid"):
            raise ValueError("diagnostics_every needs a method with LoRA (fo-lora, zo-lora, "
                             f"hybrid): the blocks are base weights and adapters, got "
                             f"method {self.method!r}")

    def resolved(self) -> dict[str, float]:
        """lr_x, lr_y, mu after defaults (only those the method uses)."""
        d = dict(METHOD_DEFAULTS[self.method])
        for k in ("lr_x", "lr_y", "mu"):
            if getattr(self, k) is not None and k in d:
                d[k] = getattr(self, k)
        return d


def build_optimizer(cfg: FinetuneConfig, loaded) -> HybridZOFO:
    """Apply LoRA if the method needs it and split the parameters as the table says."""
    from .models import apply_lora

    if cfg.method in ("fo-lora", "zo-lora", "hybrid"):
        apply_lora(loaded, r=cfg.lora_r, alpha=cfg.lora_alpha, seed=cfg.seed)
    rates = cfg.resolved()
    lr_x, lr_y = rates.get("lr_x", 1.0), rates.get("lr_y", 1.0)
    model = loaded.model
    adapter = lambda n, p: is_adapter_name(n)  # noqa: E731
    base = lambda n, p: not is_adapter_name(n)  # noqa: E731
    everything = lambda n, p: True  # noqa: E731
    sel = {"fo": dict(fo=everything), "fo-lora": dict(fo=adapter, frozen=base),
           "zo": dict(zo=everything), "zo-lora": dict(zo=adapter, frozen=base),
           "hybrid": {}}[cfg.method]
    groups = hybrid_param_groups(model, lr_x=lr_x, lr_y=lr_y, **sel)
    return HybridZOFO(groups, lr_x=lr_x, lr_y=lr_y, mu=rates.get("mu", 1e-3), q=cfg.q,
                      directions=cfg.directions, difference=cfg.difference,
                      fo_optimizer=cfg.fo_optimizer, fo_gradient=cfg.fo_gradient,
                      seed=cfg.seed, module=model)


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


def _versions() -> dict[str, str]:
    import transformers

    out = {"python": platform.python_version(), "torch": torch.__version__,
           "transformers": transformers.__version__, "machine": platform.machine()}
    try:
        import peft

        out["peft"] = peft.__version__
    except ImportError:  # pragma: no cover
        pass
    return out


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


def finetune(cfg: FinetuneConfig, out: str | os.PathLike, *, resume: bool = False,
             force: bool = False, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) a fine-tuning run into folder ``out``; returns the results dict.

    Under ``torchrun --nproc-per-node N`` every rank trains on its contiguous 1/N of each
    batch (``batch_size`` is the global batch and must be a multiple of N), the optimizer
    averages the losses, projected gradients and FO gradients over the ranks (see
    :class:`~.optimizer.HybridZOFO`), and rank 0 alone writes the run folder.
    """
    from .models import load_model
    from .tasks import load_task

    rank, world, device = data_parallel(cfg.device)
    if world > 1:
        if cfg.batch_size % world:
            raise ValueError(f"batch_size must be a multiple of the {world} ranks, got "
                             f"{cfg.batch_size}")
        cfg = FinetuneConfig(**{**asdict(cfg), "device": device})
    lead = rank == 0
    out = Path(out)
    results_path, ckpt_path = out / "results.json", out / "checkpoint.pt"
    if resume:
        if not ckpt_path.exists():
            raise ValueError(f"--resume: no checkpoint at {ckpt_path}")
        ckpt = torch.load(ckpt_path, weights_only=False, map_location="cpu")
        saved = FinetuneConfig(**ckpt["config"])
        if cfg.epochs < saved.epochs:
            raise ValueError(f"epochs must be >= {saved.epochs} (the resumed run's), "
                             f"got {cfg.epochs}")
        done = ckpt["curve"][-1]["epoch"]
        if done >= cfg.epochs and results_path.exists():  # nothing left to train
            return json.loads(results_path.read_text())
        saved.epochs = cfg.epochs
        cfg = saved
    else:
        ckpt = None
        existing = [p for p in (results_path, ckpt_path) if p.exists()]
        if existing and not force and lead:
            raise ValueError(f"{existing[0]} exists: pass --resume to continue it or "
                             f"--force to overwrite it")
        for p in (results_path, ckpt_path, out / "steps.csv", out / "diagnostics.json"):
            if lead:
                p.unlink(missing_ok=True)
    if lead:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "config.json", json.dumps(asdict(cfg), indent=2) + "\n")

    task = load_task(cfg.task, k_shot=cfg.k_shot, test_size=cfg.test_size,
                     data_seed=cfg.seed)
    dtype = getattr(torch, cfg.dtype)
    loaded = load_model(cfg.model, task, seed=cfg.seed, dtype=dtype, device=cfg.device)
    opt = build_optimizer(cfg, loaded)
    model = loaded.model
    sampler = ReshufflingSampler(len(task.train), kind=cfg.sampling, seed=cfg.seed)
    curve: list[dict[str, Any]] = []
    step_rows: list[str] = []
    diagnostics: list[dict[str, Any]] = []
    wall, start_epoch = 0.0, 0
    if ckpt is not None:
        table = dict(model.named_parameters())
        with torch.no_grad():
            for n, v in ckpt["model"].items():
                table[n].copy_(v)
        opt.load_state_dict(ckpt["optimizer"])
        sampler.load_state_dict(ckpt["sampler"])
        curve, step_rows, wall = ckpt["curve"], ckpt["steps"], ckpt["wall_s"]
        diagnostics = ckpt.get("diagnostics", [])
        start_epoch = curve[-1]["epoch"]
    with torch.no_grad():  # make every weight resident before the peak is reset: shipped
        for p in model.parameters():  # safetensors are memory-mapped, and a ZO or FO-full
            float(p.detach().sum())  # write would otherwise count untouched pages as new
    reset_peak(cfg.device)

    held: dict[str, Any] = {}

    def hold() -> None:
        """Keep the training's peak so far (diagnostics are not part of training)."""
        for k, v in peak_memory(cfg.device).items():
            held[k] = max(held.get(k, v), v) if isinstance(v, int) else v

    def write(status: str, error: str | None = None) -> dict[str, Any]:
        last = curve[-1]
        hold()
        mem = dict(held)
        results = {
            "status": status, **({"error": error} if error else {}),
            "accuracy": last["accuracy"], "test_loss": last["test_loss"],
            "best_accuracy": max(c["accuracy"] for c in curve),
            "steps": opt.steps, "epochs": last["epoch"],
            "forward_passes": opt.forward_passes, "wall_s": wall, **mem,
            "trained_params": sum(p.numel() for g in opt.param_groups for p in g["params"]),
            "zo_params": sum(p.numel() for p in opt.zo_params()),
            "train_examples": len(task.train), "task": task.describe(),
            "config": asdict(cfg), "resolved": cfg.resolved(), "curve": curve,
            "versions": _versions(), "world_size": world,
            **({"comm_bytes": opt.comm_bytes} if world > 1 else {}),
        }
        if lead:
            write_text_atomic(results_path, json.dumps(results, indent=2) + "\n")
            write_text_atomic(out / "steps.csv", "step,epoch,loss\n" + "".join(step_rows))
        return results

    def save(wall: float) -> None:
        if not lead:
            return
        tmp = ckpt_path.with_name(".checkpoint.pt.tmp")
        torch.save({"config": asdict(cfg), "model": _trained_state(opt, model),
                    "optimizer": opt.state_dict(), "sampler": sampler.state_dict(),
                    "curve": curve, "steps": step_rows, "wall_s": wall,
                    "diagnostics": diagnostics}, tmp)
        os.replace(tmp, ckpt_path)

    def measure(epoch: int) -> None:
        """Diagnostics at the start, every ``diagnostics_every`` epochs and at the end
        (outside the timed training and after the memory peak's window: it needs memory for
        double backward)."""
        if not lead or not cfg.diagnostics_every or any(d["epoch"] == epoch
                                                         for d in diagnostics):
            return
        if epoch == 0 or epoch % cfg.diagnostics_every == 0 or epoch == cfg.epochs:
            hold()
            try:
                diagnostics.append(diagnose(loaded, task, cfg, epoch=epoch, step=opt.steps))
            except (RuntimeError, ValueError) as e:  # out of memory, an unsupported op...:
                diagnostics.append({"epoch": epoch, "step": opt.steps,  # recorded, the
                                    "error": str(e).splitlines()[0][:300]})  # run goes on
            import gc

            gc.collect()
            if torch.device(cfg.device).type == "cuda":
                torch.cuda.empty_cache()
            reset_peak(cfg.device)
            write_text_atomic(out / "diagnostics.json", json.dumps(
                {"config": asdict(cfg), "subset_examples": len(diagnostics_subset(task, cfg)),
                 "train_examples": len(task.train), "points": diagnostics},
                indent=2) + "\n")

    test_batches = eval_batches(loaded, task, task.test, cfg)
    if not curve:
        curve.append({"epoch": 0, "step": 0, "train_loss": None, "forward_passes": 0,
                      "wall_s": 0.0, **evaluate(loaded, task, task.test, cfg, test_batches)})
    measure(start_epoch)

    def forward(b: dict[str, torch.Tensor]) -> torch.Tensor:
        """The batch loss; under ``autocast`` the forward runs in bf16/fp16 while the weights
        (and so the ZO perturbation and its restore) stay in their own dtype."""
        if cfg.autocast == "none":
            return loaded.loss(b)
        with torch.autocast(device_type=torch.device(cfg.device).type,
                            dtype=getattr(torch, cfg.autocast)):
            return loaded.loss(b).float()

    bar = None
    if progress and lead:
        from tqdm.auto import tqdm

        n_batches = math.ceil(len(task.train) / cfg.batch_size)
        bar = tqdm(total=(cfg.epochs - start_epoch) * n_batches, unit="step",
                   desc=f"{cfg.method} {cfg.model} {cfg.task}")
    error = None
    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        order = list(sampler)
        losses = []
        t0 = time.perf_counter()
        try:
            for i in range(0, len(order), cfg.batch_size):
                idx = order[i:i + cfg.batch_size]
                if world > 1:  # this rank's contiguous share of the global batch
                    idx = ReshufflingSampler.shard(idx, rank, world)
                batch = _to(loaded.encode(task, [task.train[j] for j in idx],
                                          cfg.max_length), cfg.device)
                loss = float(opt.step(lambda b=batch: forward(b)))
                losses.append(loss)
                step_rows.append(f"{opt.steps},{epoch + 1},{loss!r}\n")
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4f}")
        except FloatingPointError as e:
            error = str(e)
            wall += time.perf_counter() - t0
            break
        wall += time.perf_counter() - t0
        curve.append({"epoch": epoch + 1, "step": opt.steps,
                      "train_loss": sum(losses) / len(losses),
                      "forward_passes": opt.forward_passes, "wall_s": wall,
                      **evaluate(loaded, task, task.test, cfg, test_batches)})
        save(wall)  # the epoch's training is safe before the diagnostics run
        if cfg.diagnostics_every:
            measure(epoch + 1)
            save(wall)
        if epoch + 1 < cfg.epochs:
            write("running")
    if bar is not None:
        bar.close()
    return write("diverged" if error else "completed", error)
