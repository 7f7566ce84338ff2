"""Searches for the tightest instance of a family in a regime (for the tightness report).

A *regime* restricts the falsifier's search space (:func:`regime_space`); :func:`search_regime`
runs the search for one (family, regime) and re-checks the worst instance with fresh trials.
Every row is measured with the block-weighted average over epochs (``measure="weighted"``),
which epoch 0 cannot decide (it is one term of T), and is held against the family's bound
(:func:`~.falsify.family_bound`: the hypotheses the family satisfies).

The ``noise floor`` regime starts every run at a stationary point (the exact minimizer where
the family has one, else a full-gradient L-BFGS stationary point) and uses a longer run; it is
searched on a Latin hypercube (a fast objective, then ``check`` on the best candidates). The
other regimes' worst instance is then polished: its step fractions moved to the top of their
range (LoRA: also its smallest region), re-checked, the largest ratio kept
(:func:`_polish_steps`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..problems.base import Problem
from ..theory.bound import Bound
from .check import Verdict, check
from .falsify import FAMILY_SPACES, build_instance, decode_point, falsify, family_bound

__all__ = ["REGIMES", "Found", "regime_space", "search_regime", "stationary_point"]

REGIMES: dict[str, str] = {
    "any": "the falsifier's full search space (FAMILY_SPACES)",
    "deterministic-like": "heterogeneity sigma_x, sigma_y in [1e-5, 1e-4] (LoRA: target noise "
                          "in [1e-4, 1e-3]), mu in [1e-6, 1e-5], start 30-100x farther than the "
                          "default (quadratic-based families): the Delta term's regime",
    "noise floor": "start at a stationary point (the exact minimizer of the quadratic-based "
                   "families; nonconvex, LoRA: a full-gradient L-BFGS stationary point; "
                   "gensmooth: start_frac in [0.01, 0.3] of the way from it to the default "
                   "start, since G is taken at the start), a longer run; Latin-hypercube search "
                   "over the rest of the space",
    "boundary steps": "frac_x = frac_y = 1: both step sizes on their caps (C1-C3; C4, C5 "
                      "halve them where they bind)",
    "n = 1": "one component (no reshuffling; the ZO noise alone)",
    "large d_x": "d_x in [128, 256] (quick: [64, 80]), n <= 8 (LoRA: d_x = m p with m, p in "
                 "[12, 16], quick [8, 9])",
}
"""Regime name -> what it restricts."""


@dataclass
class Found:
    """The worst instance of a search: its parameters, the ratio the search saw, the re-check
    (fresh seed, more trials), how many instances were simulated and skipped, and the
    theory's values at the instance."""

    worst: dict[str, float]
    search_ratio: float
    verdict: Verdict
    evaluations: int
    skipped: int
    values: dict[str, float]


def regime_space(family: str, regime: str, *,
                 quick: bool = False) -> dict[str, tuple[float, float, str]]:
    """The falsifier's search space for ``family`` restricted to ``regime``.

    For ``noise floor`` the start is not searched (the run starts at a stationary point): the
    space has no ``start_scale``.

    >>> regime_space("quadratic", "boundary steps")["frac_x"]
    (1.0, 1.0, 'log')
    """
    if family not in FAMILY_SPACES:
        raise ValueError(f"family must be one of {sorted(FAMILY_SPACES)}, got {family!r}")
    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {list(REGIMES)}, got {regime!r}")
    space = dict(FAMILY_SPACES[family])
    if regime == "deterministic-like":
        if family == "lora":
            space["noise"] = (1e-4, 1e-3, "log")
        else:
            space["sigma_x"] = space["sigma_y"] = (1e-5, 1e-4, "log")
        if "start_scale" in space:
            space["start_scale"] = (30.0, 100.0, "log")
        space["mu"] = (1e-6, 1e-5, "log")
    elif regime == "noise floor":
        space.pop("start_scale", None)
        if family == "gensmooth":  # G is taken at the start: leave the run a margin
            space["start_frac"] = (0.01, 0.3, "log")
    elif regime == "boundary steps":
        space["frac_x"] = space["frac_y"] = (1.0, 1.0, "log")
    elif regime == "n = 1":
        space["n"] = (1, 1, "logint")
    elif regime == "large d_x":
        space["n"] = (1, 8, "logint")
        if family == "lora":
            lo, hi = (8, 9) if quick else (12, 16)
            space["m"] = space["p"] = (lo, hi, "logint")
        else:
            space["d_x"] = (64, 80, "logint") if quick else (128, 256, "logint")
    return space


