"""Batched simulation of hybrid reshuffling SGD (numpy; no sympy, no torch).

>>> from hybridconv.problems import make_problem
>>> from hybridconv.sim import SimConfig, simulate
>>> df = simulate(make_problem("quadratic", 8, 5, 3), SimConfig(epochs=2, trials=3))
>>> df.shape[0]
9
"""

from .estimators import DIFFERENCES, DIRECTIONS, sample_directions, zo_estimate
from .runner import RECORD_COLUMNS, Schedule, SimConfig, simulate
from .samplers import SAMPLINGS, Sampler
from .step import METHODS, block_oracles, hybrid_step

__all__ = [
    "DIFFERENCES",
    "DIRECTIONS",
    "METHODS",
    "RECORD_COLUMNS",
    "SAMPLINGS",
    "Sampler",
    "Schedule",
    "SimConfig",
    "block_oracles",
    "hybrid_step",
    "sample_directions",
    "simulate",
    "zo_estimate",
]
