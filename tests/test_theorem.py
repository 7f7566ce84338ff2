"""The sharp theorem's structure and its special cases (THEORY.md), against the classical
theorems' caps and constants."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

from hybridconv.theory import (
    ZOEstimator,
    effective_rank_theorem,
    generalized_hybrid_reshuffling_theorem,
    lsmooth_theorem,
    sym,
)
from hybridconv.theory.assumptions import BlockLSmoothness, GeneralizedHybridSmoothness
from hybridconv.theory.bound import Bound, hybrid_bound
from hybridconv.theory.symbols import name_of


def _ev(expr, **v):
    from hybridconv.theory.bound import compile_numeric

    free = sorted(sp.sympify(expr).free_symbols, key=name_of)
    return float(compile_numeric(free, expr)(*[v[name_of(s)] for s in free]))


def test_descent_coefficients_tend_to_seven_eighths(bound):
    """Along every ray eta_y = r eta_x, gamma_b -> 1 - theta/2 = 7/8 as eta_x -> 0. (At fixed
    eta_y, gamma_x -> -infinity as eta_x -> 0 when Theta_y > 0: the y block's relative
    heterogeneity grows with ||grad_x F||, and C4x says how small eta_x may be.)"""
    eta, r = sp.Symbol("eta", positive=True), sp.Symbol("r_", positive=True)
    for g in bound.gamma:
        ray = sp.expand(g.xreplace({sym("eta_x"): eta, sym("eta_y"): r * eta}))
        assert ray.subs(eta, 0) == sp.Rational(7, 8)


# -- d_x = 0: random reshuffling (Mishchenko, Khaled, Richtarik 2020) ---------------------------
MKR = [(1, 1.0), (2, 3.0), (10, 0.5), (100, 2.0)]


@pytest.mark.parametrize(("n", "L"), MKR)
def test_no_zo_block_admits_mkr_step(bound, n, L):
    """The conditions left at d_x = 0 admit MKR's step 1/(2 L n) (their Thm 4, A = 0)."""
    b = bound.special_case("no_zo_block")
    assert {c.name for c in b.conditions} <= {"C2", "C4y", "C5y"}
    v = dict(L_y=L, sigma_y=1.0, Theta_y=0.0, Delta=1.0, n=n, T=10, eta_y=1 / (2 * L * n))
    assert b.holds(**v), b.violated(**v)
    assert not b.holds(**{**v, "eta_y": 1.01 / (2 * L * n)})  # and C2 is exactly that cap


@pytest.mark.parametrize(("n", "L"), MKR)
def test_no_zo_block_constants_beat_mkr(bound, n, L):
    """At every admissible step our bound is below MKR's 12 Delta / (gamma n T) +
    2 gamma^2 L^2 n sigma^2 (A = 0; statement as recalled, see docs/theory.md)."""
    b = bound.special_case("no_zo_block")
    for frac in (1.0, 0.3, 0.01):
        for T in (1, 100, 10**5):
            eta = frac / (2 * L * n)
            v = dict(L_y=L, sigma_y=2.0, Theta_y=0.0, Delta=3.0, n=n, T=T, eta_y=eta)
            ours = b.evaluate(**v)
            theirs = 12 * 3.0 / (eta * n * T) + 2 * eta**2 * L**2 * n * 2.0**2
            assert ours <= theirs, (frac, T, ours, theirs)


def test_no_zo_block_has_the_mkr_form(bound):
    """d_x = 0: B = Delta / (n T) + (a term in sigma_y^2 eta_y^3 L_y^2 n^2 and higher): the
    reshuffling rate Delta / (eta n T) + eta^2 L^2 n sigma^2 after dividing by gamma_y eta."""
    b = bound.special_case("no_zo_block")
    num = sp.expand(b.numerator)
    eta, L, sig, n = sym("eta_y"), sym("L_y"), sym("sigma_y"), sym("n")
    noise = sp.expand(num - sym("Delta") / (n * sym("T")))
    lowest = min(sp.degree(t, eta) for t in sp.Add.make_args(noise))
    assert lowest == 3
    lead = sum(t for t in sp.Add.make_args(noise) if sp.degree(t, eta) == 3)
    assert sp.simplify(lead / (eta**3 * L**2 * sig**2)).free_symbols <= {n}


# -- n = 1, no y block: ZO gradient descent (Nesterov, Spokoiny 2017) ---------------------------
@pytest.mark.parametrize("d", [1, 10, 1000, 10**6])
def test_zo_only_admits_nesterov_spokoiny_step(bound, d):
    """C3 caps eta_x at q / (4 (d_x + 1) L_x) >= NS17's h = 1/(4 (n + 4) L_1) (their Section 7;
    the same h_n as Theorem 9, p. 548), and every condition holds there."""
    b = bound.special_case("zo_only")
    L = 2.0
    h = 1 / (4 * (d + 4) * L)
    v = dict(L_x=L, Delta=1.0, mu=1e-3, q=1, T=10, d_x=d, eta_x=h)
    assert b.holds(**v), b.violated(**v)
    cap = 1 / (4 * (d + 1) * L)
    assert cap >= h and not b.holds(**{**v, "eta_x": 1.01 * cap})