def stationary_point(problem: Problem) -> tuple[np.ndarray, np.ndarray]:
    """The exact minimizer where the problem has one, else a full-gradient L-BFGS stationary
    point started at the problem's default start."""
    dx = problem.d_x
    if hasattr(problem, "minimizer"):
        z = np.asarray(problem.minimizer(), dtype=float)
        return z[:dx].copy(), z[dx:].copy()
    from scipy.optimize import minimize

    def fun(z: np.ndarray) -> tuple[float, np.ndarray]:
        x, y = z[None, :dx], z[None, dx:]
        gx, gy = problem.grad(x, y)
        return float(problem.value(x, y)[0]), np.concatenate([gx[0], gy[0]])

    x0, y0 = problem.start()
    res = minimize(fun, np.concatenate([x0, y0]), jac=True, method="L-BFGS-B",
                   options={"maxiter": 5000, "gtol": 1e-12, "ftol": 1e-15})
    return res.x[:dx].copy(), res.x[dx:].copy()


def _noise_floor_instance(family: str, p: Mapping[str, float], bound: Bound, *, epochs: int,
                          trials: int, seed: int):
    problem, config, _, _ = build_instance(family, dict(p), bound, epochs=epochs,
                                           trials=trials, seed=seed, problem_seed=seed)
    x0, y0 = stationary_point(problem)
    s = float(p.get("start_frac", 0.0))
    if s > 0:
        sx, sy = problem.start()
        x0, y0 = x0 + s * (sx - x0), y0 + s * (sy - y0)
    consts = problem.constants(x0, y0)
    hyper = {"mu": p["mu"], "q": float(int(p["q"])), "n": float(problem.n),
             "T": float(epochs)}
    ex, ey = bound.admissible_steps(p["frac_x"], p["frac_y"], **consts, **hyper)
    return problem, dataclasses.replace(config, eta_x=ex, eta_y=ey), x0, y0


def _values(problem: Problem, config, x0, y0) -> dict[str, float]:
    return {**problem.constants(x0, y0), **config.hyperparameters(problem.n)}


def _weighted_ratio(bound: Bound, problem: Problem, config, x0, y0) -> float:
    """The fast objective of the noise-floor search: (1/T) sum_{t<T} of the trial mean of
    eta_x ||grad_x F||^2 + eta_y ||grad_y F||^2 over the weighted bound (the quantity and the
    refusals of ``check(measure="weighted")``, without its interval; a diverged trial gives inf,
    which ``check`` then reports as a violation)."""
    from ..sim.runner import simulate

    values = _values(problem, config, x0, y0)
    df = simulate(problem, config, x0=x0, y0=y0)
    run = df[df["epoch"] < config.epochs]
    if df["left_region"].any():
        raise ValueError("a trial left the region where the constants are certified")
    G = values.get("G")
    if G is not None and float(run["max_grad_norm"].max()) > G * (1 + 1e-12):
        raise ValueError("max_i ||grad f_i|| exceeded the gradient bound G")
    if df["diverged"].any():  # inside the conditions: a violation, ranked first for check
        return math.inf
    w = config.eta_x * run["grad_x_sq"] + config.eta_y * run["grad_y_sq"]
    return float(w.mean()) / bound.evaluate(check=False, measure="weighted", **values)


def _search_noise_floor(family: str, bound: Bound, space: dict, *, budget: int, seed: int,
                        trials: int, epochs: int, recheck_trials: int,
                        confidence: float) -> Found:
    from scipy.stats import qmc

    points = qmc.LatinHypercube(d=len(space), seed=seed).random(budget)
    found: list[tuple[float, dict[str, float]]] = []
    skipped = 0
    for u in points:
        p = decode_point(space, u)
        try:
            inst = _noise_floor_instance(family, p, bound, epochs=epochs, trials=trials,
                                         seed=seed)
            ratio = _weighted_ratio(bound, *inst)
        except ValueError:  # outside the certified region, G exceeded, no admissible step
            skipped += 1
            continue
        if not math.isnan(ratio):
            found.append((ratio, p))
    for ratio, p in sorted(found, key=lambda rp: -rp[0]):
        problem, config, x0, y0 = _noise_floor_instance(family, p, bound, epochs=epochs,
                                                        trials=recheck_trials, seed=seed)
        config = dataclasses.replace(config, seed=seed + 1)
        try:
            v = check(bound, problem, config, confidence=confidence, measure="weighted",
                      x0=x0, y0=y0)
        except ValueError:  # the fresh trials left the region or exceeded G
            skipped += 1
            continue
        worst = {**p, "eta_x": float(config.eta_x), "eta_y": float(config.eta_y),
                 "start": "stationary"}
        return Found(worst, ratio, v, budget, skipped, _values(problem, config, x0, y0))
    raise ValueError(f"no admissible noise-floor instance in {budget} evaluations of {family}")


