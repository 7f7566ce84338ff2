"""``HybridZOFO``: hybrid zeroth-order / first-order SGD as a ``torch.optim.Optimizer``.

One step is the step of THEORY.md ("Algorithm: hybrid reshuffling SGD") on the current batch:

    g_x = (1/q) sum_k [f(x + mu u_k, y) - f(x - mu u_k, y)] / (2 mu) * u_k   (central)
    g_x = (1/q) sum_k [f(x + mu u_k, y) - f(x, y)] / mu * u_k                (forward)
    g_y = grad_y f(x, y)
    x <- x - eta_x g_x,   y <- y - eta_y g_y

with x the parameters of the ``zo`` groups, y those of the ``fo`` groups, eta_x / eta_y the
groups' ``lr`` (so ``torch.optim.lr_scheduler`` works unchanged), both oracles queried at the
same point: the FO gradient is taken before any perturbation (``fo_gradient="clean"``), or
from the first perturbed forward pass (``fo_gradient="shared"``, one forward pass fewer per
step). The shared variant returns grad_y f(x + mu u_1, y), whose bias is at most
L_xy mu ||u_1|| (H1), i.e. E-bias <= L_xy mu sqrt(d_x) in norm: an O(mu) term the theorem of
``hybridconv.theory`` does not contain, so only ``"clean"`` is covered by the checked bound.

Memory (MeZO, Malladi et al. 2023, Algorithm 1): u is never stored. Each direction is
regenerated from the step's seed, one tensor at a time, by a private ``torch.Generator``
(:mod:`.directions`); the model is perturbed in place, so a ZO step needs no more memory than
two no-grad forward passes plus one parameter-sized direction tensor. ``zo`` parameters are
set to ``requires_grad=False``: no gradient buffers and no optimizer state are kept for them.

Exact restore: for fp16/bf16 ZO parameters (``master_weights=None`` means "for half
precision"), an fp32 master copy is kept; perturbations are written as
``p = cast(master +- mu u)`` and the restore as ``p = cast(master)``, which is bit-exact, and
updates go to the master (small steps do not vanish in bf16). fp32 parameters are perturbed in
place (p += mu u; p -= 2 mu u; p += mu u), MeZO's way, which leaves rounding residues of a few
ulp; ``master_weights=True`` makes those exact too, at the cost of one fp32 copy of the block.

Determinism: the step seeds come from a private generator seeded by ``seed``; its state is in
``state_dict()``, so a resumed run continues bit-identically. Every step appends
``{step, seed, projected_grads, loss, lr_x}`` to :attr:`HybridZOFO.log`; :func:`replay`
reproduces the final ZO weights from the initial ones and that log.

The closure convention differs from ``torch.optim.LBFGS``: the closure only *returns the loss*
of the current batch (a scalar tensor) and must not call ``backward`` or ``zero_grad``; the
optimizer calls it 1 + 2q times (central) or 1 + q times (forward) per step, under
``torch.no_grad`` except for the FO pass. Pass ``module=`` to run every pass of the step with
dropout off (eval mode, as both MeZO and the theorem assume); the module's mode is restored.
"""

from __future__ import annotations

import copy
import math
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch.optim.adam import adam as _adam
from torch.optim.adamw import adamw as _adamw
from torch.optim.sgd import sgd as _sgd

from .. import spec
from .directions import CHUNK, DirectionSource, TorchDirections, pieces

__all__ = ["HybridZOFO", "ZOLog", "replay", "DIFFERENCES", "FO_OPTIMIZERS", "FO_GRADIENTS"]

DIFFERENCES = spec.DIFFERENCES.values
FO_OPTIMIZERS = spec.FO_OPTIMIZERS.values
FO_GRADIENTS = spec.FO_GRADIENTS.values
"""Views of the vocabulary's choice lists (:mod:`hybridconv.spec`)."""
_HALF = (torch.float16, torch.bfloat16)


@dataclass
class ZOLog:
    """What :func:`replay` needs: the estimator's settings, the ZO parameter names (when the
    groups were built with names) and one entry per step."""

    mu: float
    q: int
    difference: str
    directions: str
    master: list[bool]
    names: list[str] | None
    entries: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ZOLog:
        return cls(**d)


