"""Quadratic finite sums with heterogeneous component Hessians: H3 with Theta > 0, exactly.

f_i(z) = 1/2 z^T H_i z + b_i^T z,  H_i = H + E_i,  sum_i E_i = 0,  z = (x, y),

with H the positive definite Hessian of a :class:`~.quadratic.QuadraticProblem` (same n, d_x,
d_y, seed and spectral parameters) and E_i symmetric perturbations of spectral norm at most
``hetero`` (drawn from ``default_rng([seed, 3])``). F = (1/n) sum_i f_i = 1/2 z^T H z + b0^T z
has the same minimizer and F* as the shared-Hessian quadratic; the components may be
nonconvex (when ``hetero`` exceeds H's smallest eigenvalue).

H3. With g = grad F(z) = H z + b0 (so z = H^{-1}(g - b0)) and A_i = E_i H^{-1},

    grad f_i(z) - grad F(z) = E_i z + (b_i - b0) = A_i g + c_i,   c_i = b_i - b0 - A_i b0,

so, for each block b (P_b keeps block b),

    (1/n) sum_i ||P_b (A_i g + c_i)||^2 = g^T K_b g + 2 g^T v_b + s_b,
    K_b = (1/n) sum_i A_i^T P_b A_i,  v_b = (1/n) sum_i A_i^T P_b c_i,
    s_b = (1/n) sum_i ||P_b c_i||^2.

The block parts of the c_i are drawn, projected (orthogonally, in R^{n d_b}) onto
{sum_i P_b c_i = 0, v_b = 0}, and rescaled to the requested ``sigma_x``, ``sigma_y`` (the
constraints are linear and involve block b only, so rescaling keeps them). Then
``Theta_b = lambda_max(K_b)`` and ``sigma_b^2 = s_b`` make H3 hold with equality along the top
eigenvector of K_b: both constants are exact. The set {v_b = 0} has dimension
(n - 1) d_b - d_x - d_y at least; where it is {0} (a small block, few components) only
sum_i P_b c_i = 0 is imposed, and Young's inequality 2 g^T v_b <= tau ||g||^2 + ||v_b||^2 / tau
with tau = lambda_max(K_b) gives the valid (not exact) pair
``Theta_b = 2 lambda_max(K_b)``, ``sigma_b^2 = s_b + ||v_b||^2 / lambda_max(K_b)``;
``exact_h3()`` says which. H1: ``L_x = max_i ||(H_i)_xx||``, ``L_y = max_i ||(H_i)_yy||``,
``L_xy = max_i ||(H_i)_xy||`` (exact: H_i is constant). ``f_star`` exact.

Example:
    >>> import numpy as np
    >>> p = HeteroQuadraticProblem(6, 3, 2, hetero=0.2, seed=0)
    >>> c = p.constants()
    >>> c["Theta_x"] > 0 and c["Theta_y"] > 0
    True
    >>> x0, y0 = p.start()
    >>> bool(np.isclose(p.value(x0[None], y0[None])[0],
    ...                 np.mean([p.values(x0[None], y0[None], np.array([i]))[0]
    ...                          for i in range(6)])))
    True
"""

from __future__ import annotations

import numpy as np

from .base import Problem, check_real
from .quadratic import QuadraticProblem

__all__ = ["HeteroQuadraticProblem"]


