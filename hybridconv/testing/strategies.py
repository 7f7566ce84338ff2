"""Hypothesis strategies for (problem, hyper-parameters) pairs inside the theorem's conditions.

Three strategies, composed the way ``hypothesis.extra.numpy`` composes its own:

* :func:`problems` draws a synthetic finite sum (:mod:`hybridconv.problems`) with certified
  constants: quadratic, nonconvex, LoRA-shaped, generalized-smooth, with heterogeneous
  component Hessians (Theta > 0) or with a low effective rank.
* :func:`configs` draws a :class:`~hybridconv.sim.SimConfig` for a given problem whose step
  sizes satisfy a bound's conditions: eta_b = f_b cap_b with f_b in (0, 1] from
  :meth:`~hybridconv.theory.Bound.admissible_steps`, and f_b exactly 1 (a step size *on* the
  boundary of the conditions) with probability about ``boundary_probability``.
* :func:`instances` draws both, with the bound that applies to the drawn family
  (:func:`bound_for`).

Edges are drawn on purpose, not left to chance: n = 1 (a single component: no heterogeneity),
d_x at its smallest and largest, zero and strong cross-block coupling L_xy (for the quadratic,
nonconvex and generalized-smooth families, ``coupling`` close to its largest value
sqrt(m_x m_y) that keeps H positive definite), zero and large heterogeneity sigma, the tiniest
smoothing radius mu, one and several ZO directions q, a single epoch, LoRA shapes from
1 x 1 upward. Shrinking goes towards the simplest of each (the first edge listed).

Every argument is keyword-only and validated when the strategy is built: a bad one raises
:class:`hypothesis.errors.InvalidArgument` naming the argument and repeating the value.

The defaults keep an instance cheap (d_y <= 8, n <= 8, at most 16 epochs and 32 trials), so
that a property test of a few dozen examples runs in seconds.

Example: a user property-tests a bound of their own. For an L-smooth F bounded below,
||grad F(z)||^2 <= 2 L (F(z) - F*) at every z, and the block constants give
L <= max(L_x, L_y) + L_xy; at the start z_0 this bounds min_t E||grad F(z_t)||^2 by
2 (max(L_x, L_y) + L_xy) Delta. ``hypothesis.target`` steers the search towards the instances
where the ratio empirical / bound is largest, where a wrong bound would break first:

>>> from hypothesis import given, settings, target
>>> from hybridconv.sim import simulate
>>> from hybridconv.testing import instances
>>> def my_bound(c):
...     return 2 * (max(c["L_x"], c["L_y"]) + c["L_xy"]) * c["Delta"]
>>> @settings(max_examples=5, deadline=None, database=None)
... @given(instances(families=("quadratic", "nonconvex"), max_d_x=8))
... def test_my_bound(instance):
...     problem, config = instance
...     records = simulate(problem, config)
...     run = records[records["epoch"] < config.epochs]
...     empirical = run.groupby("epoch")["grad_sq"].mean().min()
...     ratio = empirical / my_bound(problem.constants())
...     target(ratio, label="empirical / my_bound")
...     assert ratio <= 1 + 1e-9  # tight on isotropic quadratics
>>> test_my_bound()

With the package's own bound, :func:`hybridconv.validate.check` gives the verdict with a
confidence interval instead of the bare ratio:

>>> from hybridconv.validate import check
>>> from hybridconv.testing import bound_for
>>> @settings(max_examples=3, deadline=None, database=None)
... @given(instances(families=("quadratic",), max_d_x=8))
... def test_theorem(instance):
...     problem, config = instance
...     verdict = check(bound_for(problem, config), problem, config)
...     target(verdict.ratio)
...     assert verdict.verdict != "violated", verdict
>>> test_theorem()
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.strategies import SearchStrategy

from .. import spec
from ..problems import Problem, make_problem
from ..problems.gensmooth import GenSmoothProblem
from ..sim.runner import SimConfig
from ..theory.bound import Bound, hybrid_bound

__all__ = [
    "COUPLINGS",
    "DEFAULT_EPOCHS",
    "DEFAULT_FAMILIES",
    "DEFAULT_TRIALS",
    "MarginGenSmoothProblem",
    "bound_for",
    "configs",
    "instances",
    "lora_shapes",
    "problems",
]

DEFAULT_FAMILIES: tuple[str, ...] = ("quadratic", "nonconvex", "lora", "hetero")
"""The families :func:`problems` draws by default, all held against the H1 bound
(``gensmooth`` needs the H1-gen bound with bounded directions, ``lowrank`` the effective-rank
bound: :func:`bound_for` picks them, ask for them by name)."""

COUPLINGS: tuple[str, ...] = spec.COUPLINGS.values
"""Cross-block coupling regimes (:data:`hybridconv.spec.COUPLINGS`): L_xy = 0,
L_xy in [1e-3, 1e-1] sqrt(m_x m_y) and L_xy in [0.9, 0.99] sqrt(m_x m_y) (sqrt(m_x m_y) is
the largest coupling that keeps the quadratic part positive definite)."""

_HYPER = ("eta_x", "eta_y", "eta", "mu", "q", "n", "T")
"""The bound's symbols that the configuration (not the problem) supplies."""

