"""Figure 4, epoch complexity: epochs needed to reach min_t E||grad F(z_t)||^2 <= eps^2.

Measured: the hybrid with one shared rate eta (eta_x = eta_y) runs on a quadratic for a grid of
rates; for every eps the measured complexity is the fewest epochs over the grid after which the
mean over trials of ||grad F||^2 is <= eps^2 (a tuned single rate per eps, as the theorem's
complexity tunes eta(eps)). Two regimes: sigma_x > 0 (fresh ZO directions keep a noise floor
linear in eta) and sigma_x = 0 (only the reshuffling drift is left).

Beside it: the epochs the theorem's bound needs to certify eps (``measure.bound_epochs``: the
bound minimized over admissible single rates, exactly, not to leading order), with the
instance's certified constants, mu = 0 (central differences are exact on a quadratic, so the
smoothing terms vanish) and ratio eta_y / eta_x = 1; the legend gives the leading-order exponent
of ``Bound.complexity`` (THEORY.md, "What the theorem must say": Theta(eps^-4) when
sigma_x > 0, Theta(eps^-3) when sigma_x = 0) and the eps below which it applies (above it the
step-size caps bind and T grows like eps^-2). The theorem is a worst case over nonconvex
problems; on a strongly convex quadratic the measured exponents are smaller (about -2 and below,
up to logarithms), which is what an upper bound allows. Fitted slopes (over the plotted eps)
are in the legend, for the measurement and for the drawn bound; targets a run never reaches
within its epochs are counted there, not plotted.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import sympy as sp

from ..parallel import run_jobs
from ..sim.runner import SimConfig, simulate
from ..theory.bound import hybrid_bound
from .measure import bound_epochs, bound_values, build_problem, fit_slope

if TYPE_CHECKING:
    from matplotlib.figure import Figure

NAME = "complexity"
TITLE = "Epoch complexity against eps: measured and the theorem's rate"
SEED = 404
N, D_X, D_Y = 8, 8, 4
REGIMES = {"sigma_x > 0": {"sigma_x": 1.0, "sigma_y": 1.0},
           "sigma_x = 0": {"sigma_x": 0.0, "sigma_y": 1.0}}
BASE = {"m_x": 0.5, "m_y": 0.5}
SETTINGS = {
    "full": {"etas": tuple(np.geomspace(3e-4, 0.2, 14)), "epochs": 4000, "trials": 32,
             "eps": tuple(np.geomspace(0.03, 1.0, 12))},
    "quick": {"etas": tuple(np.geomspace(3e-3, 0.2, 6)), "epochs": 400, "trials": 8,
              "eps": tuple(np.geomspace(0.1, 1.0, 6))},
}


def settings(quick: bool) -> dict[str, object]:
    """What the figure is computed with (recorded in MANIFEST.json)."""
    s = SETTINGS["quick" if quick else "full"]
    return {"etas": [float(e) for e in s["etas"]], "epochs": s["epochs"],
            "trials": s["trials"], "eps": [float(e) for e in s["eps"]], "seed": SEED, "n": N,
            "d_x": D_X, "d_y": D_Y, "regimes": REGIMES, "params": BASE, "mu": 1e-3,
            "sampling": "rr", "method": "hybrid"}


def curve_mean_job(params: dict, config: dict) -> list[float]:
    """Mean over trials of ||grad F||^2 at every epoch (NaN after a divergence)."""
    problem = build_problem("quadratic", N, D_X, D_Y, SEED, params)
    df = simulate(problem, SimConfig(**config))
    g = df.groupby("epoch")["grad_sq"]
    mean = g.mean().where(g.count() == config["trials"])
    return [float(v) for v in mean.to_numpy()]


def hitting_epochs(curve: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """The theorem's T for each eps: the smallest T with min_{t<T} curve[t] <= eps^2, i.e. the
    first epoch t with curve[t] <= eps^2, plus one (NaN if never within the run)."""
    below = curve[None, :] <= (eps[:, None] ** 2)
    hit = below.any(axis=1)
    first = np.argmax(below, axis=1).astype(float) + 1
    return np.where(hit, first, np.nan)


def compute(*, quick: bool = False, workers: int = 1, progress: bool = False) -> pd.DataFrame:
    """Rows of kind ``measured`` (regime, eps, epochs, best eta), ``bound`` (the theorem's
    T(eps)) and ``curve`` (the eta grid's mean curves at log-spaced epochs are not kept: only
    the hitting epochs per eta, kind ``per_eta``)."""
    s = SETTINGS["quick" if quick else "full"]
    eps = np.asarray(s["eps"], dtype=float)
    jobs, keys = [], []
    for regime, sig in REGIMES.items():
        for eta in s["etas"]:
            jobs.append({"params": {**BASE, **sig},
                         "config": {"method": "hybrid", "sampling": "rr", "eta_x": float(eta),
                                    "eta_y": float(eta), "mu": 1e-3, "q": 1,
                                    "epochs": s["epochs"], "trials": s["trials"],
                                    "seed": SEED}})
            keys.append((regime, float(eta)))
    curves = run_jobs(curve_mean_job, jobs, workers=workers, progress=progress, desc=NAME)
    rows = []
    for (regime, eta), curve in zip(keys, curves, strict=True):
        for e, t in zip(eps, hitting_epochs(np.asarray(curve), eps), strict=True):
            rows.append({"kind": "per_eta", "regime": regime, "eta": eta, "eps": float(e),
                         "epochs": t})
    per = pd.DataFrame(rows)
    for (regime, e), g in per.groupby(["regime", "eps"], sort=False):
        ok = g.dropna(subset=["epochs"])
        best = ok.loc[ok["epochs"].idxmin()] if not ok.empty else None
        rows.append({"kind": "measured", "regime": regime, "eps": e,
                     "epochs": float(best["epochs"]) if best is not None else math.nan,
                     "eta": float(best["eta"]) if best is not None else math.nan})
    bound = hybrid_bound()
    for regime, sig in REGIMES.items():
        problem = build_problem("quadratic", N, D_X, D_Y, SEED, {**BASE, **sig})
        values = bound_values(problem, SimConfig(epochs=1, trials=2))
        values = {k: v for k, v in values.items() if k not in ("eta_x", "eta_y", "T")}
        values["mu"] = 0.0
        c = bound.complexity(ratio=1.0, **values)
        eps_max = float(c.eps_max) if c.eps_max != sp.oo else math.inf
        fine = np.geomspace(eps.min(), eps.max(), 30)
        for e, t in zip(fine, bound_epochs(bound, values, fine), strict=True):
            rows.append({"kind": "bound", "regime": regime, "eps": float(e), "epochs": t,
                         "exponent": float(c.eps_exponent), "eps_max": eps_max})
    df = pd.DataFrame(rows)
    for regime in REGIMES:
        for kind in ("measured", "bound"):
            sel = (df["kind"] == kind) & (df["regime"] == regime)
            m = df[sel]
            df.loc[sel, "slope"] = fit_slope(m["eps"], m["epochs"])
        sel = (df["kind"] == "measured") & (df["regime"] == regime)
        df.loc[sel, "unreached"] = int(df.loc[sel, "epochs"].isna().sum())
    df["max_epochs"] = s["epochs"]
    df["n"], df["d_x"], df["d_y"] = N, D_X, D_Y
    return df


def plot(df: pd.DataFrame) -> Figure:
    """Epochs against eps, measured and the bound's, for both regimes (log-log)."""
    import matplotlib.pyplot as plt

    from .style import OKABE_ITO, log_axes

    colors = dict(zip(REGIMES, (OKABE_ITO[4], OKABE_ITO[5]), strict=True))
    fig, ax = plt.subplots(figsize=(7.4, 4.0), constrained_layout=True)
    for regime in REGIMES:
        m = df[(df["kind"] == "measured") & (df["regime"] == regime)].sort_values("eps")
        b = df[(df["kind"] == "bound") & (df["regime"] == regime)].sort_values("eps")
        label = regime.replace("sigma_x", r"$\sigma_x$")
        if not m.empty:
            miss = int(m["unreached"].iloc[0])
            note = (f"; {miss} smaller eps not reached in {int(df['max_epochs'].iloc[0])} "
                    "epochs" if miss else "")
            ax.plot(m["eps"], m["epochs"], marker="o", color=colors[regime],
                    label=f"measured, {label}: slope {m['slope'].iloc[0]:.2f}{note}")
        if not b.empty:
            lead = (rf"$\Theta(\varepsilon^{{{b['exponent'].iloc[0]:g}}})$ for "
                    rf"$\varepsilon \leq {b['eps_max'].iloc[0]:.2g}$")
            ax.plot(b["eps"], b["epochs"], color=colors[regime], linestyle="--",
                    label=f"bound, {label}: slope {b['slope'].iloc[0]:.2f} here; {lead}")
    log_axes(ax)
    ax.set_xlabel(r"accuracy $\varepsilon$ (target: min$_t\,\mathbb{E}\,\|\nabla F\|^2 "
                  r"\leq \varepsilon^2$)")
    ax.set_ylabel(r"epochs $T(\varepsilon)$")
    ax.set_title(f"hybrid, one tuned rate per $\\varepsilon$, quadratic ($n$="
                 f"{int(df['n'].iloc[0])}, $d_x$={int(df['d_x'].iloc[0])}, "
                 f"$d_y$={int(df['d_y'].iloc[0])})")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7)
    return fig
