"""The simulator: determinism, samplers, estimators, the step, divergence, bad input, CLI."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hybridconv.cli import main
from hybridconv.problems import QuadraticProblem, make_problem
from hybridconv.problems.base import Problem
from hybridconv.sim import (
    RECORD_COLUMNS,
    Sampler,
    SimConfig,
    hybrid_step,
    sample_directions,
    simulate,
)


@pytest.fixture(scope="module")
def quad():
    return QuadraticProblem(6, 5, 3, seed=3)


def test_records_are_tidy(quad):
    df = simulate(quad, SimConfig(epochs=4, trials=7))
    assert len(df) == 7 * 5
    assert set(RECORD_COLUMNS) <= set(df.columns)
    assert {"method", "sampling", "eta_x", "eta_y", "mu", "q", "n", "d_x", "d_y",
            "problem", "seed"} <= set(df.columns)
    assert np.allclose(df["grad_sq"], df["grad_x_sq"] + df["grad_y_sq"])
    assert not df["diverged"].any()


def test_same_seed_same_numbers(quad):
    cfg = SimConfig(epochs=3, trials=5, seed=11)
    pd.testing.assert_frame_equal(simulate(quad, cfg), simulate(quad, cfg))
    other = simulate(quad, SimConfig(epochs=3, trials=5, seed=12))
    assert not np.allclose(other["F"], simulate(quad, cfg)["F"])


def test_trials_are_independent_streams(quad):
    df = simulate(quad, SimConfig(epochs=2, trials=4))
    last = df[df.epoch == 2]["F"].to_numpy()
    assert len(np.unique(last)) == 4


@pytest.mark.parametrize("sampling", ["rr", "so", "ig", "wr"])
def test_samplers(sampling):
    s = Sampler(sampling, n=7, trials=50, rng=np.random.default_rng(0))
    a, b = s.epoch(0), s.epoch(1)
    assert a.shape == (50, 7) and a.min() >= 0 and a.max() < 7
    if sampling != "wr":
        assert (np.sort(a, axis=1) == np.arange(7)).all()
    if sampling in ("so", "ig"):
        assert (a == b).all()
    if sampling == "ig":
        assert (a == np.arange(7)).all()
    if sampling == "rr":
        assert not (a == b).all()
    if sampling == "wr":
        assert any(len(set(row)) < 7 for row in a)


@pytest.mark.parametrize("kind", ["gaussian", "sphere", "rademacher"])
def test_directions(kind):
    u = sample_directions(np.random.default_rng(1), (20000, 1, 6), kind)
    cov = np.einsum("bqi,bqj->ij", u, u) / 20000
    assert np.allclose(cov, np.eye(6), atol=0.06)  # E u u^T = I, 20000 samples
    if kind != "gaussian":
        assert np.allclose((u**2).sum(-1), 6.0)
    if kind == "rademacher":
        assert set(np.unique(u)) == {-1.0, 1.0}


@pytest.mark.parametrize("kind", ["gaussian", "sphere", "rademacher"])
def test_torch_generator_directions(kind):
    """The torch generator's directions have the same law: E u u^T = I (20000 samples; the
    tolerance 0.06 is about 8 standard errors of an entry), fixed norms for the sphere and
    Rademacher; float64 arrays; the same seed gives the same numbers, another seed others."""
    from hybridconv.sim.generators import TorchGenerator

    def draw(seed):
        return sample_directions(TorchGenerator(np.random.SeedSequence(seed)),
                                 (20000, 1, 6), kind)

    u = draw(1)
    assert u.dtype == np.float64 and u.shape == (20000, 1, 6)
    cov = np.einsum("bqi,bqj->ij", u, u) / 20000
    assert np.allclose(cov, np.eye(6), atol=0.06)
    if kind != "gaussian":
        assert np.allclose((u**2).sum(-1), 6.0)
    else:  # E<a,u>^2 ||u||^2 = d + 2 for a Gaussian (d = 6: 8), a 4th-moment check
        assert abs(np.mean(u[:, 0, 0] ** 2 * (u[:, 0] ** 2).sum(-1)) - 8.0) < 0.5
    if kind == "rademacher":
        assert set(np.unique(u)) == {-1.0, 1.0}
    assert np.array_equal(u, draw(1)) and not np.array_equal(u, draw(2))


def test_torch_generator_uniform_and_integers():
    """The other two draws: the range and the dtype asked for, deterministic per seed."""
    from hybridconv.sim.generators import TorchGenerator

    g = TorchGenerator(np.random.SeedSequence(5))
    v = g.uniform(-1.0, 2.0, (4000,))
    assert v.dtype == np.float64 and v.min() >= -1.0 and v.max() < 2.0
    assert abs(v.mean() - 0.5) < 0.1  # sd of the mean 0.014: 7 sd
    b = g.integers(0, 256, (4000,), dtype=np.uint8)
    assert b.dtype == np.uint8 and len(np.unique(b)) == 256
    h = TorchGenerator(np.random.SeedSequence(5))
    assert np.array_equal(h.uniform(-1.0, 2.0, (4000,)), v)
    w = h.uniform(size=(4000,))  # numpy's defaults: [0, 1)
    assert w.min() >= 0.0 and w.max() < 1.0 and abs(w.mean() - 0.5) < 0.05
    k = h.integers(5, 9, (4000,))
    assert set(np.unique(k)) == {5, 6, 7, 8}
    # low and high stay float64 (torch's own uniform_(0.7, 1.0) could return 0.7f < 0.7)
    u = TorchGenerator(np.random.SeedSequence(6)).uniform(size=(4000,))
    z = TorchGenerator(np.random.SeedSequence(6)).uniform(0.7, 1.0, (4000,))
    assert np.array_equal(z, 0.7 + (1.0 - 0.7) * u) and z.min() >= 0.7


def test_torch_generator_seeding_is_pinned():
    """The documented seed: the first 64-bit word of the block's SeedSequence state (a change
    would silently change every torch-drawn record)."""
    import torch

    from hybridconv.sim.generators import TorchGenerator

    ss = np.random.SeedSequence([3, 7002], spawn_key=(1,))
    ref = torch.Generator().manual_seed(int(ss.generate_state(1, np.uint64)[0]))
    expected = torch.empty(10).normal_(generator=ref).numpy().astype(np.float64)
    assert np.array_equal(TorchGenerator(ss).standard_normal((10,)), expected)


def test_torch_generator_ignores_torch_default_dtype():
    """A user's ``torch.set_default_dtype(torch.float64)`` (common in scientific code) must not
    change the torch-drawn records: the draws are float32 whatever the default (float64
    ``normal_`` and ``uniform_`` give other numbers from the same seed)."""
    import torch

    from hybridconv.sim.generators import TorchGenerator

    def draws():
        g = TorchGenerator(np.random.SeedSequence(11))
        return g.standard_normal((64,)), g.uniform(0.2, 0.9, (64,))

    ref = draws()
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        got = draws()
    finally:
        torch.set_default_dtype(old)
    assert all(np.array_equal(a, b) for a, b in zip(ref, got, strict=True))
    # the Gaussians are float32 numbers (exactly representable in float32)
    assert np.array_equal(ref[0].astype(np.float32).astype(np.float64), ref[0])


def test_generators_give_other_numbers_for_one_seed():
    """numpy and torch: each deterministic, different from the other (records name it)."""
    p = QuadraticProblem(4, 3, 2, seed=0)
    runs = {g: simulate(p, SimConfig(epochs=2, trials=3, generator=g), threads=1)
            for g in ("numpy", "torch")}
    assert not np.array_equal(runs["numpy"]["F"], runs["torch"]["F"])
    assert (runs["torch"]["generator"] == "torch").all()
    again = simulate(p, SimConfig(epochs=2, trials=3, generator="torch"), threads=1)
    pd.testing.assert_frame_equal(runs["torch"], again, check_exact=True)


def test_a_bad_generator_is_named():
    with pytest.raises(ValueError, match="generator must be one of numpy, torch"):
        SimConfig(generator="jax")


@given(st.integers(0, 10**6), st.sampled_from(["central", "forward"]), st.sampled_from(["x", "y"]))
def test_quadratic_closed_form_differences_match_values(seed, difference, block):
    """The quadratic's closed-form differences equal the value-based ones (up to rounding)."""
    p = QuadraticProblem(4, 3, 2, seed=seed % 97)
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    idx = rng.integers(0, 4, 5)
    u = rng.standard_normal((5, 3, 3 if block == "x" else 2))
    fast = p.zo_differences(x, y, idx, u, 1e-2, difference, block)
    slow = Problem.zo_differences(p, x, y, idx, u, 1e-2, difference, block)
    assert np.allclose(fast, slow, rtol=1e-6, atol=1e-8)


