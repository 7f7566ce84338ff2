"""A block-wise (L0, L1)-smooth finite sum that is not globally L-smooth.

f_i(z) = 2 cosh(t_i(z)) + q_i(z),  t_i(z) = <w_i, z> + beta_i,  z = (x, y),

where q_i(z) = 1/2 z^T H z + b_i^T z is the component of a :class:`QuadraticProblem` built with
the same n, d_x, d_y, seed and spectral parameters (H positive definite), and the ridge directions
w_i (||w_i|| = ``ridge``) and offsets beta_i are drawn from ``default_rng([seed, 2])``. Then

    grad f_i(z) = 2 sinh(t_i) w_i + H z + b_i,   Hess f_i(z) = 2 cosh(t_i) w_i w_i^T + H.

Not globally smooth. Along the ray z = s w_i / ||w_i||, ||Hess f_i|| >= 2 cosh(t_i) ||w_i||^2,
which grows like e^{s ||w_i||}: no finite L bounds it.

(L0, L1) smoothness per block (H1-gen; [1], Definition 1, applied per block b, b' in {x, y}).

*Step 1, the ridge's curvature is controlled by the gradient.* Let v = H z + b_i, so that
z = H^{-1}(v - b_i) and <H^{-1} w_i, v> = t_i - beta_i + w_i^T H^{-1} b_i. With
kappa_i = w_i^T H^{-1} w_i > 0 and gamma_i = w_i^T H^{-1} b_i - beta_i, and since
grad f_i = 2 sinh(t_i) w_i + v,

    <H^{-1} w_i, grad f_i(z)> = 2 sinh(t_i) kappa_i + t_i + gamma_i.

As sinh(t) and t have the same sign, |2 sinh(t_i) kappa_i + t_i| >= 2 |sinh t_i| kappa_i, and by
Cauchy-Schwarz

    2 |sinh t_i| <= (||H^{-1} w_i|| ||grad f_i(z)|| + |gamma_i|) / kappa_i.      (*)

*Step 2, the blocks.* ||Hess_bb' f_i(z)|| <= 2 cosh(t_i) ||w_i,b|| ||w_i,b'|| + ||H_bb'|| and
2 cosh t <= 2 + 2 |sinh t| (since cosh t - |sinh t| = e^{-|t|} <= 1). With (*),

    ||Hess_bb' f_i(z)|| <= L0_bb' + L1_bb' ||grad f_i(z)||, for every z and i, with
    L0_bb' = max_i (2 + |gamma_i| / kappa_i) ||w_i,b|| ||w_i,b'|| + ||H_bb'||,
    L1_bb' = max_i ||H^{-1} w_i|| ||w_i,b|| ||w_i,b'|| / kappa_i.

(For H = mu I and beta_i = b_i = 0 this is the familiar L0 = 2 ||w_b|| ||w_b'|| + mu,
L1 = ||w_b|| ||w_b'|| / ||w||.) Loose by the ratio in Cauchy-Schwarz (H^{-1} w_i need not be
parallel to the gradient) and by cosh <= 1 + |sinh| near t = 0.

H1 on a gradient-bounded region. On a convex region where max_i ||grad f_i|| <= G the Hessian
blocks are bounded by L0 + L1 G, so H1 holds there with ``L_b = L0_b + L1_b G`` (mean-value
theorem). :meth:`GenSmoothProblem.constants` takes G; by default G is 1.5 max_i ||grad f_i(z0)||
at the start, and a run must check that :meth:`GenSmoothProblem.max_component_grad_norm` stays
<= G along its trajectory (including the ZO perturbation points) for the constants to apply.

H3 on {z : max_i ||grad f_i(z)|| <= G}. grad_b f_i - grad_b F = (X_i) + (Y_i) with
X_i = 2 sinh(t_i) w_i,b - mean_j 2 sinh(t_j) w_j,b and Y_i = b_i,b - b_bar,b (H z cancels). By
Minkowski over i, and the variance being at most the second moment,

    (1/n) sum_i ||X_i + Y_i||^2 <= (sqrt((1/n) sum_i S_i^2 ||w_i,b||^2) + sigma_b^q)^2,

where S_i = (||H^{-1} w_i|| G + |gamma_i|) / kappa_i bounds 2 |sinh t_i| by (*) and sigma_b^q is
the quadratic's exact heterogeneity. Also, directly, (1/n) sum_i ||grad_b f_i - grad_b F||^2 <=
(1/n) sum_i ||grad_b f_i||^2 <= G^2. So ``Theta_b = 0`` and
``sigma_b = min(G, sqrt((1/n) sum_i S_i^2 ||w_i,b||^2) + sigma_b^q)``. Loose: a worst case over
the whole region, in which every component sits at its own gradient bound at once.

F*. 2 cosh >= 2, so F >= 2 + Q and ``f_star() = 2 + min Q`` is a certified lower bound
(``f_star_exact = False``).

References:
    [1] J. Zhang, T. He, S. Sra, A. Jadbabaie, Why gradient clipping accelerates training: a
        theoretical justification for adaptivity, ICLR 2020, Definition 1.

Example:
    >>> import numpy as np
    >>> p = GenSmoothProblem(4, 3, 2, seed=0)
    >>> c = p.constants(G=10.0)
    >>> bool(np.isclose(c["L_x"], c["L0_x"] + 10.0 * c["L1_x"]))
    True
"""

