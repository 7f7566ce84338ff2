"""docs/results.md from the runners' CSVs: tables, paired comparisons, curves.

    hybridconv experiment experiments/minilm_main.toml experiments/smollm2_main.toml \
        --report docs/results.md --figure paper_figures/finetuning.png

What is computed (from whatever runs have finished; every cell says how many seeds):

- per model x task, one row per method label (``hybrid-lora``, ``fo-peft-prompt``, ``fo``,
  ``probe``, ``zero-shot``, ...): final test accuracy, mean and sample sd over seeds; where a
  label was run at several learning rates, the rate with the best mean final *dev* accuracy
  is kept (the protocol's dev split; the test set never chooses);
- cost per method: seconds per training step (training wall time / steps), forward passes
  per step, peak memory;
- hybrid against FO-PEFT per task and PEFT kind, paired by seed: mean difference of the final
  test accuracy with a two-sided 95% t interval (n - 1 degrees of freedom), and the win count
  in the paper's format ("hybrid wins k of m");
- steps to reach a target accuracy (the probe's mean accuracy on that task, and 0.70): the
  first evaluated step at which the test accuracy reaches it, averaged over the seeds that
  reached it.
"""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import spec as vocabulary
from .._io import write_text_atomic
from .spec import ExperimentSpec

__all__ = ["load_results", "final_rows", "select_rates", "summary", "paired",
           "steps_to_target", "cell_majority", "write_report"]

KEYS = ("model", "task", "label")
RATES = ("lr_x", "lr_y", "mu")
DIVERGED = 1.5
"""A final training loss above this multiple of the untrained dev loss counts as diverged."""


def load_results(specs: list[ExperimentSpec]) -> pd.DataFrame:
    """All rows of the specs' CSVs (missing files are skipped), restricted to each spec's
    current runs (rows of runs no longer in a spec are left out)."""
    frames = []
    for spec in specs:
        if spec.results.exists():
            # hex digests stay text ("000000001234" and "1234e5678901" parse as numbers)
            df = pd.read_csv(spec.results, dtype={"run_id": str, "code": str})
            df = df[df["run_id"].isin({r.run_id for r in spec.runs})]
            frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["run_id", *KEYS, "seed", "epoch", "step"])
    return pd.concat(frames, ignore_index=True)


def final_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The last evaluation point of every run."""
    if df.empty:
        return df
    return df.sort_values("epoch").groupby("run_id", as_index=False).tail(1)


def _rate_key(row: pd.Series) -> str:
    return " ".join(f"{k}={row[k]:g}" for k in RATES if k in row and pd.notna(row[k]))


def select_rates(final: pd.DataFrame, df: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per (model, task, label) the rate setting with the best mean final dev accuracy;
    returns the final rows of that setting only.

    The rule behind the defaults (docs/finetune.md): settings that diverged are out (a final
    training loss that is not finite or above ``DIVERGED`` times the untrained model's dev
    loss, read from the run's epoch-0 row of ``df``); ties in dev accuracy (100 examples: one
    example is 0.01) go to the lower mean final training loss, then to the first in sorted
    order. Only training and dev data enter the choice, never the test set.

    Among the settings of a method that did not diverge, only those with the most finished
    seeds compete; one with fewer is chosen only if every setting with more diverged (it would
    be compared on other seeds, that is on other k-shot training sets): a sweep that is still
    running does not swap a cell's rate for one seed's luck.
    """
    if final.empty:
        return final
    final = final.copy()
    final["rates"] = final.apply(_rate_key, axis=1)
    train = pd.to_numeric(final.get("train_loss"), errors="coerce")
    start = pd.Series(float("nan"), index=final.index)
    if df is not None and not df.empty and "dev_loss" in df:
        first = df[df["epoch"] == 0].groupby("run_id")["dev_loss"].first()
        start = final["run_id"].map(first).astype(float)
    diverged = (train.notna() & ~np.isfinite(train)) | (train > DIVERGED * start)
    final["diverged"] = diverged.fillna(False).astype(bool)
    g = final.groupby([*KEYS, "rates"], dropna=False)
    dev = g.agg(dev_accuracy=("dev_accuracy", "mean"),
                train_loss=("train_loss", "mean"),
                diverged=("diverged", "any"), seeds=("seed", "nunique")).reset_index()
    dev["dev_accuracy"] = dev["dev_accuracy"].fillna(-1.0)
    dev.loc[dev["diverged"], "dev_accuracy"] = -2.0
    dev["train_loss"] = dev["train_loss"].fillna(np.inf)
    # the most seeds among the settings that did not diverge: a diverged setting with more
    # seeds must not let a one-seed setting compete on equal terms with a two-seed one
    most = dev["seeds"].where(~dev["diverged"]).groupby(
        [dev[k] for k in KEYS], dropna=False).transform("max")
    # settings with the most seeds first, then those still missing seeds, diverged ones last
    dev["rank"] = np.where(dev["diverged"], 2, (dev["seeds"] < most).astype(int))
    best = dev.sort_values([*KEYS, "rank", "dev_accuracy", "train_loss", "rates"],
                           ascending=[True, True, True, True, False, True, True])
    best = best.groupby(list(KEYS), dropna=False).head(1)[[*KEYS, "rates"]]
    return final.merge(best, on=[*KEYS, "rates"]).drop(columns="diverged")