class HeteroQuadraticProblem(Problem):
    """f_i(z) = 1/2 z^T (H + E_i) z + b_i^T z: component Hessians differ, Theta > 0.

    Args:
        n, d_x, d_y: number of components and block dimensions.
        L_x, m_x, L_y, m_y, coupling: the spectrum of H, as in :class:`QuadraticProblem`.
        sigma_x, sigma_y: the additive heterogeneity sigma_b (exact).
        hetero: spectral norm of the largest E_i (>= 0; 0 gives Theta = 0).
        seed: seeds the instance.
    """

    name = "hetero"
    f_star_exact = True

    def __init__(self, n: int, d_x: int, d_y: int, *, L_x: float = 1.0, m_x: float = 0.1,
                 L_y: float = 1.0, m_y: float = 0.1, coupling: float = 0.05,
                 sigma_x: float = 1.0, sigma_y: float = 1.0, hetero: float = 0.1,
                 seed: int = 0):
        super().__init__(n, d_x, d_y, seed=seed)
        self.hetero = check_real("hetero", hetero)
        self.quadratic = QuadraticProblem(n, d_x, d_y, L_x=L_x, m_x=m_x, L_y=L_y, m_y=m_y,
                                          coupling=coupling, sigma_x=sigma_x, sigma_y=sigma_y,
                                          seed=seed)
        H, d = self.quadratic.H, d_x + d_y
        self.H = H
        self.b0 = self.quadratic.b0
        rng = np.random.default_rng([self.seed, 3])
        E = rng.standard_normal((self.n, d, d))
        E = (E + E.transpose(0, 2, 1)) / 2
        E -= E.mean(axis=0)
        norms = np.linalg.norm(E, 2, axis=(1, 2))
        E *= (self.hetero / norms.max()) if self.n > 1 and norms.max() > 0 else 0.0
        self.E = E
        self.Hs = H[None] + E
        Hinv = np.linalg.inv(H)
        self.A = E @ Hinv                                                  # (n, d, d)
        c = rng.standard_normal((self.n, d))
        self._exact: dict[str, bool] = {}
        for block, target in (("x", check_real("sigma_x", sigma_x)),
                              ("y", check_real("sigma_y", sigma_y))):
            sl = self._slice(block)
            c[:, sl], self._exact[block] = self._project(c[:, sl], sl)
            spread = np.sqrt((c[:, sl] ** 2).sum(axis=1).mean())
            c[:, sl] *= (target / spread) if spread > 0 and self.n > 1 else 0.0
        self.c = c
        self.b = self.b0 + c + np.einsum("nij,j->ni", self.A, self.b0)

    def _slice(self, block: str) -> slice:
        return slice(0, self.d_x) if block == "x" else slice(self.d_x, self.d_x + self.d_y)

    def _project(self, cb: np.ndarray, sl: slice) -> tuple[np.ndarray, bool]:
        """Block parts cb (n, d_b) projected orthogonally onto {sum_i cb_i = 0,
        sum_i A_i[sl]^T cb_i = 0}, and True; where that set is {0}, onto {sum_i cb_i = 0}
        only, and False (see the module docstring)."""
        n, db = cb.shape
        rows = [np.tile(np.eye(db), (1, n))]                             # sum_i cb_i
        rows.append(np.concatenate([self.A[i][sl, :].T for i in range(n)], axis=1))
        M = np.concatenate(rows, axis=0)                                 # (d_b + d, n d_b)
        _, s, Vt = np.linalg.svd(M, full_matrices=False)
        rank = int((s > s[0] * max(M.shape) * 1e-12).sum()) if s.size and s[0] > 0 else 0
        if n * db > rank:                                    # the null space is not {0}
            row = Vt[:rank]                                  # the row space, orthonormal
            flat = cb.reshape(-1)
            return (flat - row.T @ (row @ flat)).reshape(n, db), True
        return cb - cb.mean(axis=0), False

    def exact_h3(self) -> dict[str, bool]:
        """Per block: whether ``constants()``'s Theta_b, sigma_b are exact (v_b = 0) or the
        valid Young pair (see the module docstring)."""
        return dict(self._exact)

    # components
    def values(self, x, y, idx):
        z = np.concatenate([x, y], axis=1)
        return 0.5 * np.einsum("bi,bij,bj->b", z, self.Hs[idx], z) \
            + np.einsum("bi,bi->b", self.b[idx], z)

    def grads(self, x, y, idx):
        z = np.concatenate([x, y], axis=1)
        g = np.einsum("bij,bj->bi", self.Hs[idx], z) + self.b[idx]
        return g[:, : self.d_x], g[:, self.d_x:]

    def zo_differences(self, x, y, idx, u, mu, difference, block, grads=None):
        """Exact closed form: the central difference of a quadratic is <grad_b f_i, u>; the
        forward difference adds (mu/2) u^T (H_i)_bb u."""
        gx, gy = self.grads(x, y, idx) if grads is None else grads
        g = gx if block == "x" else gy
        delta = np.einsum("bd,bqd->bq", g, u)
        if difference == "forward":
            sl = slice(0, self.d_x) if block == "x" else slice(self.d_x, None)
            Hbb = self.Hs[idx][:, sl, sl]
            delta = delta + 0.5 * mu * np.einsum("bqd,bde,bqe->bq", u, Hbb, u)
        return delta

    # the objective
    def value(self, x, y):
        z = np.concatenate([x, y], axis=1)
        return 0.5 * np.einsum("bi,ij,bj->b", z, self.H, z) + z @ self.b0

    def grad(self, x, y):
        z = np.concatenate([x, y], axis=1)
        g = z @ self.H + self.b0
        return g[:, : self.d_x], g[:, self.d_x:]

    def minimizer(self) -> np.ndarray:
        """z* = -H^{-1} b0."""
        return -np.linalg.solve(self.H, self.b0)

    def f_star(self) -> float:
        return float(0.5 * self.b0 @ self.minimizer())

    def constants(self, x0=None, y0=None) -> dict[str, float]:
        dx = self.d_x
        Hs = self.Hs
        out: dict[str, float] = {
            "L_x": float(np.linalg.norm(Hs[:, :dx, :dx], 2, axis=(1, 2)).max()),
            "L_y": float(np.linalg.norm(Hs[:, dx:, dx:], 2, axis=(1, 2)).max()),
            "L_xy": float(np.linalg.norm(Hs[:, :dx, dx:], 2, axis=(1, 2)).max()),
        }
        for block in ("x", "y"):
            sl = self._slice(block)
            PA = self.A[:, sl, :]                                        # P_b A_i, (n, d_b, d)
            K = np.einsum("nji,njk->ik", PA, PA) / self.n
            lam = float(max(np.linalg.eigvalsh((K + K.T) / 2)[-1], 0.0))
            s_b = float((self.c[:, sl] ** 2).sum(axis=1).mean())
            v = np.einsum("nji,nj->i", PA, self.c[:, sl]) / self.n
            if self._exact[block] or lam == 0.0:                         # v_b = 0
                out[f"Theta_{block}"], out[f"sigma_{block}"] = lam, float(np.sqrt(s_b))
            else:
                out[f"Theta_{block}"] = 2 * lam
                out[f"sigma_{block}"] = float(np.sqrt(s_b + float(v @ v) / lam))
        out.update({"Delta": self._delta(x0, y0), "d_x": float(self.d_x),
                    "d_y": float(self.d_y)})
        return out
