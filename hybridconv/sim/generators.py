"""The random-number generators of the simulator's directions (``SimConfig.generator``).

``numpy`` (the default): a ``numpy.random.Generator`` (PCG64), float64 Gaussians by its
ziggurat. ``torch``: torch's CPU generator (mt19937), Gaussians by ``Tensor.normal_`` (for 16
numbers or more a float32 Box-Muller over 24-bit uniforms, in a kernel chosen by the CPU; for
fewer, float64 Box-Muller rounded to float32), cast to float64. The two give different numbers
for the same seed, each deterministic and independent of the thread count and the pool (each
trial block has its own generator, seeded from the same ``SeedSequence`` child). torch's
numbers depend on its CPU kernel: ``ATEN_CPU_CAPABILITY=default`` (the scalar kernel) changes
38% of a million draws, by up to 2e-6, against the AVX2 and AVX-512 kernels (which agree), so
records drawn by torch reproduce bit for bit on machines whose torch picks the same kernel.

Why two: the draws are the floor of a simulated step (issue 18). A trial's d_x = 100 Gaussian
numbers cost 0.93 us from numpy and 0.31 us from torch, float32 drawn and cast included (one
thread's CPU time, load average 3 on the 2-core machine; ``python benchmarks/sim_bench.py
--breakdown`` prints both). numpy stays the default so that every record, figure and replayed
fine-tuning direction of earlier versions keeps its numbers; ``generator="torch"`` is the fast
choice for long simulations.

The law is the Gaussian's up to the 24-bit uniforms: u1 in {2^-24, ..., 1} cuts the tails at
sqrt(2 ln 2^24) = 5.77 sigma (P(|Z| > 5.77) = 8e-9) and, summed exactly over the 2^24 values,
moves E z^2 by -5.5e-7 and E z^4 by -5.1e-6 (relative), so the directions' moments
E u u^T = I and E<a,u>^2 ||u||^2 = d + 2 hold to those amounts, far below any simulation's
Monte Carlo error (the tests check them to a few standard errors of 20,000 draws).
"""

from __future__ import annotations

import numpy as np

from .. import spec

__all__ = ["GENERATORS", "TorchGenerator", "direction_generator"]

GENERATORS = spec.GENERATORS.values
"""View of :data:`hybridconv.spec.GENERATORS`."""


class TorchGenerator:
    """The draws the direction samplers make (``standard_normal``, ``integers`` for random
    bytes, and ``uniform`` for a new kind, as ``numpy.random.Generator`` spells them) from
    torch's CPU generator. A sampler that needs another draw adds it here
    (docs/vocabulary.md).

    Seeded by the first 64-bit word of ``seed_sequence.generate_state``, of which torch's
    mt19937 keeps the low 32 bits (so 2^32 distinct streams, as for any torch CPU generator).
    torch releases the GIL in its kernels, so blocks on threads draw side by side; torch is
    imported only here."""

    def __init__(self, seed_sequence: np.random.SeedSequence) -> None:
        import torch

        self._torch = torch
        self._gen = torch.Generator(device="cpu")
        self._gen.manual_seed(int(seed_sequence.generate_state(1, np.uint64)[0]))

    def standard_normal(self, shape: tuple[int, ...]) -> np.ndarray:
        """Float64 array of N(0, 1) numbers drawn in float32."""
        t = self._torch.empty(shape, dtype=self._torch.float32)
        t.normal_(generator=self._gen)
        return t.numpy().astype(np.float64)

    def integers(self, low: int, high: int, size: tuple[int, ...],
                 dtype: type = np.int64) -> np.ndarray:
        """Integers uniform on [low, high) (random bytes for Rademacher signs: 0, 256, uint8)."""
        like = self._torch.from_numpy(np.empty(0, dtype=dtype))
        return self._torch.randint(low, high, size, generator=self._gen,
                                   dtype=like.dtype).numpy()

    def uniform(self, low: float = 0.0, high: float = 1.0,
                size: tuple[int, ...] = ()) -> np.ndarray:
        """Float64 array of numbers uniform on [low, high): ``low + (high - low) u`` in float64
        (numpy's formula) with u uniform on {0, 2^-24, ..., 1 - 2^-24}, drawn in float32 (torch
        rounds ``low`` and ``high`` themselves to float32 in ``uniform_``, which may step
        outside [low, high); here only u is float32, exactly representable in float64)."""
        t = self._torch.empty(size, dtype=self._torch.float32)
        t.uniform_(0.0, 1.0, generator=self._gen)
        return low + (high - low) * t.numpy().astype(np.float64)


def direction_generator(seed_sequence: np.random.SeedSequence,
                        generator: str) -> np.random.Generator | TorchGenerator:
    """The directions' generator of one trial block: ``generator`` is ``"numpy"`` or
    ``"torch"`` (:data:`hybridconv.spec.GENERATORS`)."""
    if spec.validate("generator", generator) == "torch":
        return TorchGenerator(seed_sequence)
    return np.random.default_rng(seed_sequence)