def summary(chosen: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, task, label): accuracy mean, sd, seeds, cost."""
    g = chosen.groupby(list(KEYS), dropna=False)
    out = g.agg(accuracy=("test_accuracy", "mean"), sd=("test_accuracy", "std"),
                dev=("dev_accuracy", "mean"), seeds=("seed", "nunique"),
                steps=("step", "mean"), fwd=("forward_passes", "mean"),
                wall_s=("wall_s", "mean"), peak_mib=("peak_mem_bytes", "mean"),
                rates=("rates", "first")).reset_index()
    out["s_per_step"] = out["wall_s"] / out["steps"].where(out["steps"] > 0)
    out["train_min"] = out["wall_s"].where(out["steps"] > 0) / 60
    out["fwd_per_step"] = out["fwd"] / out["steps"].where(out["steps"] > 0)
    out["peak_mib"] = out["peak_mib"] / 2**20
    return out


def _t_interval(d: pd.Series, level: float = 0.95) -> tuple[float, float]:
    from scipy import stats

    n = len(d)
    if n < 2:
        return (math.nan, math.nan)
    half = stats.t.ppf(0.5 + level / 2, n - 1) * d.std(ddof=1) / math.sqrt(n)
    return (d.mean() - half, d.mean() + half)


def paired(chosen: pd.DataFrame, a: str = "hybrid", b: str = "fo-peft") -> pd.DataFrame:
    """``a-KIND`` against ``b-KIND`` per (model, task, kind), paired by seed."""
    rows = []
    for (model, task), cell in chosen.groupby(["model", "task"]):
        for kind in vocabulary.PEFT_KINDS.values:
            x = cell[cell["label"] == f"{a}-{kind}"].set_index("seed")["test_accuracy"]
            y = cell[cell["label"] == f"{b}-{kind}"].set_index("seed")["test_accuracy"]
            seeds = sorted(set(x.index) & set(y.index))
            if not seeds:
                continue
            d = x.loc[seeds] - y.loc[seeds]
            lo, hi = _t_interval(d)
            rows.append({"model": model, "task": task, "peft": kind, "seeds": len(seeds),
                         a: x.loc[seeds].mean(), b: y.loc[seeds].mean(),
                         "diff": d.mean(), "ci_low": lo, "ci_high": hi,
                         "wins": int((d > 0).sum()), "ties": int((d == 0).sum()),
                         "winner": a if d.mean() > 0 else (b if d.mean() < 0 else "tie")})
    return pd.DataFrame(rows)


def steps_to_target(df: pd.DataFrame, chosen: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per (model, task, label): mean first evaluated step with test accuracy >= target over
    the seeds that reached it, and how many did."""
    runs = df[df["run_id"].isin(set(chosen["run_id"]))]
    rows = []
    for key, g in runs.groupby(list(KEYS)):
        firsts = []
        for _, r in g.groupby("run_id"):
            hit = r[r["test_accuracy"] >= target].sort_values("step")
            if len(hit):
                firsts.append(hit["step"].iloc[0])
        rows.append({**dict(zip(KEYS, key, strict=True)), "target": target,
                     "reached": len(firsts), "runs": g["run_id"].nunique(),
                     "mean_step": sum(firsts) / len(firsts) if firsts else math.nan})
    return pd.DataFrame(rows)