def search_regime(family: str, regime: str, *, budget: int, seed: int, trials: int,
                  epochs: int, recheck_trials: int, confidence: float = 0.99,
                  quick: bool = False) -> Found:
    """Search ``family`` in ``regime`` for the largest weighted empirical / bound ratio and
    re-check the worst instance.

    Raises:
        ValueError: when no admissible instance is found.
    """
    bound = family_bound(family)
    space = regime_space(family, regime, quick=quick)
    if regime == "noise floor":
        return _search_noise_floor(family, bound, space, budget=budget, seed=seed,
                                   trials=trials, epochs=epochs,
                                   recheck_trials=recheck_trials, confidence=confidence)
    res = falsify(bound, family, budget=budget, seed=seed, trials=trials, epochs=epochs,
                  recheck_trials=recheck_trials, confidence=confidence, space=space,
                  measure="weighted")
    problem, config, x0, y0 = build_instance(family, res.worst, bound, epochs=epochs,
                                             trials=2, seed=seed, problem_seed=seed)
    skipped = int((res.history["verdict"] == "skipped").sum()) if len(res.history) else 0
    found = Found(dict(res.worst), res.ratio, res.verdict, res.evaluations, skipped,
                  _values(problem, config, x0, y0))
    return _polish_steps(found, family, bound, space, seed=seed, epochs=epochs,
                         recheck_trials=recheck_trials, confidence=confidence)


def _polish_steps(found: Found, family: str, bound: Bound, space: dict, *, seed: int,
                  epochs: int, recheck_trials: int, confidence: float) -> Found:
    """The worst instance with its step fractions moved to the top of their range (one or
    both) and, for LoRA, also with the smallest certified region (``region_scale`` at the
    bottom of its range: smaller constants; a run that leaves the region is refused),
    re-checked like the search's worst (fresh seed, ``recheck_trials``); the largest
    re-checked ratio is kept.

    Delta-decided instances are tightest with the steps on their caps, a corner a
    budget-limited search over many parameters rarely reaches (gensmooth, n = 1: 0.452 from
    the search, 0.732 with both steps on the caps, the same problem)."""
    params = {k: v for k, v in found.worst.items() if k in space}
    top_x, top_y = space["frac_x"][1], space["frac_y"][1]
    fracs = [(top_x, top_y), (top_x, params["frac_y"]), (params["frac_x"], top_y),
             (params["frac_x"], params["frac_y"])]
    regions = [params.get("region_scale")]
    if "region_scale" in space:  # LoRA: also the smallest certified region
        regions.append(space["region_scale"][0])
    best, tried = found, 0
    candidates = []
    for region in dict.fromkeys(regions):
        for fx, fy in fracs:
            p = {**params, "frac_x": fx, "frac_y": fy}
            if region is not None:
                p["region_scale"] = region
            if p != params and p not in candidates:
                candidates.append(p)
    for p in candidates:
        tried += 1
        try:
            problem, config, x0, y0 = build_instance(family, p, bound, epochs=epochs,
                                                     trials=recheck_trials, seed=seed + 1,
                                                     problem_seed=seed)
            v = check(bound, problem, config, confidence=confidence, measure="weighted",
                      x0=x0, y0=y0)
        except ValueError:  # outside the certified region, G exceeded, no admissible step
            continue
        if v.ratio > best.verdict.ratio:
            worst = {**p, "eta_x": float(config.eta_x), "eta_y": float(config.eta_y)}
            best = Found(worst, v.ratio, v, found.evaluations, found.skipped,
                         _values(problem, config, x0, y0))
    return dataclasses.replace(best, evaluations=found.evaluations + tried)
