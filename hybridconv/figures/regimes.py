"""Figure 2, step-size regimes: final stationarity over a grid of (eta_x, eta_y).

The hybrid runs on a quadratic for a fixed budget of epochs at every pair of a log-spaced grid;
the colour is the mean over trials of ||grad F||^2 averaged over the last tenth of the epochs
(diverged cells are hatched). Drawn over it: the theorem's admissible region (every condition
C1-C4 holds, from ``Bound.conditions_vectorized``), the pair that minimizes the bound under the
natural block weights (``Bound.optimal_step_sizes(weights=natural_weights(...))``, see
docs/theory.md), the best single rate for the bound on E||grad F||^2 (which sits on the
diagonal, ``Bound.optimal_step_sizes()``), the single-rate diagonal eta_x = eta_y, and the
measured best cell.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..parallel import run_jobs
from ..sim.runner import SimConfig
from ..theory.bound import hybrid_bound, natural_weights
from .measure import bound_values, build_problem

if TYPE_CHECKING:
    from matplotlib.figure import Figure

NAME = "regimes"
TITLE = "Step-size regimes of the hybrid: measured stationarity and the theorem's region"
SEED = 202
FAMILY = "quadratic"
PARAMS = {"m_x": 0.5, "m_y": 0.5, "sigma_x": 2.0, "sigma_y": 2.0}
SETTINGS = {
    "full": {"n": 8, "d_x": 16, "d_y": 4, "epochs": 300, "trials": 32, "grid": 13},
    "quick": {"n": 8, "d_x": 16, "d_y": 4, "epochs": 60, "trials": 8, "grid": 6},
}
ETA_X = (1e-4, 3e-2)
ETA_Y = (1e-3, 0.5)


def settings(quick: bool) -> dict[str, object]:
    """What the figure is computed with (recorded in MANIFEST.json)."""
    return {**SETTINGS["quick" if quick else "full"], "seed": SEED, "family": FAMILY,
            "params": PARAMS, "eta_x_range": ETA_X, "eta_y_range": ETA_Y, "mu": 1e-3,
            "q": 1, "sampling": "rr", "method": "hybrid"}


def cell_job(n: int, d_x: int, d_y: int, seed: int, params: dict, config: dict) -> dict:
    """Final stationarity of one cell: mean over the last tenth of the epochs, per trial."""
    from ..sim.runner import simulate

    problem = build_problem(FAMILY, n, d_x, d_y, seed, params)
    cfg = SimConfig(**config)
    df = simulate(problem, cfg)
    last = df[df["epoch"] >= cfg.epochs - max(1, cfg.epochs // 10) + 1]
    per_trial = last.groupby("trial")["grad_sq"].mean()
    diverged = int(df.loc[df["diverged"], "trial"].nunique())
    v = per_trial.dropna().to_numpy()
    return {"mean": float(v.mean()) if len(v) and diverged == 0 else np.nan,
            "sd": float(v.std(ddof=1)) if len(v) > 1 else np.nan, "count": int(len(v)),
            "diverged": diverged}


def compute(*, quick: bool = False, workers: int = 1, progress: bool = False) -> pd.DataFrame:
    """Rows of kind ``cell`` (the grid), ``condition`` (a finer grid: admissible 1/0),
    ``bound_optimal``, ``single_rate_optimal`` and ``measured_best`` (one point each)."""
    s = SETTINGS["quick" if quick else "full"]
    gx = np.geomspace(*ETA_X, s["grid"])
    gy = np.geomspace(*ETA_Y, s["grid"])
    jobs = [{"n": s["n"], "d_x": s["d_x"], "d_y": s["d_y"], "seed": SEED, "params": PARAMS,
             "config": {"method": "hybrid", "sampling": "rr", "eta_x": float(ex),
                        "eta_y": float(ey), "mu": 1e-3, "q": 1, "epochs": s["epochs"],
                        "trials": s["trials"], "seed": SEED}}
            for ex in gx for ey in gy]
    res = run_jobs(cell_job, jobs, workers=workers, progress=progress, desc=NAME)
    rows = [{"kind": "cell", "eta_x": j["config"]["eta_x"], "eta_y": j["config"]["eta_y"], **r}
            for j, r in zip(jobs, res, strict=True)]

    bound = hybrid_bound()
    problem = build_problem(FAMILY, s["n"], s["d_x"], s["d_y"], SEED, PARAMS)
    values = bound_values(problem, SimConfig(epochs=s["epochs"], trials=2, mu=1e-3))
    fixed = {k: v for k, v in values.items() if k not in ("eta_x", "eta_y")}
    fx = np.geomspace(ETA_X[0] / 10, ETA_X[1], 90)
    fy = np.geomspace(ETA_Y[0] / 10, ETA_Y[1], 90)
    EX, EY = np.meshgrid(fx, fy, indexing="ij")
    ok = np.asarray(bound.conditions_vectorized()(**fixed, eta_x=EX, eta_y=EY))
    val = np.asarray(bound.vectorized()(**fixed, eta_x=EX, eta_y=EY))
    rows += [{"kind": "condition", "eta_x": float(a), "eta_y": float(b), "mean": float(v),
              "admissible": bool(o)}
             for a, b, v, o in zip(EX.ravel(), EY.ravel(), val.ravel(), ok.ravel(),
                                   strict=True)]
    w = natural_weights(bound, **fixed)
    opt = bound.optimal_step_sizes(weights=w, **fixed)
    rows.append({"kind": "bound_optimal", "eta_x": opt.eta_x, "eta_y": opt.eta_y,
                 "mean": opt.bound_two_rates, "ratio": opt.ratio, "gain": opt.gain})
    single = bound.optimal_step_sizes(**fixed)
    rows.append({"kind": "single_rate_optimal", "eta_x": single.eta, "eta_y": single.eta,
                 "mean": single.bound_single_rate})
    cells = pd.DataFrame([r for r in rows if r["kind"] == "cell"])
    best = cells.loc[cells["mean"].idxmin()]
    rows.append({"kind": "measured_best", "eta_x": float(best["eta_x"]),
                 "eta_y": float(best["eta_y"]), "mean": float(best["mean"]),
                 "ratio": float(best["eta_y"] / best["eta_x"])})
    df = pd.DataFrame(rows)
    df["n"], df["d_x"], df["d_y"], df["epochs"] = s["n"], s["d_x"], s["d_y"], s["epochs"]
    return df


def plot(df: pd.DataFrame) -> Figure:
    """The heat map with the region, the diagonal and the three marked pairs."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    from .style import SYMBOLS

    cells = df[df["kind"] == "cell"]
    gx, gy = np.sort(cells["eta_x"].unique()), np.sort(cells["eta_y"].unique())
    Z = cells.pivot(index="eta_y", columns="eta_x", values="mean").reindex(
        index=gy, columns=gx).to_numpy()

    def edges(g: np.ndarray) -> np.ndarray:
        lg = np.log10(g)
        step = (lg[-1] - lg[0]) / max(len(g) - 1, 1)
        return 10 ** np.concatenate([lg - step / 2, [lg[-1] + step / 2]])

    ex, ey = edges(gx), edges(gy)
    fig, ax = plt.subplots(figsize=(5.6, 4.4), constrained_layout=True)
    finite = Z[np.isfinite(Z)]
    mesh = ax.pcolormesh(ex, ey, np.ma.masked_invalid(Z), cmap="viridis",
                         norm=LogNorm(vmin=finite.min(), vmax=finite.max()))
    bad = ~np.isfinite(Z)
    if bad.any():
        ax.pcolor(ex, ey, np.ma.masked_where(~bad, np.ones_like(Z)), hatch="xx",
                  facecolor="#DDDDDD", edgecolor="#888888", linewidth=0)
    fig.colorbar(mesh, ax=ax, label=r"final $\mathbb{E}\,\|\nabla F\|^2$ (last 10% of epochs)")
    cond = df[df["kind"] == "condition"]
    fx, fy = np.sort(cond["eta_x"].unique()), np.sort(cond["eta_y"].unique())
    A = cond.pivot(index="eta_y", columns="eta_x", values="admissible").reindex(
        index=fy, columns=fx).to_numpy().astype(float)
    ax.contour(fx, fy, A, levels=[0.5], colors="white", linewidths=1.6)
    ax.contourf(fx, fy, A, levels=[0.5, 1.5], colors="none", hatches=["//"])
    lo, hi = min(ex[0], ey[0]), max(ex[-1], ey[-1])
    ax.plot([lo, hi], [lo, hi], color="white", linestyle=":", linewidth=1.2,
            label=r"single rate $\eta_x = \eta_y$")
    marks = (("bound_optimal", "*", "#E69F00", "bound-optimal pair (natural weights)"),
             ("single_rate_optimal", "D", "#CC79A7", "bound-optimal single rate"),
             ("measured_best", "o", "#D55E00", "measured best cell"))
    for kind, marker, color, label in marks:
        p = df[df["kind"] == kind]
        if not p.empty:
            ax.plot(p["eta_x"], p["eta_y"], marker=marker, color=color, markersize=10,
                    markeredgecolor="black", linestyle="none", label=label)
    ax.plot([], [], color="white", linewidth=1.6, label="admissible region (C1-C4), hatched")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(fx[0], ex[-1])
    ax.set_ylim(fy[0], ey[-1])
    ax.set_xlabel(SYMBOLS["eta_x"])
    ax.set_ylabel(SYMBOLS["eta_y"])
    ax.set_facecolor("#BBBBBB")
    ax.grid(False)
    leg = ax.legend(loc="upper left", fontsize=7, frameon=True, facecolor="#444444",
                    labelcolor="white")
    leg.get_frame().set_alpha(0.8)
    first = cells.iloc[0]
    ax.set_title(f"hybrid on a quadratic ($n$={int(first['n'])}, $d_x$={int(first['d_x'])}, "
                 f"$d_y$={int(first['d_y'])}), {int(first['epochs'])} epochs")
    return fig
