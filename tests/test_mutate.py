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
