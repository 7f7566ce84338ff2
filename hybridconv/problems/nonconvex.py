"""Quadratic finite sums plus a bounded-curvature nonconvex regularizer.

f_i(z) = q_i(z) + lam * sum_j phi(z_j),  phi(s) = s^2 / (1 + s^2),  z = (x, y),

where q_i(z) = 1/2 z^T H z + b_i^T z is the component of a :class:`QuadraticProblem` built with
the same n, d_x, d_y, seed and spectral parameters (composition, not copy), and the regularizer is
shared by all components and acts on every coordinate of both blocks.

Derivatives. phi'(s) = 2 s / (1 + s^2)^2 and phi''(s) = (2 - 6 s^2) / (1 + s^2)^3. Writing
t = s^2, d/dt [(2 - 6 t) / (1 + t)^3] = 12 (t - 1) / (1 + t)^4, so phi'' decreases on t in [0, 1]
and increases after: its range is [phi''(1), phi''(0)] = [-1/2, 2] (and phi'' -> 0 at infinity).
Hence grad f_i(z) = H z + b_i + lam phi'(z) and the Hessian is H + lam diag(phi''(z_j)).

Certified constants (guarantee, and whether it is tight):

- H1, diagonal blocks. H_bb(z) = H_bb + lam D_b(z) with D_b diagonal, entries in [-1/2, 2].
  By Weyl's inequality every eigenvalue of H_bb(z) lies in
  [lambda_min(H_bb) - lam/2, lambda_max(H_bb) + 2 lam], so
  ``L_b = max(|lambda_max(H_bb) + 2 lam|, |lambda_min(H_bb) - lam/2|)``. Tight: the upper end is
  attained at z_b = 0 (D_b = 2 I) and the lower end where every |z_j| = 1 in block b
  (D_b = -I/2). Here H_bb is positive definite and lam >= 0, so |lambda_min(H_bb) - lam/2| <=
  max(lambda_min(H_bb), lam/2) <= lambda_max(H_bb) + 2 lam: the maximum is always the upper end,
  L_b = lambda_max(H_bb) + 2 lam = ||H_bb(z)|| at z_b = 0, i.e. L_b = sup_z ||H_bb(z)|| exactly.
- H1, cross block. The regularizer's Hessian is diagonal, so H_xy(z) = H_xy for all z and
  ``L_xy = ||H_xy||``, exactly (the quadratic's).
- H3. grad f_i(z) - grad F(z) = b_i - b_bar: the regularizer is shared and cancels, so Theta_b = 0
  and sigma_b are the quadratic's, exactly.
- F*. phi >= 0 and lam >= 0 give F >= Q, so ``f_star() = min Q = -1/2 b_bar^T H^{-1} b_bar`` is a
  certified lower bound (``f_star_exact = False``); it is exact when lam = 0 or the quadratic's
  minimizer is 0.

Nonconvexity. At a point with every |z_j| = 1 the Hessian is H - (lam/2) I, whose smallest
eigenvalue is lambda_min(H) - lam/2 < 0 as soon as lam/2 > lambda_min(H). The defaults (m_x =
m_y = 0.1, so lambda_min(H) <= 0.1, and lam = 1) make every instance nonconvex.

References:
    [1] H. Weyl, Das asymptotische Verteilungsgesetz der Eigenwerte linearer partieller
        Differentialgleichungen, Math. Ann. 71 (1912) (eigenvalue perturbation inequality).

Example:
    >>> import numpy as np
    >>> p = NonconvexProblem(4, 3, 2, seed=0)
    >>> c = p.constants()
    >>> bool(np.isclose(c["L_x"], 1.0 + 2 * 1.0))   # lambda_max(H_xx) + 2 lam
    True
"""

from __future__ import annotations

import warnings

import numpy as np

from .base import Problem, check_real
from .quadratic import QuadraticProblem

__all__ = ["NonconvexProblem", "phi", "dphi", "d2phi"]

PHI_CURVATURE_MIN = -0.5
"""min_s phi''(s), attained at |s| = 1."""
PHI_CURVATURE_MAX = 2.0
"""max_s phi''(s), attained at s = 0."""


def phi(s: np.ndarray) -> np.ndarray:
    """phi(s) = s^2 / (1 + s^2), elementwise."""
    s2 = np.square(s)
    return s2 / (1.0 + s2)


def dphi(s: np.ndarray) -> np.ndarray:
    """phi'(s) = 2 s / (1 + s^2)^2, elementwise."""
    return 2.0 * s / np.square(1.0 + np.square(s))


def d2phi(s: np.ndarray) -> np.ndarray:
    """phi''(s) = (2 - 6 s^2) / (1 + s^2)^3, elementwise; its range is [-1/2, 2]."""
    s2 = np.square(s)
    return (2.0 - 6.0 * s2) / (1.0 + s2) ** 3


