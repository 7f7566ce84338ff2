"""The mutation check: planted wrong bounds, the kill rate, and explained survivors."""

from __future__ import annotations

import pytest

from hybridconv.theory import hybrid_bound
from hybridconv.validate.check import exceeds
from hybridconv.validate.mutate import (
    instance_pool,
    mutation_report,
    mutations,
    write_mutation_report,
)

BOUND = hybrid_bound()


@pytest.fixture(scope="module")
def pool():
    return instance_pool(BOUND, size=16, seed=0, trials=16, epochs=8)


DECISIVE = ("drop Delta", "exponent of eta_x +1", "exponent of eta_y +1", "halve sigma_y^2")


@pytest.fixture(scope="module")
def few(pool):
    """A few mutations (compiling every mutant takes minutes under load: the full report is
    the slow test below)."""
    return mutation_report(BOUND, pool=pool, falsify_budget=0, only=DECISIVE)


@pytest.fixture(scope="module")
def report(pool):
    return mutation_report(BOUND, pool=pool, falsify_budget=0)


def test_every_term_is_dropped_and_halved_and_exponents_move():
    ms = mutations(BOUND)
    kinds = [m.kind for m in ms]
    assert kinds.count("drop") == kinds.count("halve") == len(BOUND.terms) == 7
    assert kinds.count("exponent") == 8 and kinds.count("theta") == 1
    assert {m.name for m in ms} >= {"drop Delta", "halve sigma_x^2", "drop Delta (small-T)"}
    assert len({m.name for m in ms}) == len(ms)


def test_the_real_bound_survives_its_pool(pool):
    assert not exceeds(pool["ci_lower"], pool["bound"]).any()
    assert not exceeds(pool["w_ci_lower"], pool["w_bound"]).any()
    assert pool["ratio"].max() < 1 and pool["w_ratio"].max() < 1
    assert set(pool["family"]) == {"quadratic", "nonconvex", "hetero"}


def test_decisive_mutations_are_killed(few):
    assert sorted(few["mutation"]) == sorted(DECISIVE)
    killed = dict(zip(few["mutation"], few["killed"], strict=True))
    assert killed["drop Delta"]
    assert killed["exponent of eta_x +1"] and killed["exponent of eta_y +1"]
    survivors = few[~few["killed"]]
    assert (survivors["explanation"].str.len() > 0).all()
    with pytest.raises(ValueError, match="unknown mutations"):
        mutation_report(BOUND, pool=few, falsify_budget=0, only=("drop everything",))


@pytest.mark.slow
def test_every_survivor_is_explained(report):
    survivors = report[~report["killed"]]
    assert (survivors["explanation"].str.len() > 0).all()
    assert (survivors["max_ratio"] < 1).all()
    assert report.loc[report["killed"], "killed_by"].isin(["pool", "falsifier"]).all()


def test_report_files(few, tmp_path):
    md, csv = write_mutation_report(few, tmp_path)
    text = md.read_text()
    assert "Kill rate" in text and "| mutation |" in text and csv.exists()
    with pytest.raises(ValueError, match="exists"):
        write_mutation_report(report, tmp_path)
    write_mutation_report(few, tmp_path, force=True)


def _edge_pool(index, families=("quadratic",)):
    """A pool of one edge case of the mutation pool (its index in ``_EDGES``)."""
    from hybridconv.validate import mutate

    saved = list(mutate._EDGES)
    try:
        mutate._EDGES[:] = [saved[index]]
        return instance_pool(BOUND, families=families, size=2, seed=0)
    finally:
        mutate._EDGES[:] = saved


def test_two_epoch_zo_noise_edge_kills_the_small_T_noise_mutants():
    """Two epochs from the minimizer: E||grad F(z_1)||^2 is one epoch of ZO noise, about 0.65
    of the small-T bound, so halving that bound's noise part (or dividing it by d_x) is
    caught, while the real bound holds."""
    from hybridconv.validate.mutate import _EDGES

    index = next(i for i, e in enumerate(_EDGES) if e.get("epochs_override") == 2.0)
    pool = _edge_pool(index)
    edge = pool[pool["at_minimizer"]]
    assert len(edge) == 1 and int(edge["epochs"].iloc[0]) == 2
    assert 0.5 < edge["w_ratio"].iloc[0] < 1
    assert not exceeds(pool["w_ci_lower"], pool["w_bound"]).any()
    rep = mutation_report(BOUND, pool=pool, falsify_budget=0,
                          only=("halve noise (small-T)", "exponent of d_x -1",
                                "exponent of d_x +1"))
    killed = dict(zip(rep["mutation"], rep["killed"], strict=True))
    assert killed["halve noise (small-T)"] and killed["exponent of d_x -1"]
    assert not killed["exponent of d_x +1"]
    assert rep.attrs["pool_size"] == len(pool) and not rep.attrs["pool_real_exceeded"]


def test_floor_start_sits_on_the_stationary_floor():
    """From _floor_start the isotropic quadratic's E||grad F||^2 stays at the closed-form
    floor (no warm-up), and the start is refused off the isotropic quadratic."""
    import numpy as np

    from hybridconv.problems import make_problem
    from hybridconv.sim import SimConfig, simulate
    from hybridconv.validate.mutate import _floor_start

    p = make_problem("quadratic", 16, 4, 2, seed=0, L_x=1.0, m_x=1.0, L_y=1.0, m_y=1.0,
                     coupling=0.0, sigma_x=3.0, sigma_y=0.0)
    z = p.minimizer()
    consts = p.constants(z[:4], z[4:])
    ex, ey = BOUND.admissible_steps(0.05, 0.0025, **consts, mu=1e-6, q=1, n=16, T=40)
    cfg = SimConfig(eta_x=ex, eta_y=ey, mu=1e-6, q=1, epochs=40, trials=256, seed=3)
    x0, y0 = _floor_start(p, cfg)
    floor = p.noise_floor(method="hybrid", sampling="rr", eta_x=ex, eta_y=ey, q=1)
    gx, gy = p.grad(x0[None], y0[None])
    assert float(np.sum(gx**2) + np.sum(gy**2)) == pytest.approx(floor, rel=1e-9)
    df = simulate(p, cfg, x0=x0, y0=y0)
    per_epoch = df.groupby("epoch")["grad_sq"].mean()
    assert per_epoch.iloc[0] == pytest.approx(floor, rel=1e-9)
    assert per_epoch.iloc[1:].mean() == pytest.approx(floor, rel=0.1)
    assert abs(per_epoch.iloc[-10:].mean() / per_epoch.iloc[1:11].mean() - 1) < 0.15
    anisotropic = make_problem("quadratic", 16, 4, 2, seed=0, m_x=0.5, sigma_y=0.0)
    assert _floor_start(anisotropic, cfg) is None
