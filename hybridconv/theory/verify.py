"""Numerical verification of a recorded derivation's algebraic claims.

Every step of a :class:`~.derivation.Derivation` records a claim ``small <= large`` that must
hold at every admissible point and for all nonnegative quantities. :func:`verify_derivation`
evaluates each claim at random admissible points (from :func:`~.bound.sample_admissible`)
with random nonnegative quantities, and reports the worst ratio small / large. A wrong step,
e.g. a constant halved, fails here; the test suite shows it with planted wrong steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from .bound import Bound, compile_numeric, sample_admissible
from .derivation import Step
from .proof import _replace
from .symbols import name_of
from .theorems import Theorem

__all__ = ["StepCheck", "check_step", "verify_derivation", "TOLERANCE"]

TOLERANCE = 1e-9
"""Relative tolerance of every claim check (float64 round-off)."""


@dataclass(frozen=True)
class StepCheck:
    """The result of checking one step: ``ok`` and the worst (largest) small/large ratio."""

    name: str
    kind: str
    ok: bool
    worst_ratio: float
    points: int


def check_step(step: Step, theorem: Theorem, points: dict[str, object], *, seed: int) -> StepCheck:
    """Check ``step.claim`` at the admissible ``points`` with random nonnegative quantities."""
    import numpy as np

    small, large = step.claim
    small = theorem.expand_aux(_replace(sp.sympify(small), step.defs))
    large = theorem.expand_aux(_replace(sp.sympify(large), step.defs))
    size = len(next(iter(points.values())))
    free = sorted(small.free_symbols | large.free_symbols, key=str)
    rng = np.random.default_rng(seed)
    args = []
    for s in free:
        name = name_of(s)
        if name in points:
            args.append(np.asarray(points[name], dtype=float))
        else:  # a quantity: nonnegative, spread over many scales, some exact zeros
            x = 10.0 ** rng.uniform(-6, 6, size)
            args.append(np.where(rng.uniform(size=size) < 0.1, 0.0, x))
    f_small = compile_numeric(free, small)
    f_large = compile_numeric(free, large)
    with np.errstate(all="ignore"):
        a = np.broadcast_to(np.asarray(f_small(*args), dtype=float), (size,))
        b = np.broadcast_to(np.asarray(f_large(*args), dtype=float), (size,))
    # rounding error of a sum is relative to its summands' sizes, not to its value (the
    # descent coefficients cancel large terms down to a small difference)
    scale = np.maximum(np.abs(a), np.abs(b))
    if step.kind == "definition":  # an identity: the sizes of its terms, every sign made +
        for expr in (small, large):
            plus = expr.replace(lambda e: e.is_Number and e < 0, lambda e: -e)
            with np.errstate(all="ignore"):
                mags = np.abs(np.broadcast_to(np.asarray(compile_numeric(free, plus)(*args),
                                                         dtype=float), (size,)))
            scale = np.fmax(scale, np.where(np.isfinite(mags), mags, 0.0))
    ok = a <= b + TOLERANCE * scale + 1e-300
    with np.errstate(all="ignore"):
        ratio = np.where(b > 0, a / b, np.where(a <= 0, 0.0, np.inf))
    return StepCheck(step.name, step.kind, bool(ok.all()), float(np.nanmax(ratio)), size)


def verify_derivation(theorem: Theorem, *, samples: int = 2000, seed: int = 0) -> list[StepCheck]:
    """Check every step of ``theorem``'s derivation at ``samples`` admissible points."""
    bound = Bound.from_theorem(theorem)
    pts = sample_admissible(bound, samples, seed=seed)
    return [check_step(s, theorem, pts, seed=seed + i)
            for i, s in enumerate(theorem.derivation.steps)]
