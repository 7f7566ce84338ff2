"""Monte Carlo checks of the lemma library and of the simulator's noise floors.

Each lemma of :mod:`hybridconv.theory.lemmas` that the derivation chains is checked on functions
where the quantity it bounds has a closed form (THEORY.md, "How it is checked", items 1 and 4):

1. ``gaussian_smoothing_unbiased``: the two-point estimator's mean is grad f_mu, not grad f.
2. ``gaussian_directional_second_moment``, ``zo_second_moment_nonconvex`` (and
   ``zo_second_moment(ZOEstimator(...))``), ``gaussian_zo_second_moment_convex``: exact second
   moments on quadratics, and the nonconvex bound on f = sum_j cos(x_j).
3. ``q_directions_variance``: the 1/q scaling of q directions.
4. ``smoothing_bias``: the bias ball, deterministic and by Monte Carlo.
5. ``without_replacement_variance``: permutations of ``Sampler("rr")`` against ``Sampler("wr")``.
6. ``block_descent`` (and ``block_descent_amgm``): on random pairs, for a quadratic and for a
   nonconvex quadratic-plus-cosine function, deterministic.
7. The noise floors of ``simulate`` on ``QuadraticProblem``: their log-log slopes in the step
   size (1 for the ZO block, 3 for reshuffled FO at epoch ends, 1 for FO with replacement), and
   their values against the stationary covariance of the linear recursion.

Every statistical statement is a confidence interval at level ``1 - ALPHA`` (normal
approximation of a sample mean, Bonferroni-corrected where several coordinates are tested at
once), with a fixed seed named in the test's docstring. Each test also shows that it can fail:
the same data must reject a planted wrong value (a wrong constant, a wrong exponent, a dropped
term). Tests marked ``slow`` repeat the checks with more samples, dimensions and step sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import sympy as sp
from scipy import stats

from hybridconv.problems.quadratic import QuadraticProblem
from hybridconv.sim.estimators import zo_estimate
from hybridconv.sim.runner import SimConfig, simulate
from hybridconv.sim.samplers import Sampler
from hybridconv.theory.assumptions import ZOEstimator
from hybridconv.theory.lemmas import Lemma, get, zo_second_moment
from hybridconv.theory.symbols import name_of

# ---------------------------------------------------------------------------------------------
# confidence levels and tolerances (one place)
ALPHA = 1e-4
"""Error level of every Monte Carlo confidence statement: each holds with prob. >= 1 - ALPHA."""
Z_TWO = float(stats.norm.ppf(1 - ALPHA / 2))
"""Two-sided normal quantile at level ALPHA (about 3.89)."""
Z_ONE = float(stats.norm.ppf(1 - ALPHA))
"""One-sided normal quantile at level ALPHA (about 3.72), for upper confidence bounds."""
REL_TOL = 1e-9
"""Relative tolerance of deterministic inequalities evaluated in float64."""
N_MC = 200_000
"""Monte Carlo samples per estimate in the fast tests."""
N_MC_SLOW = 2_000_000
"""Monte Carlo samples per estimate in the slow tests."""
CHUNK = 200_000
"""Samples drawn at once (bounds the memory of the slow tests)."""
N_PERMUTATIONS = 20_000
"""Permutations per sampling scheme in the without-replacement check (fast)."""
N_PAIRS = 5_000
"""Random (z, D) pairs per function in the block descent check (fast)."""
TIGHT_FRACTION = 0.4
"""Lower bound on measured / bound for the nonconvex ZO second moment at a maximum of
sum cos (the bound is within a factor 2 of the truth there as mu -> 0)."""
SLOPE_TOL_LINEAR = 0.25
"""Allowed deviation of a log-log noise-floor slope from 1."""
SLOPE_TOL_CUBIC = 0.4
"""Allowed deviation of a log-log noise-floor slope from 3."""
FLOOR_RTOL_EXACT = 0.03
"""Relative deviation allowed (beyond Z_TWO standard errors) between a measured FO noise floor
and the exact stationary value of its linear recursion (covers the e^-6 burn-in bias)."""
FLOOR_RTOL_FIRST_ORDER = 0.12
"""The same for the ZO block, whose predicted floor is exact to first order in eta_x only
(multiplicative noise and reshuffling correlations add O(eta_x (d_x + 2) L_x))."""
BURN_EFOLDS = 6.0
"""Burn-in: E||z - z*||^2 starts at 0 (runs start at z*) and reaches its stationary value up to
a factor 1 - e^-BURN_EFOLDS."""
AVERAGE_EFOLDS = 8.0
"""Epochs averaged after burn-in, in units of the slowest mode's time constant."""


# ---------------------------------------------------------------------------------------------
# helpers
def z_bonferroni(m: int) -> float:
    """Two-sided normal quantile for m simultaneous intervals at overall level ALPHA."""
    return float(stats.norm.ppf(1 - ALPHA / (2 * m)))