def _fmt(v: Any, digits: int = 3) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        return f"{v:.{digits}f}" if abs(v) < 1e4 else f"{v:.3g}"
    return str(v)


WHOLE = {"steps", "fwd_per_step", "peak_mib", "mean_step", "seeds", "reached", "runs",
         "wins"}


DIGITS = {"s_per_step": 2, "train_min": 1}
"""Digits of the columns printed with fewer than the default (WHOLE's print none)."""


def _table(df: pd.DataFrame, cols: list[str], digits: int = 3) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(_fmt(r[c], 0 if c in WHOLE else DIGITS.get(c, digits))
                                       for c in cols) + " |")
    return "\n".join(lines)


ORDER = ("zero-shot", "probe", "fo", "zo", "fo-peft-lora", "zo-peft-lora", "hybrid-lora",
         "hybrid-lora-gs", "fo-peft-prompt", "zo-peft-prompt", "hybrid-prompt",
         "hybrid-prompt-gs", "fo-peft-prefix", "zo-peft-prefix", "hybrid-prefix",
         "hybrid-prefix-gs")


def _order(labels: pd.Series) -> pd.Series:
    return labels.map(lambda x: ORDER.index(x) if x in ORDER else len(ORDER))


def _progress(specs: list[ExperimentSpec], df: pd.DataFrame) -> list[str]:
    """Finished / planned runs per model, task and method label (all rates and seeds)."""
    done = set(df["run_id"]) if not df.empty else set()
    rows = []
    for spec in specs:
        for r in spec.runs:
            s = r.settings
            rows.append({"model": s["model"], "task": s["task"], "label": r.label(),
                         "done": r.run_id in done})
    if not rows:
        return []
    p = pd.DataFrame(rows).groupby(["model", "task", "label"])["done"].agg(["sum", "count"])
    p = p.reset_index()
    cells = []
    for (model, task), g in p.groupby(["model", "task"]):
        g = g.sort_values("label", key=_order)
        cells.append(f"- {model} / {task}: " + ", ".join(
            f"{lab} {int(s)}/{int(c)}" for lab, s, c in zip(g["label"], g["sum"], g["count"],
                                                            strict=True)))
    total = int(p["sum"].sum()), int(p["count"].sum())
    return ["## Progress", "",
            f"Finished runs / planned runs per cell (seeds x rates): {total[0]} of {total[1]} "
            "in all. Rerunning the sweeps' command continues them; this file is regenerated "
            "from whatever has finished.", "", *cells, ""]


def _provenance(final: pd.DataFrame) -> list[str]:
    """Which code computed the finished runs: ``code`` (``provenance.finetune_code``) per
    run; runs from before the column have none."""
    if final.empty:
        return []
    known = final["code"].dropna().astype(str) if "code" in final else pd.Series(dtype=str)
    counts = known.value_counts()
    named = ", ".join(f"`{c}` {n}" for c, n in counts.items())
    return [f"Code: the {len(final)} finished runs name {len(counts)} version(s) of the "
            f"fine-tuning code and libraries (`code` column: "
            f"`hybridconv.provenance.finetune_code`){': ' + named if named else ''}; "
            f"{len(final) - len(known)} run(s) predate the column.", ""]