def _check_mu(mu: float, zo: list[torch.Tensor]) -> None:
    """Refuse a radius that cannot work for these ZO weights (``hybridconv.numerics``): mu u
    below 1/16 of a unit in the last place of their root-mean-square magnitude (x + mu u
    rounds to x for almost every weight, the ZO block does not move), or so large that mu u
    overflows their dtype. (A heuristic bound: weights far below the RMS still move; MeZO's
    mu = 1e-3 passes for bfloat16 weights of RMS up to 2.)"""
    from ..numerics import check_radius

    real = [p for p in zo if not p.is_meta and p.numel()]
    if not real:
        return
    dtype = real[0].dtype
    with torch.no_grad():
        sq = sum(float(torch.linalg.vector_norm(p.detach().float()) ** 2) for p in real)
    rms = math.sqrt(sq / sum(p.numel() for p in real))
    info = torch.finfo(dtype)
    check_radius(mu, rms, eps=info.eps, largest=info.max, ulps=1 / 16, what="of RMS",
                 dtype=str(dtype).replace("torch.", ""))


def _check_rates(groups: list[dict[str, Any]]) -> None:
    """Refuse a learning rate that the parameters' dtype cannot hold (the update lr * g
    would be computed with an infinite or unrepresentable factor)."""
    for g in groups:
        for p in g["params"]:
            if p.dtype.is_floating_point and g["lr"] > torch.finfo(p.dtype).max:
                name = "lr_x" if g["kind"] == "zo" else "lr_y"
                raise ValueError(f"{name} must be <= {torch.finfo(p.dtype).max:.3g} (the "
                                 f"largest {str(p.dtype).replace('torch.', '')}), got "
                                 f"{g['lr']!r}")


