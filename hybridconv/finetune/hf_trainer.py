"""``HybridTrainer``: hybridconv's step inside ``transformers.Trainer``.

A thin subclass of :class:`transformers.Trainer` that trains with
:class:`~.optimizer.HybridZOFO` (any of the five methods of :data:`hybridconv.spec.METHODS`)
while everything else stays Trainer's: ``TrainingArguments``, ``lr_scheduler_type`` and warm-up,
``gradient_accumulation_steps``, ``max_grad_norm``, ``logging_steps``, ``eval_strategy``,
``save_steps`` and ``resume_from_checkpoint``, ``report_to``, ``accelerate launch``.
It overrides three methods:

- ``create_optimizer``: a :class:`~.optimizer.HybridZOFO` over the method's split of the
  model's parameters (:func:`~.groups.method_param_groups`), with eta_y =
  ``args.learning_rate`` and eta_x = ``args.lr_x``. Both are group learning rates, so Trainer's
  scheduler scales them together: eta_x(t) = lr_x s(t), eta_y(t) = learning_rate s(t).
- ``training_step``: see "One step" below.
- ``_get_train_sampler``: a :class:`~.sampler.ReshufflingSampler` (``args.sampling``, seeded
  by ``args.data_seed`` or ``args.seed``), because Trainer's only other choices are a
  ``RandomSampler`` (a generator that does not reproduce the simulator's orders) and sequential
  order; this is the one hook Trainer offers for the order of the examples. Trainer calls its
  ``set_epoch`` every epoch, and on resume skips the batches already seen, so a resumed run
  visits the same examples in the same order.

One step (THEORY.md, "Algorithm: hybrid reshuffling SGD"), with m =
``gradient_accumulation_steps`` micro-batches B_1..B_m and f_j the loss Trainer computes on B_j,
scaled for accumulation as Trainer scales it (f_j = mean loss on B_j / m, or normalized by the
items of the whole step when the model or ``compute_loss_func`` takes ``num_items_in_batch``):

    F(x, y) = sum_j f_j(x, y)
    g_y = sum_j grad_y f_j(x, y)                       (Trainer's backward per micro-batch)
    g_x = (1/q) sum_k [F(x + mu u_k, y) - F(x - mu u_k, y)] / (2 mu) u_k
        = (1/q) sum_k (sum_j p_jk) u_k,   p_jk = [f_j(x + mu u_k) - f_j(x - mu u_k)] / (2 mu)

so the ZO block accumulates the micro-batches' projected gradients p_jk along the *same*
directions u_k (regenerated from the step's seed, never stored): each ZO pass runs the m
micro-batches one after the other at the same perturbed point, so activation memory is one
micro-batch's. With equal micro-batches and a mean loss, F is the loss of the combined batch,
and the step equals one step on the combined batch (``gradient_accumulation_steps=m`` with
batch b equals batch m b, up to floating-point summation order: tested in float64). For methods
with an FO block, the gradient comes from ``training_step`` (clipped by Trainer if
``max_grad_norm`` > 0) and the ZO passes run in ``optimizer.step()``, which Trainer calls
without a closure: the optimizer holds the step's closure and hands those gradients back to
:meth:`HybridZOFO.step <hybridconv.finetune.optimizer.HybridZOFO.step>` as its clean FO pass,
so both oracles are still queried at the same point z = (x, y) (``schedule="jacobi"``), or the
FO step comes first and the ZO passes see the new y (``"gauss-seidel"``). ZO-only methods have
no gradient to clip: their step runs at the last micro-batch's ``training_step``, which then
returns the step's loss for logging. Every pass of a step runs in eval mode (dropout off), as
the theorem and MeZO assume.

Data parallel (``accelerate launch --multi_gpu --num_processes N`` or ``torchrun``; on CPU
add ``--use_cpu true`` so accelerate shards the batches, MULTI_CPU with gloo: without it each
rank would train alone on every batch, which is refused): the passes run on the unwrapped module
(no DDP gradient hooks), and :class:`HybridZOFO`'s ``distributed`` path averages the clean
loss, the q projected gradients (8 (q + 1) bytes per step for the whole ZO block) and the FO
gradients over the ranks, so every rank applies the same update. Each rank takes its own
batches of the same reshuffled order (accelerate's batch sharding), so N processes with
per-device batch b follow one process with batch N b (tested on CPU with gloo).

Checkpoints: Trainer saves ``optimizer.state_dict()``, which holds the step-seed generator,
the fp32 master weights and the step log (:class:`~.optimizer.HybridZOFO`); for a peft model,
whose ``save_pretrained`` writes the adapters only, it also holds the ZO block itself (the
ZO-trained base weights), so ``resume_from_checkpoint`` continues bit-identically. The final
base weights of a hybrid run on a peft model are *not* in Trainer's ``save_model`` output
(adapters only): save ``trainer.model.get_base_model()`` (or merge LoRA) to keep them.

Logs: every training log gets ``projected_grad`` (mean of the projected gradients since the
last log), ``projected_grad_rms`` and the rates ``lr_x`` and ``lr_y`` of the last step, and
goes wherever ``report_to`` sends Trainer's logs.

Not supported (clear errors): DeepSpeed and FSDP (the ZO block must be whole on every rank),
several GPUs in one process (``n_gpu > 1``: use one process per device), and ``fp16=True``
(a gradient scaler) for methods without an FO block.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import has_length

from .. import spec
from .groups import method_param_groups
from .optimizer import HybridZOFO
from .sampler import ReshufflingSampler

__all__ = ["HybridTrainer", "HybridTrainingArguments", "TaskObjective"]

_ADAM = ("adamw_torch", "adamw_torch_fused", "adamw_hf")


def _help(name: str) -> str:
    row = spec.CHOICES.get(name) or spec.QUANTITIES.get(spec.canonical(name))
    return row.help if hasattr(row, "help") else row.description


@dataclass
class HybridTrainingArguments(TrainingArguments):
    """``TrainingArguments`` plus the hybrid step's settings. ``learning_rate`` is eta_y (the FO
    block's rate); ``lr_x`` is eta_x (the ZO block's); ``optim`` picks the FO update rule:
    ``"sgd"`` (what the theorem covers) or an AdamW (``adamw_torch``, ``adamw_torch_fused``)
    with ``adam_beta1``, ``adam_beta2``, ``adam_epsilon`` and ``weight_decay``."""

    method: str = field(default="hybrid", metadata={"help": spec.METHODS.help})
    lr_x: float = field(default=1e-6, metadata={"help": _help("eta_x")})
    mu: float = field(default=1e-3, metadata={"help": _help("mu")})
    q: int = field(default=1, metadata={"help": _help("q")})
    directions: str = field(default="gaussian", metadata={"help": _help("directions")})
    difference: str = field(default="central", metadata={"help": _help("difference")})
    schedule: str = field(default="jacobi", metadata={"help": _help("schedule")})
    sampling: str = field(default="rr", metadata={"help": _help("sampling")})
    master_weights: bool | None = field(
        default=None, metadata={"help": "fp32 master copy of the ZO block (None: for "
                                        "fp16/bf16 ZO tensors only); exact perturb/restore"})

    def __post_init__(self) -> None:
        self.method = spec.validate("method", self.method, among=spec.METHODS)
        self.lr_x = spec.validate("lr_x", self.lr_x)
        self.mu = spec.validate("mu", self.mu, positive=True)
        self.q = spec.validate("q", self.q)
        for name in ("directions", "difference", "schedule", "sampling"):
            setattr(self, name, spec.validate(name, getattr(self, name)))
        if self.master_weights not in (None, True, False):
            raise ValueError(f"master_weights must be None, True or False, got "
                             f"{self.master_weights!r}")
        super().__post_init__()
        if self.optim != "sgd" and self.optim not in _ADAM:
            raise ValueError(f"optim must be one of sgd, {', '.join(_ADAM)} (the FO block's "
                             f"update rule), got {self.optim!r}")
        if self.optim_args:
            raise ValueError(f"optim_args is not supported by HybridTrainer, got "
                             f"{self.optim_args!r}")


class _TrainerStep(HybridZOFO):
    """:class:`HybridZOFO` as Trainer drives it: ``step()`` without a closure runs the step
    the trainer bound (:meth:`bind`), taking the FO gradients Trainer back-propagated (and
    clipped) as the clean FO pass; the state also carries the ZO block when the model's own
    checkpoint does not (peft adapters)."""

    keep_zo_block = False

    def bind(self, evaluate, clean: torch.Tensor | None) -> None:
        """``evaluate()``: the step's loss F at the current weights (no gradient);
        ``clean``: F at the clean point, whose gradients are in ``.grad``."""
        self._evaluate, self._clean = evaluate, clean

    def fo_params(self) -> list[torch.Tensor]:
        return [p for g in self.param_groups if g["kind"] == "fo" for p in g["params"]]

    def step(self, closure=None):  # type: ignore[override]
        self.rates = {kind: next((g["lr"] for g in self.param_groups if g["kind"] == kind),
                                 None) for kind in ("zo", "fo")}
        if closure is not None:
            return super().step(closure)
        evaluate, clean = getattr(self, "_evaluate", None), getattr(self, "_clean", None)
        if evaluate is None:
            if getattr(self, "_taken", False):  # a ZO-only step ran in training_step
                self._taken = False
                return None
            raise ValueError("step() without a closure needs a step bound by HybridTrainer")
        fo = self.fo_params()
        grads = [p.grad for p in fo]
        calls = [0]

        def closure() -> torch.Tensor:
            calls[0] += 1
            if calls[0] == 1:  # HybridZOFO's first call with an FO block is the clean FO pass:
                for p, g in zip(fo, grads, strict=True):  # Trainer's gradients and loss
                    p.grad = g
                return clean.detach().float().clone().requires_grad_()  # backward: a no-op
            return evaluate()

        try:
            return super().step(closure)
        finally:
            self._evaluate = self._clean = None

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        if self.keep_zo_block:
            sd["zo_block"] = [p.detach() for p in self.zo_params()]
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        block = state_dict.pop("zo_block", None)
        super().load_state_dict(state_dict)
        if block is not None:
            zo = self.zo_params()
            if len(block) != len(zo):
                raise ValueError("state_dict's ZO block does not match this optimizer's")
            with torch.no_grad():
                for p, v, m in zip(zo, block, self.log.master, strict=True):
                    if not m:  # tensors with a master copy were restored from it
                        p.copy_(v)


class _ZOLogs(TrainerCallback):
    """Adds the projected gradients and both rates to every training log (first in the
    callback list, so the reporting integrations see them)."""

    def __init__(self, trainer: HybridTrainer):
        self.trainer = trainer
        self.seen = 0

    def on_train_begin(self, args, state, control, **kwargs):
        opt = self.trainer.hybrid_optimizer
        self.seen = len(opt.log.entries) if opt is not None else 0

    def on_log(self, args, state, control, logs=None, **kwargs):
        opt = self.trainer.hybrid_optimizer
        if opt is None or not logs or "loss" not in logs:
            return
        entries = [e for e in opt.log.entries[self.seen:] if not e.get("failed")]
        self.seen = len(opt.log.entries)
        extra: dict[str, float] = {}
        pgs = [v for e in entries for v in e["projected_grads"]]
        if pgs:
            extra["projected_grad"] = sum(pgs) / len(pgs)
            extra["projected_grad_rms"] = math.sqrt(sum(v * v for v in pgs) / len(pgs))
        rates = getattr(opt, "rates", {})
        if rates.get("zo") is not None:
            extra["lr_x"] = float(rates["zo"])
        if rates.get("fo") is not None:
            extra["lr_y"] = float(rates["fo"])
        logs.update(extra)
        if state.log_history and state.log_history[-1].get("loss") == logs["loss"]:
            state.log_history[-1].update(extra)


class HybridTrainer(Trainer):
    """``transformers.Trainer`` running :class:`~.optimizer.HybridZOFO` (module docstring).

    Args:
        model, args, ...: as for ``Trainer``; ``args`` is a :class:`HybridTrainingArguments`
            (``None``: its defaults with ``output_dir="trainer_output"``).
        zo, fo, frozen: selectors of :func:`~.groups.split_parameters` for ``method="hybrid"``
            (default: peft-aware, base -> zo, adapters and heads -> fo).

    >>> issubclass(HybridTrainer, Trainer)
    True
    """

    def __init__(self, model=None, args: HybridTrainingArguments | None = None, *rest,
                 zo=None, fo=None, frozen=None, **kwargs):
        if args is None:
            args = HybridTrainingArguments(output_dir="trainer_output")
        if not isinstance(args, HybridTrainingArguments):
            raise ValueError(f"args must be a HybridTrainingArguments (TrainingArguments plus "
                             f"the hybrid step's settings), got {type(args).__name__}")
        optimizers = kwargs.get("optimizers", (None, None))
        if optimizers and optimizers[0] is not None:
            raise ValueError("optimizers: HybridTrainer builds its own HybridZOFO; pass only "
                             "a scheduler, (None, scheduler)")
        if kwargs.get("optimizer_cls_and_kwargs") is not None:
            raise ValueError("optimizer_cls_and_kwargs: HybridTrainer builds its own HybridZOFO")
        super().__init__(model, args, *rest, **kwargs)
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            raise ValueError("HybridTrainer does not support DeepSpeed or FSDP: the ZO block "
                             "must be whole on every rank (use plain data parallelism)")
        if self.args.n_gpu > 1:
            raise ValueError(f"HybridTrainer needs one device per process, got n_gpu="
                             f"{self.args.n_gpu}: launch one process per GPU (accelerate "
                             f"launch, torchrun)")
        self._selectors = {"zo": zo, "fo": fo, "frozen": frozen}
        self.hybrid_optimizer: _TrainerStep | None = None
        self._micro: list[tuple[dict[str, Any], Any]] = []
        self._clean: torch.Tensor | None = None
        self._fresh = True
        self.callback_handler.callbacks.insert(0, _ZOLogs(self))

    # --- the order of the examples ------------------------------------------------------
    def _get_train_sampler(self, train_dataset=None):
        """A :class:`ReshufflingSampler` (see the module docstring for why this override)."""
        ds = self.train_dataset if train_dataset is None else train_dataset
        if ds is None or not has_length(ds):
            return super()._get_train_sampler(train_dataset)
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return ReshufflingSampler(len(ds), sampling=self.args.sampling, seed=seed)

    # --- the optimizer -----------------------------------------------------------------
    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        """A :class:`HybridZOFO` over the method's split (eta_x = ``args.lr_x``, eta_y =
        ``args.learning_rate``); FO groups without weight decay for biases and norms, as
        Trainer does."""
        if self.optimizer is not None:
            return self.optimizer
        from peft import PeftModel

        args = self.args
        net = self.accelerator.unwrap_model(self.model if model is None else model)
        selectors = {k: v for k, v in self._selectors.items() if v is not None}
        groups = method_param_groups(net, args.method, lr_x=args.lr_x,
                                     lr_y=args.learning_rate, **selectors)
        decay = set(self.get_decay_parameter_names(net)) if args.weight_decay else set()
        split: list[dict[str, Any]] = []
        for g in groups:
            if g["kind"] == "zo" or not args.weight_decay:
                split.append({**g, "weight_decay": 0.0} if g["kind"] == "zo" else g)
                continue
            for wd, keep in ((args.weight_decay, True), (0.0, False)):
                idx = [i for i, n in enumerate(g["names"]) if (n in decay) == keep]
                if idx:
                    split.append({**g, "weight_decay": wd, "names": [g["names"][i] for i in idx],
                                  "params": [g["params"][i] for i in idx]})
        split.sort(key=lambda g: g["kind"] != "fo")  # group 0 (Trainer's learning_rate): eta_y
        has_fo = any(g["kind"] == "fo" for g in split)
        if args.fp16 and not has_fo:
            raise ValueError(f"fp16=True (a gradient scaler) needs an FO block; method "
                             f"{args.method!r} has none here: use bf16=True, or fp16/bf16 "
                             f"weights (exact restore through fp32 master weights)")
        import torch.distributed as dist

        group = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if group != args.world_size:
            raise ValueError(
                f"a process group of {group} ranks exists but Trainer runs {args.world_size} "
                f"data-parallel process(es); on CPU pass use_cpu=True (--use_cpu true) so that "
                f"accelerate shards the batches over the ranks (MULTI_CPU, gloo)")
        opt = _TrainerStep(
            split, lr_x=args.lr_x, lr_y=args.learning_rate, mu=args.mu, q=args.q,
            directions=args.directions, difference=args.difference,
            fo_optimizer="sgd" if args.optim == "sgd" else "adamw",
            betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon,
            weight_decay=args.weight_decay, schedule=args.schedule, seed=args.seed,
            master_weights=args.master_weights, module=net, distributed=args.world_size > 1)
        opt.keep_zo_block = isinstance(net, PeftModel) and bool(opt.zo_params())
        self.hybrid_optimizer = opt
        self.optimizer = opt
        return opt

    # --- one micro-batch ---------------------------------------------------------------
    def _micro_loss(self, net: torch.nn.Module, inputs: dict[str, Any],
                   num_items_in_batch: Any) -> torch.Tensor:
        """f_j: Trainer's loss on one micro-batch, scaled for accumulation as Trainer does."""
        with self.compute_loss_context_manager():
            loss = self.compute_loss(net, dict(inputs), num_items_in_batch=num_items_in_batch)
        scaled = self.loss_is_scaled_for_ga
        if scaled is None:
            scaled = (self.model_accepts_loss_kwargs and num_items_in_batch is not None) \
                or self.compute_loss_func is not None
        if not scaled:
            loss = loss / self.current_gradient_accumulation_steps
        return loss

    def _step_loss(self, net: torch.nn.Module, micro: Sequence[tuple[dict[str, Any], Any]]
                  ) -> torch.Tensor:
        """F = sum_j f_j at the current weights, micro-batch after micro-batch."""
        total = None
        for inputs, n in micro:
            f = self._micro_loss(net, inputs, n)
            total = f if total is None else total + f
        return total

    def training_step(self, model: torch.nn.Module, inputs: dict[str, Any],
                      num_items_in_batch: torch.Tensor | int | None = None) -> torch.Tensor:
        """Back-propagate f_j for the FO block (as Trainer does) and keep the micro-batch for
        the ZO passes of the step; at the step's last micro-batch, bind the step to the
        optimizer (ZO-only methods: take it here). Returns f_j (ZO-only: 0 before the last
        micro-batch, F at it), so Trainer's logged loss is the step's."""
        opt = self.hybrid_optimizer
        if opt is None:
            raise ValueError("HybridTrainer.training_step needs create_optimizer() first")
        if self._fresh:
            self._micro, self._clean, self._fresh = [], None, False
        net = self.accelerator.unwrap_model(model)
        net.eval()
        inputs = self._prepare_inputs(inputs)
        self._micro.append((inputs, num_items_in_batch))
        last = self.accelerator.sync_gradients
        micro = self._micro
        evaluate = lambda: self._step_loss(net, micro)  # noqa: E731
        if opt.fo_params():
            loss = self._micro_loss(net, inputs, num_items_in_batch)
            self.accelerator.backward(loss)
            loss = loss.detach()
            self._clean = loss if self._clean is None else self._clean + loss
            if last:
                opt.bind(evaluate, self._clean)
                self._fresh = True
            return loss
        if not last:
            return torch.zeros((), device=self.args.device)
        self._fresh = True
        loss = opt.step(evaluate)
        opt._taken = True
        return loss.to(self.args.device, torch.float32)


