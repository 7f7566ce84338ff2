"""Measurements the simulator-based figures share: confidence bands, noise floors, bounds.

Every job here is a module-level function of plain arguments (a problem family and its
parameters, a configuration, a seed), so that :func:`hybridconv.parallel.run_jobs` can send it
to another process and the result does not depend on where it ran.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..problems import make_problem
from ..problems.base import Problem
from ..sim.runner import SimConfig, simulate
from ..theory.bound import Bound

__all__ = ["LEVEL", "band", "summarize", "build_problem", "bound_values", "floor_job",
           "curve_job", "log_epochs", "fit_slope", "floor_epochs", "bound_epochs",
           "smallest_curvature"]

LEVEL = 0.95
"""Confidence level of every band and interval drawn in the figures (two-sided Student t)."""


def band(mean: np.ndarray, sd: np.ndarray, count: np.ndarray,
         level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided Student-t interval for a mean: mean -/+ t_{(1+level)/2, k-1} sd / sqrt(k)."""
    from scipy import stats

    count = np.asarray(count, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = stats.t.ppf((1 + level) / 2, np.maximum(count - 1, 1)) * np.asarray(sd) \
            / np.sqrt(count)
    half = np.where(count > 1, half, np.nan)
    return np.asarray(mean) - half, np.asarray(mean) + half


def summarize(df: pd.DataFrame, by: Sequence[str], value: str) -> pd.DataFrame:
    """Mean, standard deviation and count of ``value`` per group (NaN rows of diverged trials
    are not averaged: their count is reported in ``diverged``)."""
    g = df.groupby(list(by), sort=True)[value]
    out = g.agg(mean="mean", sd="std", count="count").reset_index()
    out["diverged"] = (g.size().to_numpy() - out["count"].to_numpy()).astype(int)
    return out


def build_problem(family: str, n: int, d_x: int, d_y: int, seed: int,
                  params: Mapping[str, float] | None = None) -> Problem:
    """``make_problem`` with keyword parameters (one place, so every job builds alike)."""
    return make_problem(family, n, d_x, d_y, seed=seed, **dict(params or {}))


def bound_values(problem: Problem, config: SimConfig, *, x0: np.ndarray | None = None,
                 y0: np.ndarray | None = None) -> dict[str, float]:
    """The theory's constants of ``problem`` and the hyper-parameters of ``config``."""
    values = {**problem.constants(x0, y0), **config.hyperparameters(problem.n)}
    values.pop("d_y", None)
    return values


def log_epochs(T: int, points: int = 60) -> np.ndarray:
    """About ``points`` epochs 0..T, log-spaced after the first few (for log-log curves)."""
    e = np.unique(np.round(np.geomspace(1, T, points)).astype(int))
    return np.concatenate([[0], e])


def curve_job(family: str, n: int, d_x: int, d_y: int, seed: int, params: dict,
              config: dict, points: int = 60) -> pd.DataFrame:
    """Simulate and summarize ||grad F||^2 per recorded epoch (mean, sd, count), at about
    ``points`` log-spaced epochs. ``min_before`` is the theorem's measure at T = epoch,
    min_{s < epoch} of the mean over trials, taken over *every* epoch s (not only the kept
    ones); NaN at epoch 0."""
    problem = build_problem(family, n, d_x, d_y, seed, params)
    cfg = SimConfig(**config)
    df = simulate(problem, cfg)
    mean = df.groupby("epoch")["grad_sq"].mean()
    before = mean.cummin().shift(1)
    keep = df[df["epoch"].isin(log_epochs(cfg.epochs, points))]
    out = summarize(keep, ["epoch"], "grad_sq")
    out["min_before"] = out["epoch"].map(before)
    out["family"], out["method"] = family, cfg.method
    return out


def floor_job(family: str, n: int, d_x: int, d_y: int, seed: int, params: dict,
              config: dict, burn: int) -> dict[str, float]:
    """Noise floor: start at the minimizer, discard ``burn`` epochs, then average
    ||grad F||^2 over the remaining epoch ends, per trial; return the mean over trials, its
    standard error (from the spread of the independent per-trial means), the trial count and
    the number of diverged trials, which are left out entirely (not averaged over their
    finite epochs); the figures say when that number is not zero. Needs a family with a
    ``minimizer`` (the quadratic)."""
    problem = build_problem(family, n, d_x, d_y, seed, params)
    cfg = SimConfig(**config)
    z = problem.minimizer()
    df = simulate(problem, cfg, x0=z[: problem.d_x], y0=z[problem.d_x:])
    bad = set(df.loc[df["diverged"], "trial"])
    diverged = len(bad)
    kept = df[(df["epoch"] > burn) & ~df["trial"].isin(bad)]
    v = kept.groupby("trial")["grad_sq"].mean().to_numpy()
    se = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else math.nan
    return {"floor": float(v.mean()) if len(v) else math.nan, "se": se,
            "trials": int(len(v)), "diverged": diverged}


def smallest_curvature(problem: Problem) -> float:
    """lambda_min of a quadratic's Hessian (what sets its slowest relaxation)."""
    return float(np.linalg.eigvalsh(problem.H).min())


def floor_epochs(eta_x: float, eta_y: float, n: int, m: float, *, burn_efolds: float = 3.0,
                 average_efolds: float = 6.0, cap: int | None = None) -> tuple[int, int]:
    """Burn-in and total epochs for a floor measurement (the schedule of the noise-floor tests,
    tests/test_lemmas_mc.py).

    With m = lambda_min(H) (:func:`smallest_curvature`), the slowest mode of delta = z - z*
    contracts by about exp(-rate), rate = min(eta_x, eta_y) n m, per epoch, so E||delta||^2
    relaxes towards its floor with time constant 1 / (2 rate) (the burn-in is ``burn_efolds``
    of those) and successive epoch ends decorrelate with time constant 1 / rate (the average
    runs over ``average_efolds`` of those). ``cap`` shrinks both proportionally (quick
    previews: the floors are then slightly biased low)."""
    rate = min(eta_x, eta_y) * n * m
    burn = math.ceil(burn_efolds / (2 * rate))
    total = burn + math.ceil(average_efolds / rate)
    if cap is not None and total > cap:
        scale = cap / total
        burn, total = max(1, int(burn * scale)), cap
    return burn, total


def fit_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of log y against log x (NaN when fewer than two finite points)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 2:
        return math.nan
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])


