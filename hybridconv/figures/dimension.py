"""Figure 5, dimension and directions: the ZO block's noise floor against d_x and against q.

The hybrid on a quadratic (sigma_x = 1, sigma_y = 0, L = 1, m = 0.5, n = 8, d_y = 4) with fixed
step sizes, started at the minimizer; floors measured as in Figure 3 (``measure.floor_job``).
Gaussian directions: the ZO estimator's second moment carries the factor (d_x + 2) / q
(Nesterov and Spokoiny 2017, Lemma 3; THEORY.md's ZO lemma), so the floor grows about linearly
in d_x and falls like 1/q. Black dashed: ``QuadraticProblem.noise_floor`` (first order in
eta_x). Black dotted: the theorem's bound as T -> infinity with mu = 0 (central differences are
exact on a quadratic), where its conditions hold at these step sizes (the caps on eta_x shrink
like q / (d_x + 4), so the bound covers the small-d_x, large-q end only). Error bars: 95%
Student-t intervals over trials.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..parallel import run_jobs
from ..sim.runner import SimConfig
from ..theory.bound import hybrid_bound
from .measure import (
    band,
    bound_values,
    build_problem,
    fit_slope,
    floor_epochs,
    floor_job,
    smallest_curvature,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

NAME = "dimension"
TITLE = "ZO noise floor against the dimension d_x and the number of directions q"
SEED = 505
N, D_Y, M = 8, 4, 0.5
PARAMS = {"m_x": M, "m_y": M, "sigma_x": 1.0, "sigma_y": 0.0}
SETTINGS = {
    "full": {"d_x": (2, 4, 8, 16, 32, 64), "q": (1, 2, 4, 8, 16), "q_at_d_x": 32,
             "eta_x": 0.001, "eta_y": 0.005, "trials": 64, "burn_efolds": 3.0,
             "average_efolds": 4.0, "max_epochs": 3000},
    "quick": {"d_x": (2, 8, 32), "q": (1, 4, 16), "q_at_d_x": 32, "eta_x": 0.004,
              "eta_y": 0.005, "trials": 16, "burn_efolds": 2.0, "average_efolds": 2.0,
              "max_epochs": 250},
}


def settings(quick: bool) -> dict[str, object]:
    """What the figure is computed with (recorded in MANIFEST.json)."""
    return {**SETTINGS["quick" if quick else "full"], "seed": SEED, "n": N, "d_y": D_Y,
            "params": PARAMS, "mu": 1e-3, "sampling": "rr", "method": "hybrid",
            "directions": "gaussian"}


def compute(*, quick: bool = False, workers: int = 1, progress: bool = False) -> pd.DataFrame:
    """Rows of kind ``measured``, ``closed_form`` and ``bound`` for the panels ``d_x`` and
    ``q`` (``value`` is d_x or q)."""
    s = SETTINGS["quick" if quick else "full"]
    points = [("d_x", d, 1) for d in s["d_x"]] + [("q", s["q_at_d_x"], q) for q in s["q"]]
    m = min(smallest_curvature(build_problem("quadratic", N, d, D_Y, SEED, PARAMS))
            for _, d, _ in points)
    burn, total = floor_epochs(s["eta_x"], s["eta_y"], N, m, burn_efolds=s["burn_efolds"],
                               average_efolds=s["average_efolds"], cap=s["max_epochs"])
    jobs = [{"family": "quadratic", "n": N, "d_x": d, "d_y": D_Y, "seed": SEED,
             "params": PARAMS, "burn": burn,
             "config": {"method": "hybrid", "sampling": "rr", "eta_x": s["eta_x"],
                        "eta_y": s["eta_y"], "mu": 1e-3, "q": q, "epochs": total,
                        "trials": s["trials"], "seed": SEED}}
            for _, d, q in points]
    res = run_jobs(floor_job, jobs, workers=workers, progress=progress, desc=NAME)
    bound = hybrid_bound()
    rows = []
    for (panel, d, q), r in zip(points, res, strict=True):
        value = d if panel == "d_x" else q
        rows.append({"kind": "measured", "panel": panel, "value": value, "d_x": d, "q": q,
                     **r})
        problem = build_problem("quadratic", N, d, D_Y, SEED, PARAMS)
        rows.append({"kind": "closed_form", "panel": panel, "value": value, "d_x": d, "q": q,
                     "floor": problem.noise_floor(method="hybrid", sampling="rr",
                                                  eta_x=s["eta_x"], eta_y=s["eta_y"], q=q)})
        cfg = SimConfig(eta_x=s["eta_x"], eta_y=s["eta_y"], mu=1e-3, q=q, epochs=1, trials=2)
        values = {**bound_values(problem, cfg), "T": 1e15, "mu": 0.0}
        rows.append({"kind": "bound", "panel": panel, "value": value, "d_x": d, "q": q,
                     "floor": bound.evaluate(check=False, **values)
                     if bound.holds(**values) else math.nan})
    df = pd.DataFrame(rows)
    for panel in ("d_x", "q"):
        m = df[(df["kind"] == "measured") & (df["panel"] == panel)]
        df.loc[(df["kind"] == "measured") & (df["panel"] == panel), "slope"] = fit_slope(
            m["value"], m["floor"])
    df["eta_x"], df["eta_y"], df["n"], df["d_y"] = s["eta_x"], s["eta_y"], N, D_Y
    df["epochs"], df["burn"] = total, burn
    return df


def plot(df: pd.DataFrame) -> Figure:
    """Two panels: the floor against d_x and against q."""
    import matplotlib.pyplot as plt

    from .style import COLORS, SYMBOLS, log_axes

    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.7), constrained_layout=True)
    for ax, panel in zip(axes, ("d_x", "q"), strict=True):
        d = df[df["panel"] == panel]
        m = d[d["kind"] == "measured"].sort_values("value")
        lo, _ = band(m["floor"], m["se"] * np.sqrt(m["trials"]), m["trials"])
        ax.errorbar(m["value"], m["floor"], yerr=m["floor"] - lo, color=COLORS["hybrid"],
                    marker="o", capsize=2,
                    label=f"measured (hybrid): slope {m['slope'].iloc[0]:.2f}")
        c = d[d["kind"] == "closed_form"].sort_values("value")
        ax.plot(c["value"], c["floor"], color="black", linestyle="--", linewidth=1,
                label="closed form")
        b = d[d["kind"] == "bound"].sort_values("value")
        if b["floor"].notna().any():
            ax.plot(b["value"], b["floor"], color="black", linestyle=":", linewidth=1.6,
                    marker="x", label=r"bound, $T\to\infty$ (where admissible)")
        log_axes(ax)
        ax.set_xticks(m["value"])
        ax.set_xticklabels([str(int(v)) for v in m["value"]])
        ax.set_ylabel(SYMBOLS["floor"])
        first = m.iloc[0]
        if panel == "d_x":
            ax.set_xlabel(r"dimension $d_x$ of the ZO block")
            ax.set_title("(a) against $d_x$ ($q$ = 1)")
        else:
            ax.set_xlabel(r"directions per step $q$")
            ax.set_title(f"(b) against $q$ ($d_x$ = {int(first['d_x'])})")
        lost = int(m["diverged"].sum())
        if lost:
            ax.text(0.02, 0.02, f"{lost} diverged trials left out", transform=ax.transAxes,
                    fontsize=7, color="#D55E00")
        ax.legend(loc="best", fontsize=7)
    first = df.iloc[0]
    fig.suptitle(f"ZO noise floor of the hybrid, quadratic ($n$={int(first['n'])}, "
                 f"$d_y$={int(first['d_y'])}, $\\eta_x$={first['eta_x']:g}, "
                 f"$\\eta_y$={first['eta_y']:g}, Gaussian directions); 95% intervals",
                 fontsize=10)
    return fig
