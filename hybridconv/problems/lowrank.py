"""A quadratic whose ZO-block curvature has a controlled effective rank r << d_x.

f_i(z) = 1/2 z^T H z + b_i^T z as in :class:`~.quadratic.QuadraticProblem`, but H_xx has
``rank`` eigenvalues equal to L_x and the other d_x - rank equal to ``tail`` * L_x, and the
coupling H_xy acts on the top eigenvectors of H_xx only (its row space in x is the span of
k = min(rank, d_y) top eigenvectors, every singular value equal to ``coupling``).

The effective-rank assumption (:class:`hybridconv.theory.assumptions.EffectiveRank`) holds
globally with H_x = H_xx + coupling P_c (P_c the projection onto the coupling's range in x):
for v = (v_x, v_y), |2 v_x^T H_xy v_y| <= coupling (||P_c v_x||^2 + ||v_y||^2), so
-diag(H_x, Lambda_y I) <= H <= diag(H_x, Lambda_y I) with Lambda_y = L_y + coupling, and
||H_x|| <= L_x + coupling = Lambda_x. Hence the reported

    r = tr(H_x) / Lambda_x = (rank L_x + (d_x - rank) tail L_x + k coupling) / (L_x + coupling),

about rank when tail is small, against d_x for H1. H is positive definite when
coupling^2 < L_x m_y (the Schur complement on the coupled subspace, where H_xx = L_x I).
Every other constant is the quadratic's and exact.

Example:
    >>> p = LowRankQuadraticProblem(4, 64, 3, rank=2, tail=1e-3, coupling=0.1, seed=0)
    >>> c = p.constants()
    >>> 1 <= c["r"] < 3 and c["d_x"] == 64
    True
"""

from __future__ import annotations

import numpy as np

from .base import check_int, check_real
from .quadratic import QuadraticProblem, _orthogonal

__all__ = ["LowRankQuadraticProblem"]


class LowRankQuadraticProblem(QuadraticProblem):
    """A :class:`QuadraticProblem` with H_xx of effective rank about ``rank``.

    Args:
        n, d_x, d_y: number of components and block dimensions.
        rank: how many eigenvalues of H_xx equal L_x (1 <= rank <= d_x).
        tail: the other eigenvalues, as a fraction of L_x (0 < tail <= 1).
        L_x, L_y, m_y, coupling, sigma_x, sigma_y: as in :class:`QuadraticProblem`
            (coupling < sqrt(L_x m_y)).
        seed: seeds the instance.
    """

    name = "lowrank"

    def __init__(self, n: int, d_x: int, d_y: int, *, rank: int = 2, tail: float = 1e-3,
                 L_x: float = 1.0, L_y: float = 1.0, m_y: float = 0.1, coupling: float = 0.05,
                 sigma_x: float = 1.0, sigma_y: float = 1.0, seed: int = 0):
        check_int("n", n, minimum=1)
        d_x = check_int("d_x", d_x, minimum=1)
        rank = check_int("rank", rank, minimum=1)
        if rank > d_x:
            raise ValueError(f"rank must be an integer in [1, d_x = {d_x}], got {rank!r}")
        tail = check_real("tail", tail, strict=True)
        if tail > 1:
            raise ValueError(f"tail must be a number in (0, 1], got {tail!r}")
        L_x = check_real("L_x", L_x, strict=True)
        coupling = check_real("coupling", coupling)
        # the base constructor checks the rest with m_x = L_x (the coupled subspace is flat)
        super().__init__(n, d_x, d_y, L_x=L_x, m_x=L_x, L_y=L_y, m_y=m_y, coupling=coupling,
                         sigma_x=sigma_x, sigma_y=sigma_y, seed=seed)
        self.rank, self.tail = rank, tail
        rng = np.random.default_rng([self.seed, 4])
        qx = _orthogonal(rng, d_x)
        lam_x = np.array([tail * L_x] * (d_x - rank) + [L_x] * rank)
        dx = d_x
        hyy = self.H[dx:, dx:]
        qy = np.linalg.eigh(hyy)[1]
        k = min(rank, d_y)
        top = qx[:, d_x - k:]                                       # top eigenvectors of H_xx
        hxy = (top * coupling) @ qy[:, :k].T
        H = np.block([[(qx * lam_x) @ qx.T, hxy], [hxy.T, hyy]])
        self.H = (H + H.T) / 2
        self.coupled = k
        self.m_x = tail * L_x
        if np.linalg.eigvalsh(self.H)[0] <= 0:
            raise ValueError(f"coupling must be < sqrt(L_x m_y) = {np.sqrt(L_x * m_y):g} so that "
                             f"H is positive definite, got {coupling!r}")
        self.b = self.spread + self.b0
        self.b_bar = self.b.mean(axis=0)

    def constants(self, x0=None, y0=None) -> dict[str, float]:
        out = super().constants(x0, y0)
        dx = self.d_x
        trace = float(np.trace(self.H[:dx, :dx])) + self.coupled * self.coupling
        # >= 1 exactly (trace >= top eigenvalue, nuclear >= spectral norm); rounding can land
        # a hair below (0.9999999999999999 for a rank-one block), which the domain refuses
        out["r"] = max(1.0, trace / (out["L_x"] + out["L_xy"]))
        return out