def mean_se(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample mean and standard error along axis 0."""
    n = samples.shape[0]
    return samples.mean(axis=0), samples.std(axis=0, ddof=1) / math.sqrt(n)


def rhs_value(lemma: Lemma, **subs: object) -> float:
    """The right-hand side of ``lemma`` at numbers (the left-hand side stays a symbol)."""
    return float(lemma.instantiate(**subs).rhs)


def rhs_function(lemma: Lemma, *names: str):
    """The right-hand side of ``lemma`` as a numpy function of the named symbols."""
    by_name = {name_of(s): s for s in lemma.rhs.free_symbols}
    assert set(by_name) == set(names), (sorted(by_name), names)
    return sp.lambdify([by_name[name] for name in names], lemma.rhs, "numpy")


def differences_of(f, x: np.ndarray):
    """The ``differences(u, mu, difference)`` callable of ``zo_estimate`` for f at x, computed
    from function values: f maps (..., d) to (...)."""
    fx = f(x)

    def differences(u: np.ndarray, mu: float, difference: str) -> np.ndarray:
        plus = f(x + mu * u)
        if difference == "central":
            return (plus - f(x - mu * u)) / (2.0 * mu)
        return (plus - fx) / mu

    return differences


def zo_samples(f, x: np.ndarray, total: int, *, mu: float, q: int, directions: str,
               difference: str, rng: np.random.Generator) -> np.ndarray:
    """``total`` independent q-direction estimates g at x, shape (total, d), in chunks."""
    diffs = differences_of(f, x)
    out = []
    left = total
    while left > 0:
        batch = min(CHUNK, left)
        out.append(zo_estimate(diffs, batch, x.shape[0], mu=mu, q=q, directions=directions,
                               difference=difference, rng=rng))
        left -= batch
    return np.concatenate(out)


def cos_sum(x: np.ndarray) -> np.ndarray:
    """f(x) = sum_j cos(x_j): nonconvex, L = 1 (Hessian diag(-cos x_j))."""
    return np.cos(x).sum(axis=-1)


def cos_grad(x: np.ndarray) -> np.ndarray:
    return -np.sin(x)


def cos_grad_smoothed(x: np.ndarray, mu: float) -> np.ndarray:
    """grad f_mu for f = sum cos: E cos(x + mu u) = exp(-mu^2/2) cos x, u ~ N(0, 1)."""
    return -math.exp(-mu**2 / 2) * np.sin(x)


def signed_square(x: np.ndarray, L: float = 1.0) -> np.ndarray:
    """f(x) = (L/2) sum_j x_j |x_j|: grad f = L |x| (L-Lipschitz), nonconvex, not C^2 at 0."""
    return 0.5 * L * (x * np.abs(x)).sum(axis=-1)


def signed_square_grad(x: np.ndarray, L: float = 1.0) -> np.ndarray:
    return L * np.abs(x)


def signed_square_grad_smoothed(x: np.ndarray, mu: float, L: float = 1.0) -> np.ndarray:
    """grad f_mu = L E|x + mu u| (folded normal mean)."""
    return L * (mu * math.sqrt(2 / math.pi) * np.exp(-(x**2) / (2 * mu**2))
                + x * (1 - 2 * stats.norm.cdf(-x / mu)))


@dataclass(frozen=True)
class Quadratic:
    """f(x) = 1/2 x^T A x + b^T x with A positive definite (convex, L = ||A||)."""

    A: np.ndarray
    b: np.ndarray

    @classmethod
    def random(cls, d: int, rng: np.random.Generator, low: float = 0.25,
               high: float = 2.0) -> Quadratic:
        q, r = np.linalg.qr(rng.standard_normal((d, d)))
        q = q * np.sign(np.diag(r))
        lam = np.geomspace(low, high, d)
        return cls(A=(q * lam) @ q.T, b=rng.standard_normal(d))

    @property
    def L(self) -> float:
        return float(np.linalg.norm(self.A, 2))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return 0.5 * np.einsum("...i,ij,...j->...", x, self.A, x) + x @ self.b

    def grad(self, x: np.ndarray) -> np.ndarray:
        return self.A @ x + self.b

    def exact_second_moment(self, x: np.ndarray, mu: float, directions: str,
                            difference: str) -> float:
        """E||delta u||^2 for one direction, exactly.

        delta = <a, u> for the central difference and <a, u> + (mu/2) u^T A u for the forward
        one (a = grad f(x)); the cross term is odd in u and vanishes. With tA = tr A,
        tA2 = tr A^2: Gaussian E<a,u>^2||u||^2 = (d + 2)||a||^2 and
        E(u^T A u)^2 ||u||^2 = (d + 4)(tA^2 + 2 tA2) (Isserlis); sphere of radius sqrt(d):
        d ||a||^2 and d^2 (tA^2 + 2 tA2)/(d + 2); Rademacher: d ||a||^2 and
        d (tA^2 + 2 tA2 - 2 sum_i A_ii^2).
        """
        d = self.A.shape[0]
        a2 = float(self.grad(x) @ self.grad(x))
        tA, tA2 = float(np.trace(self.A)), float(np.trace(self.A @ self.A))
        if directions == "gaussian":
            first, quartic = (d + 2) * a2, (d + 4) * (tA**2 + 2 * tA2)
        elif directions == "sphere":
            first, quartic = d * a2, d**2 * (tA**2 + 2 * tA2) / (d + 2)
        else:
            first = d * a2
            quartic = d * (tA**2 + 2 * tA2 - 2 * float(np.sum(np.diag(self.A) ** 2)))
        return first + (mu**2 / 4 * quartic if difference == "forward" else 0.0)


# ---------------------------------------------------------------------------------------------
# 1. unbiasedness for the smoothed gradient (NS17 eq. 21)
X_COS = np.array([0.9, -1.3, 2.1, -0.6, 1.7])
"""A point where every |sin x_j| >= 0.56, so grad f_mu - grad f is large in every coordinate."""


def check_unbiased(d_point: np.ndarray, mu: float, difference: str, total: int, seed: int,
                   reject_grad_f: bool) -> None:
    rng = np.random.default_rng(seed)
    g = zo_samples(cos_sum, d_point, total, mu=mu, q=1, directions="gaussian",
                   difference=difference, rng=rng)
    mean, se = mean_se(g)
    z = z_bonferroni(d_point.shape[0])
    target = cos_grad_smoothed(d_point, mu)
    assert np.all(np.abs(mean - target) <= z * se), (mean, target, se)
    if reject_grad_f:
        # the same data, tested against grad f instead of grad f_mu, rejects in every coordinate
        assert np.all(np.abs(mean - cos_grad(d_point)) > z * se), (mean, cos_grad(d_point), se)


@pytest.mark.parametrize(("difference", "mu", "reject_grad_f", "seed"), [
    ("forward", 0.3, False, 101),
    ("central", 0.3, False, 102),
    ("forward", 1.0, True, 103),
    ("central", 1.0, True, 104),
])
def test_estimator_is_unbiased_for_smoothed_gradient(difference, mu, reject_grad_f, seed):
    """gaussian_smoothing_unbiased: E g_mu = grad f_mu, for f = sum_j cos(x_j) in R^5.

    Closed form f_mu = exp(-mu^2/2) f, so grad f_mu = -exp(-mu^2/2) sin x. With N_MC Gaussian
    directions, every coordinate of the sample mean lies in its z-interval around grad f_mu
    (Bonferroni over the 5 coordinates, overall confidence 1 - ALPHA = 99.99%). Seed: the
    ``seed`` parameter (101-104). Can fail: at mu = 1, grad f_mu - grad f = (1 - e^-1/2) sin x
    is tens of standard errors, and the same data must reject grad f in every coordinate (a
    planted "E g = grad f", or a wrong smoothing factor such as exp(-mu^2), fails).
    """
    check_unbiased(X_COS, mu, difference, N_MC, seed, reject_grad_f)


@pytest.mark.slow
@pytest.mark.parametrize("difference", ["forward", "central"])
@pytest.mark.parametrize(("d", "mu", "seed"), [(1, 2.0, 111), (10, 0.1, 112), (10, 1.5, 113)])
def test_estimator_is_unbiased_thorough(difference, d, mu, seed):
    """As the fast test with N_MC_SLOW samples, d in {1, 10} and mu in {0.1, 1.5, 2}; confidence
    99.99% (Bonferroni over coordinates), seeds 111-113; grad f is rejected for mu >= 1.5."""
    x = np.random.default_rng(seed + 1000).uniform(0.6, 2.5, d) * np.array([1, -1] * d)[:d]
    check_unbiased(x, mu, difference, N_MC_SLOW, seed, reject_grad_f=mu >= 1.5)


# ---------------------------------------------------------------------------------------------
# 2. second moments
def second_moment_quadratic(directions: str, difference: str, total: int, seed: int,
                            d: int, mu: float, point_scale: float) -> None:
    rng = np.random.default_rng(seed)
    f = Quadratic.random(d, rng)
    x = -np.linalg.solve(f.A, f.b) + point_scale * rng.standard_normal(d)
    a2 = float(f.grad(x) @ f.grad(x))
    sq = (zo_samples(f, x, total, mu=mu, q=1, directions=directions, difference=difference,
                     rng=rng) ** 2).sum(axis=1)
    mean, se = mean_se(sq)
    exact = f.exact_second_moment(x, mu, directions, difference)
    assert abs(mean - exact) <= Z_TWO * se, (mean, exact, se)
    # power: the constant of NS17 Thm 3 (d + 4, Gaussian) or the Gaussian d + 2 (sphere,
    # Rademacher) in place of the true one is rejected by the same data
    planted = (d + 4 if directions == "gaussian" else d + 2) * a2
    planted += exact - (d + 2 if directions == "gaussian" else d) * a2
    assert abs(mean - planted) > Z_TWO * se, (mean, planted, se)
    ucb = mean + Z_ONE * se
    # the nonconvex lemma, generic (Gaussian) and per estimator
    own = zo_second_moment(ZOEstimator(directions, difference))
    assert ucb <= rhs_value(own, grad_sq=a2, mu=mu, L_x=f.L, d_x=d)
    if directions == "gaussian":
        generic = get("zo_second_moment_nonconvex")
        assert ucb <= rhs_value(generic, grad_sq=a2, mu=mu, L=f.L, d=d)
        convex = get("gaussian_zo_second_moment_convex")  # f is convex here
        assert ucb <= rhs_value(convex, grad_sq=a2, mu=mu, L=f.L, d=d)
        if difference == "central":
            ns17 = get("gaussian_directional_second_moment")
            assert ucb <= rhs_value(ns17, grad_sq=a2, d=d)


@pytest.mark.parametrize("difference", ["central", "forward"])
@pytest.mark.parametrize(("directions", "seed"), [("gaussian", 201), ("sphere", 202),
                                                  ("rademacher", 203)])
def test_second_moment_on_quadratic_is_exact(directions, difference, seed):
    """E||g||^2 on f = 1/2 x^T A x + b^T x in R^6 equals its closed form (Quadratic.
    exact_second_moment: (d + 2)||grad f||^2 for Gaussian central, d ||grad f||^2 for sphere and
    Rademacher, plus an exact (mu^2/4) E(u^T A u)^2 ||u||^2 for forward), within a two-sided
    99.99% CI; its 99.99% upper confidence bound is <= zo_second_moment(ZOEstimator(...)), and,
    for Gaussian directions, <= zo_second_moment_nonconvex, NS17 Thm 4 (A is PD, f convex) and,
    central, NS17 Thm 3. mu = 0.5. Seeds 201-203. Can fail: the same data rejects the exact
    value with the wrong directional constant (d + 4 for Gaussian, as NS17 Thm 3 states it,
    d + 2 for sphere and Rademacher).
    """
    second_moment_quadratic(directions, difference, N_MC, seed, d=6, mu=0.5, point_scale=1.0)


@pytest.mark.slow
@pytest.mark.parametrize("difference", ["central", "forward"])
@pytest.mark.parametrize("directions", ["gaussian", "sphere", "rademacher"])
@pytest.mark.parametrize(("d", "mu", "seed"), [(2, 1.0, 211), (12, 0.1, 212)])
def test_second_moment_on_quadratic_thorough(directions, difference, d, mu, seed):
    """As the fast test with N_MC_SLOW samples, d in {2, 12}, mu in {0.1, 1}; 99.99%, seeds
    211-212."""
    second_moment_quadratic(directions, difference, N_MC_SLOW, seed, d=d, mu=mu,
                            point_scale=1.0)


def check_nonconvex_second_moment(x: np.ndarray, mu: float, difference: str, total: int,
                                  seed: int) -> tuple[float, float, float]:
    rng = np.random.default_rng(seed)
    d = x.shape[0]
    sq = (zo_samples(cos_sum, x, total, mu=mu, q=1, directions="gaussian",
                     difference=difference, rng=rng) ** 2).sum(axis=1)
    mean, se = mean_se(sq)
    a2 = float(cos_grad(x) @ cos_grad(x))
    bound = rhs_value(get("zo_second_moment_nonconvex"), grad_sq=a2, mu=mu, L=1, d=d)
    assert bound == pytest.approx(rhs_value(zo_second_moment(ZOEstimator("gaussian",
                                                                          difference)),
                                            grad_sq=a2, mu=mu, L_x=1, d_x=d), rel=REL_TOL)
    assert mean + Z_ONE * se <= bound, (mean, se, bound)
    return mean, se, bound


@pytest.mark.parametrize("difference", ["forward", "central"])
@pytest.mark.parametrize(("mu", "seed"), [(0.1, 221), (0.5, 222), (1.5, 223)])
@pytest.mark.parametrize("at", ["generic", "maximum"])
def test_nonconvex_second_moment_bound(difference, mu, seed, at):
    """zo_second_moment_nonconvex on the nonconvex f = sum_j cos(x_j) in R^5 (L = 1): the
    99.99% upper confidence bound of E||g||^2 is <= 2 (d + 2)||grad f||^2
    + (mu^2 L^2 / 2) d (d + 2)(d + 4), at a generic point (X_COS) and at the maximum x = 0
    (where grad f = 0 and only the curvature term is left), forward and central, mu in
    {0.1, 0.5, 1.5}. Seeds 221-223. The power of the check is in
    test_nonconvex_second_moment_bound_is_nearly_tight.
    """
    x = X_COS if at == "generic" else np.zeros(5)
    check_nonconvex_second_moment(x, mu, difference, N_MC, seed)


def test_nonconvex_second_moment_bound_is_nearly_tight():
    """At the maximum x = 0 of f = sum cos (R^5), forward difference, mu = 0.1: grad f = 0 and
    the forward difference is (sum cos(mu u_j) - d)/mu ~ -(mu/2)||u||^2, so
    E||g||^2 ~ (mu^2/4) E||u||^6 = (mu^2/4) d (d + 2)(d + 4): half the bound. The 99.99% lower
    confidence bound of the sample mean is >= TIGHT_FRACTION x bound. Seed 224. Can fail: a
    bound with the mu^2 term dropped (the convex-looking 2 (d + 2)||grad f||^2 = 0), or with
    its constant 1/2 replaced by the convex central-difference 1/8, is violated here.
    """
    mean, se, bound = check_nonconvex_second_moment(np.zeros(5), 0.1, "forward", N_MC, 224)
    lcb = mean - Z_ONE * se
    assert lcb >= TIGHT_FRACTION * bound, (mean, se, bound)
    d, mu = 5, 0.1
    planted_eighth = mu**2 / 8 * d * (d + 2) * (d + 4)
    assert lcb > planted_eighth


@pytest.mark.slow
@pytest.mark.parametrize("difference", ["forward", "central"])
@pytest.mark.parametrize(("d", "mu", "seed"), [(1, 0.05, 231), (1, 3.0, 232), (15, 0.2, 233),
                                               (15, 1.0, 234)])
def test_nonconvex_second_moment_bound_thorough(difference, d, mu, seed):
    """As the fast test with N_MC_SLOW samples at a random point, d in {1, 15},
    mu in {0.05, 0.2, 1, 3}; 99.99%, seeds 231-234."""
    x = np.random.default_rng(seed + 1000).uniform(-math.pi, math.pi, d)
    check_nonconvex_second_moment(x, mu, difference, N_MC_SLOW, seed)


# ---------------------------------------------------------------------------------------------
# 3. q directions (MeZO Lemma 2)
def check_q_directions(directions: str, q: int, d: int, total: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    f = Quadratic.random(d, rng)
    x = rng.standard_normal(d)
    a = f.grad(x)
    a2 = float(a @ a)
    g = zo_samples(f, x, total, mu=0.5, q=q, directions=directions, difference="central",
                   rng=rng)
    if directions == "gaussian":
        # E||g_q - a||^2 = E||<a,u>u - a||^2 / q = ((d + 2) - 1)||a||^2 / q
        stat, exact = ((g - a) ** 2).sum(axis=1), (d + 1) / q * a2
        planted = (d - 1) / q * a2  # the sphere constant
    else:
        stat = (g**2).sum(axis=1)
        exact = rhs_value(get("q_directions_variance"), d=d, q=q, grad_sq=a2)
        assert exact == pytest.approx((d + q - 1) / q * a2, rel=REL_TOL)
        planted = (d + q + 1) / q * a2  # the Gaussian constant
    mean, se = mean_se(stat)
    assert abs(mean - exact) <= Z_TWO * se, (mean, exact, se)
    assert abs(mean - planted) > Z_TWO * se, (mean, planted, se)
    # a 1/sqrt(q) law (no variance reduction beyond the square root) is rejected too
    if q > 1:
        sqrt_law = exact * math.sqrt(q) if directions == "gaussian" else \
            a2 + (exact - a2) * math.sqrt(q)
        assert abs(mean - sqrt_law) > Z_TWO * se


@pytest.mark.parametrize("q", [1, 4, 16])
@pytest.mark.parametrize(("directions", "seed"), [("gaussian", 301), ("sphere", 302)])
def test_q_directions_scaling(directions, q, seed):
    """q_directions_variance on f = 1/2 x^T A x + b^T x in R^6, central difference (exact
    directional derivatives): Gaussian E||g_q - grad f||^2 = (d + 1)/q ||grad f||^2, sphere
    E||g_q||^2 = (d + q - 1)/q ||grad f||^2 (the lemma's rhs), q in {1, 4, 16}, within a
    two-sided 99.99% CI, with 320000/q samples (at least 20000). Seeds 301, 302. Can fail: the
    same data rejects the other family's constant ((d - 1)/q for Gaussian, (d + q + 1)/q for
    sphere) and, for q > 1, a 1/sqrt(q) law.
    """
    check_q_directions(directions, q, 6, max(20_000, 320_000 // q), seed)


@pytest.mark.slow
@pytest.mark.parametrize("q", [2, 8, 32])
@pytest.mark.parametrize(("directions", "d", "seed"), [("gaussian", 3, 311), ("sphere", 3, 312),
                                                       ("gaussian", 20, 313),
                                                       ("sphere", 20, 314)])
def test_q_directions_scaling_thorough(directions, d, q, seed):
    """As the fast test with d in {3, 20}, q in {2, 8, 32}, 4000000/q samples; 99.99%, seeds
    311-314."""
    check_q_directions(directions, q, d, 4_000_000 // q, seed)


# ---------------------------------------------------------------------------------------------
# 4. smoothing bias (GL13 eq. 3.6)
def bias_bound(mu: float, L: float, d: int) -> float:
    return rhs_value(get("smoothing_bias"), mu=mu, L=L, d=d)


@pytest.mark.parametrize("d", [1, 5, 50])
def test_smoothing_bias_deterministic(d):
    """smoothing_bias, deterministic (tolerance REL_TOL): for f = sum cos (L = 1) and
    f = (L/2) sum x_j |x_j| (L = 2, grad = L|x|, nonconvex), the closed-form
    ||grad f_mu - grad f|| is <= (mu/2) L (d + 3)^{3/2} at 200 random points (seed 401) and
    mu in {1e-3, 0.1, 1, 3}. Can fail: for the signed square at x = 0 the bias is
    L mu sqrt(2 d / pi), which exceeds the planted (mu/2) L (d + 3)^{1/2} (the d-dependence
    under-estimated) for d >= 5, and is > 0 (a planted "unbiased" fails) for every d.
    """
    rng = np.random.default_rng(401)
    xs = rng.uniform(-4, 4, (200, d))
    for mu in (1e-3, 0.1, 1.0, 3.0):
        bound1 = bias_bound(mu, 1.0, d)
        bias_cos = np.linalg.norm(cos_grad_smoothed(xs, mu) - cos_grad(xs), axis=1)
        assert np.all(bias_cos <= bound1 * (1 + REL_TOL))
        bound2 = bias_bound(mu, 2.0, d)
        bias_sq = np.linalg.norm(signed_square_grad_smoothed(xs, mu, 2.0)
                                 - signed_square_grad(xs, 2.0), axis=1)
        assert np.all(bias_sq <= bound2 * (1 + REL_TOL))
        at_zero = float(np.linalg.norm(signed_square_grad_smoothed(np.zeros(d), mu, 2.0)))
        assert at_zero == pytest.approx(2.0 * mu * math.sqrt(2 * d / math.pi), rel=REL_TOL)
        assert 0 < at_zero <= bound2
        if d >= 5:
            assert at_zero > mu / 2 * 2.0 * math.sqrt(d + 3)


def check_bias_ball(f, grad, grad_smoothed, L: float, x: np.ndarray, mu: float,
                    difference: str, total: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    d = x.shape[0]
    g = zo_samples(f, x, total, mu=mu, q=1, directions="gaussian", difference=difference,
                   rng=rng)
    mean, se = mean_se(g)
    radius = float(np.linalg.norm(z_bonferroni(d) * se))
    distance = float(np.linalg.norm(mean - grad(x)))
    assert distance <= bias_bound(mu, L, d) + radius, (distance, radius)
    # the estimator's mean is where the closed form puts it: the bias is really there
    exact_bias = float(np.linalg.norm(grad_smoothed(x, mu) - grad(x)))
    assert abs(distance - exact_bias) <= radius, (distance, exact_bias, radius)
    assert distance > radius  # a planted ball of radius 0 ("E g = grad f") is rejected


@pytest.mark.parametrize("difference", ["forward", "central"])
@pytest.mark.parametrize(("function", "seed"), [("cos", 411), ("signed_square", 412)])
def test_smoothing_bias_monte_carlo(function, difference, seed):
    """The MC mean of the Gaussian estimator (mu = 1, R^5, N_MC samples) lies within the bias
    ball of smoothing_bias enlarged by the 99.99% confidence radius (Bonferroni over the 5
    coordinates): ||mean - grad f|| <= (mu/2) L (d + 3)^{3/2} + r. For f = sum cos at X_COS and
    f = (1/2) sum x_j|x_j| at 0. Seeds 411, 412. Can fail: the same data puts ||mean - grad f||
    within r of the closed-form bias, which is > r, so a planted zero bias is rejected.
    """
    if function == "cos":
        check_bias_ball(cos_sum, cos_grad, cos_grad_smoothed, 1.0, X_COS, 1.0, difference,
                        N_MC, seed)
    else:
        check_bias_ball(signed_square, signed_square_grad, signed_square_grad_smoothed, 1.0,
                        np.zeros(5), 1.0, difference, N_MC, seed)


@pytest.mark.slow
@pytest.mark.parametrize("difference", ["forward", "central"])
@pytest.mark.parametrize(("d", "mu", "seed"), [(2, 0.5, 421), (12, 1.0, 422)])
def test_smoothing_bias_monte_carlo_thorough(difference, d, mu, seed):
    """As the fast test for the signed square at a random point with N_MC_SLOW samples,
    d in {2, 12}, mu in {0.5, 1}; 99.99%, seeds 421-422."""
    x = np.random.default_rng(seed + 1000).uniform(-0.3, 0.3, d)
    check_bias_ball(signed_square, signed_square_grad, signed_square_grad_smoothed, 1.0, x, mu,
                    difference, N_MC_SLOW, seed)


# ---------------------------------------------------------------------------------------------
# 5. sampling without replacement
def prefix_deviations(kind: str, v: np.ndarray, permutations: int, seed: int,
                      ks: list[int]) -> dict[int, np.ndarray]:
    n = v.shape[0]
    epochs = 4
    sampler = Sampler(kind, n=n, trials=permutations // epochs, rng=np.random.default_rng(seed))
    orders = np.concatenate([sampler.epoch(t) for t in range(epochs)])
    if kind == "rr":
        assert np.array_equal(np.sort(orders, axis=1), np.tile(np.arange(n), (len(orders), 1)))
    vbar = v.mean(axis=0)
    return {k: ((v[orders[:, :k]].mean(axis=1) - vbar) ** 2).sum(axis=1) for k in ks}


def check_without_replacement(n: int, p: int, permutations: int, seeds: tuple[int, int, int],
                              ks: list[int]) -> None:
    v = np.random.default_rng(seeds[0]).standard_normal((n, p)) * np.linspace(0.5, 2.0, p)
    sigma_sq = float(((v - v.mean(axis=0)) ** 2).sum(axis=1).mean())
    lemma = get("without_replacement_variance")
    rr = prefix_deviations("rr", v, permutations, seeds[1], ks + [n])
    wr = prefix_deviations("wr", v, permutations, seeds[2], ks)
    z = z_bonferroni(2 * len(ks))
    for k in ks:
        exact_rr = rhs_value(lemma, n=n, k=k, sigma_sq=sigma_sq)
        assert exact_rr == pytest.approx((n - k) / (k * (n - 1)) * sigma_sq, rel=REL_TOL)
        exact_wr = sigma_sq / k
        m_rr, se_rr = mean_se(rr[k])
        m_wr, se_wr = mean_se(wr[k])
        assert abs(m_rr - exact_rr) <= z * se_rr, (k, m_rr, exact_rr, se_rr)
        assert abs(m_wr - exact_wr) <= z * se_wr, (k, m_wr, exact_wr, se_wr)
        if k >= 2:  # the two formulas differ by the factor (n - k)/(n - 1): distinguished
            assert abs(m_rr - exact_wr) > z * se_rr, (k, m_rr, exact_wr)
            assert abs(m_wr - exact_rr) > z * se_wr, (k, m_wr, exact_rr)
    # k = n: a whole permutation averages to vbar exactly
    assert rr[n].max() <= REL_TOL * sigma_sq


def test_without_replacement_variance():
    """without_replacement_variance with Sampler("rr"): for n = 10 fixed vectors in R^3, over
    N_PERMUTATIONS permutations (4 epochs), E||mean of first k - vbar||^2 equals
    (n - k)/(k (n - 1)) sigma^2 for k in {1, 2, 3, 5, 9} and is 0 at k = n; Sampler("wr")
    gives sigma^2/k. Two-sided CIs, Bonferroni over the 10 intervals, overall confidence 99.99%.
    Seeds 501 (vectors), 502 (rr), 503 (wr). Can fail: for k >= 2 the rr data rejects
    sigma^2/k and the wr data rejects the without-replacement formula.
    """
    check_without_replacement(10, 3, N_PERMUTATIONS, (501, 502, 503), [1, 2, 3, 5, 9])


@pytest.mark.slow
def test_without_replacement_variance_thorough():
    """As the fast test with n = 40, R^5, 200000 permutations, k in {1, 2, 4, 10, 20, 39};
    99.99%, seeds 511-513."""
    check_without_replacement(40, 5, 200_000, (511, 512, 513), [1, 2, 4, 10, 20, 39])


# ---------------------------------------------------------------------------------------------
# 6. block descent lemma
def random_pairs(d_x: int, d_y: int, count: int, rng: np.random.Generator,
                 aligned: list[tuple[np.ndarray, np.ndarray]], z_scale: float = 2.0,
                 z_center: np.ndarray | None = None):
    """Random points z and steps D: Gaussian directions with log-uniform block norms in
    [1e-3, 10], a fifth with D_y = 0 and a fifth with D_x = 0, plus steps along the given
    ``aligned`` direction pairs (unit vectors) with random norms. With ``z_center``, the points
    of a quarter of the random steps and of all aligned steps are within 1e-3 of it."""
    d = d_x + d_y
    z = z_scale * rng.standard_normal((count, d))
    dx = rng.standard_normal((count, d_x))
    dy = rng.standard_normal((count, d_y))
    dx *= (10 ** rng.uniform(-3, 1, count) / np.linalg.norm(dx, axis=1))[:, None]
    dy *= (10 ** rng.uniform(-3, 1, count) / np.linalg.norm(dy, axis=1))[:, None]
    dy[: count // 5] = 0.0
    dx[count // 5: 2 * count // 5] = 0.0
    start = 2 * count // 5
    per = (count - start) // (2 * max(len(aligned), 1))
    for vx, vy in aligned:
        a = 10 ** rng.uniform(-3, 0, per)
        b = a * 10 ** rng.uniform(-3, 0, per)
        dx[start: start + per] = a[:, None] * vx
        dy[start: start + per] = b[:, None] * vy
        start += per
    if z_center is not None:  # a quarter of the random pairs and all aligned ones
        near = np.r_[: count // 4, 2 * count // 5: start]
        z[near] = z_center + 1e-3 * rng.standard_normal((near.size, d))
    return z, np.concatenate([dx, dy], axis=1)


def descent_gaps(value, grad, z: np.ndarray, D: np.ndarray, d_x: int,
                 constants: dict[str, float], lemma_name: str = "block_descent"):
    """(lhs, rhs, scale) of F(z + D) <= F(z) + <grad F(z), D> + (1/2)(...) per pair."""
    rhs = rhs_function(get(lemma_name), "F_z", "inner", "a", "b", "L_x", "L_xy", "L_y")
    Fz, Fn = value(z), value(z + D)
    inner = np.einsum("bi,bi->b", grad(z), D)
    a = np.linalg.norm(D[:, :d_x], axis=1)
    b = np.linalg.norm(D[:, d_x:], axis=1)
    bound = rhs(Fz, inner, a, b, constants["L_x"], constants["L_xy"], constants["L_y"])
    scale = np.abs(Fz) + np.abs(Fn) + np.abs(inner) + np.abs(bound - Fz - inner)
    return Fn, bound, scale


def check_block_descent(problem: QuadraticProblem, count: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    dx, dy = problem.d_x, problem.d_y
    H = problem.H
    c = problem.constants()
    vx = np.linalg.eigh(H[:dx, :dx])[1][:, -1]
    vy = np.linalg.eigh(H[dx:, dx:])[1][:, -1]
    cross = H[:dx, dx:].T @ vx
    cross /= np.linalg.norm(cross)
    aligned = [(vx, np.zeros(dy)), (np.zeros(dx), vy), (vx, cross)]
    z, D = random_pairs(dx, dy, count, rng, aligned)

    def value(zz):
        return problem.value(zz[:, :dx], zz[:, dx:])

    def grad(zz):
        return np.concatenate(problem.grad(zz[:, :dx], zz[:, dx:]), axis=1)

    for name in ("block_descent", "block_descent_amgm"):
        lhs, rhs, scale = descent_gaps(value, grad, z, D, dx, c, name)
        assert np.all(lhs <= rhs + REL_TOL * scale), name
    # tight: with any one constant lowered the inequality fails on some pair
    for planted in ({"L_x": c["L_x"] / 2}, {"L_y": c["L_y"] / 2}, {"L_xy": 0.0}):
        lhs, rhs, scale = descent_gaps(value, grad, z, D, dx, {**c, **planted})
        assert np.any(lhs > rhs + REL_TOL * scale), planted


def test_block_descent_quadratic():
    """block_descent and block_descent_amgm on QuadraticProblem(n=4, d_x=d_y=5, L_x=2,
    L_y=1, m_x=m_y=0.5, coupling=0.3) with its exact constants: on N_PAIRS random (z, D)
    (seed 601; random, single-block, and along the top eigenvectors of H_xx, H_yy and the
    coupling direction H_xy^T v_x) F(z + D) <= rhs up to REL_TOL relative, deterministic.
    Can fail: with L_x/2, L_y/2 or L_xy = 0 in place of the true constant the inequality is
    violated on some pair (for D along the top eigenvector the lemma is an equality).
    """
    problem = QuadraticProblem(4, 5, 5, L_x=2.0, m_x=0.5, L_y=1.0, m_y=0.5, coupling=0.3,
                               sigma_x=1.0, sigma_y=1.0, seed=3)
    check_block_descent(problem, N_PAIRS, 601)


@dataclass(frozen=True)
class CosineQuadratic:
    """F(x, y) = 1/2 z^T H0 z + b^T z + alpha sum_j cos x_j + beta sum_j cos y_j
    + gamma sum_{j<k} cos(x_j - y_j), k = min(d_x, d_y), H0 indefinite (nonconvex).

    Hessian blocks: H_xx = H0_xx - diag(alpha cos x_j + gamma cos(x_j - y_j)),
    H_yy = H0_yy - diag(beta cos y_j + gamma cos(x_j - y_j)), H_xy = H0_xy
    + diag_k(gamma cos(x_j - y_j)) (d^2/dx_j dy_j of gamma cos(x_j - y_j) is gamma cos(.)).
    The norm of a diagonal matrix is its largest |entry|, so by the triangle inequality H1
    holds with L_x = ||H0_xx|| + |alpha| + |gamma|, L_y = ||H0_yy|| + |beta| + |gamma|,
    L_xy = ||H0_xy|| + |gamma|; and then F(z + D) - F(z) - <grad F(z), D>
    = int_0^1 (1 - s) D^T H(z + s D) D ds <= (1/2)(L_x a^2 + 2 L_xy a b + L_y b^2).
    The x-block bound is attained where cos x_j = cos(x_j - y_j) = -1 (x = pi, y = 0) along
    the top eigenvector of H0_xx, when its top eigenvalue is its norm (as constructed) and
    d_x <= d_y (every x_j has a partner y_j); nearly so otherwise.
    """

    H0: np.ndarray
    b: np.ndarray
    d_x: int
    alpha: float
    beta: float
    gamma: float

    @classmethod
    def random(cls, d_x: int, d_y: int, rng: np.random.Generator) -> CosineQuadratic:
        def block(d, low, high):
            q, r = np.linalg.qr(rng.standard_normal((d, d)))
            q = q * np.sign(np.diag(r))
            return (q * np.linspace(low, high, d)) @ q.T

        hxy = rng.standard_normal((d_x, d_y))
        hxy *= 0.3 / np.linalg.norm(hxy, 2)
        H0 = np.block([[block(d_x, -0.5, 1.0), hxy], [hxy.T, block(d_y, -0.4, 0.8)]])
        return cls(H0=(H0 + H0.T) / 2, b=rng.standard_normal(d_x + d_y), d_x=d_x, alpha=0.7,
                   beta=-0.5, gamma=0.4)

    @property
    def k(self) -> int:
        return min(self.d_x, self.H0.shape[0] - self.d_x)

    def constants(self) -> dict[str, float]:
        dx = self.d_x
        H0 = self.H0
        return {"L_x": float(np.linalg.norm(H0[:dx, :dx], 2)) + abs(self.alpha) + abs(self.gamma),
                "L_y": float(np.linalg.norm(H0[dx:, dx:], 2)) + abs(self.beta) + abs(self.gamma),
                "L_xy": float(np.linalg.norm(H0[:dx, dx:], 2)) + abs(self.gamma)}

    def __call__(self, z: np.ndarray) -> np.ndarray:
        x, y, k = z[:, : self.d_x], z[:, self.d_x:], self.k
        return (0.5 * np.einsum("bi,ij,bj->b", z, self.H0, z) + z @ self.b
                + self.alpha * np.cos(x).sum(1) + self.beta * np.cos(y).sum(1)
                + self.gamma * np.cos(x[:, :k] - y[:, :k]).sum(1))

    def grad(self, z: np.ndarray) -> np.ndarray:
        x, y, k = z[:, : self.d_x], z[:, self.d_x:], self.k
        g = z @ self.H0 + self.b
        s = self.gamma * np.sin(x[:, :k] - y[:, :k])
        g[:, : self.d_x] -= self.alpha * np.sin(x)
        g[:, self.d_x:] -= self.beta * np.sin(y)
        g[:, :k] -= s
        g[:, self.d_x: self.d_x + k] += s
        return g


@pytest.mark.parametrize(("d_x", "d_y", "seed"), [(4, 3, 611), (3, 5, 612)])
def test_block_descent_nonconvex(d_x, d_y, seed):
    """block_descent and block_descent_amgm on the nonconvex CosineQuadratic (constants derived
    in its docstring), on N_PAIRS random (z, D) (seed 611/612; a quarter of the points near
    x = pi, y = 0, where the constants are attained), deterministic, REL_TOL relative. The
    gradient is first checked against central differences (so that a wrong gradient cannot
    pass or fail the lemma by accident), and the function is confirmed nonconvex (some pair
    has F(z + D) < F(z) + <grad F(z), D>). Can fail: with L_x/2 the inequality is violated on
    some pair (near x = pi along the top eigenvector of H0_xx it is nearly an equality).
    """
    rng = np.random.default_rng(seed)
    F = CosineQuadratic.random(d_x, d_y, rng)
    c = F.constants()
    d = d_x + d_y
    # gradient check
    z0 = rng.standard_normal((8, d))
    h = 1e-6
    fd = np.stack([(F(z0 + h * e) - F(z0 - h * e)) / (2 * h) for e in np.eye(d)], axis=1)
    np.testing.assert_allclose(F.grad(z0), fd, rtol=1e-6, atol=1e-6)
    vx = np.linalg.eigh(F.H0[:d_x, :d_x])[1][:, -1]
    center = np.concatenate([np.full(d_x, math.pi), np.zeros(d_y)])
    z, D = random_pairs(d_x, d_y, N_PAIRS, rng, [(vx, np.zeros(d_y))], z_scale=3.0,
                        z_center=center)
    for name in ("block_descent", "block_descent_amgm"):
        lhs, rhs, scale = descent_gaps(F, F.grad, z, D, d_x, c, name)
        assert np.all(lhs <= rhs + REL_TOL * scale), name
    linear = F(z) + np.einsum("bi,bi->b", F.grad(z), D)
    assert np.any(F(z + D) < linear - 1e-6)  # negative curvature somewhere: nonconvex
    lhs, rhs, scale = descent_gaps(F, F.grad, z, D, d_x, {**c, "L_x": c["L_x"] / 2})
    assert np.any(lhs > rhs + REL_TOL * scale)


@pytest.mark.slow
@pytest.mark.parametrize(("d_x", "d_y", "seed"), [(1, 1, 621), (8, 8, 622), (10, 2, 623)])
def test_block_descent_thorough(d_x, d_y, seed):
    """As the fast tests with 100000 pairs and other dimensions, seeds 621-623 (QuadraticProblem
    with d_x = d_y only, since its coupling is aligned with the top eigenvectors only then)."""
    rng = np.random.default_rng(seed)
    F = CosineQuadratic.random(d_x, d_y, rng)
    z, D = random_pairs(d_x, d_y, 100_000, rng, [], z_scale=4.0)
    lhs, rhs, scale = descent_gaps(F, F.grad, z, D, d_x, F.constants())
    assert np.all(lhs <= rhs + REL_TOL * scale)
    if d_x == d_y:
        problem = QuadraticProblem(3, d_x, d_y, L_x=3.0, m_x=0.2, L_y=0.5, m_y=0.2,
                                   coupling=0.19, seed=seed)
        check_block_descent(problem, 100_000, seed)


# ---------------------------------------------------------------------------------------------
# 7. noise floors on quadratics (THEORY.md, "How it is checked", item 4)
@dataclass(frozen=True)
class FloorCase:
    """One noise-floor experiment: a QuadraticProblem, a method and a grid of step sizes."""

    name: str
    method: str
    sampling: str
    sigma_x: float
    sigma_y: float
    etas: tuple[float, ...]
    eta_y_fixed: float | None  # None: eta_y = eta (one shared rate)
    slope: float
    slope_tol: float
    rtol: float
    trials: int
    seed: int
    d: int = 4
    n: int = 8
    directions: str = "gaussian"
    q: int = 1

    def problem(self) -> QuadraticProblem:
        return QuadraticProblem(self.n, self.d, self.d, L_x=1.0, m_x=0.5, L_y=1.0, m_y=0.5,
                                coupling=0.05, sigma_x=self.sigma_x, sigma_y=self.sigma_y,
                                seed=self.seed)

    def rates(self, eta: float) -> tuple[float, float]:
        return eta, (eta if self.eta_y_fixed is None else self.eta_y_fixed)


def predicted_floor(problem: QuadraticProblem, case: FloorCase, eta: float) -> float:
    """E||grad F||^2 at epoch ends in the stationary regime: ``QuadraticProblem.noise_floor``
    (the closed forms are written out in its docstring)."""
    eta_x, eta_y = case.rates(eta)
    return problem.noise_floor(method=case.method, sampling=case.sampling, eta_x=eta_x,
                               eta_y=eta_y, directions=case.directions, q=case.q)


def measured_floor(problem: QuadraticProblem, case: FloorCase,
                   eta: float) -> tuple[float, float]:
    """Mean over trials and post-burn-in epoch ends of ||grad F||^2, and its relative standard
    error (from the spread of the independent per-trial means). Runs start at z*."""
    eta_x, eta_y = case.rates(eta)
    m = float(np.linalg.eigvalsh(problem.H).min())
    rate = min(eta_x, eta_y) * problem.n * m  # per-epoch contraction of the slowest mode
    burn = math.ceil(BURN_EFOLDS / (2 * rate))  # E||delta||^2 relaxes at twice the rate
    average = math.ceil(AVERAGE_EFOLDS / rate)
    z_star = problem.minimizer()
    config = SimConfig(method=case.method, sampling=case.sampling, eta_x=eta_x, eta_y=eta_y,
                       mu=1e-3, q=case.q, directions=case.directions, difference="central",
                       epochs=burn + average, trials=case.trials, seed=case.seed)
    df = simulate(problem, config, x0=z_star[: problem.d_x], y0=z_star[problem.d_x:])
    assert not df["diverged"].any()
    per_trial = df.loc[df["epoch"] > burn].groupby("trial")["grad_sq"].mean().to_numpy()
    mean, se = mean_se(per_trial)
    return float(mean), float(se / mean)


def check_floor(case: FloorCase) -> tuple[float, list[float]]:
    problem = case.problem()
    floors, ratios = [], []
    for eta in case.etas:
        floor, rse = measured_floor(problem, case, eta)
        ratio = floor / predicted_floor(problem, case, eta)
        assert abs(ratio - 1) <= case.rtol + Z_TWO * rse, (case.name, eta, floor, ratio, rse)
        floors.append(floor)
        ratios.append(ratio)
    slope = float(np.polyfit(np.log(case.etas), np.log(floors), 1)[0])
    assert abs(slope - case.slope) <= case.slope_tol, (case.name, slope, floors)
    # the other regimes' exponents are rejected (slopes 1 and 3 are both tested)
    for other in {1.0, 3.0} - {case.slope}:
        assert abs(slope - other) > case.slope_tol
    return slope, ratios


ETAS_FAST = (0.0025, 0.005, 0.01, 0.02)
ETAS_SLOW = (0.00125, 0.0025, 0.005, 0.01, 0.02)
FLOOR_CASES = [
    FloorCase("zo_block", "hybrid", "rr", sigma_x=1.0, sigma_y=0.0, etas=ETAS_FAST,
              eta_y_fixed=0.02, slope=1.0, slope_tol=SLOPE_TOL_LINEAR,
              rtol=FLOOR_RTOL_FIRST_ORDER, trials=300, seed=701),
    FloorCase("fo_rr", "fo", "rr", sigma_x=0.0, sigma_y=1.0, etas=ETAS_FAST, eta_y_fixed=None,
              slope=3.0, slope_tol=SLOPE_TOL_CUBIC, rtol=FLOOR_RTOL_EXACT, trials=300, seed=702),
    FloorCase("fo_wr", "fo", "wr", sigma_x=0.0, sigma_y=1.0, etas=ETAS_FAST, eta_y_fixed=None,
              slope=1.0, slope_tol=SLOPE_TOL_LINEAR, rtol=FLOOR_RTOL_EXACT, trials=300,
              seed=703),
]
FLOOR_CASES_SLOW = [
    FloorCase("zo_block_sphere_q4", "hybrid", "rr", sigma_x=1.0, sigma_y=0.0, etas=ETAS_SLOW,
              eta_y_fixed=0.02, slope=1.0, slope_tol=SLOPE_TOL_LINEAR,
              rtol=FLOOR_RTOL_FIRST_ORDER, trials=800, seed=711, d=6, directions="sphere", q=4),
    FloorCase("zo_block_gaussian_d6", "hybrid", "rr", sigma_x=1.0, sigma_y=0.0,
              etas=ETAS_SLOW, eta_y_fixed=0.02, slope=1.0, slope_tol=SLOPE_TOL_LINEAR,
              rtol=FLOOR_RTOL_FIRST_ORDER, trials=800, seed=712, d=6),
    FloorCase("fo_rr_d6", "fo", "rr", sigma_x=1.0, sigma_y=1.0, etas=ETAS_SLOW,
              eta_y_fixed=None, slope=3.0, slope_tol=SLOPE_TOL_CUBIC, rtol=FLOOR_RTOL_EXACT,
              trials=800, seed=713, d=6),
    FloorCase("fo_wr_d6", "fo", "wr", sigma_x=1.0, sigma_y=1.0, etas=ETAS_SLOW,
              eta_y_fixed=None, slope=1.0, slope_tol=SLOPE_TOL_LINEAR, rtol=FLOOR_RTOL_EXACT,
              trials=800, seed=714, d=6),
]


@pytest.mark.parametrize("case", FLOOR_CASES, ids=[c.name for c in FLOOR_CASES])
def test_noise_floor_exponents(case):
    """Noise floors of simulate on QuadraticProblem(n=8, d_x=d_y=4, L=1, m=0.5, coupling=0.05):
    E||grad F||^2 averaged over 300 trials and the epoch ends after burn-in (runs start at z*;
    burn-in BURN_EFOLDS / (2 eta n m_min) epochs, then AVERAGE_EFOLDS / (eta n m_min)), for
    eta in {0.0025, 0.005, 0.01, 0.02} (eta n L <= 0.16: the asymptotic regime). The log-log
    slope (np.polyfit) must be:

    - zo_block (method hybrid, sigma_x = 1, sigma_y = 0, eta_y = 0.02 fixed; seed 701): 1 +- 0.25.
      Fresh directions make SGD-like noise, E||<a,u>u - a||^2 = (d + 1)||a||^2, a ~ e_j,x != 0
      at z*: per step the error gets eta_x^2 (d + 1) sigma_x^2 while it contracts by
      eta_x H, so E||delta||^2 ~ eta_x and E||grad||^2 = (eta_x / 2) tr(H_xx C) to first order
      (2 tr(H^2 Sigma) = eta tr(H C) from H Sigma + Sigma H = eta C).
    - fo_rr (method fo, reshuffling, sigma_y = 1, shared eta; seed 702): 3 +- 0.4. With a
      shared Hessian the epoch map is delta <- (I - eta H)^n delta - eta sum_i
      (I - eta H)^(n-1-i) e_pi(i), and since sum_i e_pi(i) = 0 the noise is
      eta^2 H sum_i (n - 1 - i) e_pi(i) + O(eta^3), of covariance eta^4 H S H n^2 (n + 1)/12;
      against the contraction eta n H per epoch, E||grad F||^2 = eta^3 n (n + 1) tr(H^3 S)/24:
      cubic at epoch ends (of order eta^3 L^2 n^2 sigma^2 / m in ||delta||^2).
    - fo_wr (with replacement; seed 703): 1 +- 0.25, since independent e_j give
      E||grad||^2 = (eta / 2) tr(H S).

    Beside the slopes, each floor must match predicted_floor (the stationary covariance of the
    linear recursion, from scipy's discrete Lyapunov solver) within rtol + Z_TWO relative
    standard errors (99.99% per floor; trials are independent): FLOOR_RTOL_EXACT = 3% for FO
    (exact), FLOOR_RTOL_FIRST_ORDER = 12% for the ZO block (first order). The slope's own
    standard error is about 0.01, so the tolerances are > 20 standard errors. Can fail: a wrong
    exponent (a reshuffled floor linear like with replacement, or a cubic ZO floor if fresh
    directions were not noise) is rejected: each slope is also asserted to be outside the
    other regime's interval; a wrong constant (e.g. (d + 4) for (d + 1), or n^2 for n (n + 1))
    moves the ratio to the prediction by more than its tolerance.
    """
    check_floor(case)


@pytest.mark.slow
@pytest.mark.parametrize("case", FLOOR_CASES_SLOW, ids=[c.name for c in FLOOR_CASES_SLOW])
def test_noise_floor_exponents_thorough(case):
    """As the fast test with d_x = d_y = 6, 800 trials, eta in {0.00125, ..., 0.02} (five
    points), both blocks heterogeneous for FO, and the ZO block also with q = 4 sphere
    directions (noise covariance ((d/(d+2)) sigma_x^2 I + ((d-2)/(d+2)) S_xx)/q). Seeds
    711-714; tolerances and confidence as in the fast test."""
    check_floor(case)