class HybridZOFO(torch.optim.Optimizer):
    """Hybrid ZO/FO SGD over ``zo`` and ``fo`` parameter groups (see the module docstring).

    Args:
        params: parameter groups, each a dict with ``params``, ``kind`` (``"zo"`` or ``"fo"``)
            and optionally ``lr``, ``weight_decay`` (fo only) and ``names`` (for
            :func:`replay`); :func:`hybridconv.finetune.groups.hybrid_param_groups` builds
            them from a model.
        lr_x: default learning rate eta_x of ``zo`` groups (> 0).
        lr_y: default learning rate eta_y of ``fo`` groups (> 0).
        mu: smoothing radius (> 0).
        q: directions per step (>= 1).
        directions: ``"gaussian"``, ``"sphere"``, ``"rademacher"`` or a
            :class:`~.directions.DirectionSource`.
        difference: ``"central"`` or ``"forward"``.
        fo_optimizer: ``"sgd"`` (what the theorem covers), ``"adam"`` or ``"adamw"``.
        betas, eps: Adam's constants.
        weight_decay: default weight decay of ``fo`` groups (>= 0).
        fo_gradient: ``"clean"`` or ``"shared"`` (see the module docstring).
        schedule: ``"jacobi"`` (both oracles at the same point z, the theorem's algorithm) or
            ``"gauss-seidel"`` (LMAO's order: the FO step on y first, then the ZO estimate and
            step on x at the updated y, same batch; 1 + 2q passes for central differences,
            2 + q for forward ones). Not covered by the theorem of ``hybridconv.theory``.
        seed: seeds the private generator of step seeds (>= 0).
        master_weights: fp32 master copy of the ZO block; ``None`` = for fp16/bf16 only.
        module: if given, every forward pass of a step runs in eval mode.
        threads: worker threads that regenerate the direction (default
            :func:`default_threads`); results do not depend on it.
        distributed: data parallelism over ``torch.distributed`` (default: on when a process
            group of more than one rank is initialized). Every rank evaluates the closure on
            its shard of the batch (equal sizes); the ranks all-reduce (average) the clean
            loss and the q projected gradients (8 (q + 1) bytes per step for the whole ZO
            block) and the FO block's gradients, so every rank applies the same update and the
            base weights stay identical without being sent. All ranks must use the same
            ``seed`` (the directions come from it). ``comm_bytes`` counts what a rank sends.
        process_group: the group to reduce over (default: the world).
    """

    def __init__(self, params: Iterable[dict[str, Any]], *, lr_x: float = 1e-6,
                 lr_y: float = 1e-3, mu: float = 1e-3, q: int = 1,
                 directions: str | DirectionSource = "gaussian",
                 difference: str = "central", fo_optimizer: str = "sgd",
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, fo_gradient: str = "clean",
                 schedule: str = "jacobi", seed: int = 0,
                 master_weights: bool | None = None, module: torch.nn.Module | None = None,
                 threads: int | None = None, distributed: bool | None = None,
                 process_group: Any = None):
        lr_x = spec.validate("eta_x", lr_x, label="lr_x")
        lr_y = spec.validate("eta_y", lr_y, label="lr_y")
        mu = spec.validate("mu", mu, positive=True)
        q = spec.validate("q", q)
        eps = spec.validate("adam_eps", eps, label="eps")
        weight_decay = spec.validate("weight_decay", weight_decay)
        seed = spec.validate("seed", seed)
        difference = spec.validate("difference", difference)
        fo_optimizer = spec.validate("fo_optimizer", fo_optimizer)
        fo_gradient = spec.validate("fo_gradient", fo_gradient)
        schedule = spec.validate("schedule", schedule)
        if schedule == "gauss-seidel" and fo_gradient == "shared":
            raise ValueError("fo_gradient='shared' needs schedule='jacobi': under "
                             "gauss-seidel the ZO passes come after the FO update")
        if not (isinstance(betas, tuple | list) and len(betas) == 2):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        betas = tuple(spec.validate("beta", b, label=f"betas[{i}]") for i, b in enumerate(betas))
        if isinstance(directions, str):
            directions = TorchDirections(directions)
        elif not isinstance(directions, DirectionSource):
            raise ValueError(f"directions must be {spec.DIRECTIONS.allowed()} or a "
                             f"DirectionSource, got {directions!r}")
        groups = list(params)
        if not groups or not all(isinstance(g, dict) for g in groups):
            raise ValueError("params must be a non-empty list of parameter groups (dicts with "
                             "'params' and 'kind'); see hybrid_param_groups")
        for g in groups:
            kind = g.get("kind")
            if kind not in ("zo", "fo"):
                raise ValueError(f"every parameter group needs kind 'zo' or 'fo', got {kind!r}")
            g.setdefault("lr", lr_x if kind == "zo" else lr_y)
            g["lr"] = spec.validate("eta_x" if kind == "zo" else "eta_y", g["lr"],
                                    label=f"lr of a {kind!r} group")
            if kind == "zo" and g.get("weight_decay", 0.0):
                raise ValueError("weight_decay applies to 'fo' groups only")
        defaults = dict(lr=lr_y, weight_decay=weight_decay, fo_optimizer=fo_optimizer,
                        betas=tuple(betas), eps=eps)
        super().__init__(groups, defaults)
        self.mu, self.q, self.difference, self.fo_gradient = mu, q, difference, fo_gradient
        self.schedule = schedule
        self.directions, self.module, self.seed = directions, module, seed
        self._gen = torch.Generator(device="cpu")
        self._gen.manual_seed(seed)
        self.steps = 0
        self.forward_passes = 0
        self._moves: list[tuple[int, float, float]] = []
        zo = self.zo_params()
        _check_mu(mu, zo)
        _check_rates(self.param_groups)
        if threads is not None:
            threads = spec.validate("threads", threads)
        self.threads = threads or default_threads(zo)
        self._pieces = PieceCache()  # pieces shared by a step's moves (not state: a cache)
        if any(not p.is_contiguous() for p in zo):
            raise ValueError("ZO parameters must be contiguous tensors")
        for g in self.param_groups:
            for p in g["params"]:
                p.requires_grad_(g["kind"] == "fo")
        if master_weights is None:
            self._master = [p.detach().float().clone() if p.dtype in _HALF else None
                            for p in zo]
        else:
            self._master = [p.detach().float().clone() if master_weights else None
                            for p in zo]
        names = [n for g in self.param_groups if g["kind"] == "zo" for n in g.get("names", ())]
        self.log = ZOLog(mu=mu, q=q, difference=difference, directions=directions.kind,
                         master=[m is not None for m in self._master],
                         names=names if len(names) == len(zo) else None)
        import torch.distributed as dist

        active = dist.is_available() and dist.is_initialized() and \
            dist.get_world_size(process_group) > 1
        if distributed and not active:
            raise ValueError("distributed=True needs an initialized torch.distributed process "
                             "group of more than one rank (torchrun, init_process_group)")
        self.distributed = active if distributed is None else bool(distributed)
        self.process_group = process_group
        self.comm_bytes = 0

    def _all_reduce(self, loss: float, pgs: list[float],
                    fo: Sequence[torch.Tensor]) -> tuple[float, list[float]]:
        """Average the clean loss, the projected gradients and the FO gradients over ranks."""
        import torch.distributed as dist

        world = dist.get_world_size(self.process_group)
        dev = next((p.device for p in fo), None) or (self.zo_params()[0].device
                                                     if self.zo_params() else "cpu")
        if torch.device(dev).type == "cuda" or dist.get_backend(self.process_group) == "nccl":
            dev = torch.device("cuda", torch.cuda.current_device())
        scalars = torch.tensor([loss, *pgs], dtype=torch.float64, device=dev)
        dist.all_reduce(scalars, group=self.process_group)
        scalars /= world
        self.comm_bytes += scalars.numel() * scalars.element_size()
        self._all_reduce_grads(fo)
        values = scalars.cpu().tolist()
        return values[0], values[1:]

    def _all_reduce_grads(self, fo: Sequence[torch.Tensor]) -> None:
        """Average the FO block's gradients over the ranks."""
        import torch.distributed as dist

        world = dist.get_world_size(self.process_group)
        grads = [p.grad for p in fo if p.grad is not None]
        if grads:
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat, group=self.process_group)
            flat /= world
            self.comm_bytes += flat.numel() * flat.element_size()
            i = 0
            for g in grads:
                g.copy_(flat[i:i + g.numel()].view_as(g))
                i += g.numel()

    # --- groups -------------------------------------------------------------------------
    def zo_params(self) -> list[torch.Tensor]:
        return [p for g in self.param_groups if g["kind"] == "zo" for p in g["params"]]

    def _zo_lrs(self) -> list[float]:
        return [g["lr"] for g in self.param_groups if g["kind"] == "zo" for _ in g["params"]]

    # --- the ZO block's arithmetic (shared with replay) ---------------------------------
    def _set_offset(self, seed: int, k: int, new: float, old: float) -> None:
        """Move the ZO block from x + old u_k to x + new u_k (recorded for failed steps)."""
        self._moves.append((k, new, old))
        _set_offset(self.zo_params(), self._master, self.directions, seed, k, new, old,
                    self.threads, self._pieces)

    # --- the step -------------------------------------------------------------------------
    def _call(self, closure: Callable[[], torch.Tensor], grad: bool) -> torch.Tensor:
        self.forward_passes += 1
        with torch.set_grad_enabled(grad):
            loss = closure()
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError("the closure must return the loss as a scalar tensor")
        if grad:
            loss.backward()
        return loss.detach().to(torch.float64).reshape(())

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor:  # type: ignore[override]
        """One hybrid step on the batch the closure evaluates; returns the clean loss (for
        ZO-only central steps without an FO pass: the mean of f(x +- mu u_k), which is within
        O(mu^2) of it).

        Raises:
            FloatingPointError: a loss or projected gradient is NaN/Inf. The ZO block is moved
                back and nothing is updated: exactly for tensors with master weights, up to
                the in-place round trip's rounding residues (a few ulp) for the others. The
                failed step's moves are logged (``failed: True``), so :func:`replay` stays
                exact.
        """
        if closure is None:
            raise ValueError("HybridZOFO.step needs a closure returning the batch loss")
        zo = self.zo_params()
        fo = [p for g in self.param_groups if g["kind"] == "fo" for p in g["params"]]
        seed = int(torch.randint(0, 2**62, (1,), generator=self._gen).item())
        mu, q = self.mu, self.q
        central = self.difference == "central"
        self._moves = []
        mode = self.module.training if self.module is not None else None
        if self.module is not None:
            self.module.eval()
        cur, k = 0.0, 0
        pgs: list[float] = []
        sides: list[float] = []
        gauss_seidel = self.schedule == "gauss-seidel" and bool(fo) and bool(zo)
        backup = None
        clean = None
        try:
            for p in fo:
                p.grad = None
            f0 = None
            # the clean pass: FO gradient (clean, or shared with a forward difference: the
            # clean pass is needed anyway, so the FO gradient comes from it, unbiased)
            if fo and (self.fo_gradient == "clean" or not central or not zo):
                f0 = self._call(closure, grad=True)
            elif zo and not central:
                f0 = self._call(closure, grad=False)
            if f0 is not None and not math.isfinite(float(f0)):
                raise FloatingPointError(f"non-finite loss {float(f0)} at step "
                                         f"{self.steps}; nothing was updated")
            if gauss_seidel:  # FO step on y now; the ZO passes below see the new y
                if not all(bool(torch.isfinite(p.grad).all()) for p in fo
                           if p.grad is not None):
                    raise FloatingPointError(f"non-finite gradient at step {self.steps}; "
                                             "nothing was updated")
                if self.distributed:  # every rank applies the same FO update
                    self._all_reduce_grads(fo)
                backup = self._fo_snapshot(fo)
                self._fo_update()
                clean, f0 = f0, None
                if not central:  # the forward difference's base value, at the new y
                    f0 = self._call(closure, grad=False)
                    if not math.isfinite(float(f0)):
                        raise FloatingPointError(f"non-finite loss {float(f0)} at step "
                                                 f"{self.steps}; nothing was updated")
            fuse = not any(m is not None for m in self._master)
            for k in range(q if zo else 0):
                last = fuse and k == q - 1
                self._set_offset(seed, k, mu, 0.0)
                cur = mu
                shared = bool(fo) and f0 is None and clean is None and k == 0  # central +
                # shared only (under gauss-seidel the FO pass came first: no backward here)
                fp = self._call(closure, grad=shared)
                if central:
                    self._set_offset(seed, k, -mu, mu)
                    cur = -mu
                    fm = self._call(closure, grad=False)
                    pgs.append(float((fp - fm) / (2 * mu)))
                    sides.append(float((fp + fm) / 2))
                else:
                    pgs.append(float((fp - f0) / mu))
                if not last:
                    self._set_offset(seed, k, 0.0, cur)
                    cur = 0.0
        except BaseException:  # a failing closure or a non-finite clean loss
            self._abort(seed, k, cur)
            if backup is not None:
                self._fo_restore(fo, backup)
            raise
        finally:
            if self.module is not None and mode:
                self.module.train(mode)
        if clean is not None:
            loss = float(clean)
        else:
            loss = float(f0) if f0 is not None else sum(sides) / len(sides)
        if self.distributed:  # every rank ends with the same loss, projections and gradients
            loss, pgs = self._all_reduce(loss, pgs, [] if gauss_seidel else fo)
        finite = math.isfinite(loss) and all(math.isfinite(v) for v in pgs) and all(
            bool(torch.isfinite(p.grad).all()) for p in fo if p.grad is not None)
        if not finite:
            self._abort(seed, q - 1, cur)
            if backup is not None:
                self._fo_restore(fo, backup)
            if not math.isfinite(loss):
                what = f"loss {loss}"
            elif not all(math.isfinite(v) for v in pgs):
                what = ("ZO projected gradient "
                        f"{next(v for v in pgs if not math.isfinite(v))} (loss {loss:.6g})")
            else:
                what = f"FO gradient (loss {loss:.6g})"
            raise FloatingPointError(f"non-finite {what} at step {self.steps}; nothing was "
                                     "updated")
        if zo:
            lrs = self._zo_lrs()
            _zo_update(zo, self._master, self.directions, seed, pgs, lrs, cur,
                       self.threads, self._pieces)
            self.log.entries.append({"step": self.steps, "seed": seed,
                                     "projected_grads": pgs, "loss": loss,
                                     "lr_x": sorted(set(lrs)) if len(set(lrs)) == 1 else lrs})
        if not gauss_seidel:
            self._fo_update()
        self.steps += 1
        return torch.tensor(loss)

    def _fo_snapshot(self, fo: Sequence[torch.Tensor]) -> list[Any]:
        """The FO block's weights and optimizer state, to undo a Gauss-Seidel FO update when
        the step's ZO half fails (the FO block is the small PEFT module)."""
        return [(p.detach().clone(), copy.deepcopy(self.state[p]) if p in self.state else None)
                for p in fo]

    @torch.no_grad()
    def _fo_restore(self, fo: Sequence[torch.Tensor], backup: list[Any]) -> None:
        for p, (w, st) in zip(fo, backup, strict=True):
            p.copy_(w)
            if st is None:
                self.state.pop(p, None)
            else:
                self.state[p] = st

    def _abort(self, seed: int, k: int, cur: float) -> None:
        """Move the block back from x + cur u_k and log the failed step's moves."""
        if cur != 0.0:
            self._set_offset(seed, k, 0.0, cur)
        if self._moves:
            self.log.entries.append({"step": self.steps, "seed": seed, "failed": True,
                                     "moves": list(self._moves)})

    @torch.no_grad()
    def _fo_update(self) -> None:
        """y <- the FO rule's update of the ``fo`` groups, by torch's own functional
        optimizers (``torch.optim.sgd.sgd``, ``torch.optim.adam.adam``,
        ``torch.optim.adamw.adamw``: what ``torch.optim.SGD`` / ``Adam`` / ``AdamW`` call in
        ``step()``), with the same state layout (``step``, ``exp_avg``, ``exp_avg_sq``), so an
        FO block steps exactly as it would under those classes (``tests/
        test_finetune_optimizer.py`` compares them step by step in float64).

        sgd: y <- y - eta_y (g + wd y); adam: Kingma & Ba (2015), Algorithm 1, with L2 weight
        decay added to g; adamw: Loshchilov & Hutter (2019), decoupled decay y <- y (1 - eta_y
        wd) before the Adam step."""
        for g in self.param_groups:
            if g["kind"] != "fo":
                continue
            params = [p for p in g["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if g["fo_optimizer"] == "sgd":
                _sgd(params, grads, [None] * len(params), weight_decay=g["weight_decay"],
                     momentum=0.0, lr=g["lr"], dampening=0.0, nesterov=False, maximize=False)
                continue
            states = [self.state[p] for p in params]
            for p, st in zip(params, states, strict=True):
                if not st:  # as torch.optim.Adam initializes it (CPU, not capturable)
                    st["step"] = torch.tensor(0.0, dtype=torch.float32)
                    st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            rule = _adam if g["fo_optimizer"] == "adam" else _adamw
            b1, b2 = g["betas"]
            rule(params, grads, [st["exp_avg"] for st in states],
                 [st["exp_avg_sq"] for st in states], [], [st["step"] for st in states],
                 amsgrad=False, beta1=b1, beta2=b2, lr=g["lr"], weight_decay=g["weight_decay"],
                 eps=g["eps"], maximize=False)

    # --- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        sd["hybrid"] = {"generator": self._gen.get_state(), "steps": self.steps,
                        "forward_passes": self.forward_passes,
                        "master": [None if m is None else m.clone() for m in self._master],
                        "log": self.log.to_dict()}
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        hybrid = state_dict.pop("hybrid", None)
        if hybrid is None:
            raise ValueError("state_dict has no 'hybrid' section: not a HybridZOFO state")
        super().load_state_dict(state_dict)
        self._gen.set_state(hybrid["generator"].cpu())
        self.steps, self.forward_passes = hybrid["steps"], hybrid["forward_passes"]
        zo = self.zo_params()
        if len(hybrid["master"]) != len(zo):
            raise ValueError("state_dict's ZO block does not match this optimizer's")
        self._master = [None if m is None else m.to(p.device, torch.float32).clone()
                        for m, p in zip(hybrid["master"], zo, strict=True)]
        with torch.no_grad():
            for p, m in zip(zo, self._master, strict=True):
                if m is not None:
                    p.copy_(m)
        log = ZOLog.from_dict(copy.deepcopy(hybrid["log"]))
        for name in ("mu", "q", "difference"):
            if getattr(log, name) != getattr(self, name):
                raise ValueError(f"state_dict has {name}={getattr(log, name)!r}, this "
                                 f"optimizer {getattr(self, name)!r}")
        self.log = log


# --- the arithmetic of the ZO block, shared by the optimizer and replay -------------------

_POOLS: dict[int, ThreadPoolExecutor] = {}
_LOCAL = threading.local()
# A forked child inherits the pools but not their threads: a task submitted there would wait
# forever (a DataLoader worker, a multiprocessing pool, a test runner that forks). It starts
# with no pools, and makes its own.
os.register_at_fork(after_in_child=_POOLS.clear)


def default_threads(params: Sequence[torch.Tensor]) -> int:
    """Worker threads that fill direction pieces: up to 4 on CPU (each piece has its own
    serial generator, so pieces are filled side by side), 1 on accelerators."""
    if any(p.device.type != "cpu" for p in params):
        return 1
    return max(1, min(4, torch.get_num_threads()))


def _units(zo: Sequence[torch.Tensor]) -> list[tuple[int, int, int, int]]:
    """``(tensor i, piece c, start, stop)`` for every piece of the ZO block."""
    return [(i, c, a, b) for i, p in enumerate(zo) for c, a, b in pieces(p.numel())]


def _partition(units: list[tuple[int, int, int, int]], workers: int
               ) -> list[list[tuple[int, int, int, int]]]:
    """Pieces in ``workers`` bins of near-equal total size (largest first)."""
    bins: list[list[tuple[int, int, int, int]]] = [[] for _ in range(workers)]
    load = [0] * workers
    for unit in sorted(units, key=lambda t: t[2] - t[3]):
        j = load.index(min(load))
        bins[j].append(unit)
        load[j] += unit[3] - unit[2]
    return [b for b in bins if b]


def _scratch(numel: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """This thread's scratch buffer, at most one piece (CHUNK elements) long, kept between
    steps. Thread-local, so concurrent optimizers (or a replay beside a run) never share one;
    a step fills pieces from ``w`` pool threads, or from the calling thread alone."""
    cache = getattr(_LOCAL, "buffers", None)
    if cache is None:
        cache = _LOCAL.buffers = {}
    buf = cache.get((dtype, device))
    if buf is None or buf.numel() < numel:
        buf = cache[(dtype, device)] = torch.empty(numel, dtype=dtype, device=device)
    return buf[:numel]


class PieceCache:
    """The pieces a step's moves can share: one piece-sized buffer per worker slot (bin of
    :func:`_partition`) and dtype, and which piece of which direction it holds.

    A central step moves the ZO block three times along the same u_k (to x + mu u_k, to
    x - mu u_k, back to x with the update folded in), each move regenerating every piece. With
    a cache, each worker ends a move with its largest piece still in its buffer and begins
    the next move with it, skipping its regeneration; the values are the same (the piece is a
    function of its seed alone), so the results are bit for bit those without the cache
    (tested), and the memory is what the workers' scratch buffers already took. Owned by one
    optimizer (or one :func:`replay`), used by one step at a time.
    """

    def __init__(self) -> None:
        self._slots: dict[tuple[int, torch.dtype, torch.device], list[Any]] = {}
        self.reused = 0
        """Elements whose generation a move skipped (cumulative; for tests and benchmarks)."""

    def slot(self, j: int, numel: int, dtype: torch.dtype, device: torch.device) -> list[Any]:
        """``[buffer, key]`` of worker slot ``j`` (buffer at least ``numel`` long)."""
        s = self._slots.get((j, dtype, device))
        if s is None or s[0].numel() < numel:
            s = self._slots[(j, dtype, device)] = [
                torch.empty(numel, dtype=dtype, device=device), None]
        return s


def _for_each(zo: Sequence[torch.Tensor], master: Sequence[torch.Tensor | None],
              directions: DirectionSource, seed: int, k: int,
              fn: Callable[[int, torch.Tensor, torch.Tensor | None, torch.Tensor], None],
              threads: int, cache: PieceCache | None = None) -> None:
    """Call ``fn(i, p, master, u)`` on flat slices: every piece of every ZO tensor with its
    piece u of direction k (``fn`` must not modify u).

    Memory: each of the ``w`` workers holds one piece-sized scratch buffer (a pool thread's
    own, or with ``cache`` the cache's slot of its bin), and ``w`` is capped so that
    ``w * min(CHUNK, largest)`` stays within the largest tensor: the perturbation never needs
    more extra memory than the largest single parameter tensor. With ``cache``, a worker first
    uses the piece its slot still holds from the previous move (when it is one of this move's)
    and fills its other pieces smallest first, so that its largest stays for the next move."""
    dtype = torch.float32 if any(m is not None for m in master) else None
    if not directions.parallel:
        parts = directions.generate(seed, k, zo, dtype)
        for i, (p, m, u) in enumerate(zip(zo, master, parts, strict=True)):
            fn(i, p.view(-1), None if m is None else m.view(-1), u.reshape(-1))
        return
    largest = max((p.numel() for p in zo), default=0)
    if largest == 0:
        return
    c = directions.scale(seed, k, zo, dtype)
    units = _units(zo)
    w = min(threads, max(1, largest // min(CHUNK, largest)))

    def work(us: list[tuple[int, int, int, int]]) -> None:
        for i, ci, a, b in us:
            p, m = zo[i], master[i]
            u = directions.piece(seed, k, i, ci, _scratch(b - a, dtype or p.dtype, p.device))
            fn(i, p.view(-1)[a:b], None if m is None else m.view(-1)[a:b],
               u.mul_(c) if c != 1.0 else u)

    def work_cached(j: int, us: list[tuple[int, int, int, int]]) -> int:
        reused = 0
        slots = {}
        for i, _, a, b in us:  # this bin's slot per dtype, long enough for its pieces
            key = (dtype or zo[i].dtype, zo[i].device)
            slots[key] = max(slots.get(key, 0), b - a)
        slots = {key: cache.slot(j, n, *key) for key, n in slots.items()}
        tag = (id(directions), seed, k, c)
        held = {s[1] for s in slots.values()}
        us = sorted(us, key=lambda t: ((*tag, *t) not in held, t[3] - t[2]))
        for i, ci, a, b in us:
            p, m = zo[i], master[i]
            s = slots[(dtype or p.dtype, p.device)]
            u, key = s[0][:b - a], (*tag, i, ci, a, b)
            if s[1] == key:
                reused += b - a
            else:
                s[1] = None  # (a fill that raises leaves no stale key)
                v = directions.piece(seed, k, i, ci, u)
                if v.data_ptr() != u.data_ptr():  # a source that returned its own tensor
                    u.copy_(v.reshape(-1))
                if c != 1.0:
                    u.mul_(c)
                s[1] = key
            fn(i, p.view(-1)[a:b], None if m is None else m.view(-1)[a:b], u)
        return reused

    bins = [units] if w <= 1 or len(units) == 1 else _partition(units, w)
    if len(bins) == 1:
        if cache is None:
            work(bins[0])
        else:
            cache.reused += work_cached(0, bins[0])
        return
    pool = _POOLS.get(w)
    if pool is None:
        pool = _POOLS[w] = ThreadPoolExecutor(w, thread_name_prefix="hybridzo")
    futures = [pool.submit(work_cached, j, b) if cache is not None else pool.submit(work, b)
               for j, b in enumerate(bins)]
    done = [f.result() for f in futures]
    if cache is not None:
        cache.reused += sum(done)


@torch.no_grad()
def _set_offset(zo: Sequence[torch.Tensor], master: Sequence[torch.Tensor | None],
                directions: DirectionSource, seed: int, k: int, new: float,
                old: float, threads: int = 1, cache: PieceCache | None = None) -> None:
    """Move the ZO block from x + old u_k to x + new u_k."""
    if new == 0.0 and all(m is not None for m in master):
        _restore_exact(zo, master)  # exact; no direction needed
        return

    def fn(i, p, m, u):
        if m is None:
            p.add_(u if u.dtype == p.dtype else u.to(p.dtype), alpha=new - old)
        elif new == 0.0:
            p.copy_(m)
        else:
            p.copy_(torch.add(m, u, alpha=new))

    _for_each(zo, master, directions, seed, k, fn, threads, cache)


@torch.no_grad()
def _restore_exact(zo: Sequence[torch.Tensor], master: Sequence[torch.Tensor | None]) -> None:
    for p, m in zip(zo, master, strict=True):
        if m is not None:
            p.copy_(m)


@torch.no_grad()
def _zo_update(zo: Sequence[torch.Tensor], master: Sequence[torch.Tensor | None],
               directions: DirectionSource, seed: int, pgs: Sequence[float],
               lrs: Sequence[float], offset: float = 0.0, threads: int = 1,
               cache: PieceCache | None = None) -> None:
    """x <- x - lr (1/q) sum_k pg_k u_k, one direction at a time (u regenerated).

    ``offset``: the block still sits at x + offset u_{q-1} (the last direction's restore was
    skipped); it is folded into that direction's update, saving one generation of u."""
    q = len(pgs)
    for k, pg in enumerate(pgs):
        back = offset if k == q - 1 else 0.0

        def fn(i, p, m, u, pg=pg, back=back):
            t = p if m is None else m
            t.add_(u if u.dtype == t.dtype else u.to(t.dtype), alpha=-lrs[i] * pg / q - back)

        _for_each(zo, master, directions, seed, k, fn, threads, cache)
    _restore_exact(zo, master)


def replay(initial: torch.nn.Module | Sequence[torch.Tensor], log: ZOLog | dict[str, Any],
           directions: DirectionSource | None = None) -> list[torch.Tensor]:
    """Reproduce the final ZO weights from the initial ones and a :class:`ZOLog`.

    ``initial`` is a module holding the initial weights (parameters found by the log's
    names) or the ZO tensors themselves, in group order; they are updated in place and
    returned. The same perturb / restore / update arithmetic as :meth:`HybridZOFO.step` is
    repeated (without any forward pass), so the result is bit-identical on the same device.
    """
    if isinstance(log, dict):
        log = ZOLog.from_dict(log)
    if isinstance(initial, torch.nn.Module):
        if log.names is None:
            raise ValueError("the log has no parameter names: pass the ZO tensors instead")
        table = dict(initial.named_parameters())
        missing = [n for n in log.names if n not in table]
        if missing:
            raise ValueError(f"initial model lacks ZO parameters {missing[:3]}")
        zo = [table[n] for n in log.names]
    else:
        zo = list(initial)
    if len(zo) != len(log.master):
        raise ValueError(f"the log has {len(log.master)} ZO tensors, got {len(zo)}")
    directions = directions or TorchDirections(log.directions)
    master = [p.detach().float().clone() if m else None
              for p, m in zip(zo, log.master, strict=True)]
    mu = log.mu
    fuse = not any(log.master)
    cache = PieceCache()
    for e in log.entries:
        if e.get("failed"):  # a step that raised: repeat its moves, nothing else
            for k, new, old in e["moves"]:
                _set_offset(zo, master, directions, e["seed"], k, new, old, cache=cache)
            continue
        seed, pgs = e["seed"], e["projected_grads"]
        lrs = e["lr_x"] * len(zo) if len(e["lr_x"]) == 1 else e["lr_x"]
        offset = 0.0
        for k in range(len(pgs)):
            last = fuse and k == len(pgs) - 1
            _set_offset(zo, master, directions, seed, k, mu, 0.0, cache=cache)
            cur = mu
            if log.difference == "central":
                _set_offset(zo, master, directions, seed, k, -mu, mu, cache=cache)
                cur = -mu
            if last:
                offset = cur
            else:
                _set_offset(zo, master, directions, seed, k, 0.0, cur, cache=cache)
        _zo_update(zo, master, directions, seed, pgs, lrs, offset, cache=cache)
    return zo
