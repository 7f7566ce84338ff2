"""Sampling schemes: the order in which an epoch visits the n components.

``rr`` random reshuffling (a fresh permutation every epoch), ``so`` shuffle-once (one
permutation drawn at the start and reused), ``ig`` incremental (fixed order 0..n-1), ``wr``
sampling with replacement (n independent uniform indices per epoch). Batched over trials:
every trial has its own stream of orders, drawn from one explicit generator.
"""

from __future__ import annotations

import numpy as np

from .. import spec

__all__ = ["SAMPLINGS", "Sampler"]

SAMPLINGS = spec.SAMPLINGS.values
"""A view of :data:`hybridconv.spec.SAMPLINGS`."""


class Sampler:
    """Epoch orders of shape (trials, n) for one sampling scheme.

    >>> s = Sampler("rr", n=4, trials=2, rng=np.random.default_rng(0))
    >>> sorted(s.epoch(0)[0].tolist())
    [0, 1, 2, 3]
    """

    def __init__(self, kind: str, *, n: int, trials: int, rng: np.random.Generator):
        kind = spec.validate("sampling", kind)
        self.kind, self.n, self.trials, self.rng = kind, n, trials, rng
        base = np.tile(np.arange(n), (trials, 1))
        self._fixed = rng.permuted(base, axis=1) if kind == "so" else base

    def epoch(self, t: int) -> np.ndarray:
        """The order of epoch ``t`` (epochs must be requested in order for rr and wr)."""
        if self.kind == "rr":
            return self.rng.permuted(np.tile(np.arange(self.n), (self.trials, 1)), axis=1)
        if self.kind == "wr":
            return self.rng.integers(0, self.n, size=(self.trials, self.n))
        return self._fixed
