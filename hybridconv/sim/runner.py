"""Run hybrid reshuffling SGD on a problem for many trials at once.

All K trials advance together as arrays with a leading trial axis; each step is
:func:`~.step.hybrid_step`. Records are taken at the start (epoch 0) and after every epoch:
F, ||grad_x F||^2, ||grad_y F||^2, ||grad F||^2 at the epoch's point, one row per trial and
epoch, with the configuration as columns (a tidy pandas DataFrame).

Randomness: the sampler and the ZO directions have their own generators, both derived from
``seed`` (``default_rng([seed, SAMPLER_STREAM])`` and ``default_rng([seed, DIRECTION_STREAM])``,
keys distinct from those the problems use to build instances and starts): the same seed gives
the same numbers, and changing the sampling scheme does not change the direction stream.

Certified regions: ``left_region`` says whether a trial has left the region where a locally
smooth problem's constants hold (checked after every step, cumulative); ``max_grad_norm`` is
the running maximum of max_i ||grad f_i|| for problems that provide
``max_component_grad_norm`` (the H1-gen theorem needs it below its G): when the problem
certifies balls (``max_component_grad_norm(x, y, radius)``), over the ball around every iterate
that contains the step's segment and every ZO perturbation segment the estimator can draw
(radius mu sqrt(d) for sphere and Rademacher directions, infinite for Gaussian ones: then no
finite G holds); otherwise at every iterate. Both are reported, never silently ignored.

Divergence: after every step, a trial whose state is no longer finite is marked diverged at
that epoch, its state is frozen (no further updates) and its later records are NaN with
``diverged = True``; nothing is averaged over it silently.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from .. import spec
from ..problems.base import Problem
from .samplers import Sampler
from .step import block_oracles, hybrid_step

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SimConfig", "simulate", "Schedule", "RECORD_COLUMNS", "perturbation_radius"]

Schedule = float | Callable[[int], float]
"""A learning rate: a constant, or a function of the epoch (0-based) returning one."""

SAMPLER_STREAM, DIRECTION_STREAM = 7001, 7002
"""Stream keys of the run's generators (problems use small keys 0..99 for their own draws)."""

RECORD_COLUMNS = ("trial", "epoch", "F", "grad_x_sq", "grad_y_sq", "grad_sq", "diverged",
                  "left_region")


def _rate(name: str, schedule: Schedule, epoch: int) -> float:
    value = schedule(epoch) if callable(schedule) else schedule
    label = f"{name} at epoch {epoch}" if callable(schedule) else name
    return spec.validate(name, value, label=label)


@dataclass(frozen=True)
class SimConfig:
    """Hyper-parameters of a simulation (names as in the theory's symbol table; domains,
    defaults and help texts from :mod:`hybridconv.spec`, which ``hybridconv simulate``'s
    options are generated from).

    Attributes:
        method: ``"hybrid"`` (ZO on x, FO on y), ``"zo"`` (both ZO), ``"fo"`` (both FO) or
            ``"reversed"`` (FO on x, ZO on y).
        sampling: ``"rr"``, ``"so"``, ``"ig"`` or ``"wr"`` (see :mod:`.samplers`).
        eta_x, eta_y: learning rates per block, constants or schedules epoch -> rate.
        mu: smoothing radius (> 0).
        q: directions per ZO step (>= 1).
        directions: ``"gaussian"``, ``"sphere"`` or ``"rademacher"``.
        difference: ``"central"`` or ``"forward"``.
        epochs: number of epochs T (>= 1).
        trials: number of independent trials K (>= 1).
        seed: seeds the sampler and the directions.
    """

    method: str = spec.option(among=spec.SIM_METHODS)
    sampling: str = spec.option("sampling")
    eta_x: Schedule = spec.option("eta_x", schedule=True)
    eta_y: Schedule = spec.option("eta_y", schedule=True)
    mu: float = spec.option("mu", positive=True)
    q: int = spec.option("q")
    directions: str = spec.option("directions")
    difference: str = spec.option("difference")
    epochs: int = spec.option("epochs")
    trials: int = spec.option("trials")
    seed: int = spec.option("seed")

    def __post_init__(self) -> None:
        spec.validate_fields(self)

    def hyperparameters(self, n: int) -> dict[str, float]:
        """The theory's hyper-parameter symbols (constant rates only)."""
        out = {"mu": float(self.mu), "q": float(self.q), "n": float(n), "T": float(self.epochs)}
        for name in ("eta_x", "eta_y"):
            sched = getattr(self, name)
            if callable(sched):
                raise ValueError(f"{name} is a schedule; the theorem needs a constant rate")
            out[name] = float(sched)
        return out

    def columns(self) -> dict[str, object]:
        """Configuration columns for the records (schedules named by their repr)."""
        d = asdict(self)
        for name in ("eta_x", "eta_y"):
            if callable(d[name]):
                d[name] = repr(d[name])
        d.pop("trials")
        d.pop("epochs")
        return d


