"""Figure 7, fine-tuning: test accuracy against training steps and against forward passes,
from the experiment runner's tidy rows, with the linear probe and zero-shot lines.

Full mode reads the committed CSVs of the sweeps in :data:`SPECS` (``hybridconv experiment
experiments/minilm_main.toml`` and ``experiments/smollm2_main.toml`` produce them; nothing is
recomputed here: the runs take hours). Quick mode runs a small sweep through the same runner
in a temporary folder (MiniLM on mr, 32 examples per class, FO-LoRA, hybrid and the probe;
about a minute on 2 quiet cores).

Curves: per method (label), the mean over seeds of the test accuracy at each evaluated step,
for the learning rate chosen on the dev split (``hybridconv.experiments.report``); the band is
min-max over seeds. Horizontal lines: the probe's mean accuracy (dashed) and the zero-shot
accuracy (dotted, prompt-based LMs), and the test set's majority class (grey).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

NAME = "finetuning"
TITLE = "Fine-tuning: test accuracy against steps and forward passes, with probe and zero-shot"
SPECS = ("experiments/minilm_main.toml", "experiments/smollm2_main.toml")
QUICK = {"experiment": {"name": "figure-quick", "results": "quick.csv", "runs": "runs"},
         "base": {"k_shot": 32, "test_size": 200, "epochs": 3, "batch_size": 16,
                  "max_length": 48},
         "grid": {"model": ["minilm"], "task": ["mr"], "method": ["probe", "fo-peft", "hybrid"],
                  "peft": ["lora"], "seed": [0]},
         "override": [{"method": "fo-peft", "lr_y": 0.1},
                      {"method": "hybrid", "lr_y": 0.1, "lr_x": 1e-5}]}
CURVES = ("fo", "zo", "fo-peft-lora", "zo-peft-lora", "hybrid-lora", "hybrid-lora-gs",
          "fo-peft-prompt", "hybrid-prompt", "fo-peft-prefix", "hybrid-prefix")
COLORS = {"fo": "#009E73", "zo": "#D55E00", "fo-peft": "#56B4E9", "zo-peft": "#E69F00",
          "hybrid": "#0072B2"}
STYLES = {"lora": "-", "prompt": "--", "prefix": ":", None: "-."}


def settings(quick: bool) -> dict[str, object]:
    """What the figure is computed with (recorded in MANIFEST.json)."""
    return {"mode": "quick sweep" if quick else "runner CSVs",
            **({"spec": QUICK} if quick else {"specs": list(SPECS)})}


def _root() -> Path:
    return Path(__file__).resolve().parents[2]


def quick_sweep(spec: dict, workers: int) -> dict[str, list]:
    """The quick sweep: the runner on ``spec`` in a temporary folder, ``workers`` runs side by
    side; its tidy rows as columns."""
    from ..experiments.report import load_results
    from ..experiments.runner import run_experiment
    from ..experiments.spec import parse_spec

    with tempfile.TemporaryDirectory(prefix="hybridconv-fig-") as tmp:
        parsed = parse_spec(spec, root=Path(tmp))
        run_experiment(parsed, workers=workers, progress=False)  # the figures bar shows progress
        return load_results([parsed]).to_dict("list")


def compute(*, quick: bool = False, workers: int = 1, progress: bool = False) -> pd.DataFrame:
    """Tidy rows (the runner's columns) of the chosen runs, plus ``chosen`` (bool): whether a
    run has the dev-selected rate of its method."""
    from ..experiments.report import final_rows, load_results, select_rates
    from ..experiments.spec import load_spec
    from .runcache import run_cached

    if quick:  # cached by the spec and the code (a rerun reuses it; see runcache)
        df = pd.DataFrame(run_cached(quick_sweep, [{"spec": QUICK, "workers": workers}])[0])
    else:
        paths = [_root() / p for p in SPECS if (_root() / p).exists()]
        df = load_results([load_spec(p, root=_root()) for p in paths])
        if df.empty:
            raise ValueError("no fine-tuning results yet: run `hybridconv experiment "
                             f"{' '.join(SPECS)}` first (or use --quick)")
    chosen = select_rates(final_rows(df), df)
    df = df.copy()
    df["chosen"] = df["run_id"].isin(set(chosen["run_id"]))
    return df


def _label_style(label: str) -> dict[str, object]:
    parts = label.replace("-gs", "").split("-")
    kind = parts[-1] if parts[-1] in STYLES else None
    method = "-".join(p for p in parts if p not in STYLES)
    return {"color": COLORS.get(method, "#000000"), "linestyle": STYLES.get(kind, "-"),
            "marker": "o" if label.endswith("-gs") else None, "markersize": 3,
            "label": label}


def plot_results(df: pd.DataFrame, chosen: pd.DataFrame | None = None) -> Figure:
    """Per (model, task) cell: accuracy against steps (left) and forward passes (right)."""
    import matplotlib.pyplot as plt

    from ..experiments.report import cell_majority

    if chosen is not None:
        df = df[df["run_id"].isin(set(chosen["run_id"]))]
    elif "chosen" in df:
        df = df[df["chosen"].astype(bool)]
    cells = sorted({(m, t) for m, t in zip(df["model"], df["task"], strict=True)})
    if not cells:
        raise ValueError("no rows to plot")
    fig, axes = plt.subplots(len(cells), 2, figsize=(9.5, 3.0 * len(cells) + 0.6),
                             constrained_layout=True, squeeze=False)
    for row, (model, task) in enumerate(cells):
        cell = df[(df["model"] == model) & (df["task"] == task)]
        finals = cell.sort_values("epoch").groupby("run_id").tail(1)
        lines = {}
        for base in ("probe", "zero-shot"):
            b = finals[finals["label"] == base]["test_accuracy"]
            if len(b):
                lines[base] = float(b.mean())
        major = cell_majority(cell)
        majority = None if major is None else major[1]
        for col, x in enumerate(("step", "forward_passes")):
            ax = axes[row][col]
            for label in [c for c in CURVES if c in set(cell["label"])]:
                g = cell[cell["label"] == label].groupby(x)["test_accuracy"]
                mean = g.mean()
                style = _label_style(label)
                n = cell[cell["label"] == label]["seed"].nunique()
                style["label"] = f"{label} ({n} seed{'s' if n > 1 else ''})"
                ax.plot(mean.index, mean.values, **style)
                if n > 1:
                    ax.fill_between(mean.index, g.min(), g.max(), color=style["color"],
                                    alpha=0.12, linewidth=0)
            for base, ls in (("probe", (0, (5, 2))), ("zero-shot", (0, (1, 2)))):
                if base in lines:
                    ax.axhline(lines[base], color="#000000", linestyle=ls, linewidth=1.1,
                               label=f"{base} {lines[base]:.3f}")
            if majority is not None:
                ax.axhline(majority, color="#999999", linewidth=0.9,
                           label=f"majority class {majority:.3f}")
            ax.set_xlabel("training steps" if x == "step" else "forward passes")
            ax.set_ylabel("test accuracy")
            ax.set_title(f"{model} on {task}")
            if col == 1:
                ax.legend(fontsize=6, loc="lower right", ncol=2)
    fig.suptitle("Fine-tuning (mean over seeds, band: min-max; rates chosen on dev)",
                 fontsize=10)
    return fig


def plot(df: pd.DataFrame) -> Figure:
    """The figure of :func:`compute`'s rows."""
    return plot_results(df)
