"""A LoRA-shaped least-squares finite sum: nonconvex, smooth only on a bounded region.

f_i(W, A, B) = 1/2 ||(W + B A) a_i - c_i||^2,
W in R^{m x p} (the base weight, ZO block: x = vec(W), d_x = m p),
A in R^{r x p}, B in R^{m x r} (the adapter, FO block: y = (vec(A), vec(B)), d_y = r (m + p)).
``vec`` is numpy's row-major ``ravel``. Inputs a_i in R^p and targets
c_i = (W_base + B_star A_star) a_i + noise * xi_i are seeded (``default_rng([seed, 0])``); the
start is W0 random, A0 small random, B0 = 0, as LoRA initializes (``default_rng([seed, 1])``).

Derivatives, with e_i = (W + B A) a_i - c_i:
grad_W f_i = e_i a_i^T, grad_A f_i = B^T e_i a_i^T, grad_B f_i = e_i (A a_i)^T. Along a direction
(dW, dA, dB) the second derivative is
    d^2 f_i = ||(dW + dB A + B dA) a_i||^2 + 2 <e_i, dB dA a_i>.

Region. The Hessian grows with ||A||, ||B|| and the residual, so the constants are certified on the
convex set R = {||W||_F <= R_W, ||A||_F <= R_A, ||B||_F <= R_B} (:meth:`LoRAProblem.in_region`);
H1 between two points of R follows from the Hessian bounds by the mean-value theorem since R is
convex. On R, using ||M||_2 <= ||M||_F, the residual is bounded by
    ||e_i|| <= E_i := (R_W + R_A R_B) ||a_i|| + ||c_i||.

Certified constants on R (s_i = ||a_i||):

- ``L_x = max_i s_i^2``. H_WW's quadratic form is ||dW a_i||^2 <= s_i^2 ||dW||_F^2, with equality
  for dW = u a_i^T: exact, everywhere (not only on R).
- ``L_y = max_i [s_i^2 (R_A^2 + R_B^2) + s_i E_i]``. The y-block form is
  ||(dB A + B dA) a_i||^2 + 2 <e_i, dB dA a_i>; the first term is
  <= s_i^2 (||dB||_F R_A + R_B ||dA||_F)^2 <= s_i^2 (R_A^2 + R_B^2) ||dy||^2 (Cauchy-Schwarz), the
  second is in absolute value <= 2 E_i s_i ||dA||_F ||dB||_F <= s_i E_i ||dy||^2 (AM-GM); so the
  form lies in [-s_i E_i, s_i^2 (R_A^2 + R_B^2) + s_i E_i] ||dy||^2. With R_A = R_B (the
  default radii) it is attained at an explicit point of the region
  (``tests/test_problems.py::test_lora_curvature_and_residual_bounds_are_attained``); with
  R_A != R_B the two worst cases need not be attained at the same point, and it may be loose.
- ``L_xy = max_i s_i^2 sqrt(R_A^2 + R_B^2)``. The mixed form is <dW a_i, (dB A + B dA) a_i> (e_i is
  affine in W and has no W-(A, B) product), bounded by
  s_i ||dW||_F * s_i (R_A ||dB||_F + R_B ||dA||_F) <= s_i^2 sqrt(R_A^2 + R_B^2) ||dx|| ||dy||.
- H3 with ``Theta_b = 0``: ``sigma_x^2`` is the smaller of two certified bounds on
  sup_R V_x, V_x = (1/n) sum_i ||g_i - g_bar||^2 the x-block gradient variance:

  1. the second moment, V_x <= (1/n) sum_i ||grad_W f_i||^2 <= (1/n) sum_i E_i^2 s_i^2 on R
     (||grad_W f_i|| = ||e_i|| s_i); loose by about p, the Cauchy-Schwarz step ||M a_i|| <=
     ||M||_F s_i, and because it bounds a second moment, not a variance;
  2. the variance's sup over the ball ||M||_F <= R_M := R_W + R_A R_B, which contains every
     M = W + B A of R (:func:`variance_sup`). The deviations are affine in M,
     g_i - g_bar = M P_i - Q_i with P_i = a_i a_i^T - S, S = (1/n) sum_j a_j a_j^T and
     Q_i = c_i a_i^T - (1/n) sum_j c_j a_j^T, so V_x(M) = sum_k (m_k^T K m_k - 2 b_k^T m_k) + c0
     over the rows m_k of M, with K = (1/n) sum_i P_i^2, b_k the rows of (1/n) sum_i Q_i P_i and
     c0 = (1/n) sum_i ||Q_i||^2: a convex quadratic, maximized on a ball (a trust-region
     subproblem). Lagrangian duality certifies it without solving it exactly: for every
     lambda > lambda_max(K) and ||M||_F <= R_M,
         V_x(M) <= V_x(M) + lambda (R_M^2 - ||M||_F^2) <= lambda R_M^2 + c0
                   + sum_j ||B u_j||^2 / (lambda - h_j),
     (K = sum_j h_j u_j u_j^T, B the matrix of rows b_k), a bound minimized over lambda; the
     gap to the true sup is zero at the optimal lambda (the S-lemma: the subproblem has no
     duality gap), so only the search tolerance is lost.

  For the adapter, grad_A f_i - mean = B^T (g_i - g_bar) and grad_B f_i - mean =
  (g_i - g_bar) A^T (g_i = grad_W f_i = e_i a_i^T), so V_y <= (||B||_2^2 + ||A||_2^2) V_x and
  ``sigma_y^2 = (R_A^2 + R_B^2) sigma_x^2``. Both hold at every z in R.
- ``f_star() = 0``: every f_i is a half squared norm (certified lower bound, ``f_star_exact =
  False``; attained only if the data are realizable).

Example:
    >>> import numpy as np
    >>> p = LoRAProblem(8, 6, 5)         # m = 2, p = 3, r = 1
    >>> (p.m, p.p, p.r)
    (2, 3, 1)
    >>> x0, y0 = p.start()
    >>> bool(p.in_region(x0[None], y0[None])[0])
    True
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize_scalar

from .base import Problem, check_int, check_real

__all__ = ["LoRAProblem", "lora_shape", "lora_factors", "variance_sup"]


def lora_factors(d_x: int) -> tuple[int, int]:
    """(m, p) with m p = d_x, m the largest divisor of d_x that is <= sqrt(d_x)."""
    d_x = check_int("d_x", d_x, minimum=1)
    m = max(k for k in range(1, math.isqrt(d_x) + 1) if d_x % k == 0)
    return m, d_x // m


def lora_shape(d_x: int, d_y: int, *, m: int | None = None, p: int | None = None,
               r: int | None = None) -> tuple[int, int, int]:
    """(m, p, r) with m p = d_x and r (m + p) = d_y; ``ValueError`` naming the culprit.

    Unspecified m and p are derived from d_x: m is the largest divisor of d_x that is
    <= sqrt(d_x) and p = d_x / m. An unspecified r is d_y / (m + p), which must be a positive
    integer.
    """
    if m is not None:
        m = check_int("m", m, minimum=1)
    if p is not None:
        p = check_int("p", p, minimum=1)
    if r is not None:
        r = check_int("r", r, minimum=1)
    if m is None and p is None:
        m, p = lora_factors(d_x)
    elif p is None:
        if d_x % m:
            raise ValueError(f"m must divide d_x = m p, got m={m!r} and d_x={d_x!r}")
        p = d_x // m
    elif m is None:
        if d_x % p:
            raise ValueError(f"p must divide d_x = m p, got p={p!r} and d_x={d_x!r}")
        m = d_x // p
    elif m * p != d_x:
        raise ValueError(f"d_x must equal m p, got d_x={d_x!r} with m={m!r}, p={p!r}")
    if r is None:
        if d_y % (m + p):
            raise ValueError(
                f"d_y must be a positive multiple r (m + p) of m + p = {m + p} (the adapter has "
                f"r (m + p) entries for W of shape {m} x {p}), got d_y={d_y!r}; allowed: "
                f"{m + p}, {2 * (m + p)}, {3 * (m + p)}, ...")
        r = d_y // (m + p)
    elif r * (m + p) != d_y:
        raise ValueError(f"d_y must equal r (m + p) = {r * (m + p)}, got d_y={d_y!r} with "
                         f"r={r!r}, m={m!r}, p={p!r}")
    return m, p, r


def variance_sup(a: np.ndarray, c: np.ndarray, radius: float) -> float:
    """A certified upper bound on sup_{||M||_F <= radius} (1/n) sum_i ||g_i - g_bar||_F^2.

    Here g_i = (M a_i - c_i) a_i^T (the W-gradient of the LoRA family's f_i) and g_bar their
    mean; ``a`` has shape (n, p), ``c`` shape (n, m). The variance is the convex quadratic
    sum_k (m_k^T K m_k - 2 b_k^T m_k) + c0 of the rows m_k of M (module docstring, H3), and by
    Lagrangian duality, for every lambda > h_max = lambda_max(K),

        sup_{||M|| <= R} V(M) <= U(lambda) = lambda R^2 + c0 + sum_j w_j / (lambda - h_j),

    with K = sum_j h_j u_j u_j^T and w_j = ||B u_j||^2 (B: the rows b_k). U is convex on
    (h_max, inf) and its minimum equals the sup (no duality gap for one ball constraint:
    Boyd & Vandenberghe, Convex Optimization, 2004, appendix B.1), so minimizing U over lambda
    in [h_max, h_max + sqrt(sum_j w_j) / R] (the right end is where U' >= 0) gives the sup up to
    the search's tolerance; whatever lambda the search returns, U(lambda) stays an upper bound.

    Cost: the P_i are formed explicitly, O(n p^2) memory and O(n m p^2) time (0.3 s at
    m = p = 120, n = 64); the synthetic families stay far below that. Closed forms
    (K = A^T diag(s^2) A / n - S^2, and alike for B and c0) would cost O(n p^2) time and O(p^2)
    memory but subtract nearly equal terms, which a certified bound should avoid.

    Example (one component: no spread, V = 0 everywhere):
        >>> float(variance_sup(np.ones((1, 2)), np.ones((1, 1)), 3.0))
        0.0
    """
    a = np.asarray(a, dtype=float)
    c = np.asarray(c, dtype=float)
    n = a.shape[0]
    P = np.einsum("ip,iq->ipq", a, a)
    P -= P.mean(axis=0)
    Q = np.einsum("im,ip->imp", c, a)
    Q -= Q.mean(axis=0)
    K = np.einsum("ipq,iqr->pr", P, P) / n
    Bm = np.einsum("imp,ipq->mq", Q, P) / n
    c0 = float(np.einsum("imp,imp->", Q, Q) / n)
    h, U = np.linalg.eigh((K + K.T) / 2)
    w = ((Bm @ U) ** 2).sum(axis=0)
    h_max = float(h[-1])
    R2 = float(radius) ** 2

    def upper(lam: float) -> float:
        gap = lam - h
        if np.any(gap < 0) or np.any((gap == 0) & (w > 0)):  # lambda below lambda_max(K)
            return np.inf
        safe = np.where(w > 0, gap, 1.0)
        return lam * R2 + c0 + float(np.sum(np.where(w > 0, w / safe, 0.0)))

    right = h_max + np.sqrt(float(w.sum())) / max(float(radius), 1e-300) + 1e-300
    best = upper(right)
    if right > h_max:
        res = minimize_scalar(upper, bounds=(h_max, right), method="bounded",
                              options={"xatol": 1e-12 * max(1.0, abs(right))})
        if np.isfinite(res.fun):
            best = min(best, upper(float(res.x)))
    if w[h >= h_max].sum() == 0:          # the hard case: lambda = h_max itself is allowed
        best = min(best, upper(h_max))
    return max(best, 0.0)


class LoRAProblem(Problem):
    """f_i(W, A, B) = 1/2 ||(W + B A) a_i - c_i||^2, constants certified on a ball region R.

    See the module docstring for the derivation of every constant.

    Args:
        n, d_x, d_y: number of components; d_x = m p and d_y = r (m + p).
        m, p, r: shapes of W (m x p) and the rank r; derived from (d_x, d_y) when omitted.
        noise: standard deviation of the target noise xi_i (the residual spread at the optimum).
        init_scale: scale of the random start A0 (entries N(0, init_scale^2 / p)); B0 = 0.
        region_scale: default radii are region_scale times the largest Frobenius norm among the
            start and the planted solution, per factor (R_W for W; R_A = R_B for the adapter).
        R_W, R_A, R_B: explicit radii of R (must contain the start).
        seed: seeds the instance.
    """

    name = "lora"
    f_star_exact = False

    def __init__(self, n: int, d_x: int, d_y: int, *, m: int | None = None,
                 p: int | None = None, r: int | None = None, noise: float = 0.1,
                 init_scale: float = 0.1, region_scale: float = 2.0, R_W: float | None = None,
                 R_A: float | None = None, R_B: float | None = None, seed: int = 0):
        super().__init__(n, d_x, d_y, seed=seed)
        self.m, self.p, self.r = lora_shape(self.d_x, self.d_y, m=m, p=p, r=r)
        self.noise = check_real("noise", noise)
        self.init_scale = check_real("init_scale", init_scale)
        self.region_scale = check_real("region_scale", region_scale, minimum=1.0)
        m, p, r = self.m, self.p, self.r

        rng = np.random.default_rng([self.seed, 0])
        self.a = rng.standard_normal((self.n, p)) / np.sqrt(p)
        self.W_base = rng.standard_normal((m, p)) / np.sqrt(p)
        self.A_star = rng.standard_normal((r, p)) / np.sqrt(p)
        self.B_star = rng.standard_normal((m, r)) / np.sqrt(r)
        self.M_star = self.W_base + self.B_star @ self.A_star
        self.c = self.a @ self.M_star.T + self.noise * rng.standard_normal((self.n, m))

        rng1 = np.random.default_rng([self.seed, 1])
        self.W0 = rng1.standard_normal((m, p)) / np.sqrt(p)
        self.A0 = self.init_scale * rng1.standard_normal((r, p)) / np.sqrt(p)
        self.B0 = np.zeros((m, r))

        fro = np.linalg.norm
        defaults = {
            "R_W": self.region_scale * max(fro(self.W0), fro(self.M_star)),
            "R_A": self.region_scale * max(fro(self.A0), fro(self.A_star), fro(self.B_star)),
        }
        defaults["R_B"] = defaults["R_A"]
        starts = {"R_W": fro(self.W0), "R_A": fro(self.A0), "R_B": fro(self.B0)}
        radii = {}
        for key, given in (("R_W", R_W), ("R_A", R_A), ("R_B", R_B)):
            if given is None:
                radii[key] = float(defaults[key])
                continue
            value = check_real(key, given, strict=True)
            if value < starts[key]:
                raise ValueError(f"{key} must be >= the start's Frobenius norm {starts[key]:.6g} "
                                 f"so that the start lies in the region, got {given!r}")
            radii[key] = value
        self.R_W, self.R_A, self.R_B = radii["R_W"], radii["R_A"], radii["R_B"]

    # -- reshaping ----------------------------------------------------------------------------
    def unpack(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(W, A, B) of shapes (B, m, p), (B, r, p), (B, m, r) from batched (x, y)."""
        m, p, r = self.m, self.p, self.r
        nb = x.shape[0]
        return (x.reshape(nb, m, p), y[:, : r * p].reshape(nb, r, p),
                y[:, r * p:].reshape(nb, m, r))

    def start(self) -> tuple[np.ndarray, np.ndarray]:
        """W0 random, A0 small random, B0 = 0 (seeded by ``default_rng([seed, 1])``)."""
        return self.W0.ravel().copy(), np.concatenate([self.A0.ravel(), self.B0.ravel()])

    def in_region(self, x, y):
        W, A, B = self.unpack(x, y)
        tol = 1.0 + 1e-12
        return ((np.linalg.norm(W, axis=(1, 2)) <= self.R_W * tol)
                & (np.linalg.norm(A, axis=(1, 2)) <= self.R_A * tol)
                & (np.linalg.norm(B, axis=(1, 2)) <= self.R_B * tol))

    # components
    def _residuals(self, x, y, idx):
        W, A, B = self.unpack(x, y)
        a = self.a[idx]
        Aa = np.einsum("brp,bp->br", A, a)
        e = np.einsum("bmp,bp->bm", W, a) + np.einsum("bmr,br->bm", B, Aa) - self.c[idx]
        return e, a, Aa, B

    def values(self, x, y, idx):
        e = self._residuals(x, y, idx)[0]
        return 0.5 * np.einsum("bm,bm->b", e, e)

    def grads(self, x, y, idx):
        e, a, Aa, B = self._residuals(x, y, idx)
        gW = np.einsum("bm,bp->bmp", e, a)
        gA = np.einsum("bmr,bm,bp->brp", B, e, a)
        gB = np.einsum("bm,br->bmr", e, Aa)
        nb = x.shape[0]
        return gW.reshape(nb, -1), np.concatenate([gA.reshape(nb, -1), gB.reshape(nb, -1)], 1)

    # the objective (vectorized over the n components)
    def _all_residuals(self, x, y):
        W, A, B = self.unpack(x, y)
        M = W + B @ A                                   # (B, m, p)
        return np.einsum("bmp,np->bnm", M, self.a) - self.c, A, B

    def value(self, x, y):
        E = self._all_residuals(x, y)[0]
        return 0.5 * np.einsum("bnm,bnm->b", E, E) / self.n

    def grad(self, x, y):
        E, A, B = self._all_residuals(x, y)
        G = np.einsum("bnm,np->bmp", E, self.a) / self.n      # (1/n) sum_i e_i a_i^T
        gA = np.einsum("bmr,bmp->brp", B, G)
        gB = np.einsum("bmp,brp->bmr", G, A)
        nb = x.shape[0]
        return G.reshape(nb, -1), np.concatenate([gA.reshape(nb, -1), gB.reshape(nb, -1)], 1)

    def f_star(self) -> float:
        """0, a certified lower bound (sums of squares)."""
        return 0.0

    def residual_bounds(self) -> np.ndarray:
        """E_i = (R_W + R_A R_B) ||a_i|| + ||c_i|| >= sup_R ||e_i||: shape (n,)."""
        s = np.linalg.norm(self.a, axis=1)
        return (self.R_W + self.R_A * self.R_B) * s + np.linalg.norm(self.c, axis=1)

    def constants(self, x0=None, y0=None) -> dict[str, float]:
        s = np.linalg.norm(self.a, axis=1)
        E = self.residual_bounds()
        rab2 = self.R_A**2 + self.R_B**2
        moment = float(np.mean(E**2 * s**2))
        sigma_x = float(np.sqrt(min(moment, variance_sup(self.a, self.c,
                                                         self.R_W + self.R_A * self.R_B))))
        return {
            "L_x": float(np.max(s**2)),
            "L_y": float(np.max(s**2 * rab2 + s * E)),
            "L_xy": float(np.max(s**2) * np.sqrt(rab2)),
            "sigma_x": sigma_x,
            "sigma_y": float(np.sqrt(rab2) * sigma_x),
            "Theta_x": 0.0,
            "Theta_y": 0.0,
            "Delta": self._delta(x0, y0),
            "d_x": float(self.d_x),
            "d_y": float(self.d_y),
        }

    def __repr__(self) -> str:
        return (f"LoRAProblem(n={self.n}, m={self.m}, p={self.p}, r={self.r}, "
                f"seed={self.seed})")
