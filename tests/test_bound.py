"""The Bound object: evaluation, validation, vectorization, optimal step sizes, complexity.

Property tests (hypothesis, profile "fast" by default) run over the symbols' domains; step
sizes are drawn inside the theorem's conditions by ``sample_admissible``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridconv.theory import hybrid_bound, sym
from hybridconv.theory.bound import natural_weights, sample_admissible

BOUND = hybrid_bound()

positive = st.floats(min_value=1e-3, max_value=1e2, allow_nan=False, allow_infinity=False)
nonneg = st.one_of(st.just(0.0), st.floats(min_value=1e-4, max_value=1e2))


@st.composite
def admissible(draw, *, sigma_x=None):
    constants = dict(
        L_x=draw(positive), L_y=draw(positive), L_xy=draw(nonneg),
        sigma_x=draw(nonneg) if sigma_x is None else draw(sigma_x), sigma_y=draw(nonneg),
        Theta_x=draw(st.one_of(st.just(0.0), st.floats(1e-4, 2.0))),
        Theta_y=draw(st.one_of(st.just(0.0), st.floats(1e-4, 2.0))),
        Delta=draw(st.floats(1e-3, 1e3)), mu=draw(st.one_of(st.just(0.0), st.floats(1e-8, 1e-1))),
        q=draw(st.sampled_from([1, 2, 8, 64])), n=draw(st.sampled_from([1, 2, 7, 100, 1000])),
        T=draw(st.sampled_from([1, 10, 1000, 100000])),
        d_x=draw(st.sampled_from([0, 1, 10, 1000, 10**6])),
    )
    seed = draw(st.integers(0, 2**31 - 1))
    pts = sample_admissible(BOUND, 1, seed=seed, fixed={k: v for k, v in constants.items()
                                                          if not k.startswith("Theta")})
    return {k: float(np.asarray(v)[0]) for k, v in pts.items()}


# -- properties -------------------------------------------------------------------------------
@given(admissible())
def test_admissible_points_satisfy_conditions(v):
    assert BOUND.holds(**v)


@given(admissible())
def test_positive(v):
    assert BOUND.evaluate(**v) > 0


@pytest.mark.parametrize("name", ["Delta", "sigma_x", "sigma_y", "L_xy", "Theta_x", "Theta_y"])
@given(v=admissible(), factor=st.floats(1.01, 10.0))
def test_increasing(name, v, factor):
    """Inside the conditions the bound grows with the gap, the heterogeneity and the coupling
    (a larger L_xy or Theta may leave the conditions: then there is nothing to compare)."""
    bigger = dict(v)
    bigger[name] = v[name] * factor if v[name] > 0 else 0.5
    if not BOUND.holds(**bigger):
        return
    for measure in ("min", "weighted", "adapter"):
        lo = BOUND.evaluate(measure=measure, **v)
        hi = BOUND.evaluate(measure=measure, **bigger)
        assert hi >= lo * (1 - 1e-12), measure


@given(admissible())
def test_every_term_is_nonnegative_inside_the_conditions(v):
    """The numerator's terms (one per noise source) and the descent coefficients are
    nonnegative wherever the conditions hold, so shares and mutations are meaningful."""
    from hybridconv.theory.terms import term_values

    assert all(x >= -1e-12 * max(1.0, abs(x)) for x in term_values(BOUND, v).values())
    for g in BOUND.gamma_functions(v):
        assert g >= 1 / 8 * (1 - 1e-12)


def _ev(expr, v):
    from hybridconv.theory.bound import compile_numeric
    from hybridconv.theory.symbols import name_of

    free = sorted(sp.sympify(expr).free_symbols, key=name_of)
    return float(compile_numeric(free, expr)(*[v[name_of(s)] for s in free]))


@given(v=admissible(), factor=st.integers(2, 100))
def test_decreasing_in_T(v, factor):
    later = {**v, "T": v["T"] * factor}
    assert BOUND.evaluate(**later) <= BOUND.evaluate(**v) * (1 + 1e-12)
    assert BOUND.evaluate(small_T=False, **later) < BOUND.evaluate(small_T=False, **v)


@settings(max_examples=10)
@given(admissible(sigma_x=st.floats(1e-3, 1e2)))
def test_complexity_is_eps_minus_4_when_sigma_x_positive(v):
    consts = {k: x for k, x in v.items() if k not in ("eta_x", "eta_y", "T", "mu")}
    cx = BOUND.complexity(**consts)
    assert cx.eps_exponent == -4
    assert cx.noise_power == 1


def test_complexity_regimes():
    full = BOUND.complexity()
    assert full.eps_exponent == -4
    assert BOUND.complexity(sigma_x=0, mu=0).eps_exponent == -3
    assert BOUND.complexity(sigma_x=0, sigma_y=0, mu=0).eps_exponent == -2
    # symbolic leading order: T ~ Delta sigma_x^2 (d_x + 1) L / (n q eps^4)
    T = full.epochs
    free = {s.name for s in T.free_symbols}
    assert {r"\Delta", r"\sigma_x", "d_x", "q", "n"} <= free
    mu_max = full.mu_max
    assert mu_max is not None
    # the Stein bias: mu_max grows like eps / (L_x sqrt(d_x)), not eps / (L_x d_x^{3/2})
    d = sym("d_x")
    assert sp.limit(sp.simplify(mu_max.subs(d, 100 * d) / mu_max), d, sp.oo) == sp.Rational(1, 10)


def test_complexity_rejects_what_it_determines():
    with pytest.raises(ValueError, match="eps"):
        BOUND.complexity(eps=0.1)
    with pytest.raises(ValueError, match="ratio"):
        BOUND.complexity(ratio=-1.0)


@settings(max_examples=5)
@given(admissible())
def test_optimal_step_sizes_satisfy_conditions_and_beat_neighbours(v):
    consts = {k: x for k, x in v.items() if k not in ("eta_x", "eta_y")}
    s = BOUND.optimal_step_sizes(**consts)
    assert BOUND.holds(**consts, eta_x=s.eta_x, eta_y=s.eta_y)
    best = BOUND.evaluate(**consts, eta_x=s.eta_x, eta_y=s.eta_y)
    assert best == pytest.approx(s.bound_two_rates, rel=1e-9)
    assert s.bound_two_rates <= s.bound_single_rate * (1 + 1e-9)
    for fx, fy in [(1.05, 1), (1 / 1.05, 1), (1, 1.05), (1, 1 / 1.05), (1.05, 1.05),
                   (1 / 1.05, 1 / 1.05)]:
        ex, ey = s.eta_x * fx, s.eta_y * fy
        if BOUND.holds(**consts, eta_x=ex, eta_y=ey):
            assert BOUND.evaluate(**consts, eta_x=ex, eta_y=ey) >= best * (1 - 1e-3)


def test_full_gradient_optimum_balances_the_blocks(values):
    """For min_t E||grad F||^2 the bound divides by min(gamma_x eta_x, gamma_y eta_y): at the
    optimum gamma_x eta_x = gamma_y eta_y, so the ratio is gamma_x / gamma_y, about 1."""
    consts = {k: x for k, x in values.items() if k not in ("eta_x", "eta_y")}
    s = BOUND.optimal_step_sizes(**consts)
    gx, gy = BOUND.gamma_functions({**consts, "eta_x": s.eta_x, "eta_y": s.eta_y})
    assert s.ratio == pytest.approx(gx / gy, rel=0.02)
    assert s.gain == pytest.approx(1.0, rel=0.02)


def test_two_rates_win_under_block_scaled_measure(values):
    """With the natural block weights the optimal ratio is about c_v Lambda_x/(q Lambda_y) and
    forcing one rate loses about that factor."""
    consts = {k: x for k, x in values.items() if k not in ("eta_x", "eta_y")}
    w = natural_weights(BOUND, **consts)
    s = BOUND.optimal_step_sizes(weights=w, **consts)
    predicted = w[1] and (1 / w[0]) / (1 / w[1])  # L_eff,x / L_eff,y
    gx, gy = BOUND.gamma_functions({**consts, "eta_x": s.eta_x, "eta_y": s.eta_y})
    assert s.ratio == pytest.approx(predicted * gx / gy, rel=0.05)
    assert s.gain > 2  # 2.6 here: a single rate is held back by the ZO block


# -- evaluation and vectorization ------------------------------------------------------------
def test_evaluate_names_violated_conditions(values):
    with pytest.raises(ValueError, match="C2"):
        BOUND.evaluate(**{**values, "eta_y": 1.0})
    assert BOUND.violated(**{**values, "eta_y": 1.0})[0].startswith("C2")
    assert math.isfinite(BOUND.evaluate(check=False, **{**values, "eta_y": 1.0}))


def test_vectorized_matches_scalar():
    pts = sample_admissible(BOUND, 200, seed=11)
    vec = BOUND.vectorized()(**pts)
    for i in range(0, 200, 17):
        v = {k: float(x[i]) for k, x in pts.items()}
        assert vec[i] == pytest.approx(BOUND.evaluate(**v), rel=1e-12)


def test_vectorized_broadcasts(values):
    f = BOUND.vectorized()
    out = f(**{**values, "eta_x": np.logspace(-8, -5, 7)[:, None],
               "eta_y": np.logspace(-6, -3, 5)[None, :]})
    assert out.shape == (7, 5)
    ok = BOUND.conditions_vectorized()(**{**values, "eta_y": np.array([1e-3, 1.0])})
    assert ok.tolist() == [True, False]


def test_shared_rate_keyword(values):
    v = {k: x for k, x in values.items() if k not in ("eta_x", "eta_y")}
    assert BOUND.evaluate(eta=1e-5, **v) == BOUND.evaluate(eta_x=1e-5, eta_y=1e-5, **v)


def test_extra_table_names_are_accepted(values):
    """problem.constants() may carry more symbols than this bound needs (no glue)."""
    assert BOUND.evaluate(d_y=8, L0_x=1.0, **values) == BOUND.evaluate(**values)


BAD = [
    ("L_x", -1.0, "L_x must be a finite real number > 0"),
    ("L_x", 0.0, "L_x must be"),
    ("eta_x", float("nan"), "eta_x must be"),
    ("eta_y", float("inf"), "eta_y must be"),
    ("q", 1.5, "q must be an integer >= 1"),
    ("n", 0, "n must be an integer >= 1"),
    ("T", 2.5, "T must be an integer"),
    ("d_x", -1, "d_x must be an integer >= 0"),
    ("mu", -1e-3, "mu must be"),
    ("Delta", -1.0, "Delta must be"),
    ("sigma_x", "abc", "sigma_x must be"),
    ("sigma_y", True, "sigma_y must be"),
    ("not_a_symbol", 1.0, "unknown symbol 'not_a_symbol'"),
]


@pytest.mark.parametrize(("name", "value", "message"), BAD)
def test_bad_input(values, name, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        BOUND.evaluate(**{**values, name: value})


def test_missing_values(values):
    v = dict(values)
    del v["sigma_y"]
    del v["T"]
    with pytest.raises(ValueError, match="missing values for T, sigma_y"):
        BOUND.evaluate(**v)


def test_special_case_names():
    with pytest.raises(ValueError, match="special case must be one of"):
        BOUND.special_case("nope")


def test_subs_drops_true_conditions_and_rejects_false(values):
    zero = sp.Integer(0)
    b = BOUND.subs(Theta_x=zero, Theta_y=zero, d_x=zero, L_x=zero, L_xy=zero)
    assert "C1" not in {c.name for c in b.conditions}  # 0 <= 1/2
    assert math.isclose(b.evaluate(**values), BOUND.evaluate(**{**values, "Theta_x": 0,
                                                                   "Theta_y": 0, "d_x": 0,
                                                                   "L_x": 1e-300, "L_xy": 0}),
                        rel_tol=1e-9)
    with pytest.raises(ValueError, match="C1"):
        BOUND.subs(n=10, L_x=1, L_xy=0, eta_x=1.0)


def test_latex_and_dict(bound):
    tex = bound.latex()
    assert r"\min_{t<T}" in tex and r"\Lambda_{x}" in tex
    d = bound.as_dict()
    assert {"bound", "conditions", "latex", "assumptions", "gamma", "terms"} <= set(d)
    assert [c["name"] for c in d["conditions"]] == ["C1", "C2", "C3", "C4x", "C4y", "C5x",
                                                    "C5y"]
    assert "gamma_x, gamma_y" in str(bound)


@pytest.mark.parametrize("directions", ["gaussian", "sphere", "rademacher"])
def test_estimators_change_the_constants(directions, values):
    b = hybrid_bound(directions=directions)
    assert b.evaluate(**values) > 0
    with pytest.raises(ValueError, match="directions must be one of"):
        hybrid_bound(directions="uniform")
    with pytest.raises(ValueError, match="assumption must be"):
        hybrid_bound(assumption="h2")
    with pytest.raises(ValueError, match="version must be"):
        hybrid_bound(version="v3")
    with pytest.raises(ValueError, match="v1 theorem covers"):
        hybrid_bound(assumption="effective-rank", version="v1")


def test_v1_theorem_is_kept_for_comparison(values):
    v1 = hybrid_bound(version="v1")
    assert [c.name for c in v1.conditions] == ["C1", "C2", "C3", "C4"]
    small = {**values, "eta_x": 1e-7, "eta_y": 1e-6}
    assert v1.evaluate(**small) > BOUND.evaluate(**small)  # the sharp bound is below it


def test_any_relative_heterogeneity_is_admissible_for_small_steps(values):
    """The Theta terms of gamma are O(eta) (with a fixed ratio): large Theta only shrinks the
    admissible step sizes."""
    big = {**values, "Theta_x": 1e5, "Theta_y": 1e5}
    assert not BOUND.holds(**big)
    assert BOUND.holds(**{**big, "eta_x": 1e-8, "eta_y": 1e-8})


@pytest.mark.parametrize("eps", [1e-2, 3e-3])
def test_complexity_reaches_eps(values, eps):
    """At the reported eta(eps), T(eps) and mu_max(eps) the bound is eps^2 (1 + o(1))."""
    consts = {k: x for k, x in values.items() if k not in ("eta_x", "eta_y", "T", "mu")}
    cx = BOUND.complexity(**consts)
    at = {s: eps for s in cx.epochs.free_symbols}
    eta = float(cx.eta.subs(at))
    T = math.ceil(float(cx.epochs.subs(at)))
    mu = float(cx.mu_max.subs(at))
    assert eps <= float(cx.eps_max)
    point = {**consts, "eta_x": eta, "eta_y": eta, "T": T, "mu": mu}
    assert BOUND.holds(**point)
    assert BOUND.evaluate(**point) <= eps**2 * 1.02


def test_complexity_refuses_a_fixed_smoothing_floor(values):
    consts = {k: x for k, x in values.items() if k not in ("eta_x", "eta_y", "T")}
    with pytest.raises(ValueError, match="floor"):
        BOUND.complexity(**consts)
    assert BOUND.complexity(**{**consts, "mu": 0}).eps_exponent == -4


def test_shared_rate_conflict(values):
    with pytest.raises(ValueError, match="conflicts with eta_x"):
        BOUND.evaluate(eta=1e-4, **values)


def test_natural_weights_need_their_symbols():
    with pytest.raises(ValueError, match="missing values for"):
        natural_weights(BOUND, L_y=1.0)


def test_special_case_display_drops_vanishing_terms(bound):
    text = str(bound.special_case("no_zo_block"))
    compact = text.split("where:")[0]
    assert r"\beta" not in compact and r"\nu" not in compact and "sigma_y" in compact


WITH_EXPRESSION_VALUES = dict(L_x=1, Delta=3, L_y=2, L_xy=0.5, sigma_x=0.5, sigma_y=0,
                              Theta_x=0, Theta_y=0, mu=1e-3, q=1, n=2, d_x=1, eta_x=1e-3,
                              eta_y=1e-3, T=1)


def test_with_expression_keeps_the_conditions_and_maps_plain_symbols():
    base = hybrid_bound()
    L_x, Delta = sp.Symbol("L_x"), sp.Symbol("Delta")  # plain symbols, mapped to the table's
    b = base.with_expression(2 * sp.Max(L_x, sym("L_y")) * Delta,
                             weighted_expr=sym("L_x") * sym("eta_x"))
    assert b.conditions == base.conditions
    assert b.evaluate(check=False, **WITH_EXPRESSION_VALUES) == pytest.approx(12.0)
    assert b.evaluate(check=False, weighted=True, **WITH_EXPRESSION_VALUES) == pytest.approx(1e-3)
    assert math.isinf(base.with_expression(L_x).evaluate(check=False, weighted=True,
                                                          **WITH_EXPRESSION_VALUES))


@pytest.mark.parametrize(("expr", "weighted", "message"), [
    ("2*L_x", None, "expr must be a sympy expression in table symbols"),
    (sp.Symbol("foo"), None, "expr: unknown symbol 'foo'"),
    (sym("L_x"), sym("sigma_x"), "weighted_expr uses sigma_x"),
    (sym("L_x"), "x", "weighted_expr must be a sympy expression in table symbols"),
])
def test_with_expression_bad_input(expr, weighted, message):
    with pytest.raises(ValueError, match=message):
        hybrid_bound().with_expression(expr, weighted_expr=weighted)


@pytest.mark.parametrize("which", ["fraction_x", "fraction_y"])
def test_a_fraction_whose_step_underflows_is_named(bound, values, which):
    """1e-320 of a cap is a subnormal that the search for the largest admissible scale halves
    to 0: the error names the fraction, not the step size it never took."""
    fixed = {k: v for k, v in values.items() if k not in ("eta_x", "eta_y")}
    fractions = {"fraction_x": 1.0, "fraction_y": 1.0, which: 1e-320}
    with pytest.raises(ValueError, match=rf"^{which} 1e-320 makes the step size underflow"):
        bound.admissible_steps(fractions["fraction_x"], fractions["fraction_y"],
                               **{**fixed, "T": 1.0, "n": 1.0, "Theta_x": 0.0, "Theta_y": 0.0})