def perturbation_radius(problem: Problem, config: SimConfig) -> float:
    """The largest ||mu u|| of the run's ZO perturbations: mu sqrt(d_b) for sphere and
    Rademacher directions (||u|| = sqrt(d_b) exactly) in each ZO block b, infinite for Gaussian
    directions, 0 without a ZO block."""
    dims = [d for oracle, d in zip(block_oracles(config.method), (problem.d_x, problem.d_y),
                                   strict=True) if oracle == "zo"]
    if not dims:
        return 0.0
    if config.directions == "gaussian":
        return math.inf
    return config.mu * math.sqrt(max(dims))


def _certifies_balls(bound: Callable[..., object]) -> bool:
    import inspect

    try:
        return "radius" in inspect.signature(bound).parameters
    except (TypeError, ValueError):
        return False


def _start(problem: Problem, x0: np.ndarray | None, y0: np.ndarray | None,
           trials: int) -> tuple[np.ndarray, np.ndarray]:
    sx, sy = problem.start()
    x0 = sx if x0 is None else np.asarray(x0, dtype=float)
    y0 = sy if y0 is None else np.asarray(y0, dtype=float)
    for name, v, d in (("x0", x0, problem.d_x), ("y0", y0, problem.d_y)):
        if v.shape not in ((d,), (trials, d)):
            raise ValueError(f"{name} must have shape ({d},) or ({trials}, {d}), "
                             f"got {v.shape}")
        if not np.isfinite(v).all():
            raise ValueError(f"{name} must be finite")
    return (np.broadcast_to(x0, (trials, problem.d_x)).copy(),
            np.broadcast_to(y0, (trials, problem.d_y)).copy())