def test_fo_incremental_step_is_gradient_descent_on_components(quad):
    """method fo with sampling ig: the iterate is plain incremental gradient."""
    cfg = SimConfig(method="fo", sampling="ig", eta_x=0.05, eta_y=0.02, epochs=1, trials=1)
    df = simulate(quad, cfg)
    x, y = quad.start()
    x, y = x[None], y[None]
    for i in range(quad.n):
        gx, gy = quad.grads(x, y, np.array([i]))
        x, y = x - 0.05 * gx, y - 0.02 * gy
    assert df[df.epoch == 1]["F"].iloc[0] == pytest.approx(quad.value(x, y)[0], rel=1e-12)


def test_hybrid_step_uses_the_same_point_for_both_blocks(quad):
    """Jacobi: the y update uses grad_y at the old x (not at the updated x)."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((3, 5)), rng.standard_normal((3, 3))
    idx = np.array([0, 1, 2])
    nx, ny = hybrid_step(quad, x, y, idx, eta_x=0.1, eta_y=0.1, oracles=("zo", "fo"), mu=1e-3,
                         q=2, directions="gaussian", difference="central", rng=rng)
    assert np.allclose(ny, y - 0.1 * quad.grads(x, y, idx)[1])
    assert not np.allclose(nx, x)


def test_reversed_method_is_the_mirror_image(quad):
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((2, 5)), rng.standard_normal((2, 3))
    idx = np.array([0, 3])
    nx, ny = hybrid_step(quad, x, y, idx, eta_x=0.1, eta_y=0.1, oracles=("fo", "zo"),
                         mu=1e-3, q=1, directions="gaussian", difference="central", rng=rng)
    assert np.allclose(nx, x - 0.1 * quad.grads(x, y, idx)[0])
    assert len(simulate(quad, SimConfig(method="reversed", epochs=1, trials=2))) == 4


def test_zo_method_moves_both_blocks_with_directions(quad):
    df_zo = simulate(quad, SimConfig(method="zo", epochs=2, trials=3, eta_x=1e-3, eta_y=1e-3))
    df_fo = simulate(quad, SimConfig(method="fo", epochs=2, trials=3, eta_x=1e-3, eta_y=1e-3))
    assert df_zo[df_zo.epoch == 2]["F"].std() > 0
    assert not np.allclose(df_zo[df_zo.epoch == 2]["F"], df_fo[df_fo.epoch == 2]["F"])
    # ig + fo is deterministic: every trial follows the same path
    df_ig = simulate(quad, SimConfig(method="fo", sampling="ig", epochs=2, trials=3))
    assert df_ig[df_ig.epoch == 2]["F"].std() == 0


class Exploding(Problem):
    """f_i(x, y) = exp(x_0^2) + ||y||^2 / 2: fine near 0, overflows from x_0 = 3 on."""

    name = "exploding"

    def values(self, x, y, idx):
        return np.exp(x[:, 0] ** 2) + 0.5 * (y**2).sum(1) + 0.0 * x[:, 1:].sum(1)

    def grads(self, x, y, idx):
        gx = np.zeros_like(x)
        gx[:, 0] = 2 * x[:, 0] * np.exp(x[:, 0] ** 2)
        return gx, y.copy()

    def f_star(self):
        return 1.0

    def constants(self, x0=None, y0=None):
        return {}


def test_divergence_is_marked_and_frozen():
    p = Exploding(2, 2, 2)
    x0 = np.zeros((4, 2))
    x0[1, 0] = 3.0  # this trial overflows in the first steps
    df = simulate(p, SimConfig(method="fo", epochs=3, trials=4, eta_x=0.1, eta_y=0.1), x0=x0)
    bad = df[df.trial == 1]
    assert bad[bad.epoch >= 1]["diverged"].all()
    assert bad[bad.epoch >= 1]["F"].isna().all()
    good = df[df.trial != 1]
    assert not good["diverged"].any() and good["F"].notna().all()


class Tracked(QuadraticProblem):
    """The same quadratic with a (trivial) region: the runner then checks finiteness after
    every step instead of at each epoch's end."""

    def in_region(self, x, y):
        return np.ones(x.shape[0], dtype=bool)


