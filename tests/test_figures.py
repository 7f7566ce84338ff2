"""The figures: registry, shared measurements, each figure's compute -> CSV -> plot path, the
build command and its manifest. Tiny settings (monkeypatched ``SETTINGS["quick"]``) keep every
figure under a few seconds; the full settings are exercised by ``hybridconv figures``."""

from __future__ import annotations

import json
import math
import time

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from hybridconv.cli import main  # noqa: E402
from hybridconv.figures import FIGURES, figure_module  # noqa: E402
from hybridconv.figures import measure as M  # noqa: E402
from hybridconv.figures.build import build  # noqa: E402
from hybridconv.parallel import run_jobs  # noqa: E402
from hybridconv.problems.quadratic import QuadraticProblem  # noqa: E402
from hybridconv.sim import SimConfig, simulate  # noqa: E402
from hybridconv.theory.bound import hybrid_bound  # noqa: E402

TINY = {
    "rates": {"n": 4, "d_x": 4, "d_y": 2, "epochs": 20, "trials": 4},
    "regimes": {"n": 4, "d_x": 4, "d_y": 2, "epochs": 10, "trials": 3, "grid": 3},
    "sampling": {"etas": (0.01, 0.02), "fixed_eta_y": 0.01, "fixed_eta_x": 0.01, "trials": 4,
                 "burn_efolds": 1.0, "average_efolds": 1.0, "max_epochs": 30},
    "complexity": {"etas": (0.01, 0.05), "epochs": 40, "trials": 3, "eps": (0.3, 1.0)},
    "dimension": {"d_x": (2, 4), "q": (1, 2), "q_at_d_x": 4, "eta_x": 0.01, "eta_y": 0.01,
                  "trials": 4, "burn_efolds": 1.0, "average_efolds": 1.0, "max_epochs": 30},
}


@pytest.fixture
def tiny(monkeypatch):
    """Shrink every simulator figure's quick settings."""
    for name, s in TINY.items():
        monkeypatch.setitem(figure_module(name).SETTINGS, "quick", s)
    return TINY


def test_registry_modules_have_the_interface():
    for name in FIGURES:
        mod = figure_module(name)
        assert mod.NAME == name
        assert isinstance(mod.TITLE, str) and mod.TITLE
        for fn in ("settings", "compute", "plot"):
            assert callable(getattr(mod, fn))
        for quick in (True, False):
            json.dumps(mod.settings(quick), default=float)
    with pytest.raises(ValueError, match="figure must be one of"):
        figure_module("nope")


@pytest.mark.parametrize("name", ["rates", "regimes", "sampling", "complexity", "dimension"])
def test_figure_plots_from_its_csv_alone(name, tiny, tmp_path):
    mod = figure_module(name)
    df = mod.compute(quick=True)
    assert len(df) > 0
    path = tmp_path / f"{name}.csv"
    df.to_csv(path, index=False)
    back = pd.read_csv(path)
    fig = mod.plot(back)
    assert len(fig.axes) >= 1
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_rates_bound_is_above_the_hybrid_at_admissible_steps(tiny):
    mod = figure_module("rates")
    df = mod.compute(quick=True)
    for family in ("quadratic", "nonconvex"):
        d = df[(df["family"] == family) & (df["scale"] == 1)]
        b = d[d["method"] == "bound"].set_index("epoch")["mean"]
        h = d[d["method"] == "hybrid"].set_index("epoch")
        common = b.index.intersection(h.index)
        assert len(common) > 3
        # the theorem's measure, min_{s<t} of the mean over every epoch, stays under B(T = t)
        assert (h.loc[common, "min_before"] <= b.loc[common]).all()
        # ... and is the running minimum of an independent simulation with the same seed
        s = mod.SETTINGS["quick"]
        cfg = SimConfig(method="hybrid", eta_x=float(h["eta_x"].iloc[0]),
                        eta_y=float(h["eta_y"].iloc[0]), mu=1e-3, epochs=s["epochs"],
                        trials=s["trials"], seed=mod.SEED)
        problem = M.build_problem(family, s["n"], s["d_x"], s["d_y"], mod.SEED,
                                  mod.PARAMS[family])
        mean = simulate(problem, cfg).groupby("epoch")["grad_sq"].mean()
        want = mean.cummin().shift(1)
        np.testing.assert_allclose(h.loc[common, "min_before"], want.loc[common], rtol=1e-12)
        outside = df[(df["family"] == family) & (df["scale"] > 1)]
        assert not (outside["method"] == "bound").any()


