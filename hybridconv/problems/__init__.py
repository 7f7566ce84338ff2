"""Synthetic finite sums with certified constants (numpy; no sympy, no torch).

Families: ``quadratic`` (exact constants), ``nonconvex`` (quadratic plus a bounded-curvature
regularizer), ``lora`` (LoRA-shaped, locally smooth on a stated region), ``gensmooth``
((L0, L1)-smooth but not globally smooth), ``hetero`` (heterogeneous component Hessians:
Theta > 0, exactly) and ``lowrank`` (ZO-block curvature of effective rank r << d_x). Build one by
name with :func:`make_problem`.
"""

from __future__ import annotations

from importlib import import_module

from .. import spec
from .base import Problem
from .quadratic import QuadraticProblem

__all__ = ["Problem", "QuadraticProblem", "FAMILIES", "make_problem"]

FAMILIES: dict[str, str] = {
    "quadratic": "hybridconv.problems.quadratic:QuadraticProblem",
    "nonconvex": "hybridconv.problems.nonconvex:NonconvexProblem",
    "lora": "hybridconv.problems.lora:LoRAProblem",
    "gensmooth": "hybridconv.problems.gensmooth:GenSmoothProblem",
    "hetero": "hybridconv.problems.hetero:HeteroQuadraticProblem",
    "lowrank": "hybridconv.problems.lowrank:LowRankQuadraticProblem",
}
"""Family name (:data:`hybridconv.spec.FAMILIES`) -> the class that implements it."""


def make_problem(name: str, n: int, d_x: int, d_y: int, *, seed: int = 0,
                 **params: object) -> Problem:
    """Build the problem family ``name`` with n components and block dimensions d_x, d_y."""
    module, cls = FAMILIES[spec.validate("problem", name)].split(":")
    return getattr(import_module(module), cls)(n, d_x, d_y, seed=seed, **params)
