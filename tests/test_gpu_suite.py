"""benchmarks/gpu_suite.py on CPU with tiny shapes: the same code the GPU run uses (fresh
processes, every method, exact-restore check, table, CSV), the skip rule, and bad input."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("peft")

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "benchmarks" / "gpu_suite.py"


def suite_module():
    spec = importlib.util.spec_from_file_location("gpu_suite", SUITE)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(SUITE), *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=ROOT)


def test_measurements_and_the_table_in_process():
    """The measurement and the table without the fresh processes (the default suite's light
    check; the forked runs are ``slow``): the reference forward, FO-LoRA, hybrid with the fp32
    master copy (exact restore) and ZO-full in place in bf16 (not exact)."""
    g = suite_module()
    args, _ = g.parse(["--device", "cpu", "--tiny", "--models", "llama-7b"])
    rows = []
    for variant, peft in (("inference", None), ("fo-peft", "lora"), ("hybrid", "lora"),
                          ("zo-inplace", None)):
        spec = dict(model="llama-7b", variant=variant, peft=peft, device="cpu",
                    dtype="bfloat16", tiny=True, batch=2, seq=8, steps=1, warmup=1, threads=0)
        rows.append({**spec, "name": g.row_name(variant, peft), "device": "cpu",
                     **g.measure(spec)})
    by = {r["variant"]: r for r in rows}
    assert all(r["status"] == "ok" and r["s_per_step"] > 0 for r in rows)
    assert by["hybrid"]["restore"] == "exact" and by["fo-peft"]["restore"] == "n/a"
    assert by["zo-inplace"]["restore"].startswith("max |dx|")
    assert by["hybrid"]["fwd_per_step"] == 3 and by["fo-peft"]["fwd_per_step"] == 1
    assert by["hybrid"]["master_bytes"] == 4 * by["hybrid"]["zo_params"]
    assert by["zo-inplace"]["master_bytes"] == 0
    out = g.table(rows, args)
    hybrid = next(r for r in out.splitlines() if r.startswith("| Hybrid-LoRA |"))
    ratio = by["hybrid"]["peak_bytes"] / by["fo-peft"]["peak_bytes"]
    assert hybrid.split("|")[3].strip() == f"{ratio:.2f}"
    assert "Exact restore after an aborted step: 1 of 2 ZO rows" in out
    assert "MeZO's claim" in out and "parameter bytes (reference)" in out


@pytest.mark.slow
def test_tiny_suite_measures_every_kind_of_row(tmp_path):
    """A light run: the reference forward, FO-LoRA, hybrid (fp32 master copy: exact restore)
    and ZO-full without the copy (bf16 in place, MeZO's way: the round trip is not exact)."""
    import pandas as pd

    csv = tmp_path / "suite.csv"
    out = run("--device", "cpu", "--tiny", "--models", "opt-1.3b", "--peft", "lora",
              "--variants", "inference", "fo-peft", "hybrid", "zo-inplace",
              "--csv", str(csv))
    assert out.returncode == 0, out.stderr[-3000:]
    df = pd.read_csv(csv, keep_default_na=False, na_values=[""]).set_index("variant")
    assert (df["status"] == "ok").all(), df[["status", "reason"]]
    assert (df["s_per_step"] > 0).all() and (df["peak_bytes"] > 0).all()
    assert df.loc["hybrid", "restore"] == "exact"
    assert df.loc["zo-inplace", "restore"].startswith("max |dx|")
    assert df.loc["fo-peft", "restore"] == "n/a"
    assert df.loc["hybrid", "fwd_per_step"] == 3 and df.loc["inference", "fwd_per_step"] == 1
    assert df.loc["hybrid", "master_bytes"] == 4 * df.loc["hybrid", "zo_params"]
    assert df.loc["zo-inplace", "master_bytes"] == 0
    for line in ("| Hybrid-LoRA |", "| FO-LoRA | ", "| ZO-full (in place, MeZO) |",
                 "parameter bytes (reference)", "MeZO's claim", "Exact restore after an "
                 "aborted step: 1 of 2 ZO rows"):
        assert line in out.stdout, out.stdout
    hybrid = next(r for r in out.stdout.splitlines() if r.startswith("| Hybrid-LoRA |"))
    assert hybrid.split("|")[3].strip() == f"{df.loc['hybrid', 'peak_bytes'] / df.loc['fo-peft', 'peak_bytes']:.2f}"  # noqa: E501


@pytest.mark.slow
def test_full_tiny_suite_runs_in_under_two_minutes():
    t = time.perf_counter()
    out = run("--device", "cpu", "--tiny")
    wall = time.perf_counter() - t
    assert out.returncode == 0, out.stderr[-3000:]
    assert wall < 120, f"{wall:.0f} s"
    rows = [r for r in out.stdout.splitlines() if r.startswith("| ") and "---" not in r]
    assert len(rows) == 1 + 1 + 17  # header, parameter bytes, 17 methods
    assert "timeout" not in out.stdout and "error" not in out.stdout
    assert "Exact restore after an aborted step: 20 of 24 ZO rows" in out.stdout


def test_what_cannot_fit_is_skipped_with_the_reason(tmp_path, capsys):
    g = suite_module()
    csv = tmp_path / "skipped.csv"
    assert g.main(["--device", "cpu", "--tiny", "--models", "llama-7b", "--peft", "prompt",
                   "--variants", "fo", "hybrid", "hybrid-inplace", "--dtype", "bfloat16",
                   "--max-memory-gib", "1e-9", "--csv", str(csv)]) == 0
    out = capsys.readouterr().out
    assert csv.read_text().count("skipped") == 2
    assert "weights + gradients" in out and "weights + fp32 master copy" in out
    assert out.count(": skipped: needs more than") == 2  # hybrid-inplace runs LoRA only
    n = g.parameter_count("llama-7b", True)
    assert g.estimate("fo", n, 2) == (4 * n, "weights + gradients")
    assert g.estimate("hybrid", n, 2) == (6 * n, "weights + fp32 master copy")
    assert g.estimate("hybrid-inplace", n, 2) == (2 * n, "weights")
    assert g.estimate("zo", n, 4) == (4 * n, "weights")  # fp32: no copy counted


def test_configurations_run_in_order_of_importance():
    g = suite_module()
    cfg = g.configurations(g.MODELS, g.VARIANTS, g.PEFTS)
    assert len(cfg) == 2 * 17
    assert [c["variant"] for c in cfg[:2]] == ["inference", "inference"]
    assert {c["variant"] for c in cfg[2:14]} == {"fo-peft", "hybrid"}
    assert cfg[-1]["variant"] == "fo"


@pytest.mark.parametrize("args, match", [
    (["--steps", "0"], "--steps must be an integer >= 1"),
    (["--budget", "-1"], "--budget must be a number of seconds > 0"),
    (["--max-memory-gib", "0"], "--max-memory-gib must be > 0"),
    (["--csv", "/nonexistent-dir/x.csv"], "does not exist"),
])
def test_bad_arguments_exit_2(args, match, capsys):
    g = suite_module()
    with pytest.raises(SystemExit) as e:
        g.main(["--device", "cpu", "--tiny", *args])
    assert e.value.code == 2
    assert match in capsys.readouterr().err


def test_an_existing_csv_needs_force(tmp_path, capsys):
    g = suite_module()
    (tmp_path / "x.csv").write_text("keep")
    with pytest.raises(SystemExit):
        g.main(["--device", "cpu", "--tiny", "--csv", str(tmp_path / "x.csv")])
    assert "pass --force" in capsys.readouterr().err
    assert (tmp_path / "x.csv").read_text() == "keep"


def test_cuda_without_a_gpu_is_a_clear_error(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    g = suite_module()
    with pytest.raises(SystemExit):
        g.main(["--device", "cuda", "--csv", "/tmp/never-written.csv"])
    assert "no CUDA device here" in capsys.readouterr().err
