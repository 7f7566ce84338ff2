"""Up-front memory checks: refuse a run that cannot fit, naming the argument responsible.

A run asked for ``--trials 1000000000`` must not end in a ``MemoryError`` traceback after
minutes, or wake the kernel's OOM killer: :func:`check_fits` compares an estimate of the
bytes a run will hold with the memory this process may use (:func:`available_bytes`) and
raises ``ValueError`` naming the argument whose value makes the difference (the one that,
set back to its default, shrinks the estimate most) and the memory it would need. No numpy
here, so that the CLI can check before importing the engines.

The estimates (:func:`simulation_bytes`) count float64 arrays: generous by design (a factor
of about 2 over what was measured with ``tracemalloc`` on the default problems), since the
point is to refuse what cannot work, not to squeeze the last gigabyte.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping

__all__ = ["available_bytes", "simulation_bytes", "check_fits", "human_bytes"]

FLOAT = 8
"""Bytes of a float64."""

RECORD_BYTES = 400
"""Bytes per record (one trial at one epoch): the record arrays, the DataFrame's twenty-odd
columns and the CSV text written from it."""


def available_bytes() -> int:
    """The memory this process may still use: the kernel's MemAvailable (else the physical
    memory), capped by an address-space limit (``ulimit -v``, ``RLIMIT_AS``) if one is set."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = 2**62
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft not in (resource.RLIM_INFINITY, -1) and soft > 0:
            avail = min(avail, soft)
    except (ImportError, ValueError, OSError):
        pass
    return int(avail)


def human_bytes(n: float) -> str:
    """``1.5 GiB``; ``3.2e+12 PiB`` for absurd sizes."""
    for unit, size in (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20),
                       ("KiB", 2**10)):
        if n >= size:
            v = n / size
            return f"{v:.3g} {unit}" if v < 1e6 else f"{v:.2g} {unit}"
    return f"{int(n)} bytes"


def simulation_bytes(*, n: float = 16, d_x: float = 20, d_y: float = 6, trials: float = 100,
                     epochs: float = 10, q: float = 1, family: str = "quadratic") -> float:
    """Estimated peak bytes of ``simulate`` (problem, batched state, ZO directions, records).

    problem: the Hessian and its factors, about 5 (d_x + d_y)^2 floats (quadratic-based
    families; a LoRA problem holds m x p matrices, d_x floats each), and the per-component
    terms, 4 n (d_x + d_y); state: 16 (d_x + d_y) floats per trial (iterate, step, gradients,
    temporaries); directions: 3 q max(d_x, d_y) floats per trial; records: :data:`RECORD_BYTES`
    per trial and epoch.
    """
    d = float(d_x) + float(d_y)
    square = 4.0 * float(d_x) if family == "lora" else 5.0 * d * d
    problem = FLOAT * (square + 4.0 * float(n) * d)
    state = FLOAT * float(trials) * (16.0 * d + 3.0 * float(q) * max(float(d_x), float(d_y)))
    records = RECORD_BYTES * (float(epochs) + 1.0) * float(trials)
    return problem + state + records


def check_fits(estimate: Callable[..., float], values: Mapping[str, float],
               defaults: Mapping[str, float], labels: Mapping[str, str] | None = None, *,
               what: str = "this run", limit: float | None = None,
               fraction: float = 0.8) -> None:
    """Raise ``ValueError`` when ``estimate(**values)`` exceeds ``fraction`` of
    :func:`available_bytes` (or of ``limit``).

    The message names the argument responsible: of the arguments in ``defaults`` whose value
    is larger than the default, the one that, set back to its default, shrinks the estimate
    most; ``labels`` maps argument names to what the user typed (``{"trials": "--trials"}``).
    """
    need = estimate(**values)
    have = (available_bytes() if limit is None else limit) * fraction
    if need <= have:
        return
    labels = labels or {}
    best, best_gain = None, -math.inf
    for name, default in defaults.items():
        if name not in values or not float(values[name]) > float(default):
            continue
        gain = need - estimate(**{**values, name: default})
        if gain > best_gain:
            best, best_gain = name, gain
    if best is None:
        raise ValueError(f"{what} would need about {human_bytes(need)} of memory, more than "
                         f"the {human_bytes(have / fraction)} available")
    label = labels.get(best, best)
    raise ValueError(f"{label} {_show(values[best])}: {what} would need about "
                     f"{human_bytes(need)} of memory, more than the "
                     f"{human_bytes(have / fraction)} available; lower {label}")


def _show(value: float) -> str:
    v = float(value)
    return str(int(v)) if v.is_integer() and abs(v) < 1e16 else f"{v:g}"
