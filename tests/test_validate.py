"""Verdicts with confidence and the falsifier: they report honestly and they can fail."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import sympy as sp

from hybridconv.cli import main
from hybridconv.problems import make_problem
from hybridconv.sim import SimConfig, simulate
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


def test_the_defaults_are_one_instance_and_the_min_measure(instance):
    p, cfg = instance
    cfg = dataclasses.replace(cfg, epochs=4, trials=2)  # two trials are enough
    assert check(BOUND, p, cfg) == check(BOUND, p, cfg, instances=1, measure="min",
                                         confidence=0.99)


def test_a_given_start_is_the_runs_and_the_bounds(instance):
    p, cfg = instance
    cfg = dataclasses.replace(cfg, epochs=3, trials=4)
    x0, y0 = np.full(p.d_x, 0.3), np.full(p.d_y, -0.7)
    v = check(BOUND, p, cfg, x0=x0, y0=y0, allow_outside=True)
    df = simulate(p, cfg, x0=x0, y0=y0)
    means = df[df["epoch"] < 3].groupby("epoch")["grad_sq"].mean()
    assert v.empirical == pytest.approx(means.min(), rel=1e-12)
    values = {**p.constants(x0, y0), **cfg.hyperparameters(p.n)}
    assert v.bound == pytest.approx(BOUND.evaluate(check=False, **values), rel=1e-12)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"x0": np.zeros((3, 10))}, r"^x0 must be one start shared by all trials \(a 1-d array\): "
                                r"the bound's Delta is taken at it$"),
    ({"y0": np.zeros((3, 4))}, r"^y0 must be one start shared by all trials \(a 1-d array\): "
                               r"the bound's Delta is taken at it$"),
])
def test_starts_per_trial_are_refused_by_name(instance, kwargs, message):
    with pytest.raises(ValueError, match=message):
        check(BOUND, *instance, **kwargs)


def test_exact_messages(instance):
    p, cfg = instance
    with pytest.raises(ValueError, match=r"^bound must be a hybridconv.theory.Bound, got 3$"):
        check(3, p, cfg)
    with pytest.raises(ValueError, match=r"^config.trials must be >= 2 for a confidence "
                                         r"interval, got 1$"):
        check(BOUND, p, dataclasses.replace(cfg, trials=1))
    bad = dataclasses.replace(cfg, eta_y=1.0, eta_x=1.0)
    with pytest.raises(ValueError) as info:
        check(BOUND, p, bad)
    outside = BOUND.violated(**p.constants(), **bad.hyperparameters(p.n))
    assert len(outside) >= 2 and str(info.value) == (
        "the instance breaks the theorem's conditions: " + "; ".join(outside)
        + " (allow_outside=True, or --allow-outside, checks it anyway)")


def test_leaving_the_certified_region_is_refused_or_reported(instance):
    p, cfg = instance
    cfg = dataclasses.replace(cfg, epochs=2, trials=3)
    left = QuadraticOutside(p)
    with pytest.raises(ValueError, match=r"^3 trials left the region where the problem's "
                                         r"constants are certified \(allow_outside=True, or "
                                         r"--allow-outside, checks it anyway\)$"):
        check(BOUND, left, cfg)
    v = check(BOUND, left, cfg, allow_outside=True)
    assert v.outside == ["3 trials left the region where the problem's constants are "
                         "certified"]
    assert check(BOUND, p, cfg).outside == []


def QuadraticOutside(problem):  # noqa: N802
    """A copy of a problem whose certified region its iterates leave at once."""
    import copy

    class Outside(type(problem)):
        def in_region(self, x, y):
            return np.zeros(len(x), dtype=bool)

    clone = copy.copy(problem)
    clone.__class__ = Outside
    return clone


def test_the_gradient_bound_of_the_generalized_theorem_is_enforced():
    bg = hybrid_bound(assumption="h1-gen")
    p = make_problem("gensmooth", 4, 3, 2, seed=2)
    ex, ey = bg.admissible_steps(1.0, 1.0, **p.constants(), mu=1e-3, q=1, n=4, T=3)
    cfg = SimConfig(eta_x=ex, eta_y=ey, epochs=3, trials=4, seed=2)
    G = p.constants()["G"]
    # (Gaussian directions: no ball holds the perturbations, so the tracked max is inf)
    with pytest.raises(ValueError, match=r"^max_i \|\|grad f_i\|\| reached (inf|[0-9.]+) > G = "
                                         + f"{G:.6g}".replace(".", r"\.")
                                         + r" \(the generalized theorem's gradient bound\) "
                                         r"\(allow_outside=True, or --allow-outside, checks it "
                                         r"anyway\)$"):
        check(bg, p, cfg)
    v = check(bg, p, cfg, allow_outside=True)
    assert len(v.outside) == 1 and v.outside[0].startswith("max_i ||grad f_i|| reached ")
    assert v.outside[0].endswith(f"> G = {G:.6g} (the generalized theorem's gradient bound)")


def test_a_run_inside_the_gradient_bound_passes():
    """G a little above the start's max_i ||grad f_i|| (G_margin 1.5): a run whose tracked
    balls (each step's segment and, for sphere directions, every perturbation of radius
    mu sqrt(d)) stay below it is inside."""
    bg = hybrid_bound(assumption="h1-gen", directions="sphere")
    p = make_problem("gensmooth", 4, 3, 2, seed=0, G_margin=1.5)
    ex, ey = bg.admissible_steps(1.0, 1.0, **p.constants(), mu=1e-3, q=1, n=4, T=3)
    v = check(bg, p, SimConfig(eta_x=ex, eta_y=ey, epochs=3, trials=4, seed=0,
                               directions="sphere"))
    assert v.outside == [] and v.verdict != "violated"


def test_the_trivial_flag_is_epoch_0_against_the_bound(instance):
    """trivial: ||grad F(z_0)||^2 (epoch 0's mean) <= the bound, for the min measure only."""


    p, cfg = instance
    cfg = dataclasses.replace(cfg, epochs=6, trials=8)
    means = simulate(p, cfg).groupby("epoch")["grad_sq"].mean()
    real = check(BOUND, p, cfg).bound
    # a bound between epoch 1's mean and epoch 0's: not trivial (epoch 0 is above it)
    between = planted(BOUND, sp.nsimplify((means[0] + means[1]) / 2 / real, rational=True))
    assert means[1] < means[0]
    v = check(between, p, cfg)
    assert not v.trivial and v.bound < means[0]
    huge = planted(BOUND, 10**9)
    assert check(huge, p, cfg).trivial
    assert not check(huge, p, cfg, measure="weighted").trivial  # the weighted measure: never


def test_a_planted_small_bound_keeps_its_ratio(instance):
    p, cfg = instance
    v = check(planted(BOUND, sp.Rational(1, 10**6)), p, dataclasses.replace(cfg, epochs=3))
    assert 0 < v.bound < 1 and v.ratio == pytest.approx(v.empirical / v.bound, rel=1e-12)


@pytest.mark.parametrize("measure", ["min", "weighted"])
def test_a_diverged_run_is_infinite_and_violated(instance, measure):
    """Outside the conditions on purpose: a trial diverges; its average is infinite, the
    verdict is violated, and no overflow warning escapes."""
    import warnings

    p, cfg = instance
    cfg = dataclasses.replace(cfg, eta_x=50.0, eta_y=50.0, epochs=40, trials=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        v = check(BOUND, p, cfg, allow_outside=True, measure=measure)
    assert v.diverged == 4 and v.verdict == "violated"
    assert v.empirical == v.ci_lower == v.ci_upper == v.ratio == math.inf
    assert v.epoch == (0 if measure == "min" else -1)


def test_divergence_inside_the_conditions_is_a_violation(instance):
    """The theorem bounds a finite expectation: a run that diverges while the conditions
    hold (here: a problem that under-reports its smoothness) is a violation, whatever the
    interval says."""
    import copy

    p, cfg = instance
    liar = copy.copy(p)
    true = p.constants()
    liar.constants = lambda x0=None, y0=None: {**true, "L_x": true["L_x"] / 1e4,
                                               "L_y": true["L_y"] / 1e4, "L_xy": 0.0}
    ex, ey = BOUND.admissible_steps(1.0, 1.0, **liar.constants(), mu=1e-4, q=1, n=p.n, T=40)
    v = check(BOUND, liar, SimConfig(eta_x=ex, eta_y=ey, mu=1e-4, epochs=40, trials=4))
    assert v.outside == [] and v.diverged > 0 and v.verdict == "violated"


def test_the_adapter_measure_is_the_fo_blocks_average(instance):
    """measure="adapter": (1/T) sum_{t<T} E||grad_y F(z_t)||^2 against the adapter bound, the
    mean over trials and epochs of the records' grad_y_sq, with a one-sided t interval over the
    trials' own averages."""
    from scipy import stats

    p, cfg = instance
    cfg = dataclasses.replace(cfg, epochs=6, trials=16)
    values = {**p.constants(), **cfg.hyperparameters(p.n)}
    df = simulate(p, cfg)
    run = df[df["epoch"] < cfg.epochs]
    per_trial = run.groupby("trial")["grad_y_sq"].mean()
    v = check(BOUND, p, cfg, measure="adapter")
    assert v.measure == "adapter" and v.epoch == -1 and v.verdict == "holds"
    assert v.empirical == pytest.approx(per_trial.mean(), rel=1e-12)
    half = stats.t.ppf(v.confidence, cfg.trials - 1) * per_trial.std(ddof=1) / np.sqrt(cfg.trials)
    assert v.ci_upper == pytest.approx(per_trial.mean() + half, rel=1e-9)
    assert v.bound == pytest.approx(BOUND.evaluate(check=False, measure="adapter", **values),
                                    rel=1e-12)


def test_a_run_a_little_above_the_gradient_bound_is_refused():
    """G exactly at the start's max_i ||grad f_i|| (G_margin 1): the tracked balls reach about
    1.07 G (sphere directions, seed 0), above G but far below 2 G, and the check refuses the
    run; any excess counts, not only a large one."""
    bg = hybrid_bound(assumption="h1-gen", directions="sphere")
    p = make_problem("gensmooth", 4, 3, 2, seed=0, G_margin=1.0)
    ex, ey = bg.admissible_steps(1.0, 1.0, **p.constants(), mu=1e-3, q=1, n=4, T=3)
    cfg = SimConfig(eta_x=ex, eta_y=ey, epochs=3, trials=4, seed=0, directions="sphere")
    G = p.constants()["G"]
    seen = simulate(p, cfg)["max_grad_norm"].max()
    assert G < seen < 1.5 * G
    with pytest.raises(ValueError, match=r"^max_i \|\|grad f_i\|\| reached "):
        check(bg, p, cfg)
