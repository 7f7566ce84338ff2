"""Quadratic finite sums with controllable block spectra and coupling.

f_i(z) = 1/2 z^T H z + b_i^T z, z = (x, y), one Hessian H shared by all components and
component-specific linear terms b_i (mean zero over i, after a shift b0). Then

    grad f_i(z) = H z + b_i,  grad F(z) = H z + b_bar,
    (1/n) sum_i ||grad_b f_i(z) - grad_b F(z)||^2 = (1/n) sum_i ||b_i,b - b_bar,b||^2,

so H3 holds with Theta_b = 0 and sigma_b^2 equal to that spread, exactly; H1 holds with
L_x = ||H_xx||, L_y = ||H_yy||, L_xy = ||H_xy|| (spectral norms), exactly (for C^2 functions H1
is the block Hessian bound, and H is constant). With H positive definite,
F* = -1/2 b_bar^T H^{-1} b_bar, exactly.

Construction: H_xx = Q_x diag(lam_x) Q_x^T with eigenvalues log-spaced in [m_x, L_x] (endpoints
included), H_yy likewise, H_xy = coupling * U V^T-type matrix of spectral norm ``coupling``.
H is positive definite when coupling^2 < m_x m_y (Schur complement), which the constructor
requires. These closed forms make the quadratic the family on which the simulator's numbers are
compared with exact noise floors.
"""

from __future__ import annotations

import numpy as np

from .. import spec
from .base import Problem, check_int, check_real

__all__ = ["QuadraticProblem"]


