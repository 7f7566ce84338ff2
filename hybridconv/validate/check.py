"""Hold a simulated run against the theorem's bound, with a stated confidence.

The measured quantity is exactly what the theorem bounds:

* ``measure="min"`` (default): min over epochs t < T of E||grad F(z_t)||^2, where z_t is the
  iterate at the start of epoch t (the simulator's rows with ``epoch < T``);
* ``measure="weighted"``: (1/T) sum_{t<T} E[eta_x ||grad_x F(z_t)||^2 + eta_y ||grad_y F(z_t)||^2],
  the block-weighted measure, against ``bound.weighted_expr``;
* ``measure="adapter"``: (1/T) sum_{t<T} E||grad_y F(z_t)||^2, the FO block alone (the
  adapter in fine-tuning), against ``bound.adapter_expr``.

Statistics. Each expectation is estimated by the mean over K independent trials, with a
one-sided Student-t interval (CLT; K >= 30 is advised, K >= 2 is required). The level is
asymptotic: on skewed data with few trials it undercovers (a review measured 2-3% misses at a
nominal 1% with K = 8-32 on a strongly skewed case), so treat verdicts from small K as
indicative. For the min
measure the T epoch means are covered simultaneously (Bonferroni: level alpha / T each), and so
is a family of ``instances`` checks done at once (level alpha / (T instances)); then
min_t UCB_t is an upper and min_t LCB_t a lower confidence bound for min_t E||grad F(z_t)||^2
at level 1 - alpha each (the pair [lower, upper] is a 1 - 2 alpha interval), because every
mu_t lies in its one-sided interval at once with that probability.

Blind spot of the min measure: epoch 0 is deterministic and C1-C2 make the bound's Delta term
at least (32 / T) ||grad F(z_0)||^2, so for T <= 32 a min-measure check of the real bound holds
by epoch 0 alone; ``Verdict.trivial`` says when. Use ``measure="weighted"`` (or long runs) to
test the dynamics.

Verdicts: ``violated`` when the lower confidence bound exceeds the bound (a significant
violation at the stated confidence), ``holds`` when the upper confidence bound is below it,
``inconclusive`` otherwise. A trial that diverges while the conditions hold is reported as a
violation (the theorem bounds a finite expectation).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from .. import spec
from .._io import jsonable
from ..problems.base import Problem
from ..sim.runner import SimConfig, simulate
from ..theory.bound import Bound

__all__ = ["Verdict", "check", "VERDICTS", "MEASURES"]

VERDICTS = ("holds", "violated", "inconclusive")
MEASURES = spec.MEASURES.values
"""A view of :data:`hybridconv.spec.MEASURES`."""


@dataclass(frozen=True)
class Verdict:
    """The result of :func:`check`.

    Attributes:
        verdict: ``holds``, ``violated`` or ``inconclusive``.
        empirical: the measured quantity (see the module docstring).
        ci_lower, ci_upper: its one-sided confidence bounds at ``confidence``.
        bound: the bound's value for this instance.
        ratio: empirical / bound (a zero bound: 0 unless the lower confidence bound is > 0).
        epoch: the epoch attaining the min (``measure="min"``), else -1.
        trials, epochs: K and T.
        confidence: 1 - alpha (before the Bonferroni split over epochs and instances).
        outside: the conditions (or region) the instance breaks, when checked on purpose.
        diverged: number of diverged trials.
        measure: ``min`` or ``weighted``.
        trivial: for ``measure="min"``, whether ||grad F(z_0)||^2 alone is below the bound, so
            that ``holds`` is forced by epoch 0 whatever the run does. This is common: C1 and
            C2 make the Delta term at least (32 / T) ||grad F(z_0)||^2, so for T <= 32 every
            min-measure check of the real bound is trivial. The weighted measure has no such
            blind spot (epoch 0 is 1/T of the average); property tests and the mutation check
            use both.
    """

    verdict: str
    empirical: float
    ci_lower: float
    ci_upper: float
    bound: float
    ratio: float
    epoch: int
    trials: int
    epochs: int
    confidence: float
    outside: list[str] = field(default_factory=list)
    diverged: int = 0
    measure: str = "min"
    trivial: bool = False

    def as_dict(self) -> dict[str, object]:
        """JSON-ready (:func:`hybridconv._io.jsonable`: infinities and NaN as ``None``, the
        package's one policy, so that the output is strict JSON)."""
        return jsonable(asdict(self))  # type: ignore[return-value]


ROUNDING = 1e-12
"""Relative slack for floating-point rounding: a bound met with equality (the gradient-gap
bound 2 Lambda Delta on an instance where ||grad F(z_0)||^2 = 2 Lambda Delta, with zero-width
intervals at epoch 0) is not reported violated when the two differ in the last digits."""

ROUNDING_ABS = 1e-24
"""Absolute slack: a squared gradient norm below it is rounding (a run started at the
minimizer of a noiseless instance, where the bound is 0, measures ~1e-31, the float64 residue
of a gradient that is 0 in exact arithmetic). The synthetic families' scales are O(1) to
O(100), so their rounding in ||grad F||^2 is below 1e-26."""


def exceeds(lower: float | np.ndarray, bound: float | np.ndarray) -> bool | np.ndarray:
    """Whether a lower confidence bound exceeds a bound by more than rounding
    (:data:`ROUNDING`, :data:`ROUNDING_ABS`)."""
    return np.asarray(lower) > np.asarray(bound) * (1 + ROUNDING) + ROUNDING_ABS


def _values(problem: Problem, config: SimConfig, x0: np.ndarray | None,
            y0: np.ndarray | None) -> dict[str, float]:
    for name, v in (("x0", x0), ("y0", y0)):
        if v is not None and np.ndim(v) != 1:
            raise ValueError(f"{name} must be one start shared by all trials (a 1-d array): "
                             "the bound's Delta is taken at it")
    return {**problem.constants(x0, y0), **config.hyperparameters(problem.n)}


def check(bound: Bound, problem: Problem, config: SimConfig, *, confidence: float = 0.99,
          instances: int = 1, measure: str = "min", allow_outside: bool = False,
          x0: np.ndarray | None = None, y0: np.ndarray | None = None) -> Verdict:
    """Simulate ``config`` on ``problem`` and hold the result against ``bound``.

    Raises:
        ValueError: naming the broken condition when the instance breaks the theorem's
            conditions, or a run leaves the region where a locally smooth problem's constants
            are certified (LoRA-shaped), or the gradient bound G of the generalized theorem is
            exceeded at any iterate -- unless ``allow_outside=True``, in which case the
            verdict lists them in ``outside``. Also for bad arguments.
    """
    if not isinstance(bound, Bound):
        raise ValueError(f"bound must be a hybridconv.theory.Bound, got {bound!r}")
    if not isinstance(problem, Problem):
        raise ValueError(f"problem must be a hybridconv.problems.Problem, got {problem!r}")
    if not isinstance(config, SimConfig):
        raise ValueError(f"config must be a SimConfig, got {config!r}")
    confidence = spec.validate("confidence", confidence)
    instances = spec.validate("instances", instances)
    measure = spec.validate("measure", measure)
    if config.trials < 2:
        raise ValueError(f"config.trials must be >= 2 for a confidence interval, got "
                         f"{config.trials}")
    values = _values(problem, config, x0, y0)
    outside = bound.violated(**values)
    if outside and not allow_outside:
        raise ValueError("the instance breaks the theorem's conditions: " + "; ".join(outside)
                         + " (allow_outside=True, or --allow-outside, checks it anyway)")
    expr_value = bound.evaluate(check=False, measure=measure, **values)

    df = simulate(problem, config, x0=x0, y0=y0)
    T = config.epochs
    run = df[df["epoch"] < T]
    if df["left_region"].any():
        msg = (f"{int(df.loc[df['left_region'], 'trial'].nunique())} trials left the region "
               "where the problem's constants are certified")
        if not allow_outside:
            raise ValueError(msg + " (allow_outside=True, or --allow-outside, checks it anyway)")
        outside.append(msg)
    G = values.get("G")
    seen = df["max_grad_norm"]  # running max over every iterate of the run
    if G is not None and np.isfinite(seen).any() and float(seen.max()) > G * (1 + 1e-12):
        msg = (f"max_i ||grad f_i|| reached {float(seen.max()):.6g} > G = {G:.6g}"
               " (the generalized theorem's gradient bound)")
        if not allow_outside:
            raise ValueError(msg + " (allow_outside=True, or --allow-outside, checks it anyway)")
        outside.append(msg)

    diverged = int(df.loc[df["diverged"], "trial"].nunique())
    alpha = 1.0 - confidence
    K = config.trials
    from scipy import stats

    g0 = float(run.loc[run["epoch"] == 0, "grad_sq"].mean())
    if measure == "min":
        table = run.pivot(index="trial", columns="epoch", values="grad_sq").to_numpy()
        level = alpha / (T * instances)
        q = float(stats.t.ppf(1 - level, K - 1))
        with np.errstate(all="ignore"):
            means = table.mean(axis=0)
            half = q * table.std(axis=0, ddof=1) / math.sqrt(K)
        t_star = int(np.nanargmin(means)) if np.isfinite(means).any() else 0
        empirical = float(np.min(means)) if np.isfinite(means).all() else math.inf
        upper = float(np.min(means + half)) if np.isfinite(means).all() else math.inf
        lower = float(np.min(means - half)) if np.isfinite(means).all() else math.inf
    else:
        eta_x, eta_y = values["eta_x"], values["eta_y"]
        if measure == "weighted":
            w = (eta_x * run["grad_x_sq"] + eta_y * run["grad_y_sq"]).to_numpy().reshape(T, K)
        else:  # adapter: the FO block alone
            w = run["grad_y_sq"].to_numpy().reshape(T, K)
        per_trial = w.mean(axis=0)
        level = alpha / instances
        q = float(stats.t.ppf(1 - level, K - 1))
        if np.isfinite(per_trial).all():
            empirical = float(per_trial.mean())
            half = q * float(per_trial.std(ddof=1)) / math.sqrt(K)
            upper, lower = empirical + half, empirical - half
        else:  # a diverged trial: the average over epochs is infinite
            empirical = upper = lower = math.inf
        t_star = -1

    if diverged and not outside:
        verdict = "violated"
    elif not math.isfinite(lower):
        verdict = "violated"
    elif exceeds(lower, expr_value):
        verdict = "violated"
    elif upper <= expr_value:
        verdict = "holds"
    else:
        verdict = "inconclusive"
    if expr_value > 0:
        ratio = empirical / expr_value
    else:  # a zero bound (a run started at a stationary point): only a significant excess counts
        ratio = math.inf if lower > ROUNDING_ABS else 0.0
    trivial = measure == "min" and math.isfinite(g0) and g0 <= expr_value
    return Verdict(verdict, empirical, lower, upper, float(expr_value), float(ratio), t_star, K,
                   T, float(confidence), outside, diverged, measure, trivial)

