"""The special cases of THEORY.md, checked symbolically, and the theorem's structure."""

from __future__ import annotations

import sympy as sp

from hybridconv.theory import generalized_hybrid_reshuffling_theorem, lemmas, sym
from hybridconv.theory.assumptions import GeneralizedHybridSmoothness
from hybridconv.theory.bound import Bound
from hybridconv.theory.symbols import name_of


def _terms(expr: sp.Expr) -> list[sp.Expr]:
    return [t for t in sp.Add.make_args(sp.expand(expr)) if t != 0]


def _shape(expr: sp.Expr, symbols: list[sp.Symbol]) -> set[tuple]:
    """The exponent vectors of expr's monomials in ``symbols`` (coefficients ignored)."""
    out = set()
    for t in _terms(expr):
        powers = t.as_powers_dict()
        out.add(tuple(powers.get(s, 0) for s in symbols))
    return out


def _rename(expr: sp.Expr, **targets: sp.Expr) -> sp.Expr:
    """Map a lemma's generic symbols (by name) onto the theorem's."""
    mapping = {s: targets[name_of(s)] for s in expr.free_symbols if name_of(s) in targets}
    return sp.expand(expr.subs(mapping))


def test_no_zo_block_is_random_reshuffling(bound):
    """d_x = 0: A Delta/(eta n T) + C eta^2 L^2 n sigma^2, the form of MKR20 Thm 4."""
    b = bound.special_case("no_zo_block")
    eta, L, sig = sym("eta_y"), sym("L_y"), sym("sigma_y")
    n, T, Delta = sym("n"), sym("T"), sym("Delta")
    ours = sp.expand(b.expr)
    mkr = lemmas.get("random_reshuffling_nonconvex")
    theirs = _rename(mkr.rhs, gamma=eta, L=L, sigma=sig, n=n, T=T, Delta=Delta)
    syms = [eta, L, sig, n, T, Delta]
    assert len(_terms(ours)) == 2
    assert _shape(ours, syms) == _shape(theirs, syms)
    # and the step-size condition that remains is MKR's, eta n L <= const
    assert {c.name for c in b.conditions} <= {"C2", "C4"}


def test_zo_only_is_zo_gradient_descent(bound):
    """n = 1, no y block: the Nesterov-Spokoiny / Ghadimi-Lan form, equal leading order."""
    b = bound.special_case("zo_only")
    eta, d, L, mu, T, Delta = (sym(k) for k in ("eta_x", "d_x", "L_x", "mu", "T", "Delta"))
    ours = sp.expand(b.expr)
    ns = lemmas.get("zo_gradient_descent_nonconvex")
    theirs = _rename(ns.rhs, gamma=eta, d=d, L=L, mu=mu, T=T, Delta=Delta)
    for p in (-1, 0, 1):
        k_ours = sp.expand(ours).coeff(eta, p)
        k_theirs = sp.expand(theirs).coeff(eta, p)
        assert k_ours != 0 and k_theirs != 0
        # same dependence on the problem: the ratio tends to a positive constant as d -> oo
        ratio = sp.limit(sp.simplify(k_ours / k_theirs), d, sp.oo)
        assert ratio.is_positive and ratio.is_finite
        if p == -1:
            assert sp.simplify(k_ours / k_theirs).free_symbols == set()
    # the ZO step condition C3 survives: eta_x <= q / (64 c1 L_x)
    assert any(c.name == "C3" for c in b.conditions)


def test_single_rate_is_the_substitution(bound):
    b = bound.special_case("single_rate")
    eta = sym("eta")
    direct = bound.expr.subs({sym("eta_x"): eta, sym("eta_y"): eta})
    assert sp.simplify(b.expr - direct) == 0
    assert not b.expr.has(sp.Min)
    assert sym("eta_x") not in b.expr.free_symbols


def test_zero_coupling_decouples(bound):
    b = bound.subs(Theta_x=0, Theta_y=0).special_case("decoupled")
    xs = {sym(k) for k in ("eta_x", "L_x", "sigma_x", "mu", "d_x", "q")}
    ys = {sym(k) for k in ("eta_y", "L_y", "sigma_y")}
    shared = {sym(k) for k in ("n", "T", "Delta")}
    noise = sp.expand(b.weighted_expr)
    for term in _terms(noise):
        free = term.free_symbols - shared
        assert free <= xs or free <= ys, term
    for c in b.conditions:
        free = (c.lhs.free_symbols | c.rhs.free_symbols) - shared
        assert free <= xs or free <= ys, str(c)
    assert {c.name for c in b.conditions} == {"C1", "C2", "C3"}


def test_coupling_enters_the_noise(bound):
    """With L_xy > 0 the ZO noise sigma_x reaches the FO block's step size eta_y."""
    mixed = [t for t in _terms(bound.weighted_expr)
             if t.has(sym("sigma_x")) and t.has(sym("eta_y"))]
    assert mixed and all(t.has(sym("L_xy")) for t in mixed)


def test_structure_of_the_bound(bound):
    """THEORY.md: ZO noise linear in eta_x with (d_x + 2)/q, reshuffling term n eta^3 sigma^2 per
    epoch, smoothing bias in mu^2."""
    w = sp.expand(bound.weighted_expr)
    ex, ey, d, q, mu = (sym(k) for k in ("eta_x", "eta_y", "d_x", "q", "mu"))
    sx, sy, n, Ly = sym("sigma_x"), sym("sigma_y"), sym("n"), sym("L_y")
    zo = [t for t in _terms(w) if t.has(sx) and sp.degree(t, ex) == 2 and not t.has(ey)]
    assert zo, "a ZO-noise term eta_x^2 sigma_x^2 (linear in eta_x after dividing by eta_x)"
    assert all(t.has(q) for t in zo) and any(t.has(d) for t in zo)
    rr = [t for t in _terms(w) if t.has(sy) and sp.degree(t, ey) == 3]
    assert rr and any(sp.degree(t, n) == 1 and t.has(Ly) for t in rr)
    assert all(sp.degree(t, mu) == 2 for t in _terms(w) if t.has(mu))


def test_generalized_theorem_reduces_to_h1(theorem):
    gen = generalized_hybrid_reshuffling_theorem()
    red = GeneralizedHybridSmoothness().reduction_to_h1()
    assert sp.simplify(gen.weighted_bound.subs(red) - theorem.weighted_bound) == 0
    for cg, ch in zip(gen.conditions, theorem.conditions, strict=True):
        assert sp.simplify(cg.lhs.subs(red) - ch.lhs) == 0
        assert sp.simplify(cg.rhs.subs(red) - ch.rhs) == 0
    assert any("G" in h for h in gen.hypotheses)


def test_generalized_bound_grows_with_l1():
    b = Bound.from_theorem(generalized_hybrid_reshuffling_theorem())
    v = dict(L0_x=1, L0_y=1, L0_xy=0.1, L1_x=0.0, L1_y=0.0, L1_xy=0.0, G=10, sigma_x=0.1,
             sigma_y=0.1, Theta_x=0, Theta_y=0, Delta=1, eta_x=1e-5, eta_y=1e-4, mu=1e-4,
             q=1, n=4, T=100, d_x=10)
    base = b.evaluate(**v)
    assert b.evaluate(**{**v, "L1_x": 0.05}) > base
    assert b.evaluate(**{**v, "L1_xy": 0.05}) > base