def test_regimes_markers_and_region(tiny):
    df = figure_module("regimes").compute(quick=True)
    kinds = set(df["kind"])
    assert {"cell", "condition", "bound_optimal", "single_rate_optimal",
            "measured_best"} <= kinds
    single = df[df["kind"] == "single_rate_optimal"].iloc[0]
    assert single["eta_x"] == pytest.approx(single["eta_y"])
    cond = df[df["kind"] == "condition"]
    assert cond["admissible"].astype(bool).any() and not cond["admissible"].astype(bool).all()
    opt = df[df["kind"] == "bound_optimal"].iloc[0]
    mod = figure_module("regimes")
    s = mod.SETTINGS["quick"]
    problem = M.build_problem(mod.FAMILY, s["n"], s["d_x"], s["d_y"], mod.SEED, mod.PARAMS)
    values = M.bound_values(problem, SimConfig(epochs=s["epochs"], trials=2, mu=1e-3))
    values.update(eta_x=float(opt["eta_x"]), eta_y=float(opt["eta_y"]))
    bound = hybrid_bound()
    assert bound.holds(**values)  # the optimal pair is admissible
    for _, row in cond.sample(25, random_state=0).iterrows():  # the mask is the conditions
        at = {**values, "eta_x": row["eta_x"], "eta_y": row["eta_y"]}
        assert bool(row["admissible"]) == bound.holds(**at)
    assert opt["eta_y"] / opt["eta_x"] > 1  # natural weights favour a larger FO rate
    cells = df[df["kind"] == "cell"]
    best = df[df["kind"] == "measured_best"].iloc[0]
    assert best["mean"] == pytest.approx(cells["mean"].min())


def test_sampling_slopes_are_reported(tiny):
    df = figure_module("sampling").compute(quick=True)
    meas = df[df["kind"] == "measured"]
    assert set(meas["sampling"]) == {"rr", "so", "ig", "wr"}
    assert meas.groupby(["panel", "sampling"])["slope"].nunique().eq(1).all()
    assert df[df["kind"] == "closed_form"]["floor"].notna().any()


def test_band_is_the_student_t_interval():
    lo, hi = M.band(np.array([1.0]), np.array([2.0]), np.array([5]))
    from scipy import stats

    half = stats.t.ppf(0.975, 4) * 2.0 / math.sqrt(5)
    assert lo[0] == pytest.approx(1 - half) and hi[0] == pytest.approx(1 + half)
    lo, hi = M.band(np.array([1.0]), np.array([np.nan]), np.array([1]))
    assert np.isnan(lo[0]) and np.isnan(hi[0])


@settings(max_examples=30, deadline=None)
@given(p=st.floats(-4, 4), c=st.floats(1e-3, 1e3))
def test_fit_slope_recovers_a_power_law(p, c):
    x = np.geomspace(1e-3, 1.0, 6)
    assert M.fit_slope(x, c * x**p) == pytest.approx(p, abs=1e-8)


def test_fit_slope_needs_two_points():
    assert math.isnan(M.fit_slope([1.0], [2.0]))
    assert math.isnan(M.fit_slope([1.0, 2.0], [0.0, -1.0]))


