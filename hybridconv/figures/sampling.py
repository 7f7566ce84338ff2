"""Figure 3, sampling schemes and noise floors: stationary E||grad F||^2 against each rate.

The hybrid on a quadratic (``QuadraticProblem``, L = 1, m = 0.5, n = 8) is started at the
minimizer; after a burn-in of several relaxation times the floor is the average of
||grad F||^2 over epoch ends (``measure.floor_job``). Two panels:

(a) against eta_x (eta_y fixed) with sigma_x = 1, sigma_y = 0: the ZO block's fresh directions
    give a floor linear in eta_x under every scheme; with replacement adds the sampling noise;
(b) against eta_y (eta_x fixed) with sigma_x = 0, sigma_y = 1: the FO block's floor is cubic in
    eta_y at epoch ends under random reshuffling, linear with replacement (THEORY.md, "How it
    is checked", item 4; Mishchenko, Khaled, Richtarik 2020).

Each scheme's fitted log-log slope is printed in the legend; error bars are 95% Student-t
intervals over trials. Black dashed: ``QuadraticProblem.noise_floor``; in (a) the hybrid's ZO
closed form (first order in eta_x; valid for rr, so, ig alike, and with the sampling noise
added for wr); in (b) the FO block's exact floors under rr and wr (the FO method's formulas: the
hybrid's x block adds only a multiplicative perturbation when sigma_x = 0); there is none for so
and ig. Black dotted: the theorem's bound as T -> infinity (its noise terms), with mu = 0
(central differences are exact on a quadratic, so the smoothing terms vanish), where the
conditions hold at that step size: a bound may be looser than the measured exponents, never
tighter.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..parallel import run_jobs
from ..sim.runner import SimConfig
from ..sim.samplers import SAMPLINGS
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

NAME = "sampling"
TITLE = "Noise floors against eta_x and eta_y under four sampling schemes"
SEED = 303
N, D = 8, 4
M = 0.5
PANELS = {
    "eta_x": {"sigma_x": 1.0, "sigma_y": 0.0},
    "eta_y": {"sigma_x": 0.0, "sigma_y": 1.0},
}
SETTINGS = {
    "full": {"etas": (0.000625, 0.00125, 0.0025, 0.005, 0.01, 0.02), "fixed_eta_y": 0.005,
             "fixed_eta_x": 0.001, "trials": 64, "burn_efolds": 3.0, "average_efolds": 4.0,
             "max_epochs": 4000},
    "quick": {"etas": (0.0025, 0.005, 0.01, 0.02), "fixed_eta_y": 0.005,
              "fixed_eta_x": 0.005, "trials": 24, "burn_efolds": 2.0, "average_efolds": 2.0,
              "max_epochs": 300},
}


def settings(quick: bool) -> dict[str, object]:
    """What the figure is computed with (recorded in MANIFEST.json)."""
    return {**SETTINGS["quick" if quick else "full"], "seed": SEED, "n": N, "d_x": D, "d_y": D,
            "m": M, "panels": PANELS, "samplings": SAMPLINGS, "mu": 1e-3, "q": 1}


def _params(panel: str) -> dict[str, float]:
    return {"m_x": M, "m_y": M, **PANELS[panel]}


def _rates(panel: str, eta: float, s: dict) -> tuple[float, float]:
    return (eta, s["fixed_eta_y"]) if panel == "eta_x" else (s["fixed_eta_x"], eta)


def compute(*, quick: bool = False, workers: int = 1, progress: bool = False) -> pd.DataFrame:
    """Rows of kind ``measured`` (panel, sampling, eta, floor, se, slope), ``closed_form``
    and ``bound``."""
    s = SETTINGS["quick" if quick else "full"]
    jobs, keys = [], []
    for panel in PANELS:
        m = smallest_curvature(build_problem("quadratic", N, D, D, SEED, _params(panel)))
        for sampling in SAMPLINGS:
            for eta in s["etas"]:
                ex, ey = _rates(panel, eta, s)
                burn, total = floor_epochs(ex, ey, N, m, burn_efolds=s["burn_efolds"],
                                           average_efolds=s["average_efolds"],
                                           cap=s["max_epochs"])
                cfg = {"method": "hybrid", "sampling": sampling, "eta_x": ex, "eta_y": ey,
                       "mu": 1e-3, "q": 1, "epochs": total, "trials": s["trials"],
                       "seed": SEED}
                jobs.append({"family": "quadratic", "n": N, "d_x": D, "d_y": D, "seed": SEED,
                             "params": _params(panel), "config": cfg, "burn": burn})
                keys.append({"kind": "measured", "panel": panel, "sampling": sampling,
                             "eta": eta, "eta_x": ex, "eta_y": ey, "epochs": total,
                             "burn": burn})
    res = run_jobs(floor_job, jobs, workers=workers, progress=progress, desc=NAME)
    rows = [{**k, **r} for k, r in zip(keys, res, strict=True)]
    meas = pd.DataFrame(rows)
    slopes = {key: fit_slope(g["eta"], g["floor"])
              for key, g in meas.groupby(["panel", "sampling"])}
    meas["slope"] = [slopes[(p, sm)] for p, sm in zip(meas["panel"], meas["sampling"],
                                                      strict=True)]

    bound = hybrid_bound()
    extra = []
    fine = np.geomspace(min(s["etas"]), max(s["etas"]), 25)
    for panel in PANELS:
        problem = build_problem("quadratic", N, D, D, SEED, _params(panel))
        for eta in fine:
            ex, ey = _rates(panel, float(eta), s)
            for sampling, label in (("rr", "rr"), ("wr", "wr")):
                try:
                    f = problem.noise_floor(method="hybrid", sampling=sampling, eta_x=ex,
                                            eta_y=ey)
                except ValueError:  # no closed form (sigma_y > 0): FO-block formula instead
                    f = problem.noise_floor(method="fo", sampling=sampling, eta_x=ex,
                                            eta_y=ey) if panel == "eta_y" else math.nan
                extra.append({"kind": "closed_form", "panel": panel, "sampling": label,
                              "eta": float(eta), "eta_x": ex, "eta_y": ey, "floor": f})
            cfg = SimConfig(eta_x=ex, eta_y=ey, mu=1e-3, epochs=1, trials=2)
            values = {**bound_values(problem, cfg), "T": 1e15, "mu": 0.0}
            ok = bound.holds(**values)
            extra.append({"kind": "bound", "panel": panel, "sampling": "rr",
                          "eta": float(eta), "eta_x": ex, "eta_y": ey,
                          "floor": bound.evaluate(check=False, **values) if ok else math.nan})
    df = pd.concat([meas, pd.DataFrame(extra)], ignore_index=True)
    df["n"], df["d_x"], df["d_y"] = N, D, D
    return df


def plot(df: pd.DataFrame) -> Figure:
    """Two panels: floors against eta_x and against eta_y, four schemes each."""
    import matplotlib.pyplot as plt

    from .style import SYMBOLS, log_axes, method_style

    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.8), constrained_layout=True)
    for ax, panel in zip(axes, PANELS, strict=True):
        d = df[df["panel"] == panel]
        for sampling in SAMPLINGS:
            m = d[(d["kind"] == "measured") & (d["sampling"] == sampling)].sort_values("eta")
            if m.empty:
                continue
            st = method_style(sampling)
            slope = m["slope"].iloc[0]
            lo, _ = band(m["floor"], m["se"] * np.sqrt(m["trials"]), m["trials"])
            ax.errorbar(m["eta"], m["floor"], yerr=m["floor"] - lo, color=st["color"],
                        marker=st["marker"], linestyle=st["linestyle"], capsize=2,
                        label=f"{st['label']}: slope {slope:.2f}")
        cf = d[d["kind"] == "closed_form"]
        first = True
        label = ("closed form, first order (rr, so, ig / wr)" if panel == "eta_x" else
                 "closed form of the FO block (rr / wr)")
        for sampling in ("rr", "wr"):
            c = cf[cf["sampling"] == sampling].sort_values("eta")
            if c["floor"].notna().any():
                ax.plot(c["eta"], c["floor"], color="black", linestyle="--", linewidth=1,
                        label=label if first else None)
                first = False
        b = d[d["kind"] == "bound"].sort_values("eta")
        if b["floor"].notna().any():
            ax.plot(b["eta"], b["floor"], color="black", linestyle=":", linewidth=1.6,
                    label=r"bound, $T\to\infty$ (admissible part)")
        log_axes(ax)
        meas = d[d["kind"] == "measured"]
        if panel == "eta_x":
            other = rf"$\eta_y$={meas['eta_y'].iloc[0]:g}, $\sigma_x$=1, $\sigma_y$=0"
            ax.set_title(f"(a) ZO block: floor against $\\eta_x$ ({other})")
            ax.set_xlabel(SYMBOLS["eta_x"])
        else:
            other = rf"$\eta_x$={meas['eta_x'].iloc[0]:g}, $\sigma_x$=0, $\sigma_y$=1"
            ax.set_title(f"(b) FO block: floor against $\\eta_y$ ({other})")
            ax.set_xlabel(SYMBOLS["eta_y"])
        ax.set_ylabel(SYMBOLS["floor"])
        lost = int(meas["diverged"].sum())
        if lost:
            ax.text(0.02, 0.98, f"{lost} diverged trials left out", transform=ax.transAxes,
                    va="top", fontsize=7, color="#D55E00")
        ax.legend(loc="lower right", fontsize=7)
    fig.suptitle(f"Noise floors of the hybrid on a quadratic ($n$={int(df['n'].iloc[0])}, "
                 f"$d_x$=$d_y$={int(df['d_x'].iloc[0])}); 95% intervals", fontsize=10)
    return fig