from __future__ import annotations

import numpy as np

from .base import Problem, check_real
from .quadratic import QuadraticProblem

__all__ = ["GenSmoothProblem"]


class GenSmoothProblem(Problem):
    """f_i(z) = 2 cosh(<w_i, z> + beta_i) + q_i(z): (L0, L1)-smooth per block, not L-smooth.

    See the module docstring for the derivation of every constant.

    Args:
        n, d_x, d_y: number of components and block dimensions.
        L_x, m_x, L_y, m_y, coupling, sigma_x, sigma_y: the quadratic part's parameters, as in
            :class:`QuadraticProblem`.
        ridge: norm of every ridge direction w_i (> 0).
        offset: standard deviation of the ridge offsets beta_i (>= 0).
        G_margin: the default gradient level G of :meth:`constants`, as a multiple (>= 1) of
            max_i ||grad f_i|| at the start. 1.5 by default: since the runner tracks the
            gradient at the ZO perturbation points x +- mu u as well, a margin of 1 makes
            ``hybridconv check --problem gensmooth`` leave the region at once (reached 1.11x).
        seed: seeds the instance.
    """

    name = "gensmooth"
    f_star_exact = False

    def __init__(self, n: int, d_x: int, d_y: int, *, L_x: float = 1.0, m_x: float = 0.1,
                 L_y: float = 1.0, m_y: float = 0.1, coupling: float = 0.05,
                 sigma_x: float = 1.0, sigma_y: float = 1.0, ridge: float = 0.5,
                 offset: float = 0.5, G_margin: float = 1.5, seed: int = 0):
        super().__init__(n, d_x, d_y, seed=seed)
        self.ridge = check_real("ridge", ridge, strict=True)
        self.offset = check_real("offset", offset)
        self.G_margin = check_real("G_margin", G_margin, minimum=1.0)
        self.quadratic = QuadraticProblem(n, d_x, d_y, L_x=L_x, m_x=m_x, L_y=L_y, m_y=m_y,
                                          coupling=coupling, sigma_x=sigma_x, sigma_y=sigma_y,
                                          seed=seed)
        rng = np.random.default_rng([self.seed, 2])
        w = rng.standard_normal((self.n, self.d_x + self.d_y))
        self.w = self.ridge * w / np.linalg.norm(w, axis=1, keepdims=True)
        self.beta = self.offset * rng.standard_normal(self.n)
        # the quantities of (*): kappa_i, ||H^{-1} w_i||, gamma_i
        hinv_w = np.linalg.solve(self.quadratic.H, self.w.T).T       # rows H^{-1} w_i
        self.kappa = np.einsum("nd,nd->n", self.w, hinv_w)
        self.hinv_w_norm = np.linalg.norm(hinv_w, axis=1)
        self.gamma = np.einsum("nd,nd->n", hinv_w, self.quadratic.b) - self.beta

    # -- pieces -------------------------------------------------------------------------------
    def _t(self, x, y, idx=None):
        z = np.concatenate([x, y], axis=1)
        if idx is None:
            return z @ self.w.T + self.beta                  # (B, n)
        return np.einsum("bd,bd->b", z, self.w[idx]) + self.beta[idx]

    # components
    def values(self, x, y, idx):
        return 2.0 * np.cosh(self._t(x, y, idx)) + self.quadratic.values(x, y, idx)

    def grads(self, x, y, idx):
        gx, gy = self.quadratic.grads(x, y, idx)
        g = (2.0 * np.sinh(self._t(x, y, idx)))[:, None] * self.w[idx]
        return gx + g[:, : self.d_x], gy + g[:, self.d_x:]

    # the objective
    def value(self, x, y):
        return 2.0 * np.cosh(self._t(x, y)).mean(axis=1) + self.quadratic.value(x, y)

    def grad(self, x, y):
        gx, gy = self.quadratic.grad(x, y)
        g = 2.0 * np.sinh(self._t(x, y)) @ self.w / self.n
        return gx + g[:, : self.d_x], gy + g[:, self.d_x:]

    def hessians(self, x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Hess f_{idx[b]} at (x[b], y[b]): 2 cosh(t) w w^T + H, shape (B, d, d)."""
        c = 2.0 * np.cosh(self._t(x, y, idx))
        wi = self.w[idx]
        return c[:, None, None] * wi[:, :, None] * wi[:, None, :] + self.quadratic.H

    def max_component_grad_norm(self, x: np.ndarray, y: np.ndarray,
                                radius: np.ndarray | float = 0.0) -> np.ndarray:
        """A certified bound on max_i ||grad f_i|| over the ball of ``radius`` around each
        (x[b], y[b]): shape (B,); compare with G. ``radius = 0`` gives the exact value at the
        points.

        Gronwall along a segment of length rho from z: h(s) = ||grad f_i(z + s v)|| obeys
        h' <= ||Hess f_i|| <= L0 + L1 h (the full-Hessian constants of
        :meth:`full_generalized_constants`), so h(rho) <= (h(0) + L0/L1) e^{L1 rho} - L0/L1
        (h(0) + L0 rho when L1 = 0). The runner calls it with the step length and the ZO
        perturbation radius mu ||u|| (finite for sphere and Rademacher directions, infinite
        for Gaussian ones), which certifies the H1-gen hypothesis: the gradient bound holds on
        the steps' segments and on every perturbation segment the estimator can draw.
        """
        z = np.concatenate([x, y], axis=1)
        common = z @ self.quadratic.H                                       # (B, d)
        g = (2.0 * np.sinh(self._t(x, y)))[:, :, None] * self.w + self.quadratic.b
        at = np.linalg.norm(g + common[:, None, :], axis=2).max(axis=1)
        rho = np.broadcast_to(np.asarray(radius, dtype=float), at.shape)
        if not np.any(rho > 0):
            return at
        L0, L1 = self.full_generalized_constants()
        with np.errstate(over="ignore", invalid="ignore"):
            grown = ((at + L0 / L1) * np.exp(L1 * rho) - L0 / L1) if L1 > 0 else at + L0 * rho
        return np.where(rho > 0, grown, at)

    def full_generalized_constants(self) -> tuple[float, float]:
        """(L0, L1) with ||Hess f_i(z)|| <= L0 + L1 ||grad f_i(z)|| for the whole Hessian: the
        spectral norms of the 2 x 2 matrices of the block constants (a block matrix's norm is
        at most the norm of the matrix of its blocks' norms)."""
        c = self.generalized_constants()
        out = []
        for k in ("L0", "L1"):
            m = np.array([[c[f"{k}_x"], c[f"{k}_xy"]], [c[f"{k}_xy"], c[f"{k}_y"]]])
            out.append(float(np.linalg.norm(m, 2)))
        return out[0], out[1]

    def f_star(self) -> float:
        """2 + min Q, a certified lower bound (2 cosh >= 2)."""
        return 2.0 + self.quadratic.f_star()

    # -- constants ----------------------------------------------------------------------------
    def generalized_constants(self) -> dict[str, float]:
        """L0_b, L1_b for b in {x, y, xy} (H1-gen, valid at every z): see the module docstring."""
        dx, H = self.d_x, self.quadratic.H
        wx = np.linalg.norm(self.w[:, :dx], axis=1)
        wy = np.linalg.norm(self.w[:, dx:], axis=1)
        c0 = 2.0 + np.abs(self.gamma) / self.kappa
        c1 = self.hinv_w_norm / self.kappa
        blocks = {"x": (wx * wx, H[:dx, :dx]), "y": (wy * wy, H[dx:, dx:]),
                  "xy": (wx * wy, H[:dx, dx:])}
        out = {}
        for key, (ww, hq) in blocks.items():
            out[f"L0_{key}"] = float(np.max(c0 * ww) + np.linalg.norm(hq, 2))
            out[f"L1_{key}"] = float(np.max(c1 * ww))
        return out

    def constants(self, x0=None, y0=None, G=None) -> dict[str, float]:
        """The theory's constants, H1 and H3 certified on {max_i ||grad f_i|| <= G}.

        ``G`` defaults to ``G_margin`` times max_i ||grad f_i(z0)|| at the start z0 = (x0, y0)
        (default :meth:`start`); a run must check :meth:`max_component_grad_norm` stays <= G.
        A margin > 1 leaves room for the steps and the ZO perturbations (a larger G is as
        certified, at the price of larger L_b = L0_b + L1_b G).
        """
        sx, sy = self.start()
        px = sx if x0 is None else np.asarray(x0, dtype=float)
        py = sy if y0 is None else np.asarray(y0, dtype=float)
        if G is None:
            G = self.G_margin * float(self.max_component_grad_norm(px.reshape(1, -1),
                                                                   py.reshape(1, -1))[0])
        else:
            G = check_real("G", G)
        gen = self.generalized_constants()
        dx = self.d_x
        S = (self.hinv_w_norm * G + np.abs(self.gamma)) / self.kappa
        q = self.quadratic.constants(x0=np.zeros(self.d_x), y0=np.zeros(self.d_y))
        sig = {}
        for key, wb in (("x", self.w[:, :dx]), ("y", self.w[:, dx:])):
            ridge_part = np.sqrt(np.mean(S**2 * np.sum(wb**2, axis=1)))
            sig[key] = float(min(G, ridge_part + q[f"sigma_{key}"]))
        return {
            "L_x": gen["L0_x"] + gen["L1_x"] * G,
            "L_y": gen["L0_y"] + gen["L1_y"] * G,
            "L_xy": gen["L0_xy"] + gen["L1_xy"] * G,
            **gen,
            "G": G,
            "sigma_x": sig["x"],
            "sigma_y": sig["y"],
            "Theta_x": 0.0,
            "Theta_y": 0.0,
            "Delta": self._delta(x0, y0),
            "d_x": float(self.d_x),
            "d_y": float(self.d_y),
        }
