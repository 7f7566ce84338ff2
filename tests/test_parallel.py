"""Sweeps on an engine: the same results serially, on local joblib workers and on a dask
cluster of two local workers."""

from __future__ import annotations

import pytest

from hybridconv.figures.measure import floor_job
from hybridconv.parallel import BACKENDS, check_backend, defaults, run_jobs

JOBS = [{"family": "quadratic", "n": 4, "d_x": 3, "d_y": 2, "seed": s,
         "params": {"m_x": 0.5, "m_y": 0.5, "sigma_y": 0.0},
         "config": {"method": "hybrid", "eta_x": 0.02, "eta_y": 0.02, "epochs": 12,
                    "trials": 3, "seed": s}, "burn": 4} for s in (1, 2, 3)]


def test_local_workers_equal_serial():
    assert run_jobs(floor_job, JOBS, workers=2) == run_jobs(floor_job, JOBS, workers=1)


def test_dask_cluster_with_two_local_workers_equals_serial():
    pytest.importorskip("dask.distributed")
    serial = run_jobs(floor_job, JOBS)
    assert run_jobs(floor_job, JOBS, workers=2, backend="dask") == serial
    with defaults(backend="dask"):  # how hybridconv figures --backend reaches the figures
        assert run_jobs(floor_job, JOBS, workers=2) == serial


def test_backend_validation():
    assert BACKENDS == ("local", "dask", "ray")
    with pytest.raises(ValueError, match="backend must be one of"):
        check_backend("spark")
    with pytest.raises(ValueError, match="backend must be one of"):
        run_jobs(floor_job, JOBS, backend="spark")
    with pytest.raises(ValueError, match="backend must be one of"):
        with defaults(backend="mpi"):
            pass


def test_ray_missing_is_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    with pytest.raises(ValueError, match="backend 'ray' needs ray"):
        run_jobs(floor_job, JOBS, workers=2, backend="ray")


@pytest.mark.slow
def test_check_report_runs_its_searches_on_workers(tmp_path, capsys):
    """hybridconv check --report --workers 2: the same table as a serial run (slow: two
    quick reports, about a minute on 2 cores)."""
    import pandas as pd

    from hybridconv.cli import main

    for workers, out in ((1, tmp_path / "a"), (2, tmp_path / "b")):
        assert main(["check", "--report", "--quick", "--workers", str(workers), "--out-dir",
                     str(out), "--json"]) == 0
        capsys.readouterr()
    a = pd.read_csv(tmp_path / "a" / "docs" / "tightness.csv").drop(columns="seconds")
    b = pd.read_csv(tmp_path / "b" / "docs" / "tightness.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(a, b)