def bound_epochs(bound: Bound, values: Mapping[str, float], eps: Sequence[float], *,
                 ratio: float = 1.0, grid: int = 2000) -> np.ndarray:
    """Epochs the bound needs to certify min_t E||grad F||^2 <= eps^2, for each eps.

    Not the leading order of ``Bound.complexity`` but the exact count from the bound itself:
    with eta_x = eta, eta_y = ratio * eta the bound's descent part is A(eta) / T + C(eta) (its
    T-dependence is the Delta term alone, checked here), so T(eps) = min over admissible eta
    with C(eta) < eps^2 of A(eta) / (eps^2 - C(eta)), searched on a log grid of ``grid`` rates
    below the largest admissible one; 1 where the T-free gradient-gap alternative of the bound
    (the sharp theorem's small-T bound) is already <= eps^2. NaN where no admissible eta
    certifies eps.
    """
    f, ok = bound.vectorized(small_T=False), bound.conditions_vectorized()
    full = bound.vectorized()
    v = {k: x for k, x in values.items() if k not in ("eta_x", "eta_y", "T")}
    ex, ey = bound.admissible_steps(**v, T=1.0)
    top = min(ex, ey / ratio)
    etas = np.geomspace(top * 1e-8, top * 1.0, grid)
    args = {**v, "eta_x": etas, "eta_y": ratio * etas}
    C = np.asarray(f(**args, T=1e300), dtype=float)
    A = np.asarray(f(**args, T=1.0), dtype=float) - C
    two = np.asarray(f(**args, T=2.0), dtype=float)
    if not np.allclose(two, C + A / 2, rtol=1e-9, atol=0):
        raise ValueError("the bound is not of the form A / T + C in T")
    good = np.asarray(ok(**args, T=1.0))
    at_one = np.asarray(full(**args, T=1.0), dtype=float)
    out = []
    for e in np.asarray(eps, dtype=float):
        if np.any(good & (at_one <= e**2)):  # one epoch certifies it (the small-T bound)
            out.append(1.0)
            continue
        room = e**2 - C
        with np.errstate(divide="ignore", invalid="ignore"):
            T = np.where(good & (room > 0), A / room, np.inf)
        best = float(T.min()) if T.size else math.inf
        out.append(math.ceil(best) if math.isfinite(best) else math.nan)
    return np.asarray(out, dtype=float)
