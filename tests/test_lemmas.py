"""Symbolic sanity checks of the lemma library (hybridconv.theory.lemmas).

Each lemma is checked on instances where both sides can be computed exactly: Gaussian
expectations of polynomials from the moments E u^k = (k - 1)!!, integrals that sympy evaluates
in closed form, exhaustive enumeration of permutations and sign patterns, and property tests on
exact rationals. Tight lemmas are checked for equality, upper bounds with ``<=``.
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import mpmath
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridconv.theory.assumptions import GeneralizedHybridSmoothness, ZOEstimator
from hybridconv.theory.lemmas import LEMMAS, Lemma, get, quantity, zo_second_moment
from hybridconv.theory.symbols import SYMBOLS, name_of, sym

EXPECTED_NAMES = [
    "young",
    "cauchy_schwarz_sum",
    "martingale_sum",
    "gaussian_smoothing_unbiased",
    "gaussian_smoothing_value_gap",
    "gaussian_directional_second_moment",
    "gaussian_zo_second_moment_convex",
    "zo_second_moment_nonconvex",
    "smoothing_bias",
    "stein_smoothing_bias",
    "ball_smoothing_bias",
    "rademacher_smoothing_bias",
    "zo_variance_nonconvex",
    "young_split",
    "young_lower",
    "polarization",
    "gradient_gap",
    "effective_rank_estimator",
    "effective_rank_drift",
    "lsmooth_gradient_bound",
    "markov",
    "q_directions_variance",
    "without_replacement_variance",
    "random_reshuffling_nonconvex",
    "zo_gradient_descent_nonconvex",
    "block_descent",
    "block_descent_amgm",
    "generalized_block_descent",
]

# test-side symbols, deliberately distinct from the lemmas' own (substituted in by name)
u, u1, u2, t, t1, t2 = sp.symbols("u u1 u2 t t1 t2", real=True)
x, x1, x2, bb, cc = sp.symbols("x x1 x2 bb cc", real=True)
Lt, mut = sp.symbols("Lt mut", positive=True)

HYPOTHESIS = settings(max_examples=60, deadline=None)


# ---------------------------------------------------------------------------------------------
# helpers
def gaussian_expectation(expr: sp.Expr, *us: sp.Symbol) -> sp.Expr:
    """E over independent standard normals ``us`` of a polynomial, via E u^k = (k - 1)!!."""
    poly = sp.Poly(sp.expand(expr), *us)
    total = sp.Integer(0)
    for monom, coeff in poly.terms():
        term = coeff
        for power in monom:
            term *= 0 if power % 2 else sp.factorial2(power - 1)
        total += term
    return sp.expand(total)


def gaussian_integral(expr: sp.Expr, var: sp.Symbol = u) -> sp.Expr:
    """E over var ~ N(0, 1) by sympy integration against the density."""
    density = sp.exp(-(var**2) / 2) / sp.sqrt(2 * sp.pi)
    return sp.simplify(sp.integrate(expr * density, (var, -sp.oo, sp.oo)))


def circle_average(expr: sp.Expr, *angles: sp.Symbol) -> sp.Expr:
    """Average over independent uniform angles in [0, 2 pi)."""
    result = sp.expand(expr)
    for angle in angles:
        result = sp.integrate(result, (angle, 0, 2 * sp.pi)) / (2 * sp.pi)
    return sp.simplify(result)


def symbols_of(lemma: Lemma) -> dict[str, sp.Symbol]:
    return {name_of(s): s for s in lemma.statement.free_symbols}


def sides(lemma: Lemma, **subs: object) -> tuple[sp.Expr, sp.Expr]:
    """(lhs, rhs) of ``lemma`` with symbols replaced by name, kept apart (never evaluated)."""
    names = symbols_of(lemma)
    mapping = {names[key]: sp.sympify(value) for key, value in subs.items()}
    return (lemma.lhs.subs(mapping, simultaneous=True),
            lemma.rhs.subs(mapping, simultaneous=True))


def nonneg_polynomial(expr: sp.Expr, signed: tuple[sp.Symbol, ...],
                      nonneg: tuple[sp.Symbol, ...] = ()) -> bool:
    """Whether ``expr`` is a polynomial with coefficients >= 0 and even powers of ``signed``."""
    poly = sp.Poly(sp.expand(expr), *signed, *nonneg)
    for monom, coeff in poly.terms():
        if not coeff.is_number or coeff < 0:
            return False
        if any(power % 2 for power in monom[: len(signed)]):
            return False
    return True


def exponents(term: sp.Expr) -> dict[str, sp.Expr]:
    """Exponent of each symbol in a monomial, by table or quantity name (coefficient dropped)."""
    _, monomial = term.as_coeff_Mul()
    return {name_of(base): power for base, power in monomial.as_powers_dict().items()}


def q(value: Fraction) -> sp.Rational:
    return sp.Rational(value.numerator, value.denominator)


rationals = st.fractions(min_value=-10, max_value=10, max_denominator=30)
positive_rationals = st.fractions(min_value=Fraction(1, 30), max_value=10, max_denominator=30)


# ---------------------------------------------------------------------------------------------
# the registry and the Lemma object
def test_registry_has_the_lemmas_in_order() -> None:
    assert list(LEMMAS) == EXPECTED_NAMES


@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_every_lemma_is_well_formed(name: str) -> None:
    lemma = get(name)
    assert lemma is LEMMAS[name] and lemma.name == name
    assert lemma.source.strip() and lemma.title.strip()
    assert isinstance(lemma.statement, (sp.LessThan, sp.Equality))
    assert all(isinstance(c, sp.core.relational.Relational) for c in lemma.conditions)
    table = set(SYMBOLS.values())
    free = set(lemma.statement.free_symbols).union(*(c.free_symbols for c in lemma.conditions))
    assert set(lemma.quantities) == {s.name for s in free if s not in table}
    markdown = lemma.to_markdown()
    assert lemma.title in markdown and lemma.source in markdown and "$" in markdown
    assert lemma.lhs == lemma.statement.lhs and lemma.rhs == lemma.statement.rhs
    hash(lemma)


def test_get_unknown_lemma_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown lemma 'nope'.*young.*block_descent"):
        get("nope")


def test_instantiate_rejects_unknown_names_and_bad_values() -> None:
    lemma = get("gaussian_directional_second_moment")
    with pytest.raises(ValueError, match="unknown name 'unknown'.*grad_sq"):
        lemma.instantiate(unknown=1)
    with pytest.raises(ValueError, match="d must be a number"):
        lemma.instantiate(d=True)
    with pytest.raises(ValueError, match="must name a table symbol"):
        lemma.instantiate(d="no_such_name")
    with pytest.raises(ValueError, match="d must be a number"):
        lemma.instantiate(d=object())


def test_instantiate_evaluates_numbers_and_ignores_unused_table_names() -> None:
    lemma = get("gaussian_directional_second_moment")
    assert lemma.instantiate(d=3, grad_sq=2, E_dir_sq=14) is sp.true
    assert lemma.instantiate(d=3, grad_sq=2, E_dir_sq=15) is sp.false
    assert lemma.instantiate(L_xy=1) == lemma.statement
    renamed = lemma.instantiate(d="d_x")
    assert renamed.rhs == (sym("d_x") + 4) * symbols_of(lemma)["grad_sq"]


def test_instantiate_renames_the_generic_lemma_into_the_estimator_lemma() -> None:
    generic = get("zo_second_moment_nonconvex").instantiate(d="d_x", L="L_x")
    specific = zo_second_moment(ZOEstimator("gaussian", "central")).statement
    assert generic.lhs == specific.lhs
    assert sp.expand(generic.rhs - specific.rhs) == 0


def test_substitute_into_composes() -> None:
    lemma = get("gaussian_directional_second_moment")
    e_dir, grad_sq, d = (symbols_of(lemma)[k] for k in ("E_dir_sq", "grad_sq", "d"))
    composed = lemma.substitute_into(3 * e_dir + 1)
    assert sp.expand(composed - (3 * (d + 4) * grad_sq + 1)) == 0
    assert e_dir not in composed.free_symbols
    bias_lemma = get("smoothing_bias")
    bias = bias_lemma.lhs
    expanded = sp.expand(bias_lemma.substitute_into(2 * bias**2))
    names = symbols_of(bias_lemma)
    assert expanded == sp.expand(names["mu"] ** 2 * names["L"] ** 2 * (names["d"] + 3) ** 3 / 2)


def test_quantity_defaults_and_validation() -> None:
    s = quantity("s")
    assert s.is_real and s.is_nonnegative
    assert quantity("s", nonnegative=None).is_nonnegative is None
    assert quantity("d", positive=True, integer=True).is_integer
    with pytest.raises(ValueError, match="table symbol"):
        quantity("L_x")
    with pytest.raises(ValueError, match="identifier"):
        quantity("1x")


_a, _b = quantity("a"), quantity("b")
_GOOD = {
    "name": "ok_lemma",
    "title": "ok",
    "statement": sp.Le(_a, _b, evaluate=False),
    "quantities": {"a": "a", "b": "b"},
    "hypotheses": (),
    "source": "somewhere",
}
BAD_LEMMAS = [
    ({"name": "Bad Name"}, "name must be snake_case"),
    ({"statement": _a}, "must be a sympy Le or Eq"),
    ({"statement": sp.Ge(_a, _b, evaluate=False)}, "must be a sympy Le or Eq"),
    ({"source": "  "}, "source of 'ok_lemma' must be a non-empty string"),
    ({"quantities": {"a": "a"}}, r"missing \['b'\]"),
    ({"quantities": {"a": "a", "b": "b", "z": "z"}}, r"do not use: \['z'\]"),
    ({"conditions": (_a,)}, "conditions of 'ok_lemma' must be a tuple of sympy relations"),
    ({"hypotheses": ["a list"]}, "hypotheses of 'ok_lemma' must be a tuple of strings"),
    ({"statement": sp.Le(_a, quantity("a", positive=True), evaluate=False)},
     "two different symbols named 'a'"),
]


@pytest.mark.parametrize(("override", "message"), BAD_LEMMAS)
def test_lemma_rejects_bad_fields(override: dict[str, object], message: str) -> None:
    Lemma(**_GOOD)
    with pytest.raises(ValueError, match=message):
        Lemma(**{**_GOOD, **override})


# ---------------------------------------------------------------------------------------------
# elementary inequalities
@HYPOTHESIS
@given(a=rationals, b=rationals, c=positive_rationals)
def test_young_holds_on_rationals(a: Fraction, b: Fraction, c: Fraction) -> None:
    assert get("young").instantiate(a=q(a), b=q(b), c=q(c)) is sp.true


def test_young_gap_is_a_square_and_tight_at_b_equals_ca() -> None:
    a, b = sp.symbols("a b", real=True)
    c = sp.Symbol("c", positive=True)
    lhs, rhs = sides(get("young"), a=a, b=b, c=c)
    assert sp.expand((sp.sqrt(c) * a - b / sp.sqrt(c)) ** 2 - (rhs - lhs)) == 0
    lhs, rhs = sides(get("young"), a=a, b=c * a, c=c)
    assert sp.simplify(rhs - lhs) == 0


@HYPOTHESIS
@given(vectors=st.lists(st.lists(st.integers(-20, 20), min_size=3, max_size=3),
                        min_size=1, max_size=6))
def test_cauchy_schwarz_sum_holds_on_integer_vectors(vectors: list[list[int]]) -> None:
    total = [sum(column) for column in zip(*vectors, strict=True)]
    sum_sq = sum(v * v for v in total)
    sq_sum = sum(v * v for vec in vectors for v in vec)
    assert get("cauchy_schwarz_sum").instantiate(
        sum_sq=sum_sq, sq_sum=sq_sum, m=len(vectors)) is sp.true


def test_cauchy_schwarz_sum_is_tight_for_equal_vectors() -> None:
    m = 5
    vec = [3, -1, 2]
    lhs, rhs = sides(get("cauchy_schwarz_sum"), sum_sq=sum((m * v) ** 2 for v in vec),
                     sq_sum=m * sum(v * v for v in vec), m=m)
    assert lhs == rhs


def test_martingale_sum_on_dependent_martingale_differences() -> None:
    al, be, ga, de, ep, ze = sp.symbols("alpha beta gamma delta epsilon zeta", real=True)
    patterns = list(itertools.product((-1, 1), repeat=3))

    def increments(s1: int, s2: int, s3: int) -> list[sp.Expr]:
        # xi_2 and xi_3 have sizes that depend on the past: not independent, but E[xi_k | past] = 0
        return [al * s1, s2 * (be + ga * s1), s3 * (de + ep * s1 * s2 + ze * s2)]

    e_sum_sq = sum(sum(increments(*s)) ** 2 for s in patterns) / len(patterns)
    sum_e_sq = sum(sum(xi**2 for xi in increments(*s)) for s in patterns) / len(patterns)
    lhs, rhs = sides(get("martingale_sum"), E_sum_sq=e_sum_sq, sum_E_sq=sum_e_sq)
    assert sp.expand(lhs - rhs) == 0
    # the identity needs the martingale property: correlated increments break it
    correlated = sum((al * s1 + be * s1) ** 2 for s1, _, _ in patterns) / len(patterns)
    assert sp.expand(correlated - (al**2 + be**2)) != 0


# ---------------------------------------------------------------------------------------------
# Gaussian smoothing
def test_gaussian_moment_helper_agrees_with_integration() -> None:
    for power in (2, 4, 6):
        assert gaussian_expectation(u**power, u) == gaussian_integral(u**power)
    assert gaussian_expectation(u**3 + u, u) == 0


@pytest.mark.parametrize("f", [Lt * x**2 / 2 + bb * x + cc * x**3, -Lt * x**2 / 2 + bb * x])
def test_gaussian_smoothing_unbiased_in_one_dimension(f: sp.Expr) -> None:
    e_g = gaussian_expectation((f.subs(x, x + mut * u) - f) / mut * u, u)
    f_mu = gaussian_expectation(f.subs(x, x + mut * u), u)
    lhs, rhs = sides(get("gaussian_smoothing_unbiased"), E_g=e_g, grad_f_mu=sp.diff(f_mu, x))
    assert sp.simplify(lhs - rhs) == 0


def test_gaussian_smoothing_unbiased_in_two_dimensions_nonconvex() -> None:
    f = x1**2 * x2 + Lt * x2**2 / 2
    shifted = f.subs({x1: x1 + mut * u1, x2: x2 + mut * u2}, simultaneous=True)
    f_mu = gaussian_expectation(shifted, u1, u2)
    for coord, direction in ((x1, u1), (x2, u2)):
        e_g = gaussian_expectation((shifted - f) / mut * direction, u1, u2)
        lhs, rhs = sides(get("gaussian_smoothing_unbiased"), E_g=e_g,
                         grad_f_mu=sp.diff(f_mu, coord))
        assert sp.simplify(lhs - rhs) == 0


@pytest.mark.parametrize("sign", [1, -1])
def test_gaussian_smoothing_value_gap_is_tight_on_quadratics(sign: int) -> None:
    lemma = get("gaussian_smoothing_value_gap")
    f1 = sign * Lt * x**2 / 2 + bb * x
    gap1 = sp.Abs(gaussian_expectation(f1.subs(x, x + mut * u), u) - f1)
    lhs, rhs = sides(lemma, value_gap=gap1, L=Lt, mu=mut, d=1)
    assert sp.simplify(rhs - lhs) == 0
    f2 = sign * Lt * (x1**2 + x2**2) / 2
    shifted = f2.subs({x1: x1 + mut * u1, x2: x2 + mut * u2}, simultaneous=True)
    gap2 = sp.Abs(gaussian_expectation(shifted, u1, u2) - f2)
    lhs, rhs = sides(lemma, value_gap=gap2, L=Lt, mu=mut, d=2)
    assert sp.simplify(rhs - lhs) == 0


def test_gaussian_smoothing_value_gap_on_a_saddle() -> None:
    f = Lt * (x1**2 - x2**2) / 2
    shifted = f.subs({x1: x1 + mut * u1, x2: x2 + mut * u2}, simultaneous=True)
    gap = sp.Abs(sp.expand(gaussian_expectation(shifted, u1, u2) - f))
    assert gap == 0  # the saddle's curvatures cancel
    assert get("gaussian_smoothing_value_gap").instantiate(
        value_gap=gap, L=Lt, mu=mut, d=2) is sp.true


def test_gaussian_directional_second_moment_in_two_dimensions() -> None:
    a1, a2 = sp.symbols("a1 a2", real=True)
    norm_sq = a1**2 + a2**2
    value = gaussian_expectation((a1 * u1 + a2 * u2) ** 2 * (u1**2 + u2**2), u1, u2)
    assert sp.expand(value - 4 * norm_sq) == 0  # (d + 2)||a||^2 at d = 2, exactly
    lhs, rhs = sides(get("gaussian_directional_second_moment"), E_dir_sq=value,
                     grad_sq=norm_sq, d=2)
    assert sp.expand(rhs - lhs - 2 * norm_sq) == 0
    assert nonneg_polynomial(rhs - lhs, (a1, a2))


def _forward(f: sp.Expr) -> sp.Expr:
    return (f.subs(x, x + mut * u) - f) / mut


def _central(f: sp.Expr) -> sp.Expr:
    return (f.subs(x, x + mut * u) - f.subs(x, x - mut * u)) / (2 * mut)


@pytest.mark.parametrize("sign", [1, -1])
def test_zo_second_moments_on_one_dimensional_quadratics(sign: int) -> None:
    f = sign * Lt * x**2 / 2  # L-smooth; nonconvex for sign = -1
    grad_sq = Lt**2 * x**2
    forward = gaussian_expectation((_forward(f) * u) ** 2, u)
    assert sp.expand(forward - (3 * Lt**2 * x**2 + sp.Rational(15, 4) * Lt**2 * mut**2)) == 0
    central = gaussian_expectation((_central(f) * u) ** 2, u)
    assert sp.expand(central - 3 * Lt**2 * x**2) == 0
    for name in ("gaussian_zo_second_moment_convex", "zo_second_moment_nonconvex"):
        for value in (forward, central):
            lhs, rhs = sides(get(name), E_g_sq=value, grad_sq=grad_sq, L=Lt, mu=mut, d=1)
            assert nonneg_polynomial(rhs - lhs, (x,), (Lt, mut)), name


def test_zo_second_moment_nonconvex_on_a_two_dimensional_saddle() -> None:
    f = Lt * (x1**2 - x2**2) / 2
    shifted = f.subs({x1: x1 + mut * u1, x2: x2 + mut * u2}, simultaneous=True)
    delta = (shifted - f) / mut
    value = gaussian_expectation(delta**2 * (u1**2 + u2**2), u1, u2)
    grad_sq = Lt**2 * (x1**2 + x2**2)
    assert sp.expand(value - (4 * grad_sq + 6 * Lt**2 * mut**2)) == 0
    lhs, rhs = sides(get("zo_second_moment_nonconvex"), E_g_sq=value, grad_sq=grad_sq,
                     L=Lt, mu=mut, d=2)
    assert nonneg_polynomial(rhs - lhs, (x1, x2), (Lt, mut))


def _signed_square(z: object, L: object) -> object:
    """f(z) = (L/2) z |z|: f'' = L sign(z), so L-smooth and nonconvex, C^1 but not C^2."""
    return L / 2 * z * abs(z)


def test_zo_second_moment_nonconvex_on_a_nonquadratic_function_at_the_kink() -> None:
    f = _signed_square(x, Lt)
    for delta in (_forward(f), _central(f)):
        at_zero = sp.simplify(delta.subs(x, 0) * u)
        # at x = 0 both differences give (L mu / 2) u |u|, so E g^2 = (L mu / 2)^2 E u^6
        assert sp.simplify(at_zero**2 - Lt**2 * mut**2 * u**6 / 4) == 0
        value = Lt**2 * mut**2 * gaussian_expectation(u**6, u) / 4
        lhs, rhs = sides(get("zo_second_moment_nonconvex"), E_g_sq=value, grad_sq=0,
                         L=Lt, mu=mut, d=1)
        assert sp.simplify(rhs - lhs) == sp.Rational(15, 4) * Lt**2 * mut**2


@pytest.mark.parametrize("difference", ["forward", "central"])
def test_zo_second_moment_nonconvex_on_a_nonquadratic_function_numerically(
        difference: str) -> None:
    mpmath.mp.dps = 30
    lemma = get("zo_second_moment_nonconvex")
    for x0, L, mu in itertools.product((-2, -0.3, 0.5, 3), (1, 2.5), (0.1, 1)):
        x0, L, mu = mpmath.mpf(x0), mpmath.mpf(L), mpmath.mpf(mu)

        def f(z: mpmath.mpf, L: mpmath.mpf = L) -> mpmath.mpf:
            return _signed_square(z, L)

        def integrand(v: mpmath.mpf, x0=x0, mu=mu, f=f) -> mpmath.mpf:
            if difference == "forward":
                delta = (f(x0 + mu * v) - f(x0)) / mu
            else:
                delta = (f(x0 + mu * v) - f(x0 - mu * v)) / (2 * mu)
            return delta**2 * v**2 * mpmath.npdf(v)

        kinks = sorted({-x0 / mu, x0 / mu})
        value = mpmath.quad(integrand, [-mpmath.inf, *kinks, mpmath.inf])
        grad_sq = (L * abs(x0)) ** 2
        lhs, rhs = sides(lemma, E_g_sq=sp.Float(value, 25), grad_sq=sp.Float(grad_sq, 25),
                         L=sp.Float(L, 25), mu=sp.Float(mu, 25), d=1)
        assert lhs <= rhs, (x0, L, mu)


def test_smoothing_bias_on_a_nonconvex_function() -> None:
    # f(x) = (L/2) x |x| at x = 0: grad f(0) = 0, grad f_mu(0) = E f'(mu u) = L mu E|u|
    e_abs = 2 * sp.integrate(u * sp.exp(-(u**2) / 2), (u, 0, sp.oo)) / sp.sqrt(2 * sp.pi)
    grad_f_mu = Lt * mut * e_abs
    assert sp.simplify(grad_f_mu - Lt * mut * sp.sqrt(2 / sp.pi)) == 0
    # cross-check with the unbiased-estimator identity: E[(L mu / 2) u |u| u] = grad f_mu(0)
    e_abs_cubed = 2 * sp.integrate(u**3 * sp.exp(-(u**2) / 2), (u, 0, sp.oo)) / sp.sqrt(2 * sp.pi)
    assert sp.simplify(Lt * mut / 2 * e_abs_cubed - grad_f_mu) == 0
    lhs, rhs = sides(get("smoothing_bias"), bias=grad_f_mu, L=Lt, mu=mut, d=1)
    assert sp.simplify(rhs - 4 * Lt * mut) == 0
    gap = sp.simplify((rhs - lhs) / (Lt * mut))
    assert sp.simplify(gap - (4 - sp.sqrt(2 / sp.pi))) == 0
    assert gap.is_positive


def test_smoothing_bias_is_zero_on_quadratics() -> None:
    f = Lt * (x1**2 - x2**2) / 2 + bb * x1
    shifted = f.subs({x1: x1 + mut * u1, x2: x2 + mut * u2}, simultaneous=True)
    f_mu = gaussian_expectation(shifted, u1, u2)
    bias_sq = sum((sp.diff(f_mu, c) - sp.diff(f, c)) ** 2 for c in (x1, x2))
    assert sp.simplify(bias_sq) == 0
    assert get("smoothing_bias").instantiate(bias=0, L=Lt, mu=mut, d=2) is sp.true


# ---------------------------------------------------------------------------------------------
# several directions, sampling without replacement
def test_q_directions_variance_from_single_direction_moments() -> None:
    lemma = get("q_directions_variance")
    d, qq, grad_sq = (symbols_of(lemma)[k] for k in ("d", "q", "grad_sq"))
    # sphere of radius sqrt(d): E||<a,u>u||^2 = d||a||^2, E<a,u_k><a,u_l><u_k,u_l> = ||a||^2
    derived = (qq * d + qq * (qq - 1)) * grad_sq / qq**2
    assert sp.simplify(derived - lemma.rhs) == 0


def test_q_directions_variance_exactly_for_d2_q2_sphere_directions() -> None:
    a1, a2 = sp.symbols("a1 a2", real=True)
    first = sp.sqrt(2) * sp.Matrix([sp.cos(t1), sp.sin(t1)])
    second = sp.sqrt(2) * sp.Matrix([sp.cos(t2), sp.sin(t2)])
    a = sp.Matrix([a1, a2])
    single = circle_average((a.dot(first)) ** 2 * first.dot(first), t1)
    assert sp.expand(single - 2 * (a1**2 + a2**2)) == 0  # d ||a||^2
    mean = (a.dot(first) * first + a.dot(second) * second) / 2
    value = circle_average(mean.dot(mean), t1, t2)
    lhs, rhs = sides(get("q_directions_variance"), E_q_sq=value, grad_sq=a1**2 + a2**2,
                     d=2, q=2)
    assert sp.expand(lhs - rhs) == 0
    assert sp.expand(rhs - sp.Rational(3, 2) * (a1**2 + a2**2)) == 0


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_without_replacement_variance_by_enumerating_permutations(k: int) -> None:
    n = 4
    v = sp.symbols("v1:5", real=True)
    vbar = sum(v) / n
    perms = list(itertools.permutations(v))
    e_dev_sq = sum((sum(p[:k]) / k - vbar) ** 2 for p in perms) / len(perms)
    sigma_sq = sum((vi - vbar) ** 2 for vi in v) / n
    lemma = get("without_replacement_variance")
    lhs, rhs = sides(lemma, E_dev_sq=e_dev_sq, sigma_sq=sigma_sq, n=n, k=k)
    assert sp.expand(lhs - rhs) == 0
    if k > 1:  # with replacement would give sigma_sq / k: strictly larger
        assert sp.expand(sigma_sq / k - rhs) != 0
    names = symbols_of(lemma)
    assert all(c.subs({names["n"]: n, names["k"]: k}) is sp.true for c in lemma.conditions)


# ---------------------------------------------------------------------------------------------
# rates: the form of the bounds
def test_random_reshuffling_nonconvex_form() -> None:
    lemma = get("random_reshuffling_nonconvex")
    terms = sp.Add.make_args(sp.expand(lemma.rhs))
    assert len(terms) == 2
    found = sorted((exponents(term) for term in terms), key=lambda e: "Delta" in e)
    assert found == [
        {"gamma": 2, "L": 2, "n": 1, "sigma": 2},
        {"Delta": 1, "gamma": -1, "n": -1, "T": -1},
    ]
    assert all(term.as_coeff_Mul()[0] > 0 for term in terms)
    names = symbols_of(lemma)
    at_zero = lemma.rhs.subs(names["sigma"], 0)
    assert exponents(at_zero) == {"Delta": 1, "gamma": -1, "n": -1, "T": -1}
    (condition,) = lemma.conditions
    gamma, L, n = names["gamma"], names["L"], names["n"]
    assert condition.subs(gamma, 1 / (2 * L * n)) is sp.true
    assert condition.subs(gamma, 1 / (L * n)) is sp.false


def test_random_reshuffling_tuned_rate_is_sqrt_n_over_eps_cubed() -> None:
    lemma = get("random_reshuffling_nonconvex")
    names = symbols_of(lemma)
    gamma, n, T = names["gamma"], names["n"], names["T"]
    # balancing the two terms gives gamma^3 ~ 1/(n^2 T): the bound scales as T^(-2/3) n^(-1/3),
    # so reaching eps^2 takes n T ~ sqrt(n) / eps^3 gradient steps
    tuned = lemma.rhs.subs(gamma, (n**2 * T) ** sp.Rational(-1, 3))
    scale = sp.Symbol("s", positive=True)
    assert sp.simplify(tuned.subs(T, scale**3 * T) / tuned - scale**-2) == 0
    assert sp.simplify(tuned.subs(n, scale**3 * n) / tuned - scale**-1) == 0


def test_zo_gradient_descent_nonconvex_form() -> None:
    lemma = get("zo_gradient_descent_nonconvex")
    names = symbols_of(lemma)
    gamma, L, d, mu, Delta, T = (names[k] for k in ("gamma", "L", "d", "mu", "Delta", "T"))
    at_ns_step = lemma.rhs.subs(gamma, 1 / (4 * (d + 4) * L))
    delta_term = at_ns_step.subs(mu, 0)
    ratio = sp.simplify(delta_term / (Delta * (d + 4) * L / T))
    assert ratio.is_number and ratio > 0
    mu_part = sp.simplify((at_ns_step - delta_term) / (mu**2 * L**2))
    assert mu_part.free_symbols == {d}
    poly = sp.Poly(sp.expand(mu_part), d)
    assert poly.degree() == 3 and all(c > 0 for c in poly.coeffs())


def test_zo_gradient_descent_nonconvex_follows_from_the_lemmas() -> None:
    lemma = get("zo_gradient_descent_nonconvex")
    names = symbols_of(lemma)
    gamma, L, d, Delta, T = (names[k] for k in ("gamma", "L", "d", "Delta", "T"))
    bias = get("smoothing_bias")
    second = get("zo_second_moment_nonconvex")
    grad_sq = symbols_of(second)["grad_sq"]
    mu_part_of_second_moment = second.rhs.subs(grad_sq, 0)
    # E f(x+) <= f(x) - (gamma/4)||grad f||^2 + (gamma/2) bias^2 + (L gamma^2 / 2) mu_part
    composed = 4 * Delta / (gamma * T) + bias.substitute_into(
        2 * bias.lhs**2) + 2 * L * gamma * mu_part_of_second_moment
    assert sp.expand(composed - lemma.rhs) == 0
    # the step condition makes the 2 (d+2) ||grad f||^2 variance term cost at most gamma/4
    (condition,) = lemma.conditions
    slack = sp.Rational(1, 4) - L * (d + 2) * condition.rhs
    assert sp.simplify(slack - 1 / (2 * (d + 4))) == 0


# ---------------------------------------------------------------------------------------------
# block descent lemmas
def _quadratic_instance(h11: sp.Expr, h12: sp.Expr, h22: sp.Expr, z: tuple, step: tuple
                        ) -> dict[str, sp.Expr]:
    H = sp.Matrix([[h11, h12], [h12, h22]])
    zv, dv = sp.Matrix(z), sp.Matrix(step)

    def F(w: sp.Matrix) -> sp.Expr:
        return (w.T * H * w)[0] / 2

    return {
        "F_next": F(zv + dv), "F_z": F(zv), "inner": (H * zv).dot(dv),
        "a": sp.Abs(dv[0]), "b": sp.Abs(dv[1]),
    }


unit = st.fractions(min_value=-1, max_value=1, max_denominator=20)
coords = st.fractions(min_value=-5, max_value=5, max_denominator=20)
nonneg = st.fractions(min_value=0, max_value=5, max_denominator=20)


@HYPOTHESIS
@given(lx=positive_rationals, ly=positive_rationals, lxy=nonneg, s=st.tuples(unit, unit, unit),
       z=st.tuples(coords, coords), step=st.tuples(coords, coords))
def test_block_descent_on_quadratics(lx: Fraction, ly: Fraction, lxy: Fraction,
                                     s: tuple, z: tuple, step: tuple) -> None:
    Lx, Ly, Lxy = q(lx), q(ly), q(lxy)
    inst = _quadratic_instance(q(s[0]) * Lx, q(s[1]) * Lxy, q(s[2]) * Ly,
                               tuple(map(q, z)), tuple(map(q, step)))
    for name in ("block_descent", "block_descent_amgm"):
        assert get(name).instantiate(**inst, L_x=Lx, L_y=Ly, L_xy=Lxy) is sp.true, name


def test_block_descent_is_tight_on_the_extreme_quadratic() -> None:
    Lx, Ly, Lxy = sp.symbols("Lx Ly Lxy", positive=True)
    z1, z2 = sp.symbols("z1 z2", real=True)
    d1, d2 = sp.symbols("d1 d2", nonnegative=True)
    inst = _quadratic_instance(Lx, Lxy, Ly, (z1, z2), (d1, d2))
    lhs, rhs = sides(get("block_descent"), **inst, L_x=Lx, L_y=Ly, L_xy=Lxy)
    assert sp.expand(rhs - lhs) == 0
    # so any smaller constant would fail: halving the cross term breaks it for d1, d2 > 0
    assert sp.expand(rhs - Lxy * d1 * d2 / 2 - lhs) != 0


def test_block_descent_amgm_is_weaker_by_a_square() -> None:
    plain, split = get("block_descent"), get("block_descent_amgm")
    names = symbols_of(plain)
    assert split.lhs == plain.lhs
    gap = sp.expand(split.rhs - plain.rhs)
    assert sp.expand(gap - names["L_xy"] * (names["a"] - names["b"]) ** 2 / 2) == 0


def test_generalized_block_descent_reduces_to_block_descent() -> None:
    general, plain = get("generalized_block_descent"), get("block_descent")
    reduction = GeneralizedHybridSmoothness().reduction_to_h1()
    assert general.lhs.subs(reduction) == plain.lhs
    assert sp.expand(general.rhs.subs(reduction) - plain.rhs) == 0
    assert {name_of(s) for s in general.rhs.free_symbols} >= {"L0_x", "L1_x", "L0_xy", "G"}
    with_named = general.instantiate(L1_x=0, L1_y=0, L1_xy=0, L0_x="L_x", L0_y="L_y",
                                     L0_xy="L_xy")
    assert sp.expand(with_named.rhs - plain.rhs) == 0


# ---------------------------------------------------------------------------------------------
# the estimator-specific second moment
def test_zo_second_moment_sphere_constants() -> None:
    lemma = zo_second_moment(ZOEstimator("sphere"))
    grad_sq = symbols_of(lemma)["grad_sq"]
    d_x, mu, L_x = sym("d_x"), sym("mu"), sym("L_x")
    assert sp.expand(lemma.rhs - (2 * d_x * grad_sq + d_x**3 / 2 * mu**2 * L_x**2)) == 0
    assert lemma.name == "zo_second_moment_sphere_central"


@pytest.mark.parametrize("directions", ["gaussian", "sphere", "rademacher"])
def test_zo_second_moment_matches_the_estimator(directions: str) -> None:
    for difference in ("central", "forward"):
        estimator = ZOEstimator(directions, difference)
        lemma = zo_second_moment(estimator)
        grad_sq = symbols_of(lemma)["grad_sq"]
        expected = estimator.c1() * grad_sq + estimator.c2() * sym("mu") ** 2 * sym("L_x") ** 2
        assert sp.expand(lemma.rhs - expected) == 0
        assert directions in lemma.title and difference in lemma.title


def test_zo_second_moment_rejects_a_non_estimator() -> None:
    with pytest.raises(TypeError, match="estimator must be a ZOEstimator"):
        zo_second_moment("gaussian")  # type: ignore[arg-type]


def test_zo_second_moment_sphere_on_a_saddle_in_two_dimensions() -> None:
    f = Lt * (x1**2 - x2**2) / 2  # nonconvex, L-smooth
    direction = sp.sqrt(2) * sp.Matrix([sp.cos(t), sp.sin(t)])
    shifted = f.subs({x1: x1 + mut * direction[0], x2: x2 + mut * direction[1]},
                     simultaneous=True)
    value = circle_average(((shifted - f) / mut) ** 2 * 2, t)  # ||u||^2 = d = 2
    grad_sq = Lt**2 * (x1**2 + x2**2)
    assert sp.expand(value - (2 * grad_sq + Lt**2 * mut**2)) == 0
    lhs, rhs = sides(zo_second_moment(ZOEstimator("sphere", "forward")), E_g_sq=value,
                     grad_sq=grad_sq, d_x=2, L_x=Lt, mu=mut)
    assert nonneg_polynomial(rhs - lhs, (x1, x2), (Lt, mut))



# ---------------------------------------------------------------------------------------------
# the sharp theorem's lemmas
@HYPOTHESIS
@given(rationals, rationals, rationals, rationals, positive_rationals)
def test_young_split_and_lower_on_rational_vectors(a1, a2, b1, b2, th) -> None:
    """||u + v||^2 between (1 - th)||u||^2 - (1/th - 1)||v||^2 and (1 + th)||u||^2 +
    (1 + 1/th)||v||^2, exactly, on rational 2-vectors."""
    ua, va = (q(a1), q(a2)), (q(b1), q(b2))
    u_sq, v_sq = ua[0] ** 2 + ua[1] ** 2, va[0] ** 2 + va[1] ** 2
    sum_sq = (ua[0] + va[0]) ** 2 + (ua[1] + va[1]) ** 2
    assert get("young_split").instantiate(sum_sq=sum_sq, u_sq=u_sq, v_sq=v_sq,
                                          th=q(th)) is sp.true
    if th <= 1:
        assert get("young_lower").instantiate(sum_sq=sum_sq, u_sq=u_sq, v_sq=v_sq,
                                              th=q(th)) is sp.true


def test_young_split_is_tight_at_v_equal_th_u() -> None:
    th = sp.Rational(1, 3)
    lhs, rhs = sides(get("young_split"), sum_sq=(1 + th) ** 2, u_sq=1, v_sq=th**2, th=th)
    assert sp.simplify(lhs - rhs) == 0


def test_polarization_is_an_identity() -> None:
    a, b = sp.symbols("a1:3", real=True), sp.symbols("b1:3", real=True)
    inner = a[0] * b[0] + a[1] * b[1]
    lhs, rhs = sides(get("polarization"), inner_uv=inner, u_sq=a[0] ** 2 + a[1] ** 2,
                     v_sq=b[0] ** 2 + b[1] ** 2,
                     diff_sq=(a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2)
    assert sp.expand(lhs - rhs) == 0


def test_gradient_gap_is_tight_on_a_block_quadratic() -> None:
    """F = (1/2)(Lx x^2 + Ly y^2): ||grad F||_D^2 = 2 max(eta_b L_b) F when eta_x Lx = eta_y Ly,
    and below it otherwise."""
    X, Y, Lx, Ly, ex = sp.symbols("X Y Lx Ly ex", positive=True)
    ey = ex * Lx / Ly
    F = (Lx * X**2 + Ly * Y**2) / 2
    grad_D = ex * (Lx * X) ** 2 + ey * (Ly * Y) ** 2
    lhs, rhs = sides(get("gradient_gap"), grad_D_sq=grad_D, L_D=ex * Lx, gap=F)
    assert sp.simplify(lhs - rhs) == 0
    # unequal scales: strictly below
    assert get("gradient_gap").instantiate(grad_D_sq=1 * 4 + 2 * 1, L_D=2, gap=(4 + 1) / 2) \
        is sp.true


def test_stein_bias_on_a_one_dimensional_kink() -> None:
    """f(x) = (L/2) x|x| (gradient L|x|, L-Lipschitz, not C^2): at 0 the Gaussian estimator's
    mean is E[L mu u |u|] ... its bias L mu E|u| = L mu sqrt(2/pi) <= L mu sqrt(1)."""
    bias = Lt * mut * sp.sqrt(2 / sp.pi)  # E[grad f(mu u)] - grad f(0) = L mu E|u|
    direct = gaussian_integral(Lt * mut * sp.Abs(u))
    assert sp.simplify(direct - bias) == 0
    assert get("stein_smoothing_bias").instantiate(bias=bias, L=Lt, mu=mut, d=1).subs(
        {Lt: 1, mut: 1}) is sp.true


def test_stein_bias_is_below_ghadimi_lan() -> None:
    d = sp.Symbol("d", positive=True)
    ratio = sp.sqrt(d) / ((d + 3) ** sp.Rational(3, 2) / 2)
    assert all(ratio.subs(d, k) < 1 for k in (1, 2, 10, 10**6))
    assert sp.limit(ratio * d, d, sp.oo) == 2  # a factor about d / 2 smaller


def test_rademacher_bias_by_enumeration() -> None:
    """f(x) = (L/2) x_1 |x_1| in d = 3 with Rademacher u: the bias at 0, enumerated, is below
    L mu d / 2."""
    L, mu_, d = sp.Integer(2), sp.Rational(1, 10), 3
    total = [sp.Integer(0)] * d
    for signs in itertools.product((-1, 1), repeat=d):
        fwd = (L / 2) * (mu_ * signs[0]) * abs(mu_ * signs[0]) / mu_  # (f(mu u) - f(0)) / mu
        for k in range(d):
            total[k] += fwd * signs[k] / 2**d
    bias = sp.sqrt(sum(c**2 for c in total))
    assert get("rademacher_smoothing_bias").instantiate(bias=bias, L=L, mu=mu_, d=d) is sp.true


def _rademacher_bias(f, grad0, d: int, mu: float, central: bool = False):
    """||E_u[g] - grad f(0)|| by enumerating all 2^d sign vectors (exact up to rounding)."""
    import numpy as np

    U = np.array(list(itertools.product((-1.0, 1.0), repeat=d)))
    if central:
        delta = (f(mu * U) - f(-mu * U)) / (2 * mu)
    else:
        delta = (f(mu * U) - f(np.zeros((1, d)))) / mu
    return float(np.linalg.norm((delta[:, None] * U).mean(axis=0) - grad0))


@pytest.mark.parametrize("d", [4, 10])
def test_rademacher_bias_attains_the_order_sqrt_d(d: int) -> None:
    """f = (L/2) sum_i x_i |x_i| (gradient L|x_i|, L-Lipschitz): the bias at 0 is exactly
    L mu sqrt(d) / 2, enumerated over the 2^d sign vectors, so the bound's order sqrt(d) cannot
    be improved and the bound (1 + 2/sqrt(3)) L mu sqrt(d) holds with ratio 0.23."""
    import numpy as np

    L, mu_ = 2.0, 0.1
    bias = _rademacher_bias(lambda X: (L / 2) * (X * np.abs(X)).sum(axis=1), np.zeros(d), d,
                            mu_)
    assert bias == pytest.approx(L * mu_ * np.sqrt(d) / 2, rel=1e-12)
    bound = float(get("rademacher_smoothing_bias").statement.rhs.subs(
        {quantity("L", positive=True): L, sym("mu"): mu_,
         quantity("d", positive=True, integer=True): d}))
    assert bias <= bound and bias / bound == pytest.approx(0.5 / (1 + 2 / np.sqrt(3)))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("central", [False, True])
def test_rademacher_bias_holds_on_random_nonseparable_functions(seed: int, central: bool):
    """f(x) = sum_k c_k softplus(a_k^T x + b_k), coupled coordinates, L = (1/4) sum |c_k|
    ||a_k||^2 (softplus'' <= 1/4): the enumerated bias (d = 10, mu = 0.5, seeds 0-2) stays
    below (1 + 2/sqrt(3)) L mu sqrt(d), forward and central."""
    import numpy as np

    rng = np.random.default_rng(seed)
    d, m, mu_ = 10, 6, 0.5
    A, b, c = rng.normal(size=(m, d)), rng.normal(size=m), rng.normal(size=m) * 3
    L = 0.25 * float(np.sum(np.abs(c) * (A**2).sum(axis=1)))

    def f(X):
        return (c * np.logaddexp(0.0, X @ A.T + b)).sum(axis=1)

    grad0 = A.T @ (c / (1 + np.exp(-b)))
    bias = _rademacher_bias(f, grad0, d, mu_, central)
    bound = (1 + 2 / np.sqrt(3)) * L * mu_ * np.sqrt(d)
    assert 0 < bias <= bound


@pytest.mark.parametrize("directions", ["gaussian", "sphere", "rademacher"])
def test_variance_constant_is_exact_in_two_dimensions(directions: str) -> None:
    """E||<a,u>u - a||^2 = c_v ||a||^2 exactly, d = 2 (Gaussian moments, the circle of radius
    sqrt(2), the four sign vectors)."""
    a = sp.symbols("a1:3", real=True)
    if directions == "gaussian":
        value = gaussian_expectation(
            sum(((a[0] * u1 + a[1] * u2) * ui - ai) ** 2
                for ui, ai in zip((u1, u2), a, strict=True)), u1, u2)
    elif directions == "sphere":
        th_ = sp.Symbol("th_", real=True)
        uu = (sp.sqrt(2) * sp.cos(th_), sp.sqrt(2) * sp.sin(th_))
        value = circle_average(sum(((a[0] * uu[0] + a[1] * uu[1]) * ui - ai) ** 2
                                   for ui, ai in zip(uu, a, strict=True)), th_)
    else:
        value = sum(sum(((a[0] * s0 + a[1] * s1) * si - ai) ** 2
                        for si, ai in zip((s0, s1), a, strict=True))
                    for s0, s1 in itertools.product((-1, 1), repeat=2)) / 4
    c_v = ZOEstimator(directions).variance_constant(sp.Integer(2))
    assert sp.expand(value - c_v * (a[0] ** 2 + a[1] ** 2)) == 0


@pytest.mark.parametrize("directions", ["gaussian", "sphere", "rademacher"])
def test_sixth_moment_is_exact(directions: str) -> None:
    est = ZOEstimator(directions)
    if directions == "gaussian":
        value = gaussian_expectation((u1**2 + u2**2) ** 3, u1, u2)
    else:
        value = sp.Integer(2) ** 3  # ||u||^2 = d = 2 exactly
    assert value == est.sixth_moment(sp.Integer(2))


def test_effective_rank_estimator_with_a_rank_one_curvature() -> None:
    """W = e1 e1^T (tr W = 1 = r) in d = 2, Gaussian: E<a,u>^2 u^T W u - a^T W a =
    ||a||^2 tr W + a^T W a <= (r + 1)||a||^2, and E (u^T W u)^3 = 15 = r (r + 2)(r + 4)."""
    a = sp.symbols("a1:3", real=True)
    first = gaussian_expectation((a[0] * u1 + a[1] * u2) ** 2 * u1**2, u1, u2) - a[0] ** 2
    assert sp.expand(first - (a[0] ** 2 + a[1] ** 2) - a[0] ** 2) == 0
    assert nonneg_polynomial(2 * (a[0] ** 2 + a[1] ** 2) - first, a)
    assert gaussian_expectation(u1**6, u1, u2) == 1 * 3 * 5


def test_effective_rank_drift_on_a_bounded_indefinite_matrix() -> None:
    """M = [[0, s], [s, 0]] with |s|^2 <= h1 h2 lies between -H and H for H = diag(h1, h2);
    then ||(M v)_1||^2 <= h1 v^T H v."""
    h1, h2, v1, v2 = sp.Integer(3), sp.Integer(1), sp.Symbol("v1", real=True), \
        sp.Symbol("v2", real=True)
    s_ = sp.sqrt(h1 * h2)
    lhs = (s_ * v2) ** 2
    assert get("effective_rank_drift").instantiate(
        diff_b_sq=lhs, H_bb=h1, quad_H=h1 * v1**2 + h2 * v2**2).subs({v1: 1, v2: 2}) is sp.true
    assert nonneg_polynomial(h1 * (h1 * v1**2 + h2 * v2**2) - lhs, (v1, v2))


def test_markov_on_a_two_point_variable() -> None:
    level = sp.Rational(3)
    assert get("markov").instantiate(prob=sp.Rational(1, 4), mean=sp.Rational(3, 4),
                                     level=level) is sp.true


@pytest.mark.parametrize("model", ["h1", "effective-rank", "l-smooth"])
def test_zo_variance_lemma_of_each_model(model: str) -> None:
    from hybridconv.theory.assumptions import curvature_model
    from hybridconv.theory.lemmas import zo_variance

    lemma = zo_variance(curvature_model(model), ZOEstimator())
    dim = sym("r") if model == "effective-rank" else sym("d_x")
    assert lemma.rhs.has(dim) and lemma.rhs.has(sym("mu"))
    with pytest.raises(ValueError, match="Rademacher"):
        zo_variance(curvature_model("effective-rank"), ZOEstimator("rademacher"))
