"""Verdicts with confidence and the falsifier: they report honestly and they can fail."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import sympy as sp

from hybridconv.cli import main
from hybridconv.problems import make_problem
from hybridconv.sim import SimConfig
from hybridconv.theory import hybrid_bound
from hybridconv.validate import check, falsify

BOUND = hybrid_bound()


def planted(bound, factor):
    """The real bound times ``factor``: a wrong bound when factor is small enough."""
    return dataclasses.replace(bound, expr=bound.expr * factor,
                               weighted_expr=bound.weighted_expr * factor)


@pytest.fixture(scope="module")
def instance():
    p = make_problem("quadratic", 8, 10, 4, seed=0)
    hyper = dict(mu=1e-4, q=1, n=8, T=20)
    ex, ey = BOUND.admissible_steps(1.0, 1.0, **p.constants(), **hyper)
    return p, SimConfig(eta_x=ex, eta_y=ey, mu=1e-4, epochs=20, trials=64, seed=3)


def test_real_bound_holds(instance):
    v = check(BOUND, *instance)
    assert v.verdict == "holds"
    assert v.ci_lower <= v.empirical <= v.ci_upper < v.bound
    assert v.ratio == pytest.approx(v.empirical / v.bound)
    assert 0 <= v.epoch < 20 and v.outside == [] and v.diverged == 0


def test_planted_wrong_bound_is_violated(instance):
    # the real bound is about 100x above this instance (ratio ~0.008): 1/1000 of it is wrong
    v = check(planted(BOUND, sp.Rational(1, 1000)), *instance)
    assert v.verdict == "violated" and v.ci_lower > v.bound


def test_inconclusive_when_the_interval_straddles(instance):
    v = check(BOUND, *instance)
    near = planted(BOUND, sp.nsimplify(v.empirical / v.bound, rational=True))
    assert check(near, *instance).verdict == "inconclusive"


def test_weighted_measure(instance):
    v = check(BOUND, *instance, measure="weighted")
    assert v.measure == "weighted" and v.epoch == -1 and v.verdict == "holds"


def test_deterministic_run_has_a_zero_width_interval():
    p = make_problem("quadratic", 4, 3, 2, seed=1)
    hyper = dict(mu=1e-4, q=1, n=4, T=5)
    ex, ey = BOUND.admissible_steps(0.5, 0.5, **p.constants(), **hyper)
    cfg = SimConfig(method="fo", sampling="ig", eta_x=ex, eta_y=ey, mu=1e-4, epochs=5, trials=8)
    v = check(BOUND, p, cfg)
    assert v.ci_lower == pytest.approx(v.empirical) == pytest.approx(v.ci_upper)


def test_refuses_outside_the_conditions(instance):
    p, cfg = instance
    bad = dataclasses.replace(cfg, eta_y=1.0)
    with pytest.raises(ValueError, match="C2"):
        check(BOUND, p, bad)
    v = check(BOUND, p, dataclasses.replace(bad, epochs=2), allow_outside=True)
    assert v.outside and v.outside[0].startswith("C2")


def test_bonferroni_over_instances_widens_the_interval(instance):
    a = check(BOUND, *instance)
    b = check(BOUND, *instance, instances=100)
    assert b.ci_upper > a.ci_upper and b.ci_lower < a.ci_lower


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"confidence": 1.0}, "confidence must be"),
    ({"confidence": 0}, "confidence must be"),
    ({"instances": 0}, "instances must be"),
    ({"measure": "max"}, "measure must be one of"),
    ({"x0": np.zeros((3, 10))}, "x0 must be one start"),
])
def test_bad_arguments(instance, kwargs, message):
    with pytest.raises(ValueError, match=message):
        check(BOUND, *instance, **kwargs)


def test_single_trial_is_refused(instance):
    p, cfg = instance
    with pytest.raises(ValueError, match="trials must be >= 2"):
        check(BOUND, p, dataclasses.replace(cfg, trials=1))


def test_falsifier_keeps_the_real_bound_and_catches_a_planted_one():
    real = falsify(BOUND, "quadratic", budget=30, seed=0, trials=8, epochs=6, recheck_trials=64)
    assert real.ratio < 1 and real.verdict.verdict != "violated"
    assert len(real.history) == real.evaluations == 30
    assert {"ratio", "verdict", "eta_x", "eta_y"} <= set(real.history.columns)
    wrong = falsify(planted(BOUND, sp.Rational(1, 100)), "quadratic", budget=30, seed=0,
                    trials=8, epochs=6, recheck_trials=64)
    assert wrong.ratio > 1 and wrong.verdict.verdict == "violated"
    assert wrong.ratio_ci[0] > 1


def test_falsifier_arguments():
    with pytest.raises(ValueError, match="family must be one of"):
        falsify(BOUND, "cubic")
    with pytest.raises(ValueError, match="budget must be an integer >= 10"):
        falsify(BOUND, "quadratic", budget=3)


def test_cli_check(capsys, tmp_path):
    assert main(["check", "--json", "--trials", "16", "--epochs", "5"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"verdict", "empirical", "ci_upper", "bound", "ratio"} <= set(out)
    hist = tmp_path / "h.csv"
    assert main(["check", "--falsify", "--budget", "12", "--trials", "8", "--epochs", "4",
                 "--json", "--history", str(hist)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["evaluations"] == 12 and hist.exists()
    assert main(["check", "--eta-y", "1"]) == 2
    err = capsys.readouterr().err
    assert "C2" in err and err.count("\n") == 1


def test_trivial_flag_and_the_weighted_measure_see_past_epoch_0(instance):
    """For T <= 32, C1-C2 put the Delta term above (32/T) ||grad F(z_0)||^2: the min-measure
    check of the real bound holds by epoch 0 alone, and says so; the weighted one does not."""
    p, cfg = instance
    v = check(BOUND, p, cfg)
    assert v.trivial
    w = check(BOUND, p, cfg, measure="weighted")
    assert not w.trivial and w.verdict == "holds"
    # a bound 1/50 of the real one: still above epoch 0 for the min measure at T = 20? The
    # weighted measure catches it whatever epoch 0 does
    wrong = planted(BOUND, sp.Rational(1, 50))
    assert check(wrong, p, cfg, measure="weighted").verdict == "violated"


@pytest.mark.parametrize("instances", [1, 7])
def test_the_intervals_are_the_stated_ones(instance, instances):
    """The verdict's numbers, recomputed from the records: one-sided Student-t intervals at
    level alpha / (T instances) for every epoch (Bonferroni over the T epochs and the
    instances), min over epochs; alpha / instances for the weighted measure."""
    from scipy import stats

    from hybridconv.sim import simulate

    p, cfg = instance
    cfg = dataclasses.replace(cfg, epochs=6, trials=16)
    values = {**p.constants(), **cfg.hyperparameters(p.n)}
    df = simulate(p, cfg)
    run = df[df["epoch"] < cfg.epochs]
    T, K, alpha = cfg.epochs, cfg.trials, 1 - 0.95
    table = run.pivot(index="trial", columns="epoch", values="grad_sq").to_numpy()
    half = stats.t.ppf(1 - alpha / (T * instances), K - 1) * table.std(0, ddof=1) / np.sqrt(K)
    means = table.mean(0)
    v = check(BOUND, p, cfg, confidence=0.95, instances=instances, allow_outside=True)
    assert v.empirical == pytest.approx(means.min(), rel=1e-12)
    assert v.ci_upper == pytest.approx((means + half).min(), rel=1e-12)
    assert v.ci_lower == pytest.approx((means - half).min(), rel=1e-12)
    assert v.epoch == int(np.argmin(means)) and (v.trials, v.epochs) == (K, T)
    assert v.bound == pytest.approx(BOUND.evaluate(check=False, **values), rel=1e-12)
    assert v.ratio == pytest.approx(v.empirical / v.bound, rel=1e-12)
    assert v.confidence == 0.95 and v.measure == "min"
    per_trial = (values["eta_x"] * run["grad_x_sq"] + values["eta_y"] * run["grad_y_sq"]) \
        .to_numpy().reshape(T, K).mean(0)
    w = check(BOUND, p, cfg, confidence=0.95, instances=instances, measure="weighted",
              allow_outside=True)
    half_w = stats.t.ppf(1 - alpha / instances, K - 1) * per_trial.std(ddof=1) / np.sqrt(K)
    assert w.empirical == pytest.approx(per_trial.mean(), rel=1e-12)
    assert w.ci_upper == pytest.approx(per_trial.mean() + half_w, rel=1e-12)
    assert w.ci_lower == pytest.approx(per_trial.mean() - half_w, rel=1e-12)
    assert w.bound == pytest.approx(
        BOUND.evaluate(check=False, weighted=True, **values), rel=1e-12)
