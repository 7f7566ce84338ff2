"""One style for every figure: palette, labels, sizes, and atomic saving.

Palette: Okabe and Ito's colour-blind-safe set ("Color Universal Design", 2008), the one
matplotlib's ``tableau-colorblind10`` and seaborn's ``colorblind`` are modelled on; each method
also has its own marker and line style, so that figures read in grey scale. Method names are
the ones the docs use (docs/simulator.md, docs/finetune.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["OKABE_ITO", "COLORS", "LABELS", "MARKERS", "LINESTYLES", "BOUND", "RC", "style",
           "save", "method_style", "log_axes", "SYMBOLS", "FINETUNE_LABELS"]

OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
             "#000000")

COLORS: dict[str, str] = {
    # simulator methods (hybridconv.sim.METHODS)
    "hybrid": "#0072B2", "zo": "#D55E00", "fo": "#009E73", "reversed": "#CC79A7",
    # fine-tuning methods (hybridconv.finetune.METHODS); hybrid shares its colour
    "fo-lora": "#56B4E9", "zo-lora": "#E69F00",
    # sampling schemes (hybridconv.sim.SAMPLINGS)
    "rr": "#0072B2", "so": "#009E73", "ig": "#CC79A7", "wr": "#D55E00",
}
LABELS: dict[str, str] = {
    "hybrid": "hybrid (ZO on x, FO on y)", "zo": "ZO only", "fo": "FO only",
    "reversed": "reversed (FO on x, ZO on y)",
    "fo-lora": "FO-LoRA", "zo-lora": "ZO-LoRA",
    "rr": "random reshuffling", "so": "shuffle once", "ig": "incremental",
    "wr": "with replacement",
}
FINETUNE_LABELS: dict[str, str] = {
    "fo": "FO (all weights)", "fo-lora": "FO-LoRA", "zo": "ZO (all weights, MeZO)",
    "zo-lora": "ZO-LoRA", "hybrid": "hybrid (ZO base, FO LoRA + head)",
}
MARKERS: dict[str, str] = {"hybrid": "o", "zo": "s", "fo": "^", "reversed": "D",
                           "fo-lora": "v", "zo-lora": "P", "rr": "o", "so": "^", "ig": "D",
                           "wr": "s"}
LINESTYLES: dict[str, str] = {"hybrid": "-", "zo": "--", "fo": "-.", "reversed": ":",
                              "fo-lora": ":", "zo-lora": (0, (5, 1, 1, 1)),
                              "rr": "-", "so": "-.", "ig": ":", "wr": "--"}
BOUND = {"color": "#000000", "linestyle": (0, (4, 2)), "linewidth": 1.4}
"""How a theoretical bound is drawn: black, dashed, beside the measurements."""

SYMBOLS: dict[str, str] = {
    "grad_sq": r"$\mathbb{E}\,\|\nabla F(z_t)\|^2$",
    "floor": r"noise floor of $\mathbb{E}\,\|\nabla F(z_t)\|^2$",
    "epoch": r"epoch $t$",
    "eta_x": r"$\eta_x$ (ZO block $x$)",
    "eta_y": r"$\eta_y$ (FO block $y$)",
}

RC: dict[str, object] = {
    "figure.dpi": 100, "savefig.dpi": 150, "savefig.bbox": "tight",
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.grid": True, "grid.alpha": 0.3,
    "grid.linewidth": 0.5, "lines.linewidth": 1.5, "lines.markersize": 4,
    "axes.spines.top": False, "axes.spines.right": False, "legend.frameon": False,
    "pdf.fonttype": 42, "svg.hashsalt": "hybridconv", "image.cmap": "viridis",
}


def method_style(name: str, *, finetune: bool = False) -> dict[str, object]:
    """Keyword arguments for ``plot`` that draw ``name`` (a method or sampling scheme)."""
    labels = FINETUNE_LABELS if finetune else LABELS
    return {"color": COLORS.get(name, "#000000"), "marker": MARKERS.get(name, "o"),
            "linestyle": LINESTYLES.get(name, "-"), "label": labels.get(name, name)}


def log_axes(ax, *, x: bool = True, y: bool = True) -> None:
    """Log scales; no labels on the x axis' minor ticks (they collide on short decades), the y
    axis keeps matplotlib's (labelled minors only when fewer than two decades show)."""
    from matplotlib.ticker import NullFormatter

    if x:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
    if y:
        ax.set_yscale("log")


@contextmanager
def style() -> Iterator[None]:
    """The package's matplotlib settings, on the non-interactive Agg canvas when no display
    is configured (figures are written to files)."""
    import matplotlib

    if not os.environ.get("DISPLAY") and matplotlib.get_backend().lower() != "agg" \
            and "inline" not in matplotlib.get_backend().lower():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.rc_context(RC):
        yield


def save(fig: Figure, stem: str | Path) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf`` atomically (temporary file, then rename); return the
    paths. PDF metadata carry no date, so the same data give the same file."""
    from .._io import atomic_path

    stem = Path(stem)
    out = []
    for ext in ("png", "pdf"):
        path = stem.with_suffix(f".{ext}")
        meta = {"CreationDate": None} if ext == "pdf" else {"Software": "hybridconv"}
        with atomic_path(path, suffix=f".{ext}") as tmp:
            fig.savefig(tmp, format=ext, metadata=meta)
        out.append(path)
    return out