class TaskObjective:
    """The data side of a hybridconv task for ``Trainer``: ``collate`` (the model's encoding of
    a list of :class:`~.tasks.Example`), ``loss`` (``compute_loss_func``: cross-entropy over
    the class scores, the same loss as :meth:`LoadedModel.loss
    <hybridconv.finetune.models.LoadedModel.loss>`), ``scores``
    (``preprocess_logits_for_metrics``) and ``metrics`` (``compute_metrics``: accuracy).
    ``trainer_kwargs()`` gives the four as ``Trainer`` keyword arguments.

    Class scores: a classifier's logits; a causal LM's next-token logits after the prompt,
    restricted to the first token of each label word (MeZO's scoring), computed with
    ``logits_to_keep=1`` as the model's own ``scores`` does.

    Accumulation: Trainer passes ``num_items_in_batch`` = the label items of the whole step
    (over the micro-batches, and over the ranks with ``average_tokens_across_devices``), and
    treats a ``compute_loss_func`` as normalized by it. The micro-batch's mean loss is weighted
    by its share, ``loss_j = mean_j * B_j / N``, so sum_j f_j is the mean over the step's N
    examples. Trainer counts a causal LM's items as ``labels[..., 1:]`` (token labels shift by
    one), so the collated ``labels`` are ``(B, 2)``: a placeholder -100 (an ignored item under
    either counting rule) and the class; ``loss``, ``scores`` and ``metrics`` read column -1.
    """

    def __init__(self, loaded, task, *, max_length: int = 64):
        self.loaded, self.task = loaded, task
        self.max_length = spec.validate("max_length", max_length)

    def collate(self, examples: Sequence[Any]) -> dict[str, Any]:
        batch: dict[str, Any] = self.loaded.encode(self.task, list(examples), self.max_length)
        y = batch["labels"]
        batch["labels"] = torch.stack([torch.full_like(y, -100), y], 1)
        if self.loaded.kind == "lm":
            batch["logits_to_keep"] = 1
        return batch

    def scores(self, logits: Any, labels: Any = None) -> torch.Tensor:
        if isinstance(logits, tuple | list):
            logits = logits[0]
        if self.loaded.kind == "lm":
            logits = logits[:, -1, self.loaded.label_token_ids]
        return logits.to(torch.promote_types(logits.dtype, torch.float32))  # fp16/bf16 -> fp32

    def loss(self, outputs: Any, labels: torch.Tensor,
             num_items_in_batch: torch.Tensor | int | None = None) -> torch.Tensor:
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        loss = torch.nn.functional.cross_entropy(self.scores(logits), labels[:, -1])
        if num_items_in_batch is not None:
            loss = loss * (labels.shape[0] / num_items_in_batch)
        return loss

    @staticmethod
    def metrics(prediction: Any) -> dict[str, float]:
        import numpy as np

        scores, labels = prediction.predictions, prediction.label_ids
        return {"accuracy": float(np.mean(np.argmax(scores, -1) == labels[:, -1]))}

    def trainer_kwargs(self) -> dict[str, Any]:
        return {"data_collator": self.collate, "compute_loss_func": self.loss,
                "preprocess_logits_for_metrics": self.scores,
                "compute_metrics": self.metrics}