def simulate(problem: Problem, config: SimConfig, *, x0: np.ndarray | None = None,
             y0: np.ndarray | None = None, progress: bool = False) -> pd.DataFrame:
    """Run ``config.trials`` trials of ``config.epochs`` epochs; return the records.

    Returns:
        a DataFrame with columns :data:`RECORD_COLUMNS` plus ``problem``, ``d_x``, ``d_y``,
        ``n`` and the configuration's fields; ``(trials) x (epochs + 1)`` rows.
    """
    import pandas as pd

    if not isinstance(problem, Problem):
        raise ValueError(f"problem must be a hybridconv.problems.Problem, got {problem!r}")
    if not isinstance(config, SimConfig):
        raise ValueError(f"config must be a SimConfig, got {config!r}")
    K, T, n = config.trials, config.epochs, problem.n
    oracles = block_oracles(config.method)
    x, y = _start(problem, x0, y0, K)
    sampler = Sampler(config.sampling, n=n, trials=K,
                      rng=np.random.default_rng([config.seed, SAMPLER_STREAM]))
    drng = np.random.default_rng([config.seed, DIRECTION_STREAM])

    rec = {k: np.full((T + 1, K), np.nan)
           for k in ("F", "grad_x_sq", "grad_y_sq", "max_grad_norm")}
    grad_bound = getattr(problem, "max_component_grad_norm", None)
    balls = grad_bound is not None and _certifies_balls(grad_bound)
    zo_radius = perturbation_radius(problem, config)
    running_max = np.zeros(K)

    def track_gradients(xp: np.ndarray | None = None, yp: np.ndarray | None = None) -> None:
        """At the current point, or (balls) over the ball around the previous point (xp, yp)
        that holds the step and the perturbations."""
        if grad_bound is None:
            return
        with np.errstate(all="ignore"):
            if balls and xp is not None:
                step = np.sqrt(np.einsum("bi,bi->b", x - xp, x - xp)
                               + np.einsum("bi,bi->b", y - yp, y - yp))
                g = np.asarray(grad_bound(xp, yp, np.maximum(step, zo_radius)), dtype=float)
            else:
                g = np.asarray(grad_bound(x, y), dtype=float)
        np.fmax(running_max, np.where(diverged_at > T, g, -np.inf), out=running_max)
    diverged_at = np.full(K, T + 1)  # epoch from which a trial's records are NaN
    left = np.zeros(K, dtype=bool)
    left_rec = np.zeros((T + 1, K), dtype=bool)

    def record(t: int) -> None:
        with np.errstate(all="ignore"):
            F = problem.value(x, y)
            gx, gy = problem.grad(x, y)
            gx2, gy2 = np.einsum("bi,bi->b", gx, gx), np.einsum("bi,bi->b", gy, gy)
        # a finite state whose objective or gradient overflows has diverged too
        bad = (diverged_at > t) & ~(np.isfinite(F) & np.isfinite(gx2) & np.isfinite(gy2))
        diverged_at[bad] = t
        alive = diverged_at > t
        rec["F"][t] = np.where(alive, F, np.nan)
        rec["grad_x_sq"][t] = np.where(alive, gx2, np.nan)
        rec["grad_y_sq"][t] = np.where(alive, gy2, np.nan)
        if grad_bound is not None:
            rec["max_grad_norm"][t] = np.where(alive, running_max, np.nan)
        left_rec[t] = left

    track_gradients()
    record(0)
    epochs = range(T)
    if progress:
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, desc=f"simulate {problem.name}/{config.method}", unit="epoch")
    for t in epochs:
        ex, ey = _rate("eta_x", config.eta_x, t), _rate("eta_y", config.eta_y, t)
        order = sampler.epoch(t)
        for i in range(n):
            active = diverged_at > T
            xp, yp = (x.copy(), y.copy()) if balls else (None, None)
            with np.errstate(all="ignore"):
                nx, ny = hybrid_step(problem, x, y, order[:, i], eta_x=ex, eta_y=ey,
                                     oracles=oracles, mu=config.mu, q=config.q,
                                     directions=config.directions,
                                     difference=config.difference, rng=drng)
            ok = np.isfinite(nx).all(axis=1) & np.isfinite(ny).all(axis=1)
            newly = active & ~ok
            diverged_at[newly] = t + 1
            upd = active & ok
            if upd.all():
                x, y = nx, ny
            else:
                x[upd], y[upd] = nx[upd], ny[upd]
            left |= upd & ~problem.in_region(x, y)
            track_gradients(xp, yp)
        record(t + 1)
        if (diverged_at <= T).all():  # every trial diverged: keep what we have
            for s in range(t + 2, T + 1):
                left_rec[s] = left
            break

    epochs_idx = np.repeat(np.arange(T + 1), K)
    trials_idx = np.tile(np.arange(K), T + 1)
    gx2, gy2 = rec["grad_x_sq"].ravel(), rec["grad_y_sq"].ravel()
    df = pd.DataFrame({
        "trial": trials_idx,
        "epoch": epochs_idx,
        "F": rec["F"].ravel(),
        "grad_x_sq": gx2,
        "grad_y_sq": gy2,
        "grad_sq": gx2 + gy2,
        "diverged": (epochs_idx >= diverged_at[trials_idx]),
        "left_region": left_rec.ravel(),
        "max_grad_norm": rec["max_grad_norm"].ravel(),
    })
    df["problem"] = problem.name
    df["d_x"], df["d_y"], df["n"] = problem.d_x, problem.d_y, n
    for k, v in config.columns().items():
        df[k] = v
    return df
