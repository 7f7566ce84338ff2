"""Random directions for the zeroth-order block, regenerated from a per-step seed.

A direction u of the whole ZO block (all its parameter tensors, concatenated) is never stored:
it is produced one tensor at a time by :meth:`DirectionSource.generate`, which must give the
same tensors every time it is called with the same ``(seed, k)`` (MeZO's memory trick,
Malladi et al. 2023, Algorithm 1). All three kinds satisfy E[u u^T] = I, as in
``hybridconv.sim.estimators``:

- ``gaussian``: u ~ N(0, I_D);
- ``sphere``: uniform on the sphere of radius sqrt(D) of the whole block (D = total size),
  obtained by rescaling a Gaussian draw; the norm costs one extra generation pass;
- ``rademacher``: independent signs +-1, drawn as bits: one random byte gives eight signs
  (bit j of byte i is sign 8 i + j, 1 for +1), eight times fewer generator calls than a draw
  per sign and about a fifth of a Gaussian draw's time.

:class:`TorchDirections` draws from a private ``torch.Generator`` seeded by (seed, k): the
global random state (dropout, data order) is never touched. :class:`NumpyStreamDirections`
replays the simulator's numpy stream so that a one-trial simulation and a ``HybridZOFO`` run
see the same directions (the equivalence test of ``tests/test_finetune_equivalence.py``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch

from .. import spec

__all__ = ["CHUNK", "DIRECTIONS", "SAMPLERS", "TorchSampler", "DirectionSource",
           "TorchDirections", "NumpyStreamDirections", "direction_seed", "pieces"]

DIRECTIONS = spec.DIRECTIONS.values
"""A view of :data:`hybridconv.spec.DIRECTIONS`."""


class TorchSampler(NamedTuple):
    """How :class:`TorchDirections` draws one distribution: ``fill(out, generator)`` fills a
    flat piece in place; ``normalize``: the whole direction is then rescaled to the norm
    sqrt(D) of the block (D its size), as the sphere needs."""

    fill: Callable[[torch.Tensor, torch.Generator], torch.Tensor]
    normalize: bool = False


def _normal(out: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return out.normal_(generator=g)


_SIGN_TABLES: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}


def _signs(out: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Signs from random bytes: row b of a (256, 8) table holds the eight signs of byte b."""
    n = out.numel()
    key = (out.dtype, out.device)
    table = _SIGN_TABLES.get(key)
    if table is None:
        bits = (torch.arange(256).unsqueeze(-1) >> torch.arange(8)) & 1
        table = _SIGN_TABLES.setdefault(key, (bits * 2 - 1).to(dtype=out.dtype,
                                                                   device=out.device))
    raw = torch.empty((n + 7) // 8, dtype=torch.uint8, device=out.device)
    idx = raw.random_(0, 256, generator=g).long()
    if n % 8 == 0:
        torch.index_select(table, 0, idx, out=out.view(-1, 8))
    else:
        out.copy_(table.index_select(0, idx).view(-1)[:n])
    return out


SAMPLERS: dict[str, TorchSampler] = {
    "gaussian": TorchSampler(_normal), "sphere": TorchSampler(_normal, normalize=True),
    "rademacher": TorchSampler(_signs)}
"""The torch sampler of each direction distribution of :data:`hybridconv.spec.DIRECTIONS`
(one entry per row; docs/vocabulary.md shows how to add one)."""

_GOLDEN = 0x9E3779B97F4A7C15
_MASK = (1 << 63) - 1
_MASK64 = (1 << 64) - 1


CHUNK = 1 << 22
"""Elements per generator: tensor i is cut into pieces of CHUNK elements (flat order), piece c
drawn by its own generator. A constant, so the values never depend on the thread count."""


def direction_seed(seed: int, k: int, i: int = 0, c: int = 0) -> int:
    """The generator seed of piece ``c`` of part ``i`` (the i-th ZO tensor) of direction
    ``k`` of the step with seed ``seed``: a 63-bit mix (splitmix64's finalizer) of the four."""
    z = (int(seed) + (int(k) + 1) * _GOLDEN + (int(i) + 1) * 0xD1B54A32D192ED03
         + int(c) * 0x8CB92BA72F3D8DD7) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) & _MASK


def pieces(numel: int) -> list[tuple[int, int, int]]:
    """``(c, start, stop)`` of the pieces of a tensor of ``numel`` elements."""
    return [(c, a, min(a + CHUNK, numel)) for c, a in enumerate(range(0, numel, CHUNK))]


