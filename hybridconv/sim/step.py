"""The hybrid step: a pure function of (state, component indices, generator).

One step of hybrid reshuffling SGD (THEORY.md): for each block b in {x, y}, its oracle is
``"zo"`` (a q-direction two-point estimate of grad_b f_j) or ``"fo"`` (the exact
grad_b f_j); both oracles are queried at the same point (x, y), then
x <- x - eta_x g_x, y <- y - eta_y g_y. Pure FO (``fo, fo``), pure ZO (``zo, zo``) and the
hybrid (``zo, fo``) are the same code.
"""

from __future__ import annotations

import numpy as np

from .. import spec
from ..problems.base import Problem
from .estimators import zo_estimate

__all__ = ["METHODS", "block_oracles", "hybrid_step"]

METHODS: dict[str, tuple[str, str]] = {"hybrid": ("zo", "fo"), "zo": ("zo", "zo"),
                                       "fo": ("fo", "fo"), "reversed": ("fo", "zo")}
"""Method name (:data:`hybridconv.spec.SIM_METHODS`) -> (oracle of x, oracle of y).
``reversed`` (FO on x, ZO on y) is the mirror image of the hybrid, for ablations."""


def block_oracles(method: str) -> tuple[str, str]:
    """(oracle of x, oracle of y) for a method name."""
    return METHODS[spec.validate("method", method, among=spec.SIM_METHODS)]


def hybrid_step(
    problem: Problem, x: np.ndarray, y: np.ndarray, idx: np.ndarray, *,
    eta_x: float, eta_y: float, oracles: tuple[str, str], mu: float, q: int,
    directions: str, difference: str, rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """One step for a batch of trials; returns the new (x, y) (inputs are not modified).

    The ZO estimate is formed scaled by -eta in its directions' buffer and x added to it, so a
    ZO block costs its draws, the differences and two passes over the block."""
    ox, oy = oracles
    B = x.shape[0]
    fo = None
    if ox == "fo" or oy == "fo":
        fo = problem.grads(x, y, idx)
    if ox == "zo":
        nx = zo_estimate(lambda u, m, d: problem.zo_differences(x, y, idx, u, m, d, "x", fo),
                         B, problem.d_x, mu=mu, q=q, directions=directions,
                         difference=difference, rng=rng, scale=-eta_x)
        nx += x
    else:
        nx = x - eta_x * fo[0]
    if oy == "zo":
        ny = zo_estimate(lambda u, m, d: problem.zo_differences(x, y, idx, u, m, d, "y", fo),
                         B, problem.d_y, mu=mu, q=q, directions=directions,
                         difference=difference, rng=rng, scale=-eta_y)
        ny += y
    else:
        ny = y - eta_y * fo[1]
    return nx, ny
