"""An adversarial search for instances where a bound is tightest (or broken).

:func:`falsify` maximizes empirical / bound over problem instances and hyper-parameters that
satisfy the theorem's conditions, with scipy's differential evolution over a box of
parameters (log scales where a parameter spans decades). Step sizes are searched as fractions
of their caps (``Bound.admissible_steps``), so every candidate is inside the conditions; a
fraction of 1 sits on the boundary. Each candidate is simulated with common random numbers (the
same seed for every candidate), which makes the objective deterministic; the worst candidate
is then re-checked with more trials and a fresh seed, and its ratio is reported with a
confidence interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .. import spec
from ..problems import Problem, make_problem
from ..sim.runner import SimConfig
from ..theory.bound import Bound
from .check import Verdict, check

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FAMILY_SPACES", "FAMILY_BOUNDS", "FalsifyResult", "falsify", "decode_point",
           "build_instance", "family_bound"]

# name -> (low, high, scale): scale "log" (log-uniform), "lin", "logint" (integer, log scale)
_COMMON: dict[str, tuple[float, float, str]] = {
    "n": (1, 32, "logint"), "d_x": (1, 64, "logint"), "d_y": (1, 8, "logint"),
    "frac_x": (1e-3, 1.0, "log"), "frac_y": (1e-3, 1.0, "log"),
    "q": (1, 16, "logint"), "mu": (1e-6, 1e-1, "log"), "forward": (0.0, 1.0, "lin"),
}
_QUAD: dict[str, tuple[float, float, str]] = {
    "L_y": (0.1, 10.0, "log"), "m_x": (1e-2, 1.0, "log"), "m_y_rel": (1e-2, 1.0, "log"),
    "coupling_rel": (0.0, 0.95, "lin"), "sigma_x": (1e-3, 10.0, "log"),
    "sigma_y": (1e-3, 10.0, "log"), "start_scale": (0.1, 100.0, "log"),
}
FAMILY_SPACES: dict[str, dict[str, tuple[float, float, str]]] = {
    "quadratic": {**_COMMON, **_QUAD},
    "nonconvex": {**_COMMON, **_QUAD, "lam": (1e-2, 3.0, "log")},
    "gensmooth": {**_COMMON, **{k: v for k, v in _QUAD.items() if k != "start_scale"},
                  "ridge": (0.05, 1.0, "log"), "G_margin": (1.05, 3.0, "log")},
    "lora": {**{k: v for k, v in _COMMON.items() if k not in ("d_x", "d_y")},
             "m": (1, 6, "logint"), "p": (1, 6, "logint"), "r": (1, 3, "logint"),
             "noise": (1e-3, 1.0, "log"), "region_scale": (1.0, 4.0, "log")},
    "hetero": {**_COMMON, **_QUAD, "hetero_rel": (1e-2, 3.0, "log")},
    "lowrank": {**_COMMON, **{k: v for k, v in _QUAD.items() if k != "m_x"},
                "d_x": (8, 128, "logint"), "rank": (1, 8, "logint"),
                "tail": (1e-4, 1e-1, "log")},
}
"""Per family, the searched parameters with their ranges. ``forward`` > 1/2 selects forward
differences (the bound's constants are the same for both differences). ``hetero_rel`` is the
component Hessians' spread relative to sqrt(m_x m_y); ``G_margin`` is the gensmooth gradient
level G over its value at the start; ``region_scale`` is the LoRA region's radii over the
largest norm among the start and the planted solution (a tighter region certifies smaller
constants; a run that leaves it is refused)."""

FAMILY_BOUNDS: dict[str, tuple[str, str]] = {
    "quadratic": ("h1", "gaussian"), "nonconvex": ("h1", "gaussian"),
    "lora": ("h1", "gaussian"), "hetero": ("h1", "gaussian"),
    "gensmooth": ("h1-gen", "sphere"), "lowrank": ("effective-rank", "gaussian"),
}
"""Per family, the (assumption, directions) of the bound its instances are held against: the
hypotheses each family satisfies. gensmooth is (L0, L1)-smooth with a gradient level G, which
certifies the perturbation segments only for bounded directions; lowrank is the
effective-rank family."""

_BOUNDS: dict[tuple[str, str, str], Bound] = {}


def family_bound(family: str, *, version: str = "sharp") -> Bound:
    """The bound :data:`FAMILY_BOUNDS` assigns to ``family`` (built once and cached)."""
    from ..theory.bound import hybrid_bound

    assumption, directions = FAMILY_BOUNDS[spec.validate("problem", family)]
    key = (assumption, directions, version)
    if key not in _BOUNDS:
        _BOUNDS[key] = hybrid_bound(assumption=assumption, directions=directions,
                                    version=version)
    return _BOUNDS[key]


@dataclass(frozen=True)
class FalsifyResult:
    """What :func:`falsify` found.

    Attributes:
        family: the problem family searched.
        worst: the worst instance's parameters (problem, step-size fractions, step sizes).
        ratio: its empirical / bound in the search (common random numbers).
        verdict: the re-check of the worst instance with more trials and a fresh seed.
        ratio_ci: (ci_lower / bound, ci_upper / bound) of that re-check.
        evaluations: number of instances simulated.
        history: one row per evaluation (parameters, ratio, verdict, or the error).
    """

    family: str
    worst: dict[str, float]
    ratio: float
    verdict: Verdict
    ratio_ci: tuple[float, float]
    evaluations: int
    history: pd.DataFrame

    def as_dict(self) -> dict[str, object]:
        return {"family": self.family, "worst": self.worst, "ratio": self.ratio,
                "recheck": self.verdict.as_dict(), "ratio_ci": list(self.ratio_ci),
                "evaluations": self.evaluations}


def decode_point(space: dict[str, tuple[float, float, str]],
                 u: np.ndarray) -> dict[str, float]:
    """The parameters of the unit-cube point ``u`` in ``space`` (one coordinate per name,
    clipped to [0, 1]; log scales where a range spans decades, integers rounded)."""
    if len(u) != len(space):
        raise ValueError(f"u must have one coordinate per parameter ({len(space)}), "
                         f"got {len(u)}")
    out = {}
    for (name, (lo, hi, scale)), ui in zip(space.items(), u, strict=True):
        ui = float(min(max(ui, 0.0), 1.0))
        if scale == "lin":
            out[name] = lo + ui * (hi - lo)
        else:
            v = math.exp(math.log(lo) + ui * (math.log(hi) - math.log(lo)))
            out[name] = float(round(v)) if scale == "logint" else v
    return out


def build_instance(family: str, p: dict[str, float], bound: Bound, *, epochs: int,
                   trials: int, seed: int,
                   problem_seed: int) -> tuple[Problem, SimConfig, np.ndarray | None,
                                               np.ndarray | None]:
    """(problem, config, x0, y0) of the point ``p`` of :data:`FAMILY_SPACES` [family]: the
    problem built from the parameters, its start (scaled by ``start_scale`` if given), and a
    hybrid reshuffling run with step sizes ``frac_x``, ``frac_y`` of the caps
    (:meth:`Bound.admissible_steps`, so the instance is inside the conditions) and the
    estimator of :data:`FAMILY_BOUNDS`.

    Raises:
        ValueError: when the parameters give no admissible step sizes or an invalid problem.
    """
    n = int(p["n"])
    if family == "lora":
        m, pp, r = int(p["m"]), int(p["p"]), int(p["r"])
        problem = make_problem("lora", n, m * pp, r * (m + pp), seed=problem_seed, m=m, p=pp,
                               r=r, noise=p["noise"],
                               region_scale=p.get("region_scale", 2.0))
    else:
        L_y = p["L_y"]
        m_y = p["m_y_rel"] * L_y
        if family == "lowrank":
            params = dict(L_y=L_y, m_y=m_y, rank=min(int(p["rank"]), int(p["d_x"])),
                          tail=p["tail"], coupling=p["coupling_rel"] * math.sqrt(m_y))
        else:
            m_x = p["m_x"]
            params = dict(m_x=m_x, m_y=m_y, **{"Lq_y" if family == "nonconvex" else "L_y": L_y},
                          coupling=p["coupling_rel"] * math.sqrt(m_x * m_y))
        params.update(sigma_x=p["sigma_x"], sigma_y=p["sigma_y"])
        if family == "nonconvex":
            params["lam"] = p["lam"]
        if family == "gensmooth":
            params.update(ridge=p["ridge"], G_margin=p["G_margin"])
        if family == "hetero":
            params["hetero"] = p["hetero_rel"] * math.sqrt(params["m_x"] * m_y)
        problem = make_problem(family, n, int(p["d_x"]), int(p["d_y"]), seed=problem_seed,
                               **params)
    x0 = y0 = None
    if "start_scale" in p:
        sx, sy = problem.start()
        x0, y0 = sx * p["start_scale"], sy * p["start_scale"]
    consts = problem.constants(x0, y0)
    hyper = {"mu": p["mu"], "q": float(int(p["q"])), "n": float(n), "T": float(epochs)}
    ex, ey = bound.admissible_steps(p["frac_x"], p["frac_y"], **consts, **hyper)
    directions = bound.theorem.setting.estimator.directions
    config = SimConfig(method="hybrid", sampling="rr", eta_x=ex, eta_y=ey, mu=p["mu"],
                       q=int(p["q"]), directions=directions,
                       difference="forward" if p.get("forward", 0.0) > 0.5 else "central",
                       epochs=epochs, trials=trials, seed=seed)
    return problem, config, x0, y0


def falsify(bound: Bound, family: str, *, budget: int = 60, seed: int = 0, trials: int = 32,
            epochs: int = 10, recheck_trials: int = 256, confidence: float = 0.99,
            space: dict[str, tuple[float, float, str]] | None = None,
            measure: str = "min",
            progress: Callable[[int, float], None] | None = None) -> FalsifyResult:
    """Search ``family`` for the instance with the largest empirical / ``bound`` ratio.

    Args:
        bound: the bound under test (the real one, or a planted wrong one); it should be the
            family's (:func:`family_bound`): its estimator sets the run's directions.
        family: a name of :data:`FAMILY_SPACES`.
        budget: number of instances to simulate (>= 10).
        seed: seeds the search, the problems and the common random numbers.
        trials, epochs: per simulated instance.
        recheck_trials: trials of the final re-check of the worst instance.
        confidence: of the re-check's interval.
        space: override of :data:`FAMILY_SPACES` [family].
        measure: what is compared with the bound (:func:`~.check.check`): ``min``,
            ``weighted`` or ``adapter``.
        progress: called as progress(evaluations, best_ratio) after each evaluation.
    """
    from scipy.optimize import differential_evolution

    family = spec.validate("problem", family, label="family")
    if family not in FAMILY_SPACES:
        raise ValueError(f"family must be one of {sorted(FAMILY_SPACES)}, got {family!r}")
    measure = spec.validate("measure", measure)
    budget = spec.validate("budget", budget)
    if budget < 10:  # differential evolution needs a population
        raise ValueError(f"budget must be an integer >= 10, got {budget!r}")
    seed, epochs = spec.validate("seed", seed), spec.validate("epochs", epochs)
    confidence = spec.validate("confidence", confidence)
    for name, v in (("trials", trials), ("recheck_trials", recheck_trials)):
        if spec.validate("trials", v, label=name) < 2:  # a confidence interval needs two
            raise ValueError(f"{name} must be an integer >= 2, got {v!r}")
    space = dict(space or FAMILY_SPACES[family])
    rows: list[dict[str, object]] = []
    best = {"ratio": -math.inf, "params": None}

    def objective(u: np.ndarray) -> float:
        if len(rows) >= budget:
            return 0.0
        p = decode_point(space, u)
        row: dict[str, object] = dict(p)
        try:
            problem, config, x0, y0 = build_instance(family, p, bound, epochs=epochs,
                                                     trials=trials, seed=seed,
                                                     problem_seed=seed)
            v = check(bound, problem, config, confidence=confidence, x0=x0, y0=y0,
                      measure=measure)
            row.update(eta_x=config.eta_x, eta_y=config.eta_y, ratio=v.ratio,
                       verdict=v.verdict, empirical=v.empirical, bound=v.bound, error="")
            ratio = v.ratio if math.isfinite(v.ratio) else 0.0
        except ValueError as e:  # outside the certified region, no admissible step, ...
            row.update(ratio=math.nan, verdict="skipped", error=str(e)[:200])
            ratio = 0.0
        rows.append(row)
        if ratio > best["ratio"]:
            best.update(ratio=ratio, params=p)
        if progress is not None:
            progress(len(rows), best["ratio"])
        return -ratio

    dim = len(space)
    popsize = max(2, min(8, budget // (3 * dim) or 2))
    maxiter = max(1, budget // (popsize * dim))
    differential_evolution(objective, [(0.0, 1.0)] * dim, seed=seed, popsize=popsize,
                           maxiter=maxiter, polish=False, init="latinhypercube", tol=0.0,
                           callback=lambda *a, **k: len(rows) >= budget)
    import pandas as pd

    history = pd.DataFrame(rows)
    if best["params"] is None or best["ratio"] <= 0:
        raise ValueError(f"no admissible instance found in {len(rows)} evaluations of "
                         f"{family}; widen the space or the budget")
    p = best["params"]
    problem, config, x0, y0 = build_instance(family, p, bound, epochs=epochs,
                                             trials=recheck_trials, seed=seed + 1,
                                             problem_seed=seed)
    v = check(bound, problem, config, confidence=confidence, x0=x0, y0=y0, measure=measure)
    worst = {**p, "eta_x": float(config.eta_x), "eta_y": float(config.eta_y)}
    return FalsifyResult(family, worst, float(best["ratio"]), v,
                         (v.ci_lower / v.bound, v.ci_upper / v.bound), len(rows), history)