class DirectionSource(ABC):
    """Produces direction k of a step, one tensor per ZO parameter, identically on each call.

    Subclasses implement :meth:`generate`; sources whose pieces are independent
    (``parallel = True``) also implement :meth:`piece`, which lets the optimizer fill pieces
    side by side from worker threads with one piece-sized scratch buffer per thread.
    """

    kind: str = "gaussian"
    parallel: bool = False

    @abstractmethod
    def generate(self, seed: int, k: int, params: Sequence[torch.Tensor],
                 dtype: torch.dtype | None = None) -> Iterator[torch.Tensor]:
        """Yield u's part for each of ``params`` (shape of the parameter, ``dtype`` or the
        parameter's dtype, on the parameter's device)."""

    def piece(self, seed: int, k: int, i: int, c: int, out: torch.Tensor) -> torch.Tensor:
        """Fill the flat ``out`` with the unscaled piece c of tensor i of direction k (sources
        with ``parallel = True`` only)."""
        raise TypeError(f"{type(self).__name__} draws whole directions only (parallel=False)")

    def scale(self, seed: int, k: int, params: Sequence[torch.Tensor],
              dtype: torch.dtype | None = None) -> float:
        """The factor the pieces (drawn in ``dtype`` or each parameter's dtype) are
        multiplied by: 1 except for the sphere."""
        return 1.0


class TorchDirections(DirectionSource):
    """Directions from private ``torch.Generator`` s: piece c of tensor i of direction k of the
    step with seed s comes from a generator seeded by ``direction_seed(s, k, i, c)``, so any
    piece can be regenerated on its own, in any order and from any thread.

    >>> p = [torch.zeros(3), torch.zeros(2, 2)]
    >>> a = [t.clone() for t in TorchDirections().generate(5, 0, p)]
    >>> b = list(TorchDirections().generate(5, 0, p))
    >>> all(torch.equal(s, t) for s, t in zip(a, b, strict=True))
    True
    """

    parallel = True

    def __init__(self, kind: str = "gaussian"):
        self.kind = spec.validate("directions", kind)
        self._sampler = SAMPLERS[self.kind]
        self._scales: dict[tuple, float] = {}

    def piece(self, seed, k, i, c, out):
        g = torch.Generator(device=out.device)
        g.manual_seed(direction_seed(seed, k, i, c))
        return self._sampler.fill(out, g)

    def _fill(self, seed: int, k: int, i: int, flat: torch.Tensor) -> torch.Tensor:
        for c, a, b in pieces(flat.numel()):
            self.piece(seed, k, i, c, flat[a:b])
        return flat

    def scale(self, seed, k, params, dtype=None):
        """1, or for a normalized kind (the sphere) sqrt(D) / ||u||: one extra generation
        pass, done once per direction of a step (the perturb, move and update passes of the
        step reuse it)."""
        if not self._sampler.normalize:
            return 1.0
        key = (seed, k, dtype, tuple((p.numel(), p.dtype, str(p.device)) for p in params))
        if key in self._scales:
            return self._scales[key]
        if self._scales and next(iter(self._scales))[0] != seed:
            self._scales.clear()  # a new step: the old step's scales are done with
        sq = 0.0
        for i, p in enumerate(params):
            buf = torch.empty(min(CHUNK, p.numel()), device=p.device, dtype=dtype or p.dtype)
            for c, a, b in pieces(p.numel()):
                sq += float(self.piece(seed, k, i, c, buf[:b - a]).double().pow(2).sum())
        D = sum(p.numel() for p in params)
        self._scales[key] = math.sqrt(D / sq) if sq > 0 else 1.0
        return self._scales[key]

    def generate(self, seed, k, params, dtype=None):
        c = self.scale(seed, k, params, dtype)
        for i, p in enumerate(params):
            flat = torch.empty(p.numel(), device=p.device, dtype=dtype or p.dtype)
            u = self._fill(seed, k, i, flat).view(p.shape)
            yield u.mul_(c) if c != 1.0 else u


class NumpyStreamDirections(DirectionSource):
    """The simulator's direction stream of a one-trial run: trial block 0's generator
    (``hybridconv.sim.runner.block_rng(seed, DIRECTION_STREAM, 0)``), one draw of shape
    (1, q, D) per step, split over the parameters in order (as ``hybridconv.sim`` draws it for
    one trial). Steps must be requested in order; the current step's draw is cached so that
    perturb, restore and update see the same u. Not resumable; for tests and comparisons.
    """

    def __init__(self, seed: int, q: int, kind: str = "gaussian"):
        from ..sim.estimators import sample_directions
        from ..sim.runner import DIRECTION_STREAM, block_rng

        self.kind, self.q = spec.validate("directions", kind), q
        self._rng = block_rng(seed, DIRECTION_STREAM, 0)
        self._sample = sample_directions
        self._key: int | None = None
        self._u: np.ndarray | None = None

    def generate(self, seed, k, params, dtype=None):
        if self._key != seed:
            D = sum(p.numel() for p in params)
            self._u = self._sample(self._rng, (1, self.q, D), self.kind)[0]
            self._key = seed
        off = 0
        for p in params:
            m = p.numel()
            part = torch.from_numpy(self._u[k, off:off + m].copy()).reshape(p.shape)
            off += m
            yield part.to(device=p.device, dtype=dtype or p.dtype)