@pytest.mark.parametrize("d", [1, 100, 10**5])
def test_zo_only_bias_grows_like_sqrt_d(bound, d):
    """The smoothing-bias term is 4 eta_x beta^2 / n with beta = L_x mu sqrt(d_x) (Stein):
    it grows like L_x^2 mu^2 d_x, i.e. beta like L_x mu sqrt(d_x), not (d_x + 3)^{3/2}."""
    term = bound.terms["main:beta^2"]
    v = dict(L_x=1.0, L_y=1.0, L_xy=0.0, mu=1e-3, q=1, n=1, d_x=d, eta_x=1e-9, eta_y=1e-9,
             sigma_x=0.0, sigma_y=0.0)
    value = _ev(term, **v)
    assert value == pytest.approx(4 * 1e-9 * (1e-3) ** 2 * d, rel=1e-3)


def test_single_rate_is_the_substitution(bound):
    b = bound.special_case("single_rate")
    eta = sym("eta")
    assert sym("eta_x") not in b.expr.free_symbols
    v = dict(L_x=1, L_y=2, L_xy=0.5, sigma_x=0.3, sigma_y=0.2, Theta_x=0.1, Theta_y=0.1,
             Delta=5, mu=1e-4, q=4, n=16, T=1000, d_x=100)
    assert b.evaluate(**v, eta=1e-5) == pytest.approx(
        bound.evaluate(**v, eta_x=1e-5, eta_y=1e-5), rel=1e-12)
    assert eta in b.expr.free_symbols


def test_zero_coupling_decouples(bound):
    """L_xy = 0 and Theta = 0: every term of the numerator carries x symbols or y symbols, not
    both, and so do the conditions."""
    b = bound.subs(Theta_x=0, Theta_y=0).special_case("decoupled")
    xs = {sym(k) for k in ("eta_x", "L_x", "sigma_x", "mu", "d_x", "q")}
    ys = {sym(k) for k in ("eta_y", "L_y", "sigma_y")}
    shared = {sym(k) for k in ("n", "T", "Delta")}
    for term in sp.Add.make_args(sp.expand(b.numerator)):
        free = term.free_symbols - shared
        assert free <= xs or free <= ys, term
    gx, gy = b.gamma
    assert not (gx.free_symbols & ys) and not (gy.free_symbols & xs)


def test_coupling_carries_the_zo_noise_to_the_fo_block(bound):
    """With L_xy > 0 the ZO heterogeneity sigma_x reaches terms with eta_y, always through
    L_xy."""
    mixed = [t for t in sp.Add.make_args(sp.expand(bound.terms["main:sigma_x^2"]))
             if t.has(sym("eta_y"))]
    assert mixed and all(t.has(sym("L_xy")) for t in mixed)


def test_structure_of_the_bound(bound):
    """THEORY.md: the ZO noise is linear in eta_x with (d_x + 1)/q after dividing by eta_x, the
    reshuffling term is n eta^3 sigma^2 per epoch, the smoothing terms are in mu^2."""
    ex, ey, d, q, mu = (sym(k) for k in ("eta_x", "eta_y", "d_x", "q", "mu"))
    zo = sp.expand(bound.terms["main:sigma_x^2"])
    lead = sum(t for t in sp.Add.make_args(zo) if sp.degree(t, ex) == 2 and not t.has(ey))
    assert lead != 0 and all(t.has(q) for t in sp.Add.make_args(lead))
    assert sp.Poly(lead, d).degree() == 1
    rr = sp.expand(bound.terms["main:sigma_y^2"])
    assert min(sp.degree(t, ey) for t in sp.Add.make_args(rr) if not t.has(ex)) == 3
    for key in ("main:beta^2", "main:nu_0^2"):
        assert all(sp.degree(t, mu) == 2 for t in sp.Add.make_args(sp.expand(bound.terms[key])))


def test_zo_variance_constant_is_within_a_factor_of_the_exact_floor(bound):
    """The leading ZO term of the bound on the weighted measure, per Lambda_x eta_x^2 c_v
    sigma_x^2 / q, against 1/2 for the exact stationary floor of SGD on an isotropic quadratic:
    (1 + 1/8)^3 / 2 / (7/8) = 0.81 (the Young weights and the descent coefficient)."""
    zo = sp.expand(bound.terms["main:sigma_x^2"])
    ex, d, q, sx = sym("eta_x"), sym("d_x"), sym("q"), sym("sigma_x")
    lead = sum(t for t in sp.Add.make_args(zo) if sp.degree(t, ex) == 2 and not t.has(sym("eta_y")))
    per = sp.simplify(lead / ((sym("L_x") + sym("L_xy")) * ex**2 * (d + 1) * sx**2 / q))
    assert per == sp.Rational(9, 8) ** 3 / 2
    assert float(per / sp.Rational(7, 8)) < 0.82


