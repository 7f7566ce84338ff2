"""Figure 2, step-size regimes: the theorem's predictions against measured step sizes.

The hybrid runs on a quadratic for a fixed budget of epochs at every pair of a log-spaced grid
around the theorem's caps (``hybridconv.validate.predict.compare_steps``, from 1/100 to 30
times each cap); the colour is the mean over trials of the average over epochs of
w_x ||grad_x F||^2 + w_y ||grad_y F||^2 under the natural block weights (the quantity whose
bound the predicted pair minimizes); unstable cells (a diverged trial, or the last epoch worse
than the start) are hatched. Drawn over it: the theorem's admissible region (every condition
holds, from ``Bound.conditions_vectorized``), the measured stability boundary (per eta_x, the
largest eta_y below which every cell is stable), the predicted pair (the bound's optimum under
the natural weights, ``Bound.optimal_step_sizes(weights=natural_weights(...))``, see
docs/theory.md), the best single rate for the bound on E||grad F||^2 (on the diagonal), the
single-rate diagonal eta_x = eta_y, and the measured best cell. The ``comparison`` row holds
the predicted and measured ratio eta_y / eta_x, the caps and the measured stability boundary
along each axis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..sim.runner import SimConfig
from ..theory.bound import hybrid_bound
from ..validate.predict import compare_steps, stability_line
from .measure import bound_values, build_problem

if TYPE_CHECKING:
    from matplotlib.figure import Figure

NAME = "regimes"
TITLE = "Step-size regimes of the hybrid: predicted and measured best steps, region and boundary"
SEED = 202
FAMILY = "quadratic"
PARAMS = {"m_x": 0.5, "m_y": 0.5, "sigma_x": 2.0, "sigma_y": 2.0}
SETTINGS = {
    "full": {"n": 8, "d_x": 16, "d_y": 4, "epochs": 300, "trials": 32, "grid": 13},
    "quick": {"n": 8, "d_x": 16, "d_y": 4, "epochs": 60, "trials": 8, "grid": 7},
}
SPAN = (1e-2, 30.0)
"""The grid along each axis, as multiples of the cap."""


def settings(quick: bool) -> dict[str, object]:
    """What the figure is computed with (recorded in MANIFEST.json)."""
    return {**SETTINGS["quick" if quick else "full"], "seed": SEED, "family": FAMILY,
            "params": PARAMS, "span_of_the_caps": SPAN, "mu": 1e-3, "q": 1,
            "sampling": "rr", "method": "hybrid"}


def compute(*, quick: bool = False, workers: int = 1, progress: bool = False) -> pd.DataFrame:
    """Rows of kind ``cell`` (the grid: value, sd, stable, diverged), ``condition`` (a finer
    grid: admissible 1/0), ``stability`` (the boundary per eta_x), ``bound_optimal``,
    ``single_rate_optimal``, ``measured_best``, ``cap`` (one point each) and ``comparison``
    (one row: ``StepComparison.as_dict()``)."""
    s = SETTINGS["quick" if quick else "full"]
    bound = hybrid_bound()
    problem = build_problem(FAMILY, s["n"], s["d_x"], s["d_y"], SEED, PARAMS)
    values = bound_values(problem, SimConfig(epochs=s["epochs"], trials=2, mu=1e-3, q=1))
    fixed = {k: v for k, v in values.items() if k not in ("eta_x", "eta_y")}
    cmp = compare_steps(problem, epochs=s["epochs"], trials=s["trials"], grid=s["grid"],
                        mu=1e-3, q=1, seed=SEED, bound=bound, span=SPAN, workers=workers,
                        progress=progress, values=fixed)
    rows = [{"kind": "cell", "eta_x": r.eta_x, "eta_y": r.eta_y, "mean": r.value, "sd": r.sd,
             "stable": bool(r.stable), "diverged": int(r.diverged)}
            for r in cmp.cells.itertuples()]
    fx = np.geomspace(cmp.cap_x * SPAN[0] / 10, cmp.cap_x * SPAN[1], 90)
    fy = np.geomspace(cmp.cap_y * SPAN[0] / 10, cmp.cap_y * SPAN[1], 90)
    EX, EY = np.meshgrid(fx, fy, indexing="ij")
    ok = np.asarray(bound.conditions_vectorized()(**fixed, eta_x=EX, eta_y=EY))
    rows += [{"kind": "condition", "eta_x": float(a), "eta_y": float(b),
              "admissible": bool(o)}
             for a, b, o in zip(EX.ravel(), EY.ravel(), ok.ravel(), strict=True)]
    rows += [{"kind": "stability", "eta_x": ex, "eta_y": ey}
             for ex, ey in stability_line(cmp.cells)]
    rows.append({"kind": "bound_optimal", "eta_x": cmp.predicted_eta_x,
                 "eta_y": cmp.predicted_eta_y, "ratio": cmp.predicted_ratio, "gain": cmp.gain})
    single = bound.optimal_step_sizes(**fixed)
    rows.append({"kind": "single_rate_optimal", "eta_x": single.eta, "eta_y": single.eta,
                 "mean": single.bound_single_rate})
    rows.append({"kind": "measured_best", "eta_x": cmp.measured_eta_x,
                 "eta_y": cmp.measured_eta_y, "mean": cmp.measured_value,
                 "ratio": cmp.measured_ratio})
    rows.append({"kind": "cap", "eta_x": cmp.cap_x, "eta_y": cmp.cap_y})
    summary = {k: v for k, v in cmp.as_dict().items() if k != "weights"}
    rows.append({"kind": "comparison", **summary, "w_x": cmp.weights[0],
                 "w_y": cmp.weights[1]})
    df = pd.DataFrame(rows)
    df["n"], df["d_x"], df["d_y"], df["epochs"] = s["n"], s["d_x"], s["d_y"], s["epochs"]
    return df


def plot(df: pd.DataFrame) -> Figure:
    """The heat map with the region, the stability boundary, the diagonal and the marked
    pairs."""
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
    stable = cells.pivot(index="eta_y", columns="eta_x", values="stable").reindex(
        index=gy, columns=gx).to_numpy(dtype=float)
    bad = ~np.isfinite(Z) | ~(stable > 0.5)
    Z = np.where(bad, np.nan, Z)
    finite = Z[np.isfinite(Z)]
    mesh = ax.pcolormesh(ex, ey, np.ma.masked_invalid(Z), cmap="viridis",
                         norm=LogNorm(vmin=finite.min(), vmax=finite.max()))
    if bad.any():
        ax.pcolor(ex, ey, np.ma.masked_where(~bad, np.ones_like(Z)), hatch="xx",
                  facecolor="#DDDDDD", edgecolor="#888888", linewidth=0)
    fig.colorbar(mesh, ax=ax, label=r"$\frac{1}{T}\sum_t \mathbb{E}[w_x\|\nabla_x F\|^2"
                 r" + w_y\|\nabla_y F\|^2]$")
    cond = df[df["kind"] == "condition"]
    fx, fy = np.sort(cond["eta_x"].unique()), np.sort(cond["eta_y"].unique())
    A = cond.pivot(index="eta_y", columns="eta_x", values="admissible").reindex(
        index=fy, columns=fx).to_numpy().astype(float)
    ax.contour(fx, fy, A, levels=[0.5], colors="white", linewidths=1.6)
    ax.contourf(fx, fy, A, levels=[0.5, 1.5], colors="none", hatches=["//"])
    line = df[df["kind"] == "stability"].sort_values("eta_x")
    if not line.empty:
        top = ey[-1] * 2
        ys = np.where(np.isfinite(line["eta_y"]), line["eta_y"], top)
        ax.step(line["eta_x"], np.maximum(ys, ey[0]), where="mid", color="#D55E00",
                linestyle="--", linewidth=1.4, label="measured stability boundary")
    lo, hi = min(ex[0], ey[0]), max(ex[-1], ey[-1])
    ax.plot([lo, hi], [lo, hi], color="white", linestyle=":", linewidth=1.2,
            label=r"single rate $\eta_x = \eta_y$")
    marks = (("bound_optimal", "*", "#E69F00", "predicted: bound-optimal pair (natural weights)"),
             ("single_rate_optimal", "D", "#CC79A7", "bound-optimal single rate"),
             ("measured_best", "o", "#D55E00", "measured best cell"))
    for kind, marker, color, label in marks:
        p = df[df["kind"] == kind]
        if not p.empty:
            ax.plot(p["eta_x"], p["eta_y"], marker=marker, color=color, markersize=10,
                    markeredgecolor="black", linestyle="none", label=label)
    ax.plot([], [], color="white", linewidth=1.6, label="admissible region, hatched")
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
