"""Symbolic theory of hybrid ZO/FO reshuffling SGD (sympy only; no torch).

>>> from hybridconv.theory import hybrid_bound
>>> b = hybrid_bound()
>>> sorted(c.name for c in b.conditions)
['C1', 'C2', 'C3', 'C4']
"""

from .assumptions import (
    GeneralizedHybridSmoothness,
    Heterogeneity,
    HybridSmoothness,
    Setting,
    ZOEstimator,
)
from .symbols import SYMBOLS, TABLE, sym
from .theorems import (
    Condition,
    Theorem,
    generalized_hybrid_reshuffling_theorem,
    hybrid_reshuffling_theorem,
)

__all__ = [
    "SYMBOLS",
    "TABLE",
    "sym",
    "HybridSmoothness",
    "GeneralizedHybridSmoothness",
    "Heterogeneity",
    "ZOEstimator",
    "Setting",
    "Condition",
    "Theorem",
    "hybrid_reshuffling_theorem",
    "generalized_hybrid_reshuffling_theorem",
    "Bound",
    "hybrid_bound",
]


def __getattr__(name: str):
    # Bound pulls in the numeric evaluators lazily
    if name in ("Bound", "hybrid_bound"):
        from . import bound

        return getattr(bound, name)
    raise AttributeError(name)