def test_generalized_theorem_reduces_to_h1(bound):
    gen = Bound.from_theorem(generalized_hybrid_reshuffling_theorem())
    red = GeneralizedHybridSmoothness().reduction_to_h1()
    v = dict(L_x=1.5, L_y=0.7, L_xy=0.2, sigma_x=0.3, sigma_y=0.2, Theta_x=0.1, Theta_y=0.05,
             Delta=2.0, mu=1e-3, q=2, n=8, T=50, d_x=20, eta_x=1e-3, eta_y=1e-2)
    red_num = {name_of(k): float(v[name_of(w)]) if isinstance(w, sp.Symbol) else float(w)
               for k, w in red.items()}
    gv = {**v, **red_num, "G": 3.0}
    assert gen.evaluate(**gv) == pytest.approx(bound.evaluate(**v), rel=1e-12)
    assert any("G" in h for h in gen.theorem.hypotheses)


def test_generalized_bound_grows_with_l1():
    b = Bound.from_theorem(generalized_hybrid_reshuffling_theorem())
    v = dict(L0_x=1, L0_y=1, L0_xy=0.1, L1_x=0.0, L1_y=0.0, L1_xy=0.0, G=10, sigma_x=0.1,
             sigma_y=0.1, Theta_x=0, Theta_y=0, Delta=1, eta_x=1e-5, eta_y=1e-4, mu=1e-4,
             q=1, n=4, T=100, d_x=10)
    base = b.evaluate(**v)
    assert b.evaluate(**{**v, "L1_x": 0.05}) > base
    assert b.evaluate(**{**v, "L1_xy": 0.05}) > base


def test_effective_rank_replaces_d_by_r(bound):
    """Under the effective rank the bound has no d_x; at r = d_x and L_xy = 0 (where the two
    curvature models coincide) it is the H1 bound."""
    er = Bound.from_theorem(effective_rank_theorem())
    assert "d_x" not in er.symbols and "r" in er.symbols
    v = dict(L_x=1.5, L_y=0.7, L_xy=0.0, sigma_x=0.3, sigma_y=0.2, Theta_x=0.1, Theta_y=0.05,
             Delta=2.0, mu=1e-3, q=2, n=8, T=50, eta_x=1e-4, eta_y=1e-2)
    assert er.evaluate(**v, r=30) == pytest.approx(bound.evaluate(**v, d_x=30), rel=1e-12)
    # and a small effective rank admits a much larger ZO step than d_x
    cap_er = er.admissible_steps(**{k: x for k, x in v.items() if not k.startswith("eta")},
                                 r=10)[0]
    cap_h1 = bound.admissible_steps(**{k: x for k, x in v.items() if not k.startswith("eta")},
                                    d_x=10**6)[0]
    assert cap_er > 1000 * cap_h1


def test_lsmooth_from_h1(bound):
    """H1 gives block l-smoothness with l_x = L_x + t L_xy, l_y = L_y + L_xy / t; with L_xy = 0
    and forward differences the l-smooth bound at l_b = L_b is the H1 bound; the
    high-probability bound is it over delta."""
    ls = Bound.from_theorem(lsmooth_theorem())
    h1f = hybrid_bound(difference="forward")
    v = dict(sigma_x=0.3, sigma_y=0.2, Theta_x=0.1, Theta_y=0.05, Delta=2.0, mu=1e-3, q=2,
             n=8, T=50, d_x=20, eta_x=1e-4, eta_y=1e-2)
    assert ls.evaluate(**v, l_x=1.5, l_y=0.7) == pytest.approx(
        h1f.evaluate(**v, L_x=1.5, L_y=0.7, L_xy=0.0), rel=1e-12)
    sub = BlockLSmoothness.from_h1(sp.Integer(1))
    assert sub[sym("l_x")] == sym("L_x") + sym("L_xy")
    hp = ls.theorem.high_probability
    assert _ev(hp, **v, l_x=1.5, l_y=0.7, delta=0.1) == pytest.approx(
        10 * ls.evaluate(**v, l_x=1.5, l_y=0.7), rel=1e-9)


def test_effective_rank_refuses_rademacher():
    with pytest.raises(ValueError, match="Rademacher"):
        effective_rank_theorem(ZOEstimator("rademacher"))


def test_small_T_bound_uses_the_gradient_gap(bound):
    """At T = 1 the bound on min_t E||grad F||^2 is at most 2 max(Lambda) Delta."""
    v = dict(L_x=1.0, L_y=2.0, L_xy=0.5, sigma_x=0.3, sigma_y=0.2, Theta_x=0.0, Theta_y=0.0,
             Delta=5.0, mu=1e-4, q=4, n=16, T=1, d_x=100, eta_x=1e-6, eta_y=1e-4)
    assert bound.evaluate(**v) == pytest.approx(2 * 2.5 * 5.0)
    assert bound.evaluate(**v, small_T=False) > 100 * bound.evaluate(**v)
    assert math.isfinite(bound.evaluate(measure="adapter", **v))
    assert np.isfinite(bound.evaluate(weighted=True, **v))
