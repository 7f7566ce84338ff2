"""Figure 1, rate curves: E||grad F(z_t)||^2 against epochs, hybrid beside ZO-only and FO-only.

On the quadratic and the nonconvex family (certified constants, ``hybridconv.problems``), the
three methods run with the same step sizes. Top row: the largest the theorem admits for the
instance (``Bound.admissible_steps``: C1-C3's caps, halved until C4 holds), with the dashed line
the theorem's bound B(T = t) on min_{s<t} E||grad F(z_s)||^2 for the hybrid (THEORY.md, "What
the theorem must say") evaluated with the instance's constants. Bottom row: the same steps
times ``OUTSIDE`` (20), outside the theorem's conditions (no bound is drawn there), where the
methods' noise floors separate within the run: the admissible steps are so conservative that
the three methods are hardly distinguishable above. Curves are the mean over trials with a 95%
Student-t band; the bound covers the hybrid only, ZO-only and FO-only are for comparison.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..parallel import run_jobs
from ..sim.runner import SimConfig
from ..theory.bound import hybrid_bound
from .measure import band, bound_values, build_problem, curve_job, log_epochs

if TYPE_CHECKING:
    from matplotlib.figure import Figure

NAME = "rates"
TITLE = "Rate curves: hybrid, ZO-only and FO-only against the bound"
FAMILIES = ("quadratic", "nonconvex")
METHODS = ("hybrid", "zo", "fo")
SEED = 101
PARAMS: dict[str, dict[str, float]] = {
    "quadratic": {"m_x": 0.5, "m_y": 0.5, "sigma_x": 2.0, "sigma_y": 2.0},
    "nonconvex": {"m_x": 0.5, "m_y": 0.5, "lam": 0.6, "sigma_x": 2.0, "sigma_y": 2.0},
}
OUTSIDE = 20.0
"""Factor on the admissible step sizes for the bottom row (outside the conditions)."""
SETTINGS = {
    "full": {"n": 8, "d_x": 16, "d_y": 4, "epochs": 5000, "trials": 64},
    "quick": {"n": 8, "d_x": 16, "d_y": 4, "epochs": 500, "trials": 16},
}


def settings(quick: bool) -> dict[str, object]:
    """What the figure is computed with (recorded in MANIFEST.json)."""
    return {**SETTINGS["quick" if quick else "full"], "seed": SEED, "params": PARAMS,
            "families": FAMILIES, "methods": METHODS, "mu": 1e-3, "q": 1,
            "scales": (1.0, OUTSIDE)}


def compute(*, quick: bool = False, workers: int = 1, progress: bool = False) -> pd.DataFrame:
    """One row per (family, scale, method, recorded epoch): mean, sd and count of ||grad F||^2
    over trials; ``method == "bound"`` rows hold B(T = epoch) (scale 1 only)."""
    s = SETTINGS["quick" if quick else "full"]
    bound = hybrid_bound()
    jobs, bound_rows = [], []
    for family in FAMILIES:
        problem = build_problem(family, s["n"], s["d_x"], s["d_y"], SEED, PARAMS[family])
        probe = SimConfig(epochs=s["epochs"], trials=s["trials"], mu=1e-3)
        values = bound_values(problem, probe)
        eta_x, eta_y = bound.admissible_steps(**{k: v for k, v in values.items()
                                                 if k not in ("eta_x", "eta_y")})
        for scale in (1.0, OUTSIDE):
            for method in METHODS:
                cfg = {"method": method, "sampling": "rr", "eta_x": eta_x * scale,
                       "eta_y": eta_y * scale, "mu": 1e-3, "q": 1, "epochs": s["epochs"],
                       "trials": s["trials"], "seed": SEED}
                jobs.append({"family": family, "n": s["n"], "d_x": s["d_x"],
                             "d_y": s["d_y"], "seed": SEED, "params": PARAMS[family],
                             "config": cfg})
        epochs = log_epochs(s["epochs"])[1:]
        f = bound.vectorized()
        vals = {**values, "eta_x": eta_x, "eta_y": eta_y, "T": epochs.astype(float)}
        for t, b in zip(epochs, np.asarray(f(**vals)), strict=True):
            bound_rows.append({"epoch": int(t), "mean": float(b), "sd": np.nan, "count": 0,
                               "diverged": 0, "family": family, "method": "bound",
                               "scale": 1.0, "eta_x": eta_x, "eta_y": eta_y})
    parts = run_jobs(curve_job, jobs, workers=workers, progress=progress, desc=NAME)
    for part, job in zip(parts, jobs, strict=True):
        part["eta_x"], part["eta_y"] = job["config"]["eta_x"], job["config"]["eta_y"]
    df = pd.concat([*parts, pd.DataFrame(bound_rows)], ignore_index=True)
    admissible = df[df["method"] == "bound"].groupby("family")["eta_x"].first()
    df["scale"] = (df["eta_x"] / df["family"].map(admissible)).round(6)
    df["n"], df["d_x"], df["d_y"] = s["n"], s["d_x"], s["d_y"]
    return df[["family", "scale", "method", "epoch", "mean", "sd", "count", "diverged",
               "min_before", "eta_x", "eta_y", "n", "d_x", "d_y"]]


def plot(df: pd.DataFrame) -> Figure:
    """A grid of panels: families across, step-size scale down; log-log."""
    import matplotlib.pyplot as plt

    from .style import BOUND, SYMBOLS, method_style

    families = [f for f in FAMILIES if f in set(df["family"])]
    scales = sorted(set(df["scale"]))
    fig, axes = plt.subplots(len(scales), len(families),
                             figsize=(4.2 * len(families), 3.3 * len(scales)),
                             squeeze=False, constrained_layout=True)
    for (i, scale), (j, family) in ((a, b) for a in enumerate(scales)
                                    for b in enumerate(families)):
        ax = axes[i][j]
        d = df[(df["family"] == family) & (df["scale"] == scale)]
        for method in METHODS:
            m = d[(d["method"] == method) & (d["epoch"] >= 1)].sort_values("epoch")
            if m.empty:
                continue
            st = method_style(method)
            lo, hi = band(m["mean"], m["sd"], m["count"])
            ax.plot(m["epoch"], m["mean"], color=st["color"], linestyle=st["linestyle"],
                    label=st["label"])
            ax.fill_between(m["epoch"], np.maximum(lo, m["mean"] * 1e-3), hi,
                            color=st["color"], alpha=0.2, linewidth=0)
        b = d[d["method"] == "bound"].sort_values("epoch")
        if not b.empty:  # the bound is on min_{s<t}: draw that measure of the hybrid too
            h = d[(d["method"] == "hybrid") & (d["epoch"] >= 1)].sort_values("epoch")
            ax.plot(h["epoch"], h["min_before"], color=method_style("hybrid")["color"],
                    linestyle=":", linewidth=1.0, label=r"hybrid, min$_{s<t}$ of the mean")
            ax.plot(b["epoch"], b["mean"], label=r"bound on min$_{s<t}$ (hybrid)", **BOUND)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ex, ey = d["eta_x"].iloc[0], d["eta_y"].iloc[0]
        where = ("largest admissible" if scale == 1 else
                 f"{scale:g} x admissible: no bound")
        ax.set_title(f"{family}: $n$={int(d['n'].iloc[0])}, $d_x$={int(d['d_x'].iloc[0])}, "
                     f"$d_y$={int(d['d_y'].iloc[0])}\n"
                     rf"$\eta_x$={ex:.2g}, $\eta_y$={ey:.2g} ({where})")
        ax.set_xlabel(SYMBOLS["epoch"])
        ax.set_ylabel(SYMBOLS["grad_sq"])
        ax.legend(loc="lower left")
    fig.suptitle("Rate curves (mean and 95% band over trials)", fontsize=10)
    return fig
