"""Floating-point limits of the algorithms: the usable ZO radius and the blow-up threshold.

Smallest usable mu. A ZO estimate moves the weights by mu u (u with entries of order one) and
differences two function values. When mu u is below the resolution of the weights,
x + mu u rounds to x, the difference is zero or pure rounding, and the ZO block never moves:
silently. :func:`check_radius` refuses ``mu < ulps * eps * max(scale, 1)``, where ``eps`` is
the machine epsilon of the weights' dtype and ``scale`` their magnitude. The simulator (float64)
takes the largest coordinate of the start and ``ulps = ZO_ULPS``: the perturbation of every
coordinate then spans at least 64 units in the last place. ``HybridZOFO`` takes the RMS of the
ZO weights and ``ulps = 1/16`` (below that, x + mu u rounds to x for almost every weight; a
looser bound, because half-precision weights are perturbed at a few ulps in practice). Both
refuse a radius so large that mu u overflows the dtype.

Blow-up. A simulated trial whose ||grad F||^2 grows past :data:`BLOWUP_FACTOR` times its value
at the start (or past that factor if the start's is below 1) has diverged: its records after
that epoch are NaN and ``diverged`` is true (docs/simulator.md). With the theorem's
conditions the gradient norm stays within a small multiple of its start, so no convergent run
comes near the threshold, and a run that reaches it would overflow float64 within a few more
epochs anyway (the growth is geometric).
"""

from __future__ import annotations

import math

__all__ = ["ZO_ULPS", "BLOWUP_FACTOR", "radius_range", "check_radius", "blowup_limit"]

ZO_ULPS = 64
"""Units in the last place that mu u must span at the largest weight (see the module doc)."""

BLOWUP_FACTOR = 1e20
"""A trial has blown up when ||grad F||^2 > BLOWUP_FACTOR * max(||grad F(z_0)||^2, 1)."""


def radius_range(scale: float, eps: float, largest: float,
                 ulps: float = ZO_ULPS) -> tuple[float, float]:
    """(smallest, largest) usable mu for weights of magnitude ``scale``, machine epsilon
    ``eps`` and largest finite number ``largest`` of their dtype: mu >= ulps eps
    max(scale, 1) and mu <= largest / 1e6 (u has entries of a few units; the weights move by
    mu u and the difference is divided by mu)."""
    return ulps * eps * max(float(scale), 1.0), largest / 1e6


def check_radius(mu: float, scale: float, *, eps: float, largest: float,
                 label: str = "mu", dtype: str = "float64", ulps: float = ZO_ULPS,
                 what: str = "up to") -> None:
    """``ValueError`` naming ``label`` when mu is outside :func:`radius_range` (``what``: how
    ``scale`` measures the weights, for the message)."""
    low, high = radius_range(scale, eps, largest, ulps)
    if not (math.isfinite(scale) and low <= mu <= high):
        raise ValueError(f"{label} must be in [{low:.2g}, {high:.2g}] for {dtype} weights "
                         f"{what} {max(scale, 1.0):.3g} in magnitude, got {mu!r}: "
                         + ("x + mu u rounds to x, so the ZO estimate is zero and the ZO "
                            "block never moves" if mu < low else "mu u overflows"))


def blowup_limit(start: float) -> float:
    """The ||grad F||^2 above which a trial that started at ``start`` has blown up."""
    return BLOWUP_FACTOR * max(float(start), 1.0)
