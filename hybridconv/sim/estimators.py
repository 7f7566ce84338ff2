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

__all__ = ["DIRECTIONS", "DIFFERENCES", "sample_directions", "zo_estimate"]

DIRECTIONS = ("gaussian", "sphere", "rademacher")
DIFFERENCES = ("central", "forward")


def sample_directions(rng: np.random.Generator, shape: tuple[int, ...], kind: str) -> np.ndarray:
    """Directions of shape (..., d): E u u^T = I for all three kinds."""
    if kind == "gaussian":
        return rng.standard_normal(shape)
    if kind == "sphere":
        g = rng.standard_normal(shape)
        norm = np.linalg.norm(g, axis=-1, keepdims=True)
        return g * (np.sqrt(shape[-1]) / np.where(norm > 0, norm, 1.0))
    if kind == "rademacher":
        return rng.integers(0, 2, size=shape).astype(float) * 2.0 - 1.0
    raise ValueError(f"directions must be one of {DIRECTIONS}, got {kind!r}")


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
