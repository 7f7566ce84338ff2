"""The finite-sum problem interface the simulator runs on.

A problem holds n components f_i(x, y), x in R^{d_x} (the ZO block), y in R^{d_y} (the FO
block). Every method is batched over a leading axis B (trials, or trials x directions):
``x`` has shape (B, d_x), ``y`` (B, d_y), ``idx`` (B,) integer component indices. Arrays are
float64 numpy arrays. Constants are reported keyed by the theory's symbol names, so that
``bound.evaluate(**problem.constants(), **hyperparameters)`` needs no glue.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

__all__ = ["Problem", "check_int", "check_real"]


def check_int(name: str, value: object, *, minimum: int) -> int:
    """``value`` as an int >= ``minimum``; ``ValueError`` naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_real(name: str, value: object, *, minimum: float = 0.0, strict: bool = False) -> float:
    """``value`` as a finite float >= (or >) ``minimum``; ``ValueError`` naming ``name``."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number, got {value!r}") from None
    op = ">" if strict else ">="
    if isinstance(value, bool) or not np.isfinite(x) or (x <= minimum if strict else x < minimum):
        raise ValueError(f"{name} must be a finite number {op} {minimum:g}, got {value!r}")
    return x


class Problem(ABC):
    """A finite sum F = (1/n) sum_i f_i over (x, y) with certified constants.

    Subclasses implement :meth:`values`, :meth:`grads`, :meth:`f_star` and :meth:`constants`;
    the full-objective methods default to averaging the components.
    """

    name: str = "problem"
    f_star_exact: bool = False

    def __init__(self, n: int, d_x: int, d_y: int, *, seed: int = 0):
        self.n = check_int("n", n, minimum=1)
        self.d_x = check_int("d_x", d_x, minimum=1)
        self.d_y = check_int("d_y", d_y, minimum=1)
        self.seed = check_int("seed", seed, minimum=0)
        from ..sizes import check_fits, simulation_bytes

        check_fits(lambda **v: simulation_bytes(family=self.name, trials=0, epochs=0, **v),
                   dict(n=self.n, d_x=self.d_x, d_y=self.d_y), dict(n=16, d_x=20, d_y=6),
                   what=f"a {self.name} problem of this size")

    # -- components ----------------------------------------------------------------------------
    @abstractmethod
    def values(self, x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """f_{idx[b]}(x[b], y[b]) for every b: shape (B,)."""

    @abstractmethod
    def grads(self, x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray,
                                                                             np.ndarray]:
        """(grad_x f_{idx[b]}, grad_y f_{idx[b]}) at (x[b], y[b]): shapes (B, d_x), (B, d_y)."""

    def zo_differences(self, x: np.ndarray, y: np.ndarray, idx: np.ndarray, u: np.ndarray,
                       mu: float, difference: str, block: str,
                       grads: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Finite differences delta of shape (B, q) along directions u (B, q, d_block).

        central: [f(z + mu u) - f(z - mu u)] / (2 mu); forward: [f(z + mu u) - f(z)] / mu, with
        u applied to ``block`` ("x" or "y") only. Computed from :meth:`values`; a family may
        override it with a closed form that is exact (e.g. quadratics), which may reuse the
        component gradients ``grads`` at (x, y) when the step has already computed them.
        """
        B, q, d = u.shape
        xr, yr, ir = np.repeat(x, q, axis=0), np.repeat(y, q, axis=0), np.repeat(idx, q)
        step = mu * u.reshape(B * q, d)

        def at(sign: float) -> np.ndarray:
            if block == "x":
                return self.values(xr + sign * step, yr, ir).reshape(B, q)
            return self.values(xr, yr + sign * step, ir).reshape(B, q)

        if difference == "central":
            return (at(1.0) - at(-1.0)) / (2.0 * mu)
        return (at(1.0) - self.values(x, y, idx)[:, None]) / mu

    # -- the objective ---------------------------------------------------------------------------
    def value(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """F(x[b], y[b]): shape (B,)."""
        B = x.shape[0]
        total = np.zeros(B)
        for i in range(self.n):
            total += self.values(x, y, np.full(B, i))
        return total / self.n

    def grad(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(grad_x F, grad_y F) at every (x[b], y[b])."""
        B = x.shape[0]
        gx, gy = np.zeros((B, self.d_x)), np.zeros((B, self.d_y))
        for i in range(self.n):
            a, b = self.grads(x, y, np.full(B, i))
            gx += a
            gy += b
        return gx / self.n, gy / self.n

    @abstractmethod
    def f_star(self) -> float:
        """inf F, exact if ``f_star_exact`` else a certified lower bound."""

    def start(self) -> tuple[np.ndarray, np.ndarray]:
        """The default starting point (x0, y0), shapes (d_x,), (d_y,); seeded."""
        rng = np.random.default_rng([self.seed, 1])
        return rng.standard_normal(self.d_x), rng.standard_normal(self.d_y)

    def in_region(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Whether each point lies where the constants are certified (everywhere by default)."""
        return np.ones(x.shape[0], dtype=bool)

    @abstractmethod
    def constants(self, x0: np.ndarray | None = None,
                  y0: np.ndarray | None = None) -> dict[str, float]:
        """The theory's constants: L_x, L_y, L_xy, sigma_x, sigma_y, Theta_x, Theta_y, Delta
        (at the start (x0, y0), default :meth:`start`), d_x, d_y. Not n: n is a
        hyper-parameter of the run (``SimConfig.hyperparameters``), so that
        ``bound.evaluate(**problem.constants(), **config.hyperparameters(n))`` has no clash."""

    def _delta(self, x0: np.ndarray | None, y0: np.ndarray | None) -> float:
        if x0 is None or y0 is None:
            sx, sy = self.start()
            x0 = sx if x0 is None else x0
            y0 = sy if y0 is None else y0
        x0 = np.asarray(x0, dtype=float).reshape(1, self.d_x)
        y0 = np.asarray(y0, dtype=float).reshape(1, self.d_y)
        return float(max(self.value(x0, y0)[0] - self.f_star(), 0.0))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(n={self.n}, d_x={self.d_x}, d_y={self.d_y}, "
                f"seed={self.seed})")
