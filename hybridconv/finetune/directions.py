"""Random directions for the zeroth-order block, regenerated from a per-step seed.

A direction u of the whole ZO block (all its parameter tensors, concatenated) is never stored:
it is produced one tensor at a time by :meth:`DirectionSource.generate`, which must give the
same tensors every time it is called with the same ``(seed, k)`` (MeZO's memory trick,
Malladi et al. 2023, Algorithm 1). All three kinds satisfy E[u u^T] = I, as in
``hybridconv.sim.estimators``:

- ``gaussian``: u ~ N(0, I_D);
- ``sphere``: uniform on the sphere of radius sqrt(D) of the whole block (D = total size),
  obtained by rescaling a Gaussian draw; the norm costs one extra generation pass;
- ``rademacher``: independent signs +-1.

:class:`TorchDirections` draws from a private ``torch.Generator`` seeded by (seed, k): the
global random state (dropout, data order) is never touched. :class:`NumpyStreamDirections`
replays the simulator's numpy stream so that a one-trial simulation and a ``HybridZOFO`` run
see the same directions (the equivalence test of ``tests/test_finetune_equivalence.py``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

__all__ = ["DIRECTIONS", "DirectionSource", "TorchDirections", "NumpyStreamDirections",
           "direction_seed"]

DIRECTIONS = ("gaussian", "sphere", "rademacher")

_GOLDEN = 0x9E3779B97F4A7C15
_MASK = (1 << 63) - 1
_MASK64 = (1 << 64) - 1


def direction_seed(seed: int, k: int, i: int = 0) -> int:
    """The generator seed of part ``i`` (the i-th ZO tensor) of direction ``k`` of the step
    with seed ``seed``: a 63-bit mix (splitmix64's finalizer) of the three."""
    z = (int(seed) + (int(k) + 1) * _GOLDEN + (int(i) + 1) * 0xD1B54A32D192ED03) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) & _MASK


class DirectionSource:
    """Produces direction k of a step, one tensor per ZO parameter, identically on each call.

    Subclasses implement :meth:`generate`; sources whose parts are independent per tensor
    (``parallel = True``) also implement :meth:`part`, which lets the optimizer fill several
    tensors at once from worker threads.
    """

    kind: str = "gaussian"
    parallel: bool = False

    def generate(self, seed: int, k: int, params: Sequence[torch.Tensor],
                 dtype: torch.dtype | None = None, *,
                 reuse: bool = False) -> Iterator[torch.Tensor]:
        """Yield u's part for each of ``params`` (shape of the parameter, ``dtype`` or the
        parameter's dtype, on the parameter's device). With ``reuse=True`` a source may yield
        views of one scratch buffer (the size of the largest tensor): each tensor is valid
        only until the next one is requested. The values do not depend on ``reuse``."""
        raise NotImplementedError

    def part(self, seed: int, k: int, i: int, out: torch.Tensor) -> torch.Tensor:
        """Fill ``out`` with the unscaled part of direction k for tensor ``i``."""
        raise NotImplementedError

    def scale(self, seed: int, k: int, params: Sequence[torch.Tensor]) -> float:
        """The factor the parts are multiplied by (1 except for the sphere)."""
        return 1.0


class TorchDirections(DirectionSource):
    """Directions from private ``torch.Generator`` s: part i of direction k of the step with
    seed s comes from a generator seeded by ``direction_seed(s, k, i)``, so each tensor's part
    can be regenerated on its own, in any order and from any thread, with the same values.

    >>> p = [torch.zeros(3), torch.zeros(2, 2)]
    >>> a = [t.clone() for t in TorchDirections().generate(5, 0, p)]
    >>> b = list(TorchDirections().generate(5, 0, p))
    >>> all(torch.equal(s, t) for s, t in zip(a, b))
    True
    """

    parallel = True

    def __init__(self, kind: str = "gaussian"):
        if kind not in DIRECTIONS:
            raise ValueError(f"directions must be one of {DIRECTIONS}, got {kind!r}")
        self.kind = kind

    def part(self, seed, k, i, out):
        g = torch.Generator(device=out.device)
        g.manual_seed(direction_seed(seed, k, i))
        if self.kind == "rademacher":
            return out.random_(0, 2, generator=g).mul_(2).sub_(1)
        return out.normal_(generator=g)

    def scale(self, seed, k, params):
        if self.kind != "sphere":
            return 1.0
        sq = 0.0
        buf: torch.Tensor | None = None
        for i, p in enumerate(params):
            if buf is None or buf.numel() < p.numel():
                buf = torch.empty(max(q.numel() for q in params), device=p.device)
            sq += float(self.part(seed, k, i, buf[:p.numel()]).double().pow(2).sum())
        D = sum(p.numel() for p in params)
        return math.sqrt(D / sq) if sq > 0 else 1.0

    def generate(self, seed, k, params, dtype=None, *, reuse=False):
        c = self.scale(seed, k, params)
        scratch: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
        size = max((p.numel() for p in params), default=0)
        for i, p in enumerate(params):
            dt = dtype or p.dtype
            if reuse:  # in place into one scratch buffer: no allocation per tensor
                buf = scratch.get((p.device, dt))
                if buf is None:
                    buf = scratch[(p.device, dt)] = torch.empty(size, device=p.device,
                                                                dtype=dt)
                u = buf[:p.numel()].view(p.shape)
            else:
                u = torch.empty(p.shape, device=p.device, dtype=dt)
            self.part(seed, k, i, u)
            yield u.mul_(c) if c != 1.0 else u


class NumpyStreamDirections(DirectionSource):
    """The simulator's direction stream: ``default_rng([seed, 7002])``, one draw of shape
    (1, q, D) per step, split over the parameters in order (as ``hybridconv.sim`` draws it for
    one trial). Steps must be requested in order; the current step's draw is cached so that
    perturb, restore and update see the same u. Not resumable; for tests and comparisons.
    """

    def __init__(self, seed: int, q: int, kind: str = "gaussian"):
        from ..sim.estimators import sample_directions
        from ..sim.runner import DIRECTION_STREAM

        self.kind, self.q = kind, q
        self._rng = np.random.default_rng([seed, DIRECTION_STREAM])
        self._sample = sample_directions
        self._key: int | None = None
        self._u: np.ndarray | None = None

    def generate(self, seed, k, params, dtype=None, *, reuse=False):
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
