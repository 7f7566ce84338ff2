"""The figures' run cache: keyed by configuration and code, reused on a rerun, listed in the
manifest, recomputed when anything it depends on changes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hybridconv.figures import runcache
from hybridconv.figures.runcache import code_fingerprint, run_cached, run_key

CALLS: list[dict] = []


def job(a: int, b: float = 1.0) -> dict:
    """A stand-in for a fine-tuning run: counts its calls, returns JSON-able data."""
    CALLS.append({"a": a, "b": b})
    return {"a": a, "value": np.float64(a * b), "nan": float("nan"), "xs": np.arange(3),
            "pair": (a, b)}


def failing(a: int) -> int:
    if a == 2:
        raise RuntimeError("run 2 failed")
    return a


JOBS = [{"a": 1}, {"a": 2, "b": 0.5}, {"a": 3}]


def test_no_cache_outside_a_use_block():
    CALLS.clear()
    run_cached(job, JOBS)
    run_cached(job, JOBS)
    assert len(CALLS) == 6


def test_rerun_reuses_and_a_changed_job_recomputes(tmp_path):
    CALLS.clear()
    with runcache.use(tmp_path) as ledger:
        first = run_cached(job, JOBS, workers=1)
    assert len(CALLS) == 3 and len(ledger["computed"]) == 3 and not ledger["reused"]
    assert first[0]["value"] == 1.0 and first[0]["xs"] == [0, 1, 2]
    assert math.isnan(first[0]["nan"]) and first[0]["pair"] == [1, 1.0]
    with runcache.use(tmp_path) as ledger:
        again = run_cached(job, JOBS)
    assert len(CALLS) == 3  # nothing ran
    assert len(ledger["reused"]) == 3 and not ledger["computed"]
    assert ledger["reused"][1]["job"] == {"a": 2, "b": 0.5}
    assert json.dumps(again, default=str) == json.dumps(first, default=str)  # NaN and all
    with runcache.use(tmp_path) as ledger:
        run_cached(job, [{"a": 1}, {"a": 2, "b": 0.25}])
    assert CALLS[-1] == {"a": 2, "b": 0.25} and len(CALLS) == 4
    assert len(ledger["reused"]) == 1 and len(ledger["computed"]) == 1
    with runcache.use(tmp_path, read=False) as ledger:  # --no-cache: compute everything
        run_cached(job, JOBS)
    assert len(CALLS) == 7 and len(ledger["computed"]) == 3


def test_parallel_workers_fill_the_same_cache(tmp_path):
    with runcache.use(tmp_path):
        a = run_cached(job, JOBS, workers=2)
    CALLS.clear()
    with runcache.use(tmp_path) as ledger:
        b = run_cached(job, JOBS, workers=1)
    assert not CALLS and len(ledger["reused"]) == 3
    assert json.dumps(a, default=str) == json.dumps(b, default=str)


def test_a_failed_run_stores_nothing_but_the_runs_before_it_stay(tmp_path):
    with runcache.use(tmp_path), pytest.raises(RuntimeError, match="run 2 failed"):
        run_cached(failing, [{"a": 1}, {"a": 2}, {"a": 3}])
    with runcache.use(tmp_path) as ledger, pytest.raises(RuntimeError):
        run_cached(failing, [{"a": 1}, {"a": 2}])
    assert [r["job"] for r in ledger["reused"]] == [{"a": 1}]


def test_a_corrupt_entry_is_recomputed(tmp_path):
    CALLS.clear()
    with runcache.use(tmp_path):
        run_cached(job, [{"a": 5}])
    (entry,) = (tmp_path / "runs").glob("*.json")
    entry.write_text("{not json")
    with runcache.use(tmp_path) as ledger:
        out = run_cached(job, [{"a": 5}])
    assert len(CALLS) == 2 and ledger["computed"] and out[0]["a"] == 5


def test_the_key_covers_job_function_code_and_versions():
    fp = code_fingerprint(job)
    assert set(fp) == {"module", "finetune", "versions"}
    assert set(fp["versions"]) >= {"python", "numpy", "torch"}
    base = run_key(job, {"a": 1}, fp)
    assert base == run_key(job, {"a": 1}, fp)
    assert base != run_key(job, {"a": 2}, fp)
    assert base != run_key(failing, {"a": 1}, fp)
    assert base != run_key(job, {"a": 1}, {**fp, "finetune": "changed"})
    assert base != run_key(job, {"a": 1}, {**fp, "versions": {**fp["versions"],
                                                              "torch": "0.0"}})


def test_build_lists_the_reused_runs_in_the_manifest(tmp_path, monkeypatch):
    """A figure whose compute goes through run_cached: the first build computes, the second
    reuses and says so; cache=False computes again."""
    import pandas as pd

    from hybridconv.figures import figure_module
    from hybridconv.figures.build import build

    mod = figure_module("complexity")
    CALLS.clear()

    def compute(*, quick, workers, progress):
        rows = run_cached(job, JOBS, workers=workers)
        return pd.DataFrame({"a": [r["a"] for r in rows]})

    def plot(df):
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        ax.plot(df["a"])
        return fig

    monkeypatch.setattr(mod, "compute", compute)
    monkeypatch.setattr(mod, "plot", plot)
    monkeypatch.setattr("hybridconv.figures.build.git_revision", lambda: "test")
    out = tmp_path / "figs"
    build(["complexity"], quick=True, out=out, progress=False)
    entry = json.loads((out / "MANIFEST.json").read_text())["figures"]["complexity"]
    runs = entry["runs"]
    assert runs["computed"] == 3 and runs["reused"] == 0
    cpu = entry["cpu_seconds"]  # the work, beside the wall time (None without psutil)
    assert cpu is None or cpu >= 0
    build(["complexity"], quick=True, out=out, progress=False)
    runs = json.loads((out / "MANIFEST.json").read_text())["figures"]["complexity"]["runs"]
    assert runs["reused"] == 3 and runs["computed"] == 0 and len(CALLS) == 3
    assert [r["job"] for r in runs["reused_runs"]] == [{"a": 1}, {"a": 2, "b": 0.5}, {"a": 3}]
    build(["complexity"], quick=True, out=out, progress=False, cache=False)
    runs = json.loads((out / "MANIFEST.json").read_text())["figures"]["complexity"]["runs"]
    assert runs["computed"] == 3 and len(CALLS) == 6
    assert (out / "cache" / "runs").is_dir()