@pytest.mark.parametrize("ratio", [1.0, 10.0, 0.3])
def test_bound_epochs_is_the_smallest_certifying_T(ratio):
    """Checked independently of the grid: for T = bound_epochs(eps), a bounded scalar
    minimization of the bound over admissible eta finds a value <= eps^2 at T and none at
    T - 1 (up to the grid's resolution, 1%)."""
    from scipy.optimize import minimize_scalar

    bound = hybrid_bound()
    problem = QuadraticProblem(8, 4, 4, m_x=0.5, m_y=0.5, sigma_x=1.0, sigma_y=1.0, seed=1)
    values = {**problem.constants(), "mu": 0.0, "q": 1, "n": 8}
    values.pop("d_y")
    eps = np.array([0.2, 0.5, 1.0])
    T = M.bound_epochs(bound, values, eps, ratio=ratio)
    assert np.all(np.diff(T) < 0)  # a looser target needs fewer epochs
    ex, ey = bound.admissible_steps(**values, T=1.0)
    top = min(ex, ey / ratio)

    def best(t: float) -> float:
        def f(log_eta: float) -> float:
            eta = 10.0**log_eta
            at = {**values, "eta_x": eta, "eta_y": ratio * eta, "T": t}
            return bound.evaluate(**at) if bound.holds(**at) else math.inf

        r = minimize_scalar(f, bounds=(math.log10(top) - 8, math.log10(top)), method="bounded",
                            options={"xatol": 1e-6})
        return float(r.fun)

    for e, t in zip(eps, T, strict=True):
        assert best(t) <= e**2 * 1.01
        assert best(t - 1) > e**2 * 0.99
    # a target below every admissible floor is never certified
    assert math.isnan(M.bound_epochs(bound, {**values, "sigma_x": 1e3}, [1e-3])[0])


def test_parallel_jobs_equal_serial():
    jobs = [{"family": "quadratic", "n": 4, "d_x": 3, "d_y": 2, "seed": s,
             "params": {"m_x": 0.5, "m_y": 0.5, "sigma_y": 0.0},
             "config": {"method": "hybrid", "eta_x": 0.02, "eta_y": 0.02, "epochs": 15,
                        "trials": 3, "seed": s}, "burn": 5} for s in (1, 2, 3)]
    assert run_jobs(M.floor_job, jobs, workers=2) == run_jobs(M.floor_job, jobs, workers=1)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_workers_are_validated(bad):
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        run_jobs(M.floor_job, [], workers=bad)


def test_closed_form_floor_with_replacement_matches_the_simulator():
    """The hybrid's ZO-block floor under sampling with replacement (the closed form adds S_xx
    to the direction noise). Statistical: 128 trials, seed 321; the measured floor must be
    within 10% (first order in eta_x) plus 3 standard errors (99.7%) of the prediction, and
    nearer to it than to the prediction without the sampling term (17% lower here)."""
    problem = QuadraticProblem(8, 4, 4, m_x=0.5, m_y=0.5, sigma_x=1.0, sigma_y=0.0, seed=321)
    eta = 0.01
    burn, total = M.floor_epochs(eta, eta, 8, M.smallest_curvature(problem), burn_efolds=3,
                                 average_efolds=6)
    got = M.floor_job("quadratic", 8, 4, 4, 321, {"m_x": 0.5, "m_y": 0.5, "sigma_x": 1.0,
                                                 "sigma_y": 0.0},
                      {"method": "hybrid", "sampling": "wr", "eta_x": eta, "eta_y": eta,
                       "epochs": total, "trials": 128, "seed": 321}, burn)
    want = problem.noise_floor(method="hybrid", sampling="wr", eta_x=eta, eta_y=eta)
    rr = problem.noise_floor(method="hybrid", sampling="rr", eta_x=eta, eta_y=eta)
    assert want > 1.1 * rr  # sampling noise adds to the direction noise
    assert abs(got["floor"] / want - 1) <= 0.10 + 3 * got["se"] / want
    assert abs(got["floor"] - want) < abs(got["floor"] - rr)