@pytest.mark.parametrize("eta_x", [2.0, 8.0])  # 136 and all 150 trials diverge
def test_per_epoch_finiteness_check_marks_what_the_per_step_check_marks(eta_x):
    args = dict(n=6, d_x=5, d_y=3, seed=2)
    cfg = SimConfig(method="hybrid", epochs=12, trials=150, eta_x=eta_x, eta_y=0.05, seed=4)
    plain = simulate(QuadraticProblem(**args), cfg, threads=1)
    tracked = simulate(Tracked(**args), cfg, threads=1)
    at = plain.groupby("trial")["diverged"].sum()
    assert (at > 0).sum() >= 136 and at[at > 0].nunique() > 1  # at several epochs
    pd.testing.assert_frame_equal(plain, tracked, check_exact=True)


def test_all_diverged_stops_early_and_keeps_records(quad):
    df = simulate(quad, SimConfig(epochs=50, trials=3, eta_x=50.0, eta_y=50.0))
    assert len(df) == 3 * 51
    assert df[df.epoch == 50]["diverged"].all()
    assert df[df.epoch == 0]["F"].notna().all()


def test_schedules(quad):
    cfg = SimConfig(epochs=3, trials=2, eta_x=lambda t: 1e-3 / (t + 1), eta_y=lambda t: 1e-2)
    df = simulate(quad, cfg)
    assert len(df) == 8
    with pytest.raises(ValueError, match="eta_y at epoch 1 must be a finite real number > 0"):
        simulate(quad, SimConfig(epochs=3, trials=2, eta_y=lambda t: 1e-2 if t == 0 else -1))
    with pytest.raises(ValueError, match="schedule"):
        cfg.hyperparameters(6)
    assert SimConfig(eta_x=1e-3).hyperparameters(6)["eta_x"] == 1e-3