def _orthogonal(rng: np.random.Generator, d: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


class QuadraticProblem(Problem):
    """f_i(x, y) = 1/2 z^T H z + b_i^T z with exact constants.

    Args:
        n, d_x, d_y: number of components and block dimensions.
        L_x, m_x: largest and smallest eigenvalue of H_xx (0 < m_x <= L_x).
        L_y, m_y: the same for H_yy.
        coupling: spectral norm of H_xy (0 <= coupling < sqrt(m_x m_y)).
        sigma_x, sigma_y: heterogeneity of the linear terms per block (exact sigma_b).
        seed: seeds the instance.
    """

    name = "quadratic"
    f_star_exact = True

    def __init__(self, n: int, d_x: int, d_y: int, *, L_x: float = 1.0, m_x: float = 0.1,
                 L_y: float = 1.0, m_y: float = 0.1, coupling: float = 0.05,
                 sigma_x: float = 1.0, sigma_y: float = 1.0, seed: int = 0):
        super().__init__(n, d_x, d_y, seed=seed)
        self.L_x = check_real("L_x", L_x, strict=True)
        self.m_x = check_real("m_x", m_x, strict=True)
        self.L_y = check_real("L_y", L_y, strict=True)
        self.m_y = check_real("m_y", m_y, strict=True)
        if self.m_x > self.L_x:
            raise ValueError(f"m_x must be <= L_x, got m_x={m_x!r} > L_x={L_x!r}")
        if self.m_y > self.L_y:
            raise ValueError(f"m_y must be <= L_y, got m_y={m_y!r} > L_y={L_y!r}")
        self.coupling = check_real("coupling", coupling)
        if not self.coupling < np.sqrt(self.m_x * self.m_y):  # (no overflow of coupling^2)
            raise ValueError(f"coupling must be < sqrt(m_x m_y) = {np.sqrt(self.m_x * self.m_y):g}"
                             f" so that H is positive definite, got {coupling!r}")
        self.sigma_x_target = check_real("sigma_x", sigma_x)
        self.sigma_y_target = check_real("sigma_y", sigma_y)
        rng = np.random.default_rng([self.seed, 0])
        lam_x = np.geomspace(self.m_x, self.L_x, d_x) if d_x > 1 else np.array([self.L_x])
        lam_y = np.geomspace(self.m_y, self.L_y, d_y) if d_y > 1 else np.array([self.L_y])
        qx, qy = _orthogonal(rng, d_x), _orthogonal(rng, d_y)
        hxx = (qx * lam_x) @ qx.T
        hyy = (qy * lam_y) @ qy.T
        k = min(d_x, d_y)
        s = np.full(k, self.coupling)
        hxy = (qx[:, :k] * s) @ qy[:, :k].T
        H = np.block([[hxx, hxy], [hxy.T, hyy]])
        self.H = (H + H.T) / 2
        b = rng.standard_normal((self.n, d_x + d_y))
        b -= b.mean(axis=0)
        bx, by = b[:, :d_x], b[:, d_x:]
        for part, target in ((bx, self.sigma_x_target), (by, self.sigma_y_target)):
            spread = np.sqrt((part**2).sum(axis=1).mean())
            part *= (target / spread) if spread > 0 else 0.0
        if self.n == 1:
            bx[:] = 0.0
            by[:] = 0.0
        self.spread = np.concatenate([bx, by], axis=1)
        """e_i = b_i - b_bar as constructed (mean zero), kept so that sigma_b and the noise
        floors do not pick up the rounding of b - b_bar (a zero sigma stays exactly zero)."""
        self.b0 = rng.standard_normal(d_x + d_y)
        self.b = self.spread + self.b0
        self.b_bar = self.b.mean(axis=0)

    # components
    def values(self, x, y, idx):
        z = np.concatenate([x, y], axis=1)
        return 0.5 * np.einsum("bi,bi->b", z @ self.H, z) + np.einsum("bi,bi->b", self.b[idx], z)

    def grads(self, x, y, idx):
        g = np.concatenate([x, y], axis=1) @ self.H  # one matrix product (H is symmetric)
        g += self.b[idx]
        return g[:, : self.d_x], g[:, self.d_x:]

    def zo_differences(self, x, y, idx, u, mu, difference, block, grads=None):
        """Exact closed form: for a quadratic, [f(z + mu u) - f(z - mu u)] / (2 mu) equals
        <grad_b f_i(z), u>, and the forward difference adds (mu/2) u^T H_bb u. Identical to the
        value-based differences up to rounding, at one matrix product instead of two."""
        gx, gy = self.grads(x, y, idx) if grads is None else grads
        g = gx if block == "x" else gy
        delta = np.einsum("bd,bqd->bq", g, u)
        if difference == "forward":
            dx = self.d_x
            Hbb = self.H[:dx, :dx] if block == "x" else self.H[dx:, dx:]
            delta = delta + 0.5 * mu * np.einsum("bqd,bqd->bq", u @ Hbb, u)
        return delta

    def value(self, x, y):
        z = np.concatenate([x, y], axis=1)
        return 0.5 * np.einsum("bi,bi->b", z @ self.H, z) + z @ self.b_bar

    def grad(self, x, y):
        g = x @ self.H[: self.d_x] + y @ self.H[self.d_x:] + self.b_bar
        return g[:, : self.d_x], g[:, self.d_x:]

    def minimizer(self) -> np.ndarray:
        """z* = -H^{-1} b_bar."""
        return -np.linalg.solve(self.H, self.b_bar)

    def f_star(self) -> float:
        return float(0.5 * self.b_bar @ self.minimizer())

    def noise_floor(self, *, method: str, sampling: str, eta_x: float, eta_y: float,
                    directions: str = "gaussian", q: int = 1) -> float:
        """Stationary E||grad F||^2 at epoch ends under constant step sizes (closed form).

        delta = z - z*, e_j = b_j - b_bar, S = (1/n) sum_j e_j e_j^T, D = diag(eta_x I, eta_y I),
        M = I - D H. One step is delta <- M delta - D xi with xi the oracle's error; the floor is
        tr(H^2 Sigma) = E||H delta||^2 with Sigma the stationary covariance:

        - ``fo``, ``wr``: xi = e_j, j uniform and independent: Sigma = M Sigma M^T + D S D
          (exact).
        - ``fo``, ``rr``: over an epoch delta <- M^n delta - sum_i M^(n-1-i) D e_pi(i); with
          E e_pi(i) e_pi(k)^T = S (i = k), -S/(n - 1) (i != k) the epoch noise has covariance
          (n/(n-1)) sum_i P_i S P_i^T - (1/(n-1)) P S P^T, P_i = M^(n-1-i) D, P = sum_i P_i,
          and Sigma = M^n Sigma M^nT + that (exact at epoch ends).
        - ``hybrid`` with sigma_y = 0 (ZO x block): xi_x = <a, u> u (averaged over q directions)
          with a = grad_x f_j ~ e_j,x near z*. Its covariance about a is
          (||a||^2 I + a a^T) / q for Gaussian directions and
          ((d/(d+2)) ||a||^2 I + ((d-2)/(d+2)) a a^T) / q on the sphere, averaged over j
          (Nesterov and Spokoiny 2017, Lemma 3; THEORY.md's ZO lemma). Under ``rr``, ``so`` and
          ``ig`` the a-part sums to zero over an epoch: its contribution to the floor is
          O(eta^3) under reshuffling and O(eta^2) for a fixed order (a deterministic epoch-end
          bias), both of higher order than the directions' O(eta_x); under ``wr`` it adds S_xx.
          First order in eta_x: the multiplicative part ||(H delta)_x||^2 is O(eta_x) relative.

        These are the predictions the noise-floor tests (tests/test_lemmas_mc.py) hold the
        simulator to and the figures draw beside the measurements (THEORY.md, "How it is
        checked", item 4: linear in eta_x, cubic in eta_y under reshuffling, linear with
        replacement; Mishchenko, Khaled, Richtarik 2020 for the reshuffled FO floor).

        Args:
            method: ``"fo"`` or ``"hybrid"`` (ZO on x, FO on y).
            sampling: ``"rr"`` or ``"wr"`` (and ``"so"``, ``"ig"`` for the hybrid).
            eta_x, eta_y: constant step sizes (> 0, small enough that I - D H contracts).
            directions: ``"gaussian"`` or ``"sphere"`` (hybrid only).
            q: directions per ZO step (>= 1).

        Returns:
            the floor tr(H^2 Sigma) of E||grad F||^2 at epoch ends.

        >>> p = QuadraticProblem(8, 2, 2, m_x=0.5, m_y=0.5, sigma_x=1.0, sigma_y=0.0, seed=0)
        >>> a = p.noise_floor(method="hybrid", sampling="rr", eta_x=1e-3, eta_y=1e-2)
        >>> b = p.noise_floor(method="hybrid", sampling="rr", eta_x=2e-3, eta_y=1e-2)
        >>> 1.9 < b / a < 2.1   # linear in eta_x
        True

        Raises:
            ValueError: for a combination without a closed form here (``fo`` with ``so`` or
                ``ig``, ``hybrid`` with sigma_y > 0, ``zo`` and ``reversed``, Rademacher
                directions) or bad step sizes.
        """
        from scipy.linalg import solve_discrete_lyapunov

        eta_x = check_real("eta_x", eta_x, strict=True)
        eta_y = check_real("eta_y", eta_y, strict=True)
        q = check_int("q", q, minimum=1)
        H, n, dx = self.H, self.n, self.d_x
        e = self.spread
        S = e.T @ e / n
        D = np.diag([float(eta_x)] * dx + [float(eta_y)] * self.d_y)
        M = np.eye(H.shape[0]) - D @ H
        if np.max(np.abs(np.linalg.eigvals(M))) >= 1:
            raise ValueError(f"the step sizes eta_x={eta_x!r}, eta_y={eta_y!r} do not contract "
                             "(spectral radius of I - D H >= 1): no stationary floor")
        if method == "fo" and sampling == "wr":
            sigma = solve_discrete_lyapunov(M, D @ S @ D)
        elif method == "fo" and sampling == "rr":
            if n == 1:
                return 0.0
            P = [np.linalg.matrix_power(M, n - 1 - i) @ D for i in range(n)]
            total = sum(P)
            noise = (n / (n - 1)) * sum(p @ S @ p.T for p in P) - total @ S @ total.T / (n - 1)
            sigma = solve_discrete_lyapunov(np.linalg.matrix_power(M, n), noise)
        elif method == "hybrid" and sampling in spec.SAMPLINGS.values:
            if np.abs(e[:, dx:]).max(initial=0.0) > 0:
                raise ValueError("the hybrid closed form needs sigma_y = 0 (FO noise on y would "
                                 "add a sampling-dependent term)")
            if directions not in ("gaussian", "sphere"):
                raise ValueError(f"directions must be 'gaussian' or 'sphere' for the closed "
                                 f"form, got {directions!r}")
            sxx = S[:dx, :dx]
            s2 = float(np.trace(sxx))
            if directions == "gaussian":
                cx = s2 * np.eye(dx) + sxx
            else:
                cx = dx / (dx + 2) * s2 * np.eye(dx) + (dx - 2) / (dx + 2) * sxx
            cx = cx / q + (sxx if sampling == "wr" else 0.0)
            C = np.zeros_like(H)
            C[:dx, :dx] = cx
            sigma = solve_discrete_lyapunov(M, D @ C @ D)
        else:
            raise ValueError(f"no closed-form floor for method={method!r} with "
                             f"sampling={sampling!r}")
        return float(np.trace(H @ H @ sigma))

    def constants(self, x0=None, y0=None) -> dict[str, float]:
        dx = self.d_x
        hxx, hyy, hxy = self.H[:dx, :dx], self.H[dx:, dx:], self.H[:dx, dx:]
        spread = self.spread
        return {
            "L_x": float(np.linalg.norm(hxx, 2)),
            "L_y": float(np.linalg.norm(hyy, 2)),
            "L_xy": float(np.linalg.norm(hxy, 2)),
            "sigma_x": float(np.sqrt((spread[:, :dx] ** 2).sum(axis=1).mean())),
            "sigma_y": float(np.sqrt((spread[:, dx:] ** 2).sum(axis=1).mean())),
            "Theta_x": 0.0,
            "Theta_y": 0.0,
            "Delta": self._delta(x0, y0),
            "d_x": float(self.d_x),
            "d_y": float(self.d_y),
        }