def test_floor_job_leaves_diverged_trials_out():
    job = {"family": "quadratic", "n": 4, "d_x": 3, "d_y": 2, "seed": 0,
           "params": {"m_x": 0.5, "m_y": 0.5},
           "config": {"method": "zo", "eta_x": 3.0, "eta_y": 3.0, "epochs": 200, "trials": 6,
                      "seed": 0}, "burn": 2}
    r = M.floor_job(**job)
    assert r["diverged"] > 0 and r["trials"] + r["diverged"] == 6
    assert r["trials"] == 0 or np.isfinite(r["floor"])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"method": "fo", "sampling": "so"}, "no closed-form floor"),
    ({"method": "zo", "sampling": "rr"}, "no closed-form floor"),
    ({"method": "fo", "sampling": "rr", "eta_x": 0.0}, "eta_x must be"),
    ({"method": "fo", "sampling": "rr", "q": 0}, "q must be"),
    ({"method": "fo", "sampling": "rr", "eta_x": 5.0}, "do not contract"),
    ({"method": "hybrid", "sampling": "rr"}, "needs sigma_y = 0"),
])
def test_noise_floor_bad_input(kwargs, message):
    problem = QuadraticProblem(4, 2, 2, m_x=0.5, m_y=0.5, seed=0)
    args = {"eta_x": 0.01, "eta_y": 0.01, **kwargs}
    with pytest.raises(ValueError, match=message):
        problem.noise_floor(**args)


def test_build_writes_manifest_and_replots_without_computing(tiny, tmp_path, monkeypatch):
    out = tmp_path / "figs"
    built = build(["sampling", "dimension"], quick=True, out=out, progress=False)
    assert set(built) == {"sampling", "dimension"}
    for name in built:
        for ext in ("png", "pdf"):
            assert (out / f"{name}.{ext}").stat().st_size > 1000
        assert (out / "data" / f"{name}.csv").exists()
    manifest = json.loads((out / "MANIFEST.json").read_text())
    entry = manifest["figures"]["sampling"]
    assert entry["mode"] == "quick" and entry["settings"]["seed"] == 303
    assert entry["command"].endswith("--only sampling")
    assert entry["git_revision"] and entry["compute_seconds"] >= 0
    assert entry["replaced"] == []

    def boom(**_):
        raise AssertionError("--replot must not compute")

    monkeypatch.setattr(figure_module("sampling"), "compute", boom)
    again = build(["sampling"], quick=True, replot=True, out=out, progress=False)
    assert again["sampling"]["replaced"]  # it says what it replaced
    assert again["sampling"]["compute_seconds"] == entry["compute_seconds"]
    manifest = json.loads((out / "MANIFEST.json").read_text())
    assert set(manifest["figures"]) == {"sampling", "dimension"}  # others kept


def test_same_seed_same_data(tiny):
    a = figure_module("dimension").compute(quick=True)
    b = figure_module("dimension").compute(quick=True, workers=2)
    pd.testing.assert_frame_equal(a, b)


def test_replot_refuses_the_other_mode_and_a_failed_plot_keeps_the_old_csv(tiny, tmp_path,
                                                                         monkeypatch):
    out = tmp_path / "figs"
    build(["dimension"], quick=True, out=out, progress=False)
    with pytest.raises(ValueError, match="other mode"):
        build(["dimension"], quick=False, replot=True, out=out, progress=False)
    csv = out / "data" / "dimension.csv"
    before = csv.read_text()
    mod = figure_module("dimension")
    monkeypatch.setitem(mod.SETTINGS, "quick", {**TINY["dimension"], "trials": 5})

    def broken(df):
        raise RuntimeError("plot failed")

    monkeypatch.setattr(mod, "plot", broken)
    with pytest.raises(RuntimeError, match="plot failed"):
        build(["dimension"], quick=True, out=out, progress=False)
    assert csv.read_text() == before  # the data still matches the figure and the manifest