BAD_CONFIG = [
    ({"eta_x": -1.0}, "eta_x must be a finite real number > 0"),
    ({"eta_y": float("nan")}, "eta_y must be a finite real number > 0"),
    ({"eta_y": float("inf")}, "eta_y must be"),
    ({"mu": 0.0}, "mu must be a finite real number > 0"),
    ({"mu": -1e-3}, "mu must be"),
    ({"q": 0}, "q must be an integer >= 1"),
    ({"q": 1.5}, "q must be an integer"),
    ({"epochs": 0}, "epochs must be an integer >= 1"),
    ({"trials": 0}, "trials must be an integer >= 1"),
    ({"seed": -1}, "seed must be an integer >= 0"),
    ({"method": "sgd"}, "method must be one of"),
    ({"sampling": "shuffle"}, "sampling must be one of"),
    ({"directions": "uniform"}, "directions must be one of"),
    ({"difference": "backward"}, "difference must be one of"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_CONFIG)
def test_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SimConfig(**kwargs)


def test_bad_problem_and_start(quad):
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        QuadraticProblem(0, 3, 2)
    with pytest.raises(ValueError, match="d_x must be an integer >= 1"):
        QuadraticProblem(3, 0, 2)
    with pytest.raises(ValueError, match="x0 must have shape"):
        simulate(quad, SimConfig(trials=2), x0=np.zeros(4))
    with pytest.raises(ValueError, match="y0 must be finite"):
        simulate(quad, SimConfig(trials=2), y0=np.full(3, np.nan))
    with pytest.raises(ValueError, match="problem must be one of"):
        make_problem("cubic", 3, 2, 2)
    with pytest.raises(ValueError, match="coupling must be <"):
        QuadraticProblem(3, 2, 2, m_x=0.1, m_y=0.1, coupling=0.5)


def test_constants_feed_the_bound(quad):
    """problem.constants() and config.hyperparameters() go straight into the bound."""
    from hybridconv.theory import hybrid_bound

    cfg = SimConfig(eta_x=1e-4, eta_y=1e-3, mu=1e-4, epochs=10)
    value = hybrid_bound().evaluate(**quad.constants(), **cfg.hyperparameters(quad.n))
    assert value > 0


def test_cli_simulate(tmp_path, capsys):
    out = tmp_path / "run.csv"
    argv = ["simulate", "--n", "4", "--d-x", "3", "--d-y", "2", "--epochs", "2", "--trials", "3",
            "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    df = pd.read_csv(out)
    assert {"trial", "epoch", "F", "grad_x_sq", "grad_y_sq", "grad_sq", "diverged"} <= set(
        df.columns)
    capsys.readouterr()
    assert main(argv) == 2  # never overwrite silently
    err = capsys.readouterr().err
    assert "exists" in err and err.count("\n") == 1
    assert main([*argv, "--force"]) == 0
    assert main(["simulate", "--json-constants", "--n", "4", "--d-x", "3", "--d-y", "2"]) == 0
    assert "L_xy" in capsys.readouterr().out
    assert main(["simulate", "--mu", "0", "--out", str(tmp_path / "x.csv")]) == 2
    assert main(["simulate", "--n", "0", "--out", str(tmp_path / "x.csv")]) == 2


def test_overflowing_records_count_as_diverged():
    """A finite state whose objective overflows is diverged, not averaged as inf."""
    p = QuadraticProblem(4, 5, 3, seed=0)
    df = simulate(p, SimConfig(eta_x=2.5, eta_y=0.1, epochs=300, trials=20))
    finite_or_flagged = np.isfinite(df["grad_sq"]) | df["diverged"]
    assert finite_or_flagged.all()
    assert df["diverged"].any()


def test_cli_simulate_bad_out(tmp_path, capsys):
    base = ["simulate", "--n", "4", "--d-x", "3", "--d-y", "2", "--epochs", "1", "--trials", "2",
            "--no-progress"]
    assert main([*base, "--out", str(tmp_path), "--force"]) == 2
    assert "directory" in capsys.readouterr().err
    assert main([*base, "--out", "/proc/nope/x.csv"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    import os
    import stat

    out = tmp_path / "ok.csv"
    old = os.umask(0o022)
    try:
        assert main([*base, "--out", str(out)]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


def test_gradient_bound_is_tracked_at_every_iterate():
    """max_grad_norm is the running max over all iterates and the balls holding each step's
    segment and ZO perturbations (the H1-gen hypothesis needs it): finite for sphere
    directions (radius mu sqrt(d)), infinite after the first step for Gaussian ones (no ball
    holds them)."""
    p = make_problem("gensmooth", 4, 3, 2, seed=0)
    df = simulate(p, SimConfig(epochs=4, trials=3, eta_x=1e-3, eta_y=1e-3,
                               directions="sphere"))
    x0, y0 = p.start()
    for _, g in df.groupby("trial"):
        seq = g.sort_values("epoch")["max_grad_norm"].to_numpy()
        assert np.all(np.isfinite(seq)) and np.all(np.diff(seq) >= 0)
        assert seq[-1] >= p.max_component_grad_norm(x0[None], y0[None])[0]
    assert df[df.epoch == 0]["max_grad_norm"].iloc[0] == pytest.approx(
        p.max_component_grad_norm(x0[None], y0[None])[0])
    gauss = simulate(p, SimConfig(epochs=2, trials=2, eta_x=1e-3, eta_y=1e-3))
    assert np.isinf(gauss.loc[gauss["epoch"] >= 1, "max_grad_norm"]).all()


UNDER_MUTMUT = "MUTANT_UNDER_TEST" in os.environ
"""mutmut runs the tests in forked children, where worker pools can hang (docs/testing.md), and
a loky worker would import the unmutated package anyway: the process-pool cases are skipped."""
PROCESSES = pytest.mark.skipif(UNDER_MUTMUT, reason="process pools under mutmut")

THREAD_CASES = [
    ("quadratic", dict(method="hybrid")),
    ("quadratic", dict(method="zo", directions="rademacher", sampling="wr", q=2)),
    ("quadratic", dict(method="hybrid", directions="sphere", difference="forward", sampling="so")),
    ("quadratic", dict(method="hybrid", eta_x=80.0, epochs=25)),  # some trials diverge
    ("gensmooth", dict(method="hybrid")),  # gradient bound tracked
    ("lora", dict(method="hybrid", eta_x=1.0, eta_y=1.0)),  # some trials leave the region
    ("quadratic", dict(method="hybrid", generator="torch")),
    ("quadratic", dict(method="zo", directions="rademacher", generator="torch", q=2)),
]


@pytest.mark.parametrize(("family", "over"), THREAD_CASES)
def test_records_do_not_depend_on_the_thread_count(family, over):
    """Blocks of TRIAL_BLOCK trials carry their own generators: 1, 2 or 3 threads, or 2 or 3
    processes, give the same records bit for bit (three blocks, the last one short)."""
    from hybridconv.sim.runner import TRIAL_BLOCK, blocks

    p = make_problem(family, 4, 4, 4, seed=1)
    cfg = SimConfig(**{**dict(epochs=3, trials=2 * TRIAL_BLOCK + 5, eta_x=1e-2, eta_y=1e-2),
                       **over})
    assert len(blocks(cfg.trials)) == 3
    frames = [simulate(p, cfg, threads=t) for t in (1, 2, 3)]
    if not UNDER_MUTMUT:
        frames += [simulate(p, cfg, threads=t, pool="processes") for t in (2, 3)]
    for f in frames[1:]:
        pd.testing.assert_frame_equal(frames[0], f, check_exact=True)
    if over.get("eta_x", 0) > 1:
        assert frames[0]["diverged"].any() and not frames[0]["diverged"].all()
    if family == "lora":
        assert frames[0]["left_region"].any() and not frames[0]["left_region"].all()


def test_a_block_is_its_own_stream():
    """Trial k's numbers depend on its block and position only: the first block of a larger
    run equals a run of that block alone; the second block does not repeat the first."""
    from hybridconv.sim.runner import TRIAL_BLOCK

    p = QuadraticProblem(4, 3, 2, seed=0)
    big = simulate(p, SimConfig(epochs=2, trials=TRIAL_BLOCK + 3), threads=2)
    small = simulate(p, SimConfig(epochs=2, trials=TRIAL_BLOCK), threads=1)
    first = big[big.trial < TRIAL_BLOCK].reset_index(drop=True)
    pd.testing.assert_frame_equal(first, small.reset_index(drop=True), check_exact=True)
    last = big[(big.epoch == 2)]["F"].to_numpy()
    assert not np.isin(last[TRIAL_BLOCK:], last[:TRIAL_BLOCK]).any()


class Failing(QuadraticProblem):
    """A quadratic whose gradient raises on the second block (an error inside a thread)."""

    def grads(self, x, y, idx):
        if x.shape[0] < 128:
            raise RuntimeError("boom in block 1")
        return super().grads(x, y, idx)


@pytest.mark.parametrize("pool", ["threads", pytest.param("processes", marks=PROCESSES)])
def test_an_error_in_a_block_reaches_the_caller(pool):
    p = Failing(4, 3, 2, seed=0)
    with pytest.raises(RuntimeError, match="boom in block 1"):
        simulate(p, SimConfig(epochs=2, trials=130), threads=2, pool=pool)


@pytest.mark.parametrize(("trials", "workers"), [(257, 2), (300, 2), (1000, 2), (1000, 3),
                                                 (5, 4), (129, 8)])
def test_process_groups_are_balanced_by_trials(trials, workers):
    from hybridconv.sim.runner import balanced_groups, blocks

    parts = blocks(trials)
    groups = balanced_groups(parts, min(workers, len(parts)))
    assert sorted(b for g in groups for b, _, _ in g) == list(range(len(parts)))
    loads = [sum(e - a for _, a, e in g) for g in groups]
    assert max(loads) - min(loads) <= max(e - a for a, e in parts)  # LPT's guarantee
    assert max(loads) <= -(-trials // len(groups)) + max(e - a for a, e in parts) - 1


def test_auto_pool_uses_processes_for_long_runs_only(monkeypatch):
    from hybridconv.sim import runner

    p = QuadraticProblem(64, 100, 20, seed=0)  # a unit of work: trials x epochs x n x d

    def use(trials, epochs, workers=2, pool="auto"):
        return runner._use_processes(pool, workers, p, SimConfig(trials=trials, epochs=epochs))

    long = int(runner.PROCESS_WORK // (64 * 120)) + 1  # trials x epochs above the threshold
    assert use(1000, -(-long // 1000)) and not use(1000, long // 1000 - 1)
    assert not use(1000, 10**4, workers=1)               # one worker: no pool at all
    assert not use(128, 10**6)                           # one block: nothing side by side
    assert not use(1000, 10**4, pool="threads") and use(1000, 1, pool="processes")
    with pytest.raises(ValueError, match=r"^pool must be one of auto, threads, processes, got"):
        simulate(p, SimConfig(epochs=1, trials=2), pool="fork")


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "2"])
def test_bad_threads(quad, threads):
    with pytest.raises(ValueError, match="threads must be an integer >= 1"):
        simulate(quad, SimConfig(epochs=1, trials=2), threads=threads)


@pytest.mark.parametrize("d", [8, 11, 16, 72])
def test_rademacher_directions_are_drawn_as_bits(d):
    """ceil(d / 8) random bytes per direction, nothing else: the generator ends where
    drawing those bytes leaves it, and the signs are the bytes' bits."""
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    u = sample_directions(a, (5, 2, d), "rademacher")
    raw = b.integers(0, 256, size=(5, 2, -(-d // 8)), dtype=np.uint8)
    assert a.bit_generator.state == b.bit_generator.state
    bits = np.unpackbits(raw, axis=-1, count=d, bitorder="little")
    assert np.array_equal(u, 2.0 * bits - 1.0)


def test_every_sign_pattern_is_drawn():
    """All 256 patterns of 8 signs, all minus included (a byte 0), in 4096 draws (each is
    missing with probability (255/256)^4096 = 1e-7)."""
    u = sample_directions(np.random.default_rng(0), (4096, 8), "rademacher")
    codes = ((u > 0) * (1 << np.arange(8))).sum(axis=1)
    assert len(np.unique(codes)) == 256 and (u == -1).all(axis=1).any()


def test_a_bad_direction_kind_is_named():
    with pytest.raises(ValueError) as info:
        sample_directions(np.random.default_rng(0), (2, 3), "cauchy")
    assert str(info.value) == "directions must be one of gaussian, sphere, rademacher, got 'cauchy'"


def test_the_estimate_is_unscaled_by_default():
    """zo_estimate's default scale is 1: the q-direction two-point estimate itself."""
    from hybridconv.sim import zo_estimate

    def diffs(u, mu, difference):
        return u.sum(axis=-1)  # any function of the directions

    kw = dict(batch=3, dim=4, mu=1e-3, q=2, directions="gaussian", difference="central")
    plain = zo_estimate(diffs, rng=np.random.default_rng(1), **kw)
    twice = zo_estimate(diffs, rng=np.random.default_rng(1), scale=2.0, **kw)
    np.testing.assert_allclose(twice, 2.0 * plain, rtol=1e-14)
    u = sample_directions(np.random.default_rng(1), (3, 2, 4), "gaussian")
    np.testing.assert_allclose(plain, np.einsum("bq,bqd->bd", u.sum(-1) / 2, u), rtol=1e-12)


def _manual_step(problem, x, y, idx, oracles, *, eta_x, eta_y, mu, q, directions, difference,
                 rng):
    """The step of THEORY.md written out from function values (x's directions first)."""
    grads = problem.grads(x, y, idx)
    out = []
    for b, (block, oracle) in enumerate(zip((x, y), oracles, strict=True)):
        if oracle == "fo":
            out.append(grads[b])
            continue
        u = sample_directions(rng, (len(idx), q, block.shape[1]), directions)

        def f(sign, k, b=b, u=u):
            shifted = [x, y]
            shifted[b] = shifted[b] + sign * mu * u[:, k]
            return problem.values(*shifted, idx)

        deltas = [(f(1.0, k) - f(-1.0, k)) / (2 * mu) if difference == "central"
                  else (f(1.0, k) - problem.values(x, y, idx)) / mu for k in range(q)]
        out.append(sum(d[:, None] * u[:, k] for k, d in enumerate(deltas)) / q)
    return x - eta_x * out[0], y - eta_y * out[1]


@pytest.mark.parametrize("oracles", [("zo", "fo"), ("fo", "zo"), ("zo", "zo"), ("fo", "fo")])
@pytest.mark.parametrize("difference", ["central", "forward"])
def test_the_step_is_the_two_point_estimate_on_each_block(oracles, difference):
    """Every method's step equals the algorithm written out from f_i's values, on a problem
    whose differences are computed from values (not a closed form)."""
    p = make_problem("nonconvex", 5, 4, 3, seed=2, lam=0.8)
    rng = np.random.default_rng(9)
    x, y = rng.standard_normal((3, 4)), rng.standard_normal((3, 3))
    idx = np.array([4, 0, 2])
    kw = dict(eta_x=0.3, eta_y=0.07, mu=0.05, q=2, directions="rademacher",
              difference=difference)
    got = hybrid_step(p, x, y, idx, oracles=oracles, rng=np.random.default_rng(11), **kw)
    want = _manual_step(p, x, y, idx, oracles, rng=np.random.default_rng(11), **kw)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-10, atol=1e-12)


def test_block_oracles_names_the_methods():
    from hybridconv.sim import block_oracles

    assert [block_oracles(m) for m in ("hybrid", "zo", "fo", "reversed")] == [
        ("zo", "fo"), ("zo", "zo"), ("fo", "fo"), ("fo", "zo")]
    with pytest.raises(ValueError, match=r"^method must be one of hybrid, zo, fo, reversed, "
                                         r"got 'sgd'$"):
        block_oracles("sgd")
