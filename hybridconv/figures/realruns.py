"""Figure 8, theory meets a real run: the bound with measured constants, and the learning-rate
ratio it recommends against the one a sweep finds.

Two computations, both with the trainer of ``hybridconv finetune`` (on the figure's workers):

1. a hybrid run with ``diagnostics_every`` (``hybridconv.finetune.diagnostics``: L_x, L_y,
   L_xy by Lanczos on Hessian-vector products, sigma_x^2, sigma_y^2 from per-example
   gradients, tr(H_xx) by Hutchinson) and ``hybridconv.validate.realrun.check_run`` on it: the
   bound at every measured epoch beside the measured ||grad F||^2 (exact gradients on the fixed
   subset), under H1 and under the effective rank (ER, r by stochastic Lanczos quadrature),
   and the adapter-only measure (1/T) sum_t ||grad_y F||^2 with its bound;
2. a sweep over eta_y / eta_x (eta_y fixed, eta_x varied) at a fixed budget, several seeds,
   and ``sweep_summary``'s empirical best ratio (lowest mean test loss).

Full mode: MiniLM on mr (sizes in ``SETTINGS``). Quick mode: a tiny random causal LM (one
layer, hidden size 16, MiniLM's tokenizer) so that the preview takes seconds; its numbers say
nothing about real models. docs/real-runs.md is generated from the full mode's data
(``python scripts/real_runs.py``).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

NAME = "realruns"
TITLE = "The bound along a real run, and the predicted against the empirical best eta_y/eta_x"
SETTINGS = {
    # the diagnosed run uses its own rates (diag_lr_x, diag_lr_y): small enough for the
    # theorem's conditions at the constants it meets (each measured point costs about 160
    # Hessian-vector products, minutes on a CPU, so 8 examples and 4 probes)
    "full": {"model": "minilm", "k_shot": 32, "batch_size": 16, "epochs": 4, "test_size": 200,
             "max_length": 32, "diagnostics_every": 2, "diagnostics_examples": 8,
             "diagnostics_probes": 4, "lr_y": 5e-2, "lr_x": (1e-3, 1e-4, 1e-5, 1e-7),
             "seeds": (0, 1, 2), "diag_lr_x": 1e-6, "diag_lr_y": 2e-3},
    "quick": {"model": "tiny", "k_shot": 4, "batch_size": 4, "epochs": 2, "test_size": 16,
              "max_length": 16, "diagnostics_every": 1, "diagnostics_examples": 8,
              "diagnostics_probes": 4, "lr_y": 5e-2, "lr_x": (1e-3, 1e-5),
              "seeds": (0, 1, 2), "diag_lr_x": 1e-4, "diag_lr_y": 5e-2},
}


def settings(quick: bool) -> dict[str, object]:
    """What the figure is computed with (recorded in MANIFEST.json)."""
    s = SETTINGS["quick" if quick else "full"]
    return {**s, "task": "mr", "method": "hybrid", "fo_optimizer": "sgd", "mu": 1e-3,
            "eval_every": s["epochs"]}


def tiny_model(path: Path) -> str:
    """Save the tiny random causal LM of the quick mode to ``path``
    (:func:`hybridconv.finetune.tiny.save_tiny_model`)."""
    from ..finetune.tiny import save_tiny_model

    return save_tiny_model(path)


def run_job(config: dict) -> dict[str, str]:
    """One fine-tuning run, ``FinetuneConfig(**config)``, in this process (on a figure worker:
    cpus / workers torch threads, as joblib's workers set ``OMP_NUM_THREADS``); returns its
    folder's files (config, results, steps, diagnostics) as text. ``model = "tiny"`` builds
    the seeded tiny model (:func:`tiny_model`) for the run."""
    from ..finetune.trainer import FinetuneConfig, finetune

    with tempfile.TemporaryDirectory(prefix="hybridconv-realruns-") as tmp:
        tmp = Path(tmp)
        cfg = dict(config)
        if cfg["model"] == "tiny":
            cfg["model"] = tiny_model(tmp / "tiny")
        finetune(FinetuneConfig(**cfg), tmp / "run", progress=False)
        return {p.name: p.read_text() for p in sorted((tmp / "run").iterdir())
                if p.suffix in (".json", ".csv")}


def compute(*, quick: bool = False, workers: int = 1, progress: bool = False) -> pd.DataFrame:
    """Rows of kind ``point`` (the diagnosed run), ``sweep`` (one per ratio) and ``summary``
    (one row: the check's findings). The runs go ``workers`` side by side; runs cached by an
    earlier build with the same settings and code are reused (:mod:`.runcache`)."""
    from ..validate.realrun import check_run, sweep_summary
    from .runcache import run_cached

    s = SETTINGS["quick" if quick else "full"]
    common = {"model": s["model"], "task": "mr", "method": "hybrid", "k_shot": s["k_shot"],
              "batch_size": s["batch_size"], "epochs": s["epochs"],
              "test_size": s["test_size"], "max_length": s["max_length"],
              "lr_y": s["lr_y"], "mu": 1e-3,
              # the figure reads the final test loss and the diagnostics, not the curve:
              # evaluate before training and after the last epoch only (same training)
              "eval_every": s["epochs"]}
    diag = {**common, "lr_x": s["diag_lr_x"], "lr_y": s["diag_lr_y"], "seed": 0,
            "diagnostics_every": s["diagnostics_every"],
            "diagnostics_examples": s["diagnostics_examples"],
            "diagnostics_probes": s["diagnostics_probes"]}
    jobs = [{"config": diag}] + [{"config": {**common, "lr_x": lr_x, "seed": seed}}
                                 for lr_x in s["lr_x"] for seed in s["seeds"]]
    res = run_cached(run_job, jobs, workers=workers, progress=progress, desc=NAME)
    with tempfile.TemporaryDirectory(prefix="hybridconv-realruns-") as tmp:
        dirs = []
        for i, files in enumerate(res):
            d = Path(tmp) / f"run-{i}"
            d.mkdir()
            for name, text in files.items():
                (d / name).write_text(text)
            dirs.append(d)
        rc = check_run(dirs[0])
        sweep = sweep_summary(dirs[1:])
    pts = rc.points.assign(kind="point")
    sw = sweep.assign(kind="sweep")
    v = rc.values
    summary = {"kind": "summary", "model": s["model"], "predicted_ratio": rc.predicted_ratio,
               "predicted_ratio_er": rc.predicted_ratio_er,
               "used_ratio": rc.used_ratio, "dominant": rc.dominant,
               "dominant_share": rc.shares[rc.dominant], "violated": len(rc.violated),
               "violated_names": "; ".join(c.split(":")[0] for c in rc.violated),
               "admissible_eta_x": rc.admissible["eta_x"],
               "admissible_eta_y": rc.admissible["eta_y"], "bound_final": rc.bound_final,
               "bound_final_er": rc.bound_final_er,
               "violated_er": len(rc.violated_er),
               "violated_er_names": "; ".join(c.split(":")[0] for c in rc.violated_er),
               "measured_adapter": rc.measured_adapter, "bound_adapter": rc.bound_adapter,
               "bound_adapter_er": rc.bound_adapter_er,
               **{f"ratio_{k.replace(' ', '_').replace('-', '_')}": x
                  for k, x in rc.ratios.items()},
               "measured_final": rc.measured_final, "effective_rank": rc.effective_rank,
               "bound_final_mu0": rc.bound_final_mu0,
               "dominant_mu0": max(rc.shares_mu0, key=rc.shares_mu0.get),
               "dominant_mu0_share": max(rc.shares_mu0.values()),
               "notes": " | ".join(rc.notes),
               **{f"value_{k}": float(x) for k, x in v.items()},
               **{f"share_{k}": float(x) for k, x in rc.shares.items()},
               **{f"share_er_{k}": float(x) for k, x in rc.shares_er.items()}}
    return pd.concat([pts, sw, pd.DataFrame([summary])], ignore_index=True)


def plot(df: pd.DataFrame) -> Figure:
    """(a) bound and measurement along the run, (b) the measured constants, (c) the sweep."""
    import matplotlib.pyplot as plt

    from .style import BOUND, COLORS, OKABE_ITO, log_axes

    pts = df[df["kind"] == "point"].sort_values("epoch")
    sw = df[df["kind"] == "sweep"].sort_values("ratio")
    summ = df[df["kind"] == "summary"].iloc[0]
    fig, axes = plt.subplots(1, 3, figsize=(13.0, 3.9), constrained_layout=True)
    ax = axes[0]
    later = pts[pts["epoch"] >= 1]
    ax.plot(later["epoch"], later["bound"], marker="s", label=f"bound ($d_x$ = "
            f"{summ['value_d_x']:.3g})", **BOUND)
    ax.plot(later["epoch"], later["bound_mu0"], marker="v", color="#555555", linestyle="--",
            label=r"bound, $\mu \to 0$")
    if later["bound_er"].notna().any():
        ax.plot(later["epoch"], later["bound_er"], marker="D", color="#555555",
                linestyle=":", label=f"bound, effective rank r = {summ['effective_rank']:.3g}")
        ax.plot(later["epoch"], later["bound_adapter_er"], marker="^", color="#009E73",
                linestyle=":", label=r"adapter bound (ER) on $\frac{1}{T}\sum_t "
                r"\|\nabla_y F\|^2$")
    ax.plot(later["epoch"], later["measured_adapter"], marker="^", color="#009E73",
            linestyle="none", markerfacecolor="none", markersize=9,
            label=r"measured $\frac{1}{T}\sum_t \|\nabla_y F\|^2$")
    ax.plot(pts["epoch"], pts["grad_sq"], marker="o", color=COLORS["hybrid"],
            label=r"measured $\|\nabla F(z_t)\|^2$ (subset)")
    ax.plot(later["epoch"], later["measured_min"], marker="o", color=COLORS["hybrid"],
            linestyle="none", markerfacecolor="none", markersize=9,
            label=r"min over earlier points (what the bound bounds)")
    ax.set_yscale("log")
    ax.set_xticks(pts["epoch"])
    ax.set_xlabel(r"epoch $t$")
    ax.set_ylabel(r"$\|\nabla F\|^2$ and the bound at $T = t$")
    share = summ["dominant_share"]
    ax.set_title(f"(a) {summ['model']}: dominant term {summ['dominant'].split(' (')[0]} "
                 f"({share:.0%})", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    ax = axes[1]
    for i, (col, label) in enumerate((("L_x", r"$L_x$"), ("L_y", r"$L_y$"),
                                      ("L_xy", r"$L_{xy}$"), ("sigma_x_sq", r"$\sigma_x^2$"),
                                      ("sigma_y_sq", r"$\sigma_y^2$"))):
        ax.plot(pts["epoch"], pts[col].clip(lower=1e-12), marker="o", color=OKABE_ITO[i],
                label=label)
    ax.set_yscale("log")
    ax.set_xticks(pts["epoch"])
    ax.set_xlabel(r"epoch $t$")
    ax.set_ylabel("local constant (fixed training subset)")
    ax.set_title("(b) measured block constants along the run", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    ax = axes[2]
    ax.errorbar(sw["ratio"], sw["mean"], yerr=sw["sd"].fillna(0), marker="o", capsize=3,
                color=COLORS["hybrid"], label=f"sweep: mean test loss, {int(sw['seeds'].max())}"
                " seeds (sd)")
    best = sw[sw["best"].astype(bool)]
    ax.plot(best["ratio"], best["mean"], marker="*", markersize=14, color="#E69F00",
            linestyle="none", label=f"empirical best: {best['ratio'].iloc[0]:.3g}")
    for col, style, label in (("predicted_ratio", "--", "theorem's best"),
                              ("predicted_ratio_er", ":", "theorem's, effective rank"),
                              ("used_ratio", "-.", "used in (a)")):
        r = summ[col]
        if isinstance(r, float) and math.isfinite(r):
            ax.axvline(r, color="black", linestyle=style, linewidth=1.1,
                       label=f"{label}: {r:.3g}")
    log_axes(ax, y=False)
    lo = np.nanmin([sw["ratio"].min(), summ["predicted_ratio"]])
    hi = np.nanmax([sw["ratio"].max(), summ["predicted_ratio"]])
    ax.set_xlim(lo / 5, hi * 5)
    ax.set_xlabel(r"$\eta_y / \eta_x$")
    ax.set_ylabel("test loss after the budget")
    ax.set_title("(c) predicted against empirical best ratio", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    return fig