class NonconvexProblem(Problem):
    """f_i(z) = q_i(z) + lam * sum_j z_j^2 / (1 + z_j^2), with certified (tight) constants.

    See the module docstring for the derivation of every constant.

    Args:
        n, d_x, d_y: number of components and block dimensions.
        Lq_x, m_x, Lq_y, m_y, coupling, sigma_x, sigma_y: the quadratic part's parameters,
            ``L_x, m_x, L_y, m_y, ...`` of :class:`QuadraticProblem` (largest / smallest
            eigenvalues of H_xx and H_yy, ||H_xy||, heterogeneity). Named ``Lq_x``, ``Lq_y``
            because the constants ``L_x``, ``L_y`` that :meth:`constants` reports bound the
            *whole* f_i (quadratic part plus regularizer), not these; the old keywords
            ``L_x``, ``L_y`` are deprecated aliases.
        lam: weight of the regularizer (>= 0); nonconvex when lam / 2 > lambda_min(H).
        seed: seeds the instance (the quadratic part draws from ``default_rng([seed, 0])``).
    """

    name = "nonconvex"
    f_star_exact = False

    def __init__(self, n: int, d_x: int, d_y: int, *, Lq_x: float = 1.0, m_x: float = 0.1,
                 Lq_y: float = 1.0, m_y: float = 0.1, coupling: float = 0.05,
                 sigma_x: float = 1.0, sigma_y: float = 1.0, lam: float = 1.0, seed: int = 0,
                 **deprecated: float):
        for old, new in (("L_x", "Lq_x"), ("L_y", "Lq_y")):
            if old in deprecated:
                warnings.warn(f"NonconvexProblem({old}=...) is deprecated: the quadratic part's "
                              f"parameter is {new} ({old} is the constant it reports)",
                              DeprecationWarning, stacklevel=2)
                value = deprecated.pop(old)
                Lq_x, Lq_y = (value, Lq_y) if new == "Lq_x" else (Lq_x, value)
        if deprecated:
            raise TypeError(f"unexpected keyword arguments {sorted(deprecated)}")
        super().__init__(n, d_x, d_y, seed=seed)
        check_real("Lq_x", Lq_x, strict=True)  # named as given (QuadraticProblem calls it L_x)
        check_real("Lq_y", Lq_y, strict=True)
        self.lam = check_real("lam", lam)
        self.quadratic = QuadraticProblem(n, d_x, d_y, L_x=Lq_x, m_x=m_x, L_y=Lq_y, m_y=m_y,
                                          coupling=coupling, sigma_x=sigma_x, sigma_y=sigma_y,
                                          seed=seed)

    # -- pieces -------------------------------------------------------------------------------
    def _reg_value(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self.lam * (phi(x).sum(axis=1) + phi(y).sum(axis=1))

    # components
    def values(self, x, y, idx):
        return self.quadratic.values(x, y, idx) + self._reg_value(x, y)

    def grads(self, x, y, idx):
        gx, gy = self.quadratic.grads(x, y, idx)
        return gx + self.lam * dphi(x), gy + self.lam * dphi(y)

    # the objective
    def value(self, x, y):
        return self.quadratic.value(x, y) + self._reg_value(x, y)

    def grad(self, x, y):
        gx, gy = self.quadratic.grad(x, y)
        return gx + self.lam * dphi(x), gy + self.lam * dphi(y)

    def hessian(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """H + lam diag(phi''(z)), the same for every f_i: shape (B, d_x + d_y, d_x + d_y)."""
        z = np.concatenate([x, y], axis=1)
        diag = self.lam * d2phi(z)
        H = np.broadcast_to(self.quadratic.H, (z.shape[0],) + self.quadratic.H.shape).copy()
        idx = np.arange(z.shape[1])
        H[:, idx, idx] += diag
        return H

    def f_star(self) -> float:
        """Certified lower bound min Q (phi >= 0); see the module docstring."""
        return self.quadratic.f_star()

    def _block_bound(self, hbb: np.ndarray) -> float:
        ev = np.linalg.eigvalsh(hbb)
        return float(max(abs(ev[-1] + PHI_CURVATURE_MAX * self.lam),
                         abs(ev[0] + PHI_CURVATURE_MIN * self.lam)))

    def constants(self, x0=None, y0=None) -> dict[str, float]:
        q = self.quadratic.constants(x0=np.zeros(self.d_x), y0=np.zeros(self.d_y))
        dx, H = self.d_x, self.quadratic.H
        return {
            "L_x": self._block_bound(H[:dx, :dx]),
            "L_y": self._block_bound(H[dx:, dx:]),
            "L_xy": q["L_xy"],
            "sigma_x": q["sigma_x"],
            "sigma_y": q["sigma_y"],
            "Theta_x": 0.0,
            "Theta_y": 0.0,
            "Delta": self._delta(x0, y0),
            "d_x": float(self.d_x),
            "d_y": float(self.d_y),
        }