def cell_majority(rows: pd.DataFrame) -> tuple[int | None, float] | None:
    """A cell's test-set size (its rows' ``test_examples``; ``None``: not recorded, the whole
    test set) and the accuracy of always answering its majority class; ``None`` when there are
    no rows or the task's data is not on this machine. The report's line and the fine-tuning
    figure's grey line."""
    from ..finetune.tasks import majority_share

    if rows.empty:
        return None
    n = rows["test_examples"].dropna() if "test_examples" in rows else pd.Series(dtype=float)
    size = int(n.max()) if len(n) else None
    try:
        return size, majority_share(str(rows["task"].iloc[0]), size)
    except ValueError:
        return None


def write_report(specs: list[ExperimentSpec], out: str | Path, *,
                 figure: str | Path | None = None) -> Path:
    """Write the markdown report of the specs' results to ``out`` (and the figure); an
    ``out`` ending in ``.csv`` gets the final row of every finished run instead (a sweep's
    table: every rate, with dev and test accuracy, ``chosen`` marking the rates that
    :func:`select_rates` keeps)."""
    import torch

    df = load_results(specs)
    if str(out).endswith(".csv"):
        cols = ["label", "model", "task", "seed", "lr_x", "lr_y", "mu", "k_shot", "epochs",
                "step", "forward_passes", "wall_s", "dev_accuracy", "test_accuracy",
                "test_loss", "train_loss", "status"]
        fin = final_rows(df)
        best = df.groupby("run_id")["dev_accuracy"].max().rename("best_dev_accuracy")
        fin = fin.merge(best, left_on="run_id", right_index=True)
        fin["chosen"] = fin["run_id"].isin(set(select_rates(fin, df)["run_id"]))
        fin = fin.sort_values(["model", "task", "label", "lr_x", "lr_y"])
        return write_text_atomic(out, fin[cols + ["best_dev_accuracy", "chosen"]]
                                 .to_csv(index=False))
    final = final_rows(df)
    chosen = select_rates(final, df)
    cmd = ("hybridconv experiment " + " ".join(str(s.source or s.name) for s in specs)
           + f" --report {out}" + (f" --figure {figure}" if figure else ""))
    lines = [
        "# Fine-tuning results (generated; do not edit by hand)",
        "",
        f"Generated by `{cmd}` from the runners' CSVs "
        f"({', '.join(f'`{s.results.name}`' for s in specs)} in experiments/results/). "
        f"Machine: {platform.machine()} CPU, torch {torch.__version__}, Python "
        f"{platform.python_version()}; the runs shared the 2 cores with other jobs, so times "
        "are indicative only (ratios within one table are the useful part).",
        "",
        "Accuracy: the last evaluation point's test accuracy, mean and sample sd over the "
        "seeds that have finished (`seeds`: how many; each seed also draws its own k-shot "
        "training set). Where a method was run at several learning rates, the rate with the "
        "best mean dev accuracy (100 dev examples, disjoint from train and test) is kept "
        "(`rates`), among the rates that did not diverge and have as many finished seeds as "
        "the most advanced of them (a rate still running is not chosen on fewer seeds). "
        "`probe`: "
        "logistic regression on frozen features (L2 chosen on dev); "
        "`zero-shot`: the untrained prompt-based LM. `-gs`: the hybrid in Gauss-Seidel order "
        "(LMAO's). Cost columns: training seconds per step and training minutes per run "
        "(mean over the seeds; indicative; evaluations not included), forward passes per "
        "step, peak memory of the training (CPU: peak RSS).",
        "",
    ]
    if chosen.empty:
        lines += ["No run has finished yet.", ""]
    for spec in specs:
        runs = pd.DataFrame([r.settings for r in spec.runs])
        settings = {k: sorted(int(v) for v in runs[k].dropna().unique()) for k in
                    ("k_shot", "epochs", "batch_size", "test_size", "max_length")
                    if k in runs}
        lines.append(f"- `{spec.source or spec.name}` ({spec.describe()}): "
                     f"{json.dumps(settings, default=int)}")
    lines.append("")
    lines += _progress(specs, df)
    lines += _provenance(final)
    summ = summary(chosen) if not chosen.empty else pd.DataFrame()
    majorities: dict[tuple[str, str], float] = {}
    for (model, task), cell in (summ.groupby(["model", "task"]) if not summ.empty else []):
        cell = cell.sort_values("label", key=_order)
        lines += [f"## {model} on {task}", ""]
        major = cell_majority(chosen[(chosen["model"] == model) & (chosen["task"] == task)])
        if major is not None:
            size, majorities[(model, task)] = major
            lines += [f"Test set: {size if size else 'all'} examples; always answering its "
                      f"majority class scores **{major[1]:.3f}**.", ""]
        lines += [_table(cell, ["label", "accuracy", "sd", "seeds", "dev", "rates",
                                "steps", "fwd_per_step", "s_per_step", "train_min",
                                "peak_mib"]), ""]
    pair = paired(chosen) if not chosen.empty else pd.DataFrame()
    lines += ["## Hybrid against FO-PEFT, paired by seed", ""]
    if pair.empty:
        lines += ["No cell has both methods finished yet.", ""]
    else:
        lines += [
            "`diff` = hybrid minus FO-PEFT final test accuracy, mean over the seeds both "
            "finished, with a two-sided 95% t interval; `wins`: seeds where the hybrid is "
            "higher.", "",
            _table(pair, ["model", "task", "peft", "seeds", "hybrid", "fo-peft", "diff",
                          "ci_low", "ci_high", "wins", "winner"]), ""]
        w = int((pair["winner"] == "hybrid").sum())
        lines += [f"In the paper's format (one comparison per model x task x PEFT kind, on "
                  f"the mean over seeds): **hybrid wins {w} of {len(pair)}** against FO-PEFT "
                  f"(the paper claims 17 of 18); intervals that contain 0 are not "
                  f"significant.", ""]
    if not chosen.empty:
        probe = summ[summ["label"] == "probe"].set_index(["model", "task"])["accuracy"]
        lines += ["## Steps to reach a target accuracy", "",
                  "First evaluated step with test accuracy >= target, mean over the seeds that "
                  "reached it (`reached` of `runs`). Targets: 0.70, the probe's mean "
                  "accuracy on the same model and task, and the test set's majority-class "
                  "accuracy (always answering the most frequent class).", ""]
        tables = [steps_to_target(df, chosen, 0.70)]
        targets = [(cell, round(float(acc), 3)) for cell, acc in probe.items()]
        targets += [(cell, round(share, 3)) for cell, share in majorities.items()]
        for (model, task), target in dict.fromkeys(targets):
            sub = chosen[(chosen["model"] == model) & (chosen["task"] == task)]
            tables.append(steps_to_target(df, sub, target))
        st = pd.concat(tables, ignore_index=True)
        st = st[~st["label"].isin(["probe", "zero-shot"])]
        st = st.sort_values(["model", "task", "target", "label"])
        lines += [_table(st, ["model", "task", "target", "label", "reached", "runs",
                              "mean_step"]), ""]
    if figure:
        from ..figures.finetuning import plot_results

        fig = plot_results(df, chosen)
        from ..figures.style import save

        png = save(fig, Path(figure).with_suffix(""))[0]
        import os

        rel = os.path.relpath(png, Path(out).resolve().parent)
        lines += [f"Learning curves (test accuracy against steps and against forward "
                  f"passes): [{png.name}]({rel}).", ""]
    return write_text_atomic(out, "\n".join(lines))