DEFAULT_EPOCHS: SearchStrategy[int] = st.integers(1, 16) | st.sampled_from((1, 16))
"""Epochs T drawn by default: 1 to 16, with both ends drawn on purpose."""

DEFAULT_TRIALS = 32
"""Trials K by default: enough for the CLT interval of :func:`hybridconv.validate.check`."""


# -- validation (hypothesis.extra.numpy's conventions) ---------------------------------------
def _int(name: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgument(f"{name}={value!r} must be an integer >= {minimum}")
    return value


def _order(lo_name: str, lo: float, hi_name: str, hi: float) -> None:
    if hi < lo:
        raise InvalidArgument(f"{hi_name}={hi!r} must be >= {lo_name}={lo!r}")


def _real(name: str, value: object, *, low: float, high: float = math.inf,
          strict_low: bool = False) -> float:
    ok = (not isinstance(value, bool) and isinstance(value, int | float)
          and math.isfinite(value) and (value > low if strict_low else value >= low)
          and value <= high)
    if not ok:
        where = f"> {low:g}" if strict_low else f">= {low:g}"
        if math.isfinite(high):
            where = f"in {'(' if strict_low else '['}{low:g}, {high:g}]"
        raise InvalidArgument(f"{name}={value!r} must be a finite number {where}")
    return float(value)


def _choices(name: str, value: object, allowed: spec.Choice) -> tuple[str, ...]:
    """A non-empty sequence of names from a vocabulary choice list (:mod:`hybridconv.spec`)."""
    bad = InvalidArgument(f"{name}={value!r} must be a non-empty sequence of names from "
                          f"{allowed.values}")
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise bad
    try:
        return tuple(dict.fromkeys(spec.validate(allowed.name, v, among=allowed) for v in value))
    except ValueError:
        raise bad from None


def _int_or_strategy(name: str, value: object, *, minimum: int) -> SearchStrategy[int]:
    if isinstance(value, SearchStrategy):
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgument(f"{name}={value!r} must be an integer >= {minimum} or a "
                              "strategy of such integers")
    return st.just(value)


def _checked_draw(draw: st.DrawFn, strategy: SearchStrategy[int], name: str,
                  minimum: int) -> int:
    value = draw(strategy)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgument(f"{name} drew {value!r}; it must draw integers >= {minimum}")
    return value


# -- building blocks ---------------------------------------------------------------------------
def _edgy_integers(lo: int, hi: int) -> SearchStrategy[int]:
    """Integers in [lo, hi], with lo and hi drawn on purpose (shrinks towards lo)."""
    if lo == hi:
        return st.just(lo)
    return st.sampled_from((lo, hi)) | st.integers(lo, hi)


def _log_uniform(lo: float, hi: float, *, exclude_hi: bool = False) -> SearchStrategy[float]:
    """Floats in [lo, hi] (or [lo, hi) with ``exclude_hi``), uniform in log10 (lo, hi > 0)."""
    if lo == hi:
        return st.just(lo)
    a, b = math.log10(lo), math.log10(hi)
    top = math.nextafter(hi, 0.0) if exclude_hi else hi
    return st.floats(a, b, exclude_max=exclude_hi).map(lambda e: min(max(10.0**e, lo), top))


def _zero_or(strategy: SearchStrategy[float]) -> SearchStrategy[float]:
    return st.just(0.0) | strategy


def _bernoulli(draw: st.DrawFn, p: float) -> bool:
    """True with probability about p; never at p = 0, always at p = 1; shrinks towards True.

    Hypothesis does not draw uniformly: it favours simple choices (here u = 0), so the
    frequency is somewhat above p in practice (about 0.4 for p = 0.25, 0.6 for p = 0.5). An
    integer threshold would be much further off (0.7 for p = 0.25).
    """
    if p <= 0:
        return False
    if p >= 1:
        return True
    return draw(st.floats(0.0, 1.0)) < p


def lora_shapes(*, min_d_x: int = 1, max_d_x: int = 64,
                max_d_y: int = 8) -> list[tuple[int, int]]:
    """Every (m, p) with min_d_x <= m p <= max_d_x and m + p <= max_d_y, sorted by m p.

    A LoRA-shaped problem has d_x = m p (W is m x p) and d_y = r (m + p) for a rank r >= 1, so
    these are the shapes whose adapter fits in ``max_d_y``.

    >>> lora_shapes(max_d_x=4, max_d_y=4)
    [(1, 1), (1, 2), (2, 1), (1, 3), (3, 1), (2, 2)]
    """
    shapes = [(m, p) for m in range(1, max_d_y) for p in range(1, max_d_y - m + 1)
              if min_d_x <= m * p <= max_d_x]
    return sorted(shapes, key=lambda s: (s[0] * s[1], s[0] + s[1], abs(s[0] - s[1]), -s[1]))


@cache
def _cached_bound(assumption: str, directions: str, difference: str) -> Bound:
    return hybrid_bound(assumption=assumption, directions=directions, difference=difference)


_FAMILY_ASSUMPTIONS = {"gensmooth": "h1-gen", "lowrank": "effective-rank"}


def bound_for(problem: Problem, config: SimConfig | None = None) -> Bound:
    """The package's bound that applies to ``problem``: :func:`hybrid_bound` under H1; under
    H1-gen (``assumption="h1-gen"``, constants L0, L1, G) for the generalized-smooth family,
    whose G certifies the ZO perturbations only for bounded directions (sphere by default);
    under the effective rank (constant r) for the low-rank family; with ``config``'s ZO
    estimator (directions, difference). Built once and cached, so its evaluators are compiled
    once per test session.

    >>> from hybridconv.problems import make_problem
    >>> b = bound_for(make_problem("gensmooth", 2, 2, 2))
    >>> b.theorem.setting.names()[0], b.theorem.setting.estimator.directions
    ('H1-gen', 'sphere')
    """
    if not isinstance(problem, Problem):
        raise InvalidArgument(f"problem={problem!r} must be a hybridconv.problems.Problem")
    if config is not None and not isinstance(config, SimConfig):
        raise InvalidArgument(f"config={config!r} must be a hybridconv.sim.SimConfig or None")
    assumption = _FAMILY_ASSUMPTIONS.get(problem.name, "h1")
    if config is None:
        directions = "sphere" if problem.name == "gensmooth" else "gaussian"
        return _cached_bound(assumption, directions, "central")
    return _cached_bound(assumption, config.directions, config.difference)


# -- problems ------------------------------------------------------------------------------
class MarginGenSmoothProblem(GenSmoothProblem):
    """A :class:`~hybridconv.problems.gensmooth.GenSmoothProblem` whose constants are certified
    on a gradient bound G with a margin over the start.

    The generalized-smooth family's constants hold on {z : max_i ||grad f_i(z)|| <= G}, with G
    by default max_i ||grad f_i(z_0)|| at the start: a run whose component gradients grow by
    a rounding error already leaves that region (and :func:`hybridconv.validate.check` refuses
    it). Here the default G is ``G_margin`` times that value; a larger G is as certified (the
    region is larger) at the price of larger L_b = L0_b + L1_b G, hence smaller step sizes.
    Everything else, ``name`` included, is the family's.

    >>> p = MarginGenSmoothProblem(4, 3, 2, G_margin=2.0)
    >>> x0, y0 = p.start()
    >>> G0 = float(p.max_component_grad_norm(x0[None], y0[None])[0])
    >>> bool(abs(p.constants()["G"] - 2.0 * G0) < 1e-12 * G0)
    True
    """

    def __init__(self, n: int, d_x: int, d_y: int, *, G_margin: float = 1.1,
                 **params: object):
        super().__init__(n, d_x, d_y, G_margin=G_margin, **params)

    def __repr__(self) -> str:
        return (f"GenSmoothProblem(n={self.n}, d_x={self.d_x}, d_y={self.d_y}, seed={self.seed}, "
                f"G_margin={self.G_margin:g})")


def problems(*, families: Sequence[str] = DEFAULT_FAMILIES, min_n: int = 1, max_n: int = 8,
             min_d_x: int = 1, max_d_x: int = 64, max_d_y: int = 8,
             coupling: Sequence[str] = COUPLINGS,
             seed: int | None = None) -> SearchStrategy[Problem]:
    """Synthetic finite sums with certified constants, covering the theorem's edges.

    Args:
        families: names from :data:`hybridconv.spec.FAMILIES` to draw from (shrinks
            towards the first).
        min_n, max_n: number of components n (n = 1 and n = max_n drawn on purpose).
        min_d_x, max_d_x: dimension of the ZO block (both ends drawn on purpose). For
            ``lora``, d_x = m p is limited further by ``max_d_y`` (see :func:`lora_shapes`).
        max_d_y: largest dimension of the FO block (d_y >= 1; LoRA needs d_y = r (m + p)).
        coupling: regimes of the cross-block constant L_xy, from :data:`COUPLINGS`; used by the
            quadratic, nonconvex and gensmooth families (the ``coupling`` parameter, up to
            0.99 sqrt(m_x m_y)). A LoRA problem's L_xy is set by its shapes and region.
        seed: the instances' seed; ``None`` draws it.

    Spectra are drawn log-uniformly: L_x, L_y in [0.1, 10], m_b / L_b in [0.01, 1];
    heterogeneity sigma_b is 0 or in [0.01, 10]; nonconvex weight lam is 0 or in [0.01, 3];
    gensmooth ridge in [0.05, 1], offset in [0, 1]; LoRA target noise 0 or in [0.001, 1] and
    region scale in [2, 4]; hetero: the component Hessians' spread 0 or in [0.01, 3]
    sqrt(m_x m_y) (components nonconvex above sqrt(m_x m_y)-ish); lowrank: rank 1 to
    min(d_x, 4) and a tail in [1e-4, 1e-1] (d_x >= 2). A gensmooth problem is a
    :class:`MarginGenSmoothProblem` whose gradient bound G is 1.1 to 2 times its value at the
    start, so that a run stays where its constants are certified.

    >>> from hypothesis import find, settings
    >>> p = find(problems(families=("lora",)), lambda p: p.d_x == 1,
    ...          settings=settings(database=None))
    >>> (p.m, p.p, p.d_y % 2)
    (1, 1, 0)
    """
    families = _choices("families", families, spec.FAMILIES)
    min_n = _int("min_n", min_n, minimum=1)
    max_n = _int("max_n", max_n, minimum=1)
    _order("min_n", min_n, "max_n", max_n)
    min_d_x = _int("min_d_x", min_d_x, minimum=1)
    max_d_x = _int("max_d_x", max_d_x, minimum=1)
    _order("min_d_x", min_d_x, "max_d_x", max_d_x)
    max_d_y = _int("max_d_y", max_d_y, minimum=1)
    coupling = _choices("coupling", coupling, spec.COUPLINGS)
    if seed is not None:
        seed = _int("seed", seed, minimum=0)
    shapes = lora_shapes(min_d_x=min_d_x, max_d_x=max_d_x, max_d_y=max_d_y)
    if "lora" in families and not shapes:
        raise InvalidArgument(
            f"max_d_y={max_d_y!r} leaves no LoRA shape with {min_d_x} <= d_x = m p <= "
            f"{max_d_x} and d_y = r (m + p) <= {max_d_y}; raise max_d_y or drop 'lora' from "
            f"families={families!r}")
    seeds = st.just(seed) if seed is not None else st.integers(0, 2**31 - 1)
    ns = _edgy_integers(min_n, max_n)
    d_xs = _edgy_integers(min_d_x, max_d_x)
    d_ys = _edgy_integers(1, max_d_y)

    @st.composite
    def draw_problem(draw: st.DrawFn) -> Problem:
        family = draw(st.sampled_from(families))
        n, s = draw(ns), draw(seeds)
        if family == "lora":
            m, p = draw(st.sampled_from(shapes))
            r = draw(_edgy_integers(1, max_d_y // (m + p)))
            noise = draw(_zero_or(_log_uniform(1e-3, 1.0)))
            scale = draw(st.just(2.0) | st.floats(2.0, 4.0))
            return make_problem("lora", n, m * p, r * (m + p), seed=s, m=m, p=p, r=r,
                                noise=noise, region_scale=scale)
        d_x, d_y = draw(d_xs), draw(d_ys)
        params: dict[str, float] = {}
        for b in ("x", "y"):
            L = draw(_log_uniform(0.1, 10.0))
            params[f"L_{b}"] = L
            params[f"m_{b}"] = L * draw(_log_uniform(1e-2, 1.0))
            params[f"sigma_{b}"] = draw(_zero_or(_log_uniform(1e-2, 10.0)))
        largest = math.sqrt(params["m_x"] * params["m_y"])
        regime = draw(st.sampled_from(coupling))
        if regime == "zero":
            params["coupling"] = 0.0
        elif regime == "weak":
            params["coupling"] = largest * draw(_log_uniform(1e-3, 1e-1))
        else:
            params["coupling"] = largest * draw(st.floats(0.9, 0.99))
        if family == "nonconvex":  # its quadratic part's L_x, L_y are called Lq_x, Lq_y
            params["Lq_x"], params["Lq_y"] = params.pop("L_x"), params.pop("L_y")
            params["lam"] = draw(_zero_or(_log_uniform(1e-2, 3.0)))
        elif family == "hetero":
            params["hetero"] = largest * draw(_zero_or(_log_uniform(1e-2, 3.0)))
        elif family == "lowrank":  # its ZO block's spectrum is set by rank and tail
            params.pop("m_x")
            params["rank"] = draw(_edgy_integers(1, min(d_x, 4)))
            params["tail"] = draw(_log_uniform(1e-4, 1e-1))  # coupling <= sqrt(m_x m_y) fits
        elif family == "gensmooth":
            params["ridge"] = draw(_log_uniform(0.05, 1.0))
            params["offset"] = draw(st.floats(0.0, 1.0))
            margin = draw(st.sampled_from((1.1, 2.0)) | st.floats(1.1, 2.0))
            return MarginGenSmoothProblem(n, d_x, d_y, seed=s, G_margin=margin, **params)
        return make_problem(family, n, d_x, d_y, seed=s, **params)

    return draw_problem()


# -- configurations ---------------------------------------------------------------------------
def _config_args(problem: object, bound: object, methods: object, samplings: object,
                 min_q: object, max_q: object, boundary_probability: object, min_mu: object,
                 max_mu: object, epochs: object, trials: object) -> dict[str, object]:
    """Validate :func:`configs`' arguments (shared with :func:`instances`)."""
    if problem is not None and not isinstance(problem, Problem):
        raise InvalidArgument(f"problem={problem!r} must be a hybridconv.problems.Problem")
    if bound is not None and not isinstance(bound, Bound):
        raise InvalidArgument(f"bound={bound!r} must be a hybridconv.theory.Bound or None")
    if bound is not None and not {"eta_x", "eta_y"} <= set(bound.symbols):
        raise InvalidArgument(f"bound={bound.theorem.name!r} has no free step sizes eta_x, "
                              "eta_y to draw (a single-rate special case?)")
    out: dict[str, object] = {
        "methods": _choices("methods", methods, spec.SIM_METHODS),
        "samplings": _choices("samplings", samplings, spec.SAMPLINGS),
        "min_q": _int("min_q", min_q, minimum=1),
        "max_q": _int("max_q", max_q, minimum=1),
        "boundary_probability": _real("boundary_probability", boundary_probability, low=0.0,
                                      high=1.0),
        "min_mu": _real("min_mu", min_mu, low=0.0, strict_low=True),
        "max_mu": _real("max_mu", max_mu, low=0.0, strict_low=True),
        "epochs": _int_or_strategy("epochs", epochs, minimum=1),
        "trials": _int_or_strategy("trials", trials, minimum=2),
    }
    _order("min_q", out["min_q"], "max_q", out["max_q"])
    _order("min_mu", out["min_mu"], "max_mu", out["max_mu"])
    return out


def configs(problem: Problem, *, bound: Bound | None = None,
            methods: Sequence[str] = ("hybrid",), samplings: Sequence[str] = ("rr",),
            min_q: int = 1, max_q: int = 8, boundary_probability: float = 0.25,
            min_mu: float = 1e-6, max_mu: float = 1e-2,
            epochs: int | SearchStrategy[int] = DEFAULT_EPOCHS,
            trials: int | SearchStrategy[int] = DEFAULT_TRIALS) -> SearchStrategy[SimConfig]:
    """Simulation configurations for ``problem`` whose step sizes satisfy ``bound``'s conditions.

    The step sizes are ``bound.admissible_steps(f_x, f_y, **problem.constants(), mu=mu, q=q,
    n=problem.n, T=epochs)``, i.e. f_b times the largest eta_b the conditions allow; each f_b
    is exactly 1 (on the boundary) with probability about ``boundary_probability``, else
    log-uniform in [0.01, 1). (Hypothesis favours simple choices, so the boundary comes
    somewhat more often than that: about 0.4 of the draws at the default 0.25. Exactly never
    at 0 and always at 1.) The ZO estimator (directions, difference) is the bound's.

    Args:
        problem: the problem the configuration is for (its constants and n enter the caps).
        bound: the bound whose conditions the step sizes satisfy; default :func:`bound_for`.
        methods: from :data:`hybridconv.spec.SIM_METHODS` (the theorem is about ``"hybrid"``).
        samplings: from :data:`hybridconv.spec.SAMPLINGS` (the theorem is about ``"rr"``).
        min_q, max_q: ZO directions per step (q = 1 and q = max_q drawn on purpose).
        boundary_probability: in [0, 1], see above.
        min_mu, max_mu: the smoothing radius, log-uniform, both ends drawn on purpose.
        epochs: T, an integer or a strategy of integers >= 1 (default 1 to 16).
        trials: K, an integer or a strategy of integers >= 2 (default 32).

    >>> from hypothesis import given, settings
    >>> from hybridconv.problems import make_problem
    >>> problem = make_problem("quadratic", 4, 3, 2)
    >>> b = bound_for(problem)
    >>> @settings(max_examples=5, database=None)
    ... @given(configs(problem, boundary_probability=1.0))
    ... def test_on_the_boundary(config):
    ...     values = {**problem.constants(), **config.hyperparameters(problem.n)}
    ...     assert b.holds(**values)
    ...     assert (config.eta_x, config.eta_y) == b.admissible_steps(1.0, 1.0, **values)
    >>> test_on_the_boundary()
    """
    args = _config_args(problem, bound, methods, samplings, min_q, max_q, boundary_probability,
                        min_mu, max_mu, epochs, trials)
    if bound is None:
        bound = bound_for(problem)
    constants = problem.constants()
    missing = [s for s in bound.symbols if s not in _HYPER and s not in constants]
    if missing:
        raise InvalidArgument(
            f"bound={bound.theorem.name!r} needs {', '.join(missing)}, which "
            f"problem={problem!r} does not report (its constants: {', '.join(constants)})")
    return _configs(problem, bound, constants, **args)


def _configs(problem: Problem, bound: Bound, constants: dict[str, float], *,
             methods: tuple[str, ...], samplings: tuple[str, ...], min_q: int, max_q: int,
             boundary_probability: float, min_mu: float, max_mu: float,
             epochs: SearchStrategy[int], trials: SearchStrategy[int]) -> SearchStrategy:
    estimator = bound.theorem.setting.estimator
    mus = st.sampled_from((min_mu, max_mu)) | _log_uniform(min_mu, max_mu)
    qs = _edgy_integers(min_q, max_q)
    fractions = _log_uniform(1e-2, 1.0, exclude_hi=True)  # 1 only through the boundary draw

    @st.composite
    def draw_config(draw: st.DrawFn) -> SimConfig:
        method = draw(st.sampled_from(methods))
        sampling = draw(st.sampled_from(samplings))
        T = _checked_draw(draw, epochs, "epochs", 1)
        K = _checked_draw(draw, trials, "trials", 2)
        mu, q = draw(mus), draw(qs)
        fx, fy = (1.0 if _bernoulli(draw, boundary_probability) else draw(fractions)
                  for _ in range(2))
        eta_x, eta_y = bound.admissible_steps(fx, fy, **constants, mu=mu, q=q, n=problem.n,
                                              T=T)
        return SimConfig(method=method, sampling=sampling, eta_x=eta_x, eta_y=eta_y, mu=mu,
                         q=q, directions=estimator.directions, difference=estimator.difference,
                         epochs=T, trials=K, seed=draw(st.integers(0, 2**31 - 1)))

    return draw_config()


# -- both ---------------------------------------------------------------------------------------
def instances(*, bound: Bound | None = None, families: Sequence[str] = DEFAULT_FAMILIES,
              min_n: int = 1, max_n: int = 8, min_d_x: int = 1, max_d_x: int = 64,
              max_d_y: int = 8, coupling: Sequence[str] = COUPLINGS,
              methods: Sequence[str] = ("hybrid",), samplings: Sequence[str] = ("rr",),
              min_q: int = 1, max_q: int = 8, boundary_probability: float = 0.25,
              min_mu: float = 1e-6, max_mu: float = 1e-2,
              epochs: int | SearchStrategy[int] = DEFAULT_EPOCHS,
              trials: int | SearchStrategy[int] = DEFAULT_TRIALS,
              seed: int | None = None) -> SearchStrategy[tuple[Problem, SimConfig]]:
    """Pairs (problem, config) inside the theorem's conditions: :func:`problems` then
    :func:`configs`, with the same arguments.

    With ``bound=None`` each problem gets :func:`bound_for`'s bound: H1 for the quadratic,
    nonconvex and LoRA families, H1-gen (with the family's L0, L1 and G) for ``gensmooth``;
    hold a pair against the same bound with ``check(bound_for(problem, config), problem,
    config)``. A given ``bound`` is used for every family.

    >>> from hypothesis import given, settings
    >>> @settings(max_examples=5, database=None)
    ... @given(instances(families=("gensmooth",)))
    ... def test_inside(instance):
    ...     problem, config = instance
    ...     values = {**problem.constants(), **config.hyperparameters(problem.n)}
    ...     assert bound_for(problem, config).holds(**values)
    ...     assert "G" in values  # the H1-gen bound's gradient bound
    >>> test_inside()
    """
    strategy = problems(families=families, min_n=min_n, max_n=max_n, min_d_x=min_d_x,
                        max_d_x=max_d_x, max_d_y=max_d_y, coupling=coupling, seed=seed)
    args = _config_args(None, bound, methods, samplings, min_q, max_q, boundary_probability,
                        min_mu, max_mu, epochs, trials)
    if bound is not None:
        needs = [s for s in bound.symbols if s not in _HYPER]
        general = [s for s in needs if s[:2] in ("L0", "L1") or s == "G"]
        if general and set(families) - {"gensmooth"}:
            raise InvalidArgument(
                f"bound={bound.theorem.name!r} needs {', '.join(general)}, which only the "
                f"gensmooth family reports; got families={tuple(families)!r}")

    @st.composite
    def draw_instance(draw: st.DrawFn) -> tuple[Problem, SimConfig]:
        problem = draw(strategy)
        b = bound_for(problem) if bound is None else bound
        config = draw(_configs(problem, b, problem.constants(), **args))
        return problem, config

    return draw_instance()
