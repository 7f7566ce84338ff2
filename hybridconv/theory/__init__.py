"""Symbolic theory of hybrid ZO/FO reshuffling SGD (sympy only; no torch).

>>> from hybridconv.theory import hybrid_bound
>>> b = hybrid_bound()
>>> sorted(c.name for c in b.conditions)
['C1', 'C2', 'C3', 'C4x', 'C4y', 'C5x', 'C5y']
"""

from .assumptions import (
    ASSUMPTIONS,
    BlockLSmoothness,
    EffectiveRank,
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
    effective_rank_theorem,
    generalized_hybrid_reshuffling_theorem,
    hybrid_reshuffling_theorem,
    lsmooth_theorem,
    theorem_for,
)

__all__ = [
    "ASSUMPTIONS",
    "SYMBOLS",
    "TABLE",
    "sym",
    "HybridSmoothness",
    "GeneralizedHybridSmoothness",
    "EffectiveRank",
    "BlockLSmoothness",
    "Heterogeneity",
    "ZOEstimator",
    "Setting",
    "Condition",
    "Theorem",
    "hybrid_reshuffling_theorem",
    "generalized_hybrid_reshuffling_theorem",
    "effective_rank_theorem",
    "lsmooth_theorem",
    "theorem_for",
    "Bound",
    "hybrid_bound",
]


def __getattr__(name: str):
    # Bound pulls in the numeric evaluators lazily
    if name in ("Bound", "hybrid_bound"):
        from . import bound

        return getattr(bound, name)
    raise AttributeError(name)
