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
    import inspect

    module, cls = FAMILIES[spec.validate("problem", name)].split(":")
    klass = getattr(import_module(module), cls)
    sig = inspect.signature(klass).parameters
    allowed = [k for k, v in sig.items() if v.kind is v.KEYWORD_ONLY and k != "seed"]
    unknown = sorted(set(params) - set(allowed))
    if unknown and not any(v.kind is v.VAR_KEYWORD for v in sig.values()):
        raise ValueError(f"{unknown[0]} is not a parameter of the {name} family; its "
                         f"parameters: {', '.join(allowed)}")
    try:
        return klass(n, d_x, d_y, seed=seed, **params)
    except TypeError as e:  # a family that takes deprecated spellings refused the others
        raise ValueError(f"{name}: {e}; its parameters: {', '.join(allowed)}") from None
