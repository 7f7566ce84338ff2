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
    norm = np.sqrt(np.einsum("...i,...i->...", g, g))[..., None]
    g *= np.sqrt(shape[-1]) / np.where(norm > 0, norm, 1.0)
    return g


def _rademacher(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Signs from random *bits*: ``ceil(d / 8)`` random bytes per direction, unpacked low bit
    first (1 -> +1), 64 times fewer random bits than a float draw per coordinate."""
    d = shape[-1]
    raw = rng.integers(0, 256, size=(*shape[:-1], (d + 7) // 8), dtype=np.uint8)
    u = np.unpackbits(raw, axis=-1, count=d, bitorder="little").astype(np.float64)
    u *= 2.0
    u -= 1.0
    return u


SAMPLERS: dict[str, Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]] = {
    "gaussian": _gaussian, "sphere": _sphere, "rademacher": _rademacher}
"""The numpy sampler of each direction distribution of :data:`hybridconv.spec.DIRECTIONS`
(one entry per row; docs/vocabulary.md shows how to add one)."""


def sample_directions(rng: np.random.Generator, shape: tuple[int, ...], kind: str) -> np.ndarray:
    """Directions of shape (..., d): E u u^T = I for all three kinds."""
    fn = SAMPLERS.get(kind)  # the hot path: one lookup; the vocabulary names a bad kind
    return (fn or SAMPLERS[spec.validate("directions", kind)])(rng, shape)


def zo_estimate(
    differences: Callable[[np.ndarray, float, str], np.ndarray],
    batch: int, dim: int, *, mu: float, q: int, directions: str, difference: str,
    rng: np.random.Generator, scale: float = 1.0,
) -> np.ndarray:
    """``scale`` times the q-direction two-point estimate for a batch of ``batch`` points in
    dimension ``dim`` (``scale = -eta`` gives the step's move; the estimate is formed in the
    directions' own buffer).

    ``differences(u, mu, difference)`` returns the finite differences delta of shape
    (batch, q) for directions u of shape (batch, q, dim): the problem computes them (from
    function values, or in closed form where that is exact). Returns g of shape (batch, dim).
    """
    u = sample_directions(rng, (batch, q, dim), directions)
    delta = differences(u, mu, difference)
    if q == 1:
        g = u.reshape(batch, dim)
        g *= delta * scale
        return g
    return np.einsum("bq,bqd->bd", delta * (scale / q), u)