def test_build_errors(tmp_path):
    with pytest.raises(ValueError, match="needs the cached data"):
        build(["rates"], replot=True, out=tmp_path, progress=False)
    with pytest.raises(ValueError, match="figure must be one of"):
        build(["nope"], out=tmp_path, progress=False)
    with pytest.raises(ValueError, match="workers"):
        build(["rates"], workers=0, out=tmp_path, progress=False)


def test_cli_figures(tiny, tmp_path, capsys):
    out = tmp_path / "f"
    assert main(["figures", "--quick", "--only", "complexity", "--out", str(out),
                 "--no-progress"]) == 0
    assert "complexity:" in capsys.readouterr().out
    assert main(["figures", "--replot", "--only", "rates", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs the cached data" in err[0]
    assert main(["figures", "--workers", "0", "--out", str(out)]) == 2


def test_tightness_figure_plots_a_table():
    """The plot from a table of tightness_table's shape (the search itself: tests/
    test_tightness.py; the whole compute: the slow test below)."""
    from hybridconv.validate.tightness import FAMILIES, REGIMES

    mod = figure_module("tightness")
    rows = [{"family": f, "regime": r, "max_ratio": 10.0 ** -(i + j + 1),
             "ci_lower": 10.0 ** -(i + j + 2), "ci_upper": 10.0 ** -(i + j + 0.5)}
            for i, f in enumerate(FAMILIES) for j, r in enumerate(REGIMES)]
    rows[0].update(max_ratio=float("nan"), ci_lower=float("nan"), ci_upper=float("nan"))
    fig = mod.plot(pd.DataFrame(rows))
    assert len(fig.axes) >= 1
    import matplotlib.pyplot as plt

    plt.close(fig)


@pytest.mark.slow
def test_tightness_figure(tiny, tmp_path):
    from hybridconv.validate.tightness import FAMILIES

    mod = figure_module("tightness")
    df = mod.compute(quick=True)
    assert set(df["family"]) == set(FAMILIES)  # every family, hetero and lowrank included
    finite = df["max_ratio"].dropna()
    assert (finite < 1).all()  # no violation found
    fig = mod.plot(df)
    import matplotlib.pyplot as plt

    plt.close(fig)


@pytest.mark.slow
def test_finetuning_figure(monkeypatch, tmp_path):
    """Quick mode: a tiny sweep through the experiment runner; the plot reads its rows back
    from CSV (needs the [llm] extra and the data)."""
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    mod = figure_module("finetuning")
    quick = {**mod.QUICK, "base": {"k_shot": 4, "test_size": 8, "epochs": 2, "batch_size": 4,
                                   "max_length": 16}}
    monkeypatch.setattr(mod, "QUICK", quick)
    df = mod.compute(quick=True)
    assert set(df["label"]) == {"probe", "fo-peft-lora", "hybrid-lora"}
    fin = df.sort_values("epoch").groupby("run_id").tail(1).set_index("label")
    assert (fin["status"] == "completed").all()
    assert fin.loc["hybrid-lora", "forward_passes"] == 3 * fin.loc["hybrid-lora", "step"]
    assert fin.loc["probe", "step"] == 0
    path = tmp_path / "f.csv"
    df.to_csv(path, index=False)
    fig = mod.plot(pd.read_csv(path))
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_finetuning_figure_without_results_says_what_to_run(monkeypatch, tmp_path):
    mod = figure_module("finetuning")
    monkeypatch.setattr(mod, "SPECS", ())
    with pytest.raises(ValueError, match="hybridconv experiment"):
        mod.compute(quick=False)


def test_a_side_figure_is_computed_beside_the_others_with_the_same_data(tmp_path, monkeypatch):
    """With workers >= 2 the mode's figure of ``SIDE`` is computed in a spawned side process
    while the others compute (here the dimension figure stands in for the fine-tuning one): the
    same data as in-process, its own times and workers in the manifest, no process left
    behind."""
    psutil = pytest.importorskip("psutil")

    import hybridconv.figures.build as B

    monkeypatch.setattr(B, "SIDE", {"quick": ("dimension", 1), "full": ("realruns", None)})
    out = tmp_path / "figs"
    built = build(["dimension", "complexity"], quick=True, workers=2, out=out, progress=False)
    assert set(built) == {"dimension", "complexity"}
    assert built["dimension"]["workers"] == 1 and built["complexity"]["workers"] == 2
    # on the build's workers the side starts its own worker pool; it must end with the side,
    # not after the pool's 5-minute idle timeout (a hang guard, not a speed target)
    monkeypatch.setattr(B, "SIDE", {"quick": ("dimension", None), "full": ("realruns", None)})
    t0 = time.perf_counter()
    again = build(["dimension", "complexity"], quick=True, workers=2, out=tmp_path / "two",
                  progress=False)
    assert again["dimension"]["workers"] == 2 and time.perf_counter() - t0 < 150
    assert built["dimension"]["compute_seconds"] > 0
    assert built["dimension"]["cpu_seconds"] is None or built["dimension"]["cpu_seconds"] > 0
    here = figure_module("dimension").compute(quick=True)
    assert (out / "data" / "dimension.csv").read_text() == here.to_csv(
        index=False, float_format="%.10g")
    left = [c for c in psutil.Process().children(recursive=True)
            if "spawn_main" in " ".join(c.cmdline())]  # the side (loky's workers are reused)
    assert not left


def test_the_side_figure_is_the_modes_longest():
    """Full mode sends the real-run figure's runs to the side on the build's workers; quick
    mode the fine-tuning figure's, on one (docs/figures.md measures both)."""
    import hybridconv.figures.build as B

    assert B.SIDE["full"] == ("realruns", None) and B.SIDE["quick"] == ("finetuning", 1)
    assert {name for name, _ in B.SIDE.values()} <= set(FIGURES)


def test_an_interrupted_build_ends_its_side_process(tmp_path, monkeypatch):
    """Ctrl-C while the other figures compute: KeyboardInterrupt reaches the caller (the CLI
    turns it into exit status 130), the side process is terminated, no file is written."""
    psutil = pytest.importorskip("psutil")

    import hybridconv.figures.build as B

    def interrupted(**_):
        raise KeyboardInterrupt

    monkeypatch.setattr(B, "SIDE", {"quick": ("dimension", None), "full": ("realruns", None)})
    monkeypatch.setattr(figure_module("complexity"), "compute", interrupted)
    out = tmp_path / "figs"
    with pytest.raises(KeyboardInterrupt):
        build(["complexity", "dimension"], quick=True, workers=2, out=out, progress=False)
    assert not [c for c in psutil.Process().children(recursive=True)
                if "spawn_main" in " ".join(c.cmdline())]
    assert not out.exists() or not any(out.rglob("*.csv"))


def test_a_side_process_ends_when_its_parent_is_killed(tmp_path):
    """A parent killed without cleaning up (SIGKILL) cannot end its side process; the side's
    watchdog (``_end_with_parent``) sees the parent's sentinel close and ends the side, so no
    orphan computes on for minutes."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    import hybridconv.figures.build as B

    psutil = pytest.importorskip("psutil")
    script = tmp_path / "parent.py"
    script.write_text(
        "import multiprocessing, sys, time\n"
        "from hybridconv.figures.build import _end_with_parent\n"
        "def hold():\n"
        "    _end_with_parent()\n"
        "    time.sleep(600)\n"
        "if __name__ == '__main__':\n"
        "    p = multiprocessing.get_context('spawn').Process(target=hold)\n"
        "    p.start()\n"
        "    print(p.pid, flush=True)\n"
        "    time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(Path(B.__file__).parents[2])})
    try:
        side = psutil.Process(int(parent.stdout.readline()))
        time.sleep(1.0)  # the side is up (its watchdog may start a little later: either way)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        side.wait(60)  # psutil.TimeoutExpired: the orphan went on
    finally:
        parent.kill()
