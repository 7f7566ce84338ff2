"""Predicted step sizes against measured ones: the best ratio eta_y / eta_x and the region.

The theorem predicts two things about the step sizes: the pair that minimizes its bound (under
the natural block weights w_b = 1 / (effective smoothness of block b), whose ratio
eta_y / eta_x is the prediction that two rates help; see ``natural_weights``), and the region
where its conditions hold (C1-C5; its extent along each axis is the pair of caps that
``Bound.admissible_steps(1, 1)`` returns). :func:`compare_steps` measures both on a problem: it
runs the hybrid on a log-spaced grid of (eta_x, eta_y) around the caps and reports

* the measured best cell: the smallest average over epochs of
  E[w_x ||grad_x F(z_t)||^2 + w_y ||grad_y F(z_t)||^2] (the quantity whose bound the predicted
  pair minimizes), its ratio eta_y / eta_x against the predicted one;
* the measured stability boundary: per block, the largest step size on the grid (the other
  block's step at its smallest grid value) below which every cell is stable (no trial
  diverged and the last epoch's mean E||grad F||^2 is below the start's), against the cap.

A cap below the stability boundary is what a valid sufficient condition must give; the factor
between them says how conservative the region is. The regimes figure and
``hybridconv theory steps --compare`` use it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..problems.base import Problem
from ..sim.runner import SimConfig
from ..theory.bound import Bound, hybrid_bound, natural_weights

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["StepComparison", "compare_steps", "cell_measure", "stability_boundary",
           "stability_line"]


@dataclass(frozen=True)
class StepComparison:
    """Predicted against measured step sizes (see the module docstring).

    Attributes:
        weights: the natural block weights (w_x, w_y) of the measure.
        predicted_eta_x, predicted_eta_y, predicted_ratio: the bound-optimal pair and its
            ratio eta_y / eta_x; gain: the bound's gain of two rates over one (same measure).
        cap_x, cap_y: the admissible region's extent along each axis (the caps).
        measured_eta_x, measured_eta_y, measured_ratio, measured_value: the best grid cell.
        stable_x, stable_y: the measured stability boundary along each axis (inf: stable on
            the whole grid, a lower bound on the boundary).
        cells: one row per grid cell: eta_x, eta_y, value (the weighted measure's mean over
            trials), sd, stable, diverged (trials).
    """

    weights: tuple[float, float]
    predicted_eta_x: float
    predicted_eta_y: float
    predicted_ratio: float
    gain: float
    cap_x: float
    cap_y: float
    measured_eta_x: float
    measured_eta_y: float
    measured_ratio: float
    measured_value: float
    stable_x: float
    stable_y: float
    cells: pd.DataFrame = field(repr=False)

    @property
    def ratio_factor(self) -> float:
        """measured_ratio / predicted_ratio (1: the prediction is the measured best)."""
        return self.measured_ratio / self.predicted_ratio

    @property
    def grid_step(self) -> float:
        """The grid's factor between neighbouring cells along eta_y / eta_x (the resolution of
        the measured ratio)."""
        ex = np.sort(self.cells["eta_x"].unique())
        return float(ex[1] / ex[0]) if len(ex) > 1 else math.nan

    def as_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in (
            "weights", "predicted_eta_x", "predicted_eta_y", "predicted_ratio", "gain", "cap_x",
            "cap_y", "measured_eta_x", "measured_eta_y", "measured_ratio", "measured_value",
            "stable_x", "stable_y", "ratio_factor", "grid_step")}

    def lines(self) -> list[str]:
        """A plain-text summary."""
        def caps(cap: float, stable: float) -> str:
            if not math.isfinite(stable):
                return f"cap {cap:.4g}; stable on the whole grid (boundary above its top)"
            return f"cap {cap:.4g}, measured stability boundary {stable:.4g} " \
                   f"(cap / boundary = {cap / stable:.3g})"

        return [
            f"measure: (1/T) sum_t E[w_x ||grad_x F||^2 + w_y ||grad_y F||^2], natural weights "
            f"w = ({self.weights[0]:.4g}, {self.weights[1]:.4g})",
            f"predicted best: eta_x = {self.predicted_eta_x:.4g}, eta_y = "
            f"{self.predicted_eta_y:.4g} (eta_y/eta_x = {self.predicted_ratio:.4g})",
            f"measured best cell: eta_x = {self.measured_eta_x:.4g}, eta_y = "
            f"{self.measured_eta_y:.4g} (eta_y/eta_x = {self.measured_ratio:.4g}, measured/"
            f"predicted ratio {self.ratio_factor:.3g}; grid step {self.grid_step:.3g}x), "
            f"value {self.measured_value:.4g}",
            f"eta_x: {caps(self.cap_x, self.stable_x)}",
            f"eta_y: {caps(self.cap_y, self.stable_y)}",
        ]


def cell_measure(df: pd.DataFrame, epochs: int, weights: tuple[float, float]) -> dict:
    """One grid cell's numbers from ``simulate``'s records: the per-trial average over epochs
    t < T of w_x ||grad_x F||^2 + w_y ||grad_y F||^2 (mean, sd over trials), whether it is
    stable (no diverged trial, the last epoch's mean ||grad F||^2 below epoch 0's) and the
    number of diverged trials."""
    wx, wy = weights
    diverged = int(df.loc[df["diverged"], "trial"].nunique())
    run = df[df["epoch"] < epochs]
    per_trial = (wx * run["grad_x_sq"] + wy * run["grad_y_sq"]).groupby(run["trial"]).mean()
    start = float(df.loc[df["epoch"] == 0, "grad_sq"].mean())
    last = float(df.loc[df["epoch"] == epochs, "grad_sq"].mean())
    stable = diverged == 0 and math.isfinite(last) and last < start
    v = per_trial.to_numpy(dtype=float)
    return {"value": float(v.mean()) if diverged == 0 else math.nan,
            "sd": float(v.std(ddof=1)) if diverged == 0 and len(v) > 1 else math.nan,
            "stable": bool(stable), "diverged": diverged}


def stability_line(cells: pd.DataFrame) -> list[tuple[float, float]]:
    """Per eta_x of the grid, the largest eta_y below which every cell is stable (inf: the
    whole column; 0: not even the smallest)."""
    out = []
    for ex, col in cells.groupby("eta_x"):
        last = 0.0
        for r in col.sort_values("eta_y").itertuples():
            if not r.stable:
                break
            last = r.eta_y
        else:
            last = math.inf
        out.append((float(ex), float(last)))
    return out


def stability_boundary(cells: pd.DataFrame, axis: str) -> float:
    """The largest grid value of ``axis`` ("eta_x" or "eta_y") below which every cell is stable,
    the other step at its smallest grid value; inf when the whole line is stable."""
    other = "eta_y" if axis == "eta_x" else "eta_x"
    line = cells[cells[other] == cells[other].min()].sort_values(axis)
    last = -math.inf
    for r in line.itertuples():
        if not r.stable:
            return float(last) if math.isfinite(last) else 0.0
        last = getattr(r, axis)
    return math.inf


def _cell_job(problem: Problem, config: dict, weights: tuple[float, float]) -> dict:
    from ..sim.runner import simulate

    cfg = SimConfig(**config)
    return cell_measure(simulate(problem, cfg), cfg.epochs, weights)


def compare_steps(problem: Problem, *, epochs: int = 60, trials: int = 8, grid: int = 7,
                  mu: float = 1e-3, q: int = 1, seed: int = 0, bound: Bound | None = None,
                  span: tuple[float, float] = (1e-2, 30.0), workers: int = 1,
                  progress: bool = False,
                  values: Mapping[str, float] | None = None) -> StepComparison:
    """Run the hybrid on a grid around the caps and compare with the theorem's predictions.

    Args:
        problem: the problem (its constants at its default start are the bound's values).
        epochs, trials, mu, q, seed: the runs' settings (random reshuffling, the bound's
            directions and difference).
        grid: grid points per axis (>= 3), log-spaced from span[0] to span[1] times the cap.
        bound: default ``hybrid_bound()`` (H1, Gaussian directions, central differences).
        workers, progress: for the grid's runs (``hybridconv.parallel.run_jobs``).
        values: the bound's values (default: the problem's constants and the settings).

    Raises:
        ValueError: when no step sizes are admissible or for bad arguments.
    """
    import pandas as pd

    from ..parallel import run_jobs

    if not isinstance(grid, int) or grid < 3:
        raise ValueError(f"grid must be an integer >= 3, got {grid!r}")
    if not (0 < span[0] < 1 <= span[1]):
        raise ValueError(f"span must satisfy 0 < span[0] < 1 <= span[1], got {span!r}")
    bound = bound or hybrid_bound()
    est = bound.theorem.setting.estimator
    if values is None:
        x0, y0 = problem.start()
        values = {**problem.constants(x0, y0), "n": problem.n, "T": epochs, "mu": mu, "q": q}
    fixed = {k: v for k, v in values.items() if k in bound.symbols and k not in
             ("eta_x", "eta_y")}
    weights = natural_weights(bound, **fixed)
    pred = bound.optimal_step_sizes(weights=weights, **fixed)
    cap_x, cap_y = bound.admissible_steps(1.0, 1.0, **fixed)
    gx = np.geomspace(span[0] * cap_x, span[1] * cap_x, grid)
    gy = np.geomspace(span[0] * cap_y, span[1] * cap_y, grid)
    base = {"method": "hybrid", "sampling": "rr", "mu": mu, "q": q, "epochs": epochs,
            "trials": trials, "seed": seed, "directions": est.directions,
            "difference": est.difference}
    jobs = [{"problem": problem, "config": {**base, "eta_x": float(a), "eta_y": float(b)},
             "weights": weights} for a in gx for b in gy]
    res = run_jobs(_cell_job, jobs, workers=workers, progress=progress, desc="steps")
    cells = pd.DataFrame([{"eta_x": j["config"]["eta_x"], "eta_y": j["config"]["eta_y"], **r}
                          for j, r in zip(jobs, res, strict=True)])
    ok = cells[cells["stable"] & np.isfinite(cells["value"])]
    if ok.empty:
        raise ValueError("no stable cell on the grid")
    best = ok.loc[ok["value"].idxmin()]
    return StepComparison(
        weights=weights, predicted_eta_x=pred.eta_x, predicted_eta_y=pred.eta_y,
        predicted_ratio=pred.ratio, gain=pred.gain, cap_x=cap_x, cap_y=cap_y,
        measured_eta_x=float(best["eta_x"]), measured_eta_y=float(best["eta_y"]),
        measured_ratio=float(best["eta_y"] / best["eta_x"]),
        measured_value=float(best["value"]),
        stable_x=stability_boundary(cells, "eta_x"), stable_y=stability_boundary(cells, "eta_y"),
        cells=cells)
