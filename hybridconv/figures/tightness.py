"""Figure 6, tightness: the largest empirical / bound ratio the validator finds, per family.

For every problem family (quadratic, nonconvex, gensmooth against the H1-gen bound, LoRA-shaped)
and every regime of ``hybridconv.validate.tightness.REGIMES``, the validator searches for the
instance with the largest ratio of the measured quantity to the bound and re-checks it with a
fresh seed and 8x the trials (``tightness_table``; the same search as docs/tightness.md, which
the full mode reproduces: same settings and seed). Bars are the re-checked ratios, whiskers
their lower and upper one-sided 99% confidence bounds (Bonferroni over epochs; together a 98%
interval); ratio 1 is the bound itself (a bar
beyond it would be a violation), and the dotted line is the aim of 0.1 (the bound within 10x of
the worst case found).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..validate.tightness import AIM, FAMILIES, REGIMES, tightness_table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

NAME = "tightness"
TITLE = "Tightness: worst empirical / bound ratio per family and regime"
SEED = 0
SETTINGS = {"full": {"budget": 60, "trials": 32, "epochs": 10, "quick": False},
            "quick": {"budget": 10, "trials": 4, "epochs": 5, "quick": True}}


def settings(quick: bool) -> dict[str, object]:
    """What the figure is computed with (recorded in MANIFEST.json)."""
    return {**SETTINGS["quick" if quick else "full"], "seed": SEED, "families": FAMILIES,
            "regimes": list(REGIMES)}


def compute(*, quick: bool = False, workers: int = 1, progress: bool = False) -> pd.DataFrame:
    """``tightness_table``'s rows (one per family and regime)."""
    s = SETTINGS["quick" if quick else "full"]
    return tightness_table(seed=SEED, workers=workers, progress=progress, **s)


def plot(df: pd.DataFrame) -> Figure:
    """Grouped horizontal bars, one group per family, one bar per regime (log axis)."""
    import matplotlib.pyplot as plt

    from .style import OKABE_ITO, log_axes

    regimes = [r for r in REGIMES if r in set(df["regime"])]
    families = [f for f in FAMILIES if f in set(df["family"])]
    colors = dict(zip(regimes, (OKABE_ITO[4], OKABE_ITO[5], OKABE_ITO[2], OKABE_ITO[0],
                                OKABE_ITO[6], OKABE_ITO[1]), strict=False))
    hatches = dict(zip(regimes, ("", "//", "..", "xx", "\\\\", "--"), strict=False))
    fig, ax = plt.subplots(figsize=(7.2, 4.6), constrained_layout=True)
    left = float(np.nanmin(df["max_ratio"])) / 5 if df["max_ratio"].notna().any() else 1e-6
    height = 0.8 / len(regimes)
    for i, family in enumerate(families):
        for j, regime in enumerate(regimes):
            row = df[(df["family"] == family) & (df["regime"] == regime)]
            y = i + (j - (len(regimes) - 1) / 2) * height
            if row.empty or not np.isfinite(row["max_ratio"].iloc[0]):
                ax.text(left * 1.5, y, "no admissible instance", fontsize=6, va="center")
                continue
            r = row.iloc[0]
            lo = max(float(r["ci_lower"]), 1e-12)
            ax.barh(y, float(r["max_ratio"]), height=height, color=colors[regime],
                    hatch=hatches[regime], edgecolor="white", linewidth=0.3,
                    label=regime if i == 0 else None)
            ax.plot([lo, float(r["ci_upper"])], [y, y], color="black", linewidth=0.8)
    ax.axvline(1.0, color="black", linewidth=1.5, label="the bound (ratio 1)")
    ax.axvline(AIM, color="black", linestyle=":", linewidth=1.2, label=f"aim: ratio {AIM:g}")
    log_axes(ax, y=False)
    ax.set_yticks(range(len(families)))
    ax.set_yticklabels([f + (" (H1-gen)" if f == "gensmooth" else "") for f in families])
    ax.invert_yaxis()
    ax.set_xlabel("largest empirical / bound ratio found (re-checked; whiskers: one-sided 99% "
                  "bounds)")
    top = float(np.nanmax(df["ci_upper"])) if df["ci_upper"].notna().any() else 1.0
    ax.set_xlim(left=left, right=max(3.0, 1.5 * top))  # a violation stays visible
    ax.grid(axis="y", visible=False)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, title="regime",
              title_fontsize=8)
    ax.set_title("How tight is the bound? Worst instances found by the validator")
    return fig
