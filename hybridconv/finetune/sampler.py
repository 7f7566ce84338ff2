"""``ReshufflingSampler``: the epoch orders of THEORY.md as a ``torch.utils.data.Sampler``.

Schemes (as in ``hybridconv.sim.samplers``): ``rr`` random reshuffling (a fresh permutation
every epoch), ``so`` shuffle-once, ``ig`` incremental (0..n-1) and ``wr`` with replacement
(n uniform draws per epoch). The orders are *the simulator's* for one trial: they come from
trial block 0's generator of the sampler stream
(``hybridconv.sim.runner.block_rng(seed, SAMPLER_STREAM, 0)``) drawn epoch after epoch, so a
fine-tuning run and ``hybridconv.sim.simulate(trials=1)`` with the same seed visit the data in
the same order.
Epoch e's order is found by replaying the stream from its start (O(e n) draws, negligible next
to an epoch of training); ``set_epoch`` therefore gives random access. The sampler keeps the
stream where its last order left it, so epochs taken in increasing order (a training run)
cost one draw each, not e + 1: a run of E epochs costs O(E n), not O(E^2 n). The epoch index
is capped (``spec`` quantity ``epoch``, at most 10^7): a replay is then finite, if long (10^7
permutations of n). The cache is valid for the sampler's own n, sampling and seed; set them
only through the constructor (``load_state_dict`` refuses another sampler's state).

With a ``DataLoader(batch_size=B)`` on top, every epoch is a random partition of the examples
into batches of B (the last one shorter unless ``drop_last``): each f_i of the theory is then a
batch mean over a partition that changes every epoch, the usual practice (Mishchenko et al.,
NeurIPS 2020, Section 2) and the one MeZO's trainer uses, minus its mid-epoch stop.

Resuming: ``state_dict()`` holds the epoch and the number of indices already yielded in it;
after ``load_state_dict`` the next iteration continues mid-epoch where the run stopped.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence, Sized
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from .. import spec
from ..sim.runner import SAMPLER_STREAM, block_rng

__all__ = ["ReshufflingSampler", "SAMPLINGS"]

SAMPLINGS = spec.SAMPLINGS.values
"""A view of :data:`hybridconv.spec.SAMPLINGS`."""


class ReshufflingSampler(Sampler[int]):
    """Indices of one epoch per iteration; call :meth:`set_epoch` (or let it advance).

    >>> s = ReshufflingSampler(5, sampling="rr", seed=0)
    >>> a = list(s); b = list(s)          # two epochs, two permutations
    >>> sorted(a) == sorted(b) == list(range(5)), a != b
    (True, True)
    >>> s.set_epoch(0); list(s) == a
    True
    """

    def __init__(self, data: Sized | int, *, sampling: str = spec.SAMPLINGS.default,
                 seed: int = spec.QUANTITIES["seed"].default, kind: str | None = None):
        if kind is not None:  # the old spelling
            warnings.warn("ReshufflingSampler(kind=...) is deprecated; use sampling=...",
                          DeprecationWarning, stacklevel=2)
            sampling = kind
        n = data
        if not isinstance(data, int | np.integer):
            try:
                n = len(data)  # type: ignore[arg-type]
            except TypeError:
                raise ValueError("data must be a sized dataset or an integer n >= 1") from None
        self.n = spec.validate("n", n)
        from ..sizes import check_fits

        check_fits(lambda n: 24.0 * n, {"n": self.n}, {"n": 1},
                   what="an order of this length (three int64 arrays)")
        self.sampling = spec.validate("sampling", sampling)
        self.seed = spec.validate("seed", seed)
        self.epoch = 0
        self._pos = 0  # indices of the current epoch already yielded
        # the stream's position: the generator, about to draw the epoch after the last order
        self._rng: np.random.Generator | None = None
        self._last: tuple[int, np.ndarray] | None = None

    @property
    def kind(self) -> str:
        """The sampling scheme (old name of :attr:`sampling`)."""
        return self.sampling

    def __len__(self) -> int:
        return self.n

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch the next iteration yields (from its start)."""
        self.epoch, self._pos = spec.validate("epoch", epoch), 0

    def order(self, epoch: int) -> np.ndarray:
        """The full order of ``epoch`` (shape (n,)), as the stream from epoch 0 gives it: from
        where the last order left the stream (one draw for the next epoch), or replayed from
        the start (``epoch + 1`` draws) for an earlier one."""
        epoch = spec.validate("epoch", epoch)
        base = np.arange(self.n)[None, :]
        if self.sampling == "ig":
            return base[0]
        if self.sampling == "so":
            return block_rng(self.seed, SAMPLER_STREAM, 0).permuted(base, axis=1)[0]
        if self._last is not None and self._last[0] == epoch:
            return self._last[1].copy()
        after = 0 if self._last is None else self._last[0] + 1  # the epoch the stream is at
        if self._rng is None or epoch < after:  # replay from the stream's start
            self._rng, after = block_rng(self.seed, SAMPLER_STREAM, 0), 0
        for _ in range(epoch - after):  # advance the stream as the simulator does
            self._draw(self._rng, base)
        out = self._draw(self._rng, base)[0]
        self._last = (epoch, out)
        return out.copy()

    def _draw(self, rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
        if self.sampling == "rr":
            return rng.permuted(base, axis=1)
        return rng.integers(0, self.n, size=(1, self.n))

    def __iter__(self) -> Iterator[int]:
        order = self.order(self.epoch)
        start = self._pos
        for i in range(start, self.n):
            self._pos = i + 1
            yield int(order[i])
        self.epoch, self._pos = self.epoch + 1, 0

    @staticmethod
    def shard(batch: Sequence[int], rank: int, world_size: int) -> list[int]:
        """This rank's contiguous share of a batch of the epoch's permutation (data
        parallelism: every rank holds the same sampler and takes its slice of each batch).

        >>> ReshufflingSampler.shard([5, 1, 4, 0], 1, 2)
        [4, 0]
        """
        world_size = spec.validate("workers", world_size, label="world_size")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"rank must be an integer in [0, {world_size}), got {rank!r}")
        n = len(batch)
        return list(batch[rank * n // world_size:(rank + 1) * n // world_size])

    def state_dict(self) -> dict[str, Any]:
        return {"n": self.n, "sampling": self.sampling, "seed": self.seed,
                "epoch": self.epoch, "position": self._pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = dict(state)
        if "kind" in state:  # written before the one spelling
            state.setdefault("sampling", state.pop("kind"))
        for key in ("n", "sampling", "seed"):
            if state[key] != getattr(self, key):
                raise ValueError(f"sampler state has {key}={state[key]!r}, this sampler "
                                 f"{getattr(self, key)!r}")
        self.epoch, self._pos = int(state["epoch"]), int(state["position"])
