"""Zeroth-order gradient estimators, batched over a leading axis (THEORY.md, "Algorithm").

g = (1/q) sum_k delta_k u_k with, for the central difference,
delta_k = [f(x + mu u_k) - f(x - mu u_k)] / (2 mu), and for the forward difference
delta_k = [f(x + mu u_k) - f(x)] / mu. Directions u_k are Gaussian N(0, I_d), uniform on the
sphere of radius sqrt(d), or Rademacher; fresh at every call, drawn from an explicit
``numpy.random.Generator``. Constants of each choice: ``hybridconv.theory.assumptions.ZOEstimator``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .. import spec

__all__ = ["DIRECTIONS", "DIFFERENCES", "SAMPLERS", "sample_directions", "zo_estimate"]

DIRECTIONS = spec.DIRECTIONS.values
DIFFERENCES = spec.DIFFERENCES.values
"""Views of :data:`hybridconv.spec.DIRECTIONS` and :data:`hybridconv.spec.DIFFERENCES`."""


def _gaussian(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape)


def _sphere(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    g = rng.standard_normal(shape)
    norm = np.linalg.norm(g, axis=-1, keepdims=True)
    return g * (np.sqrt(shape[-1]) / np.where(norm > 0, norm, 1.0))


def _rademacher(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 2, size=shape).astype(float) * 2.0 - 1.0


SAMPLERS: dict[str, Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]] = {
    "gaussian": _gaussian, "sphere": _sphere, "rademacher": _rademacher}
"""The numpy sampler of each direction distribution of :data:`hybridconv.spec.DIRECTIONS`
(one entry per row; docs/vocabulary.md shows how to add one)."""


def sample_directions(rng: np.random.Generator, shape: tuple[int, ...], kind: str) -> np.ndarray:
    """Directions of shape (..., d): E u u^T = I for all three kinds."""
    return SAMPLERS[spec.validate("directions", kind)](rng, shape)


def zo_estimate(
    differences: Callable[[np.ndarray, float, str], np.ndarray],
    batch: int, dim: int, *, mu: float, q: int, directions: str, difference: str,
    rng: np.random.Generator,
) -> np.ndarray:
    """The q-direction two-point estimate for a batch of ``batch`` points in dimension ``dim``.

    ``differences(u, mu, difference)`` returns the finite differences delta of shape
    (batch, q) for directions u of shape (batch, q, dim): the problem computes them (from
    function values, or in closed form where that is exact). Returns g of shape (batch, dim).
    """
    u = sample_directions(rng, (batch, q, dim), directions)
    delta = differences(u, mu, difference)
    return np.einsum("bq,bqd->bd", delta, u) / q
