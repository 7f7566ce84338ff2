"""Hypothesis strategies for property-testing convergence bounds (``pip install hypothesis``).

Generate (problem, hyper-parameters) pairs inside a theorem's conditions and hold each against
a bound: see :mod:`hybridconv.testing.strategies` and docs/testing.md.

>>> from hypothesis import given, settings
>>> from hybridconv.testing import bound_for, instances
>>> @settings(max_examples=5, database=None)
... @given(instances())
... def test_inside_the_conditions(instance):
...     problem, config = instance
...     values = {**problem.constants(), **config.hyperparameters(problem.n)}
...     assert bound_for(problem, config).holds(**values)
>>> test_inside_the_conditions()
"""

from .strategies import (
    COUPLINGS,
    DEFAULT_FAMILIES,
    MarginGenSmoothProblem,
    bound_for,
    configs,
    instances,
    lora_shapes,
    problems,
)

__all__ = [
    "COUPLINGS",
    "DEFAULT_FAMILIES",
    "MarginGenSmoothProblem",
    "bound_for",
    "configs",
    "instances",
    "lora_shapes",
    "problems",
]
