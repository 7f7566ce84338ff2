"""Measure the hybrid smoothness constants of a real model at one point (issue 8).

The theorem (THEORY.md, docs/theory.md) is stated with block constants: L_x, L_y bound the
curvature of F within the ZO block x (base weights) and the FO block y (adapters, head), L_xy
the coupling between them (H1); sigma_x^2, sigma_y^2 the heterogeneity of the components'
gradients (H3). A real model has no certified constants, so this module measures their local
values on a fixed evaluation subset, never forming a Hessian:

* ``L_x = |lambda|_max(H_xx)``, ``L_y = |lambda|_max(H_yy)``: Lanczos (scipy's ``eigsh``,
  ARPACK, ``which="LM"``) on Hessian-vector products by double backward
  (Pearlmutter 1994, "Fast exact multiplication by the Hessian");
* ``L_xy = sigma_max(H_xy)``: Golub-Kahan-Lanczos (scipy's ``svds``) with
  H_xy v = d/dx <grad_y F, v> and H_yx u = d/dy <grad_x F, u>;
* each with its residual ||H v - lambda v|| / |lambda| (for ``L_xy``, the singular triplet's
  ||H_xy v - s u|| / s) and the number of Hessian-vector products it took;
* ``tr(H_xx)`` by Hutchinson's estimator (Hutchinson 1989) with Rademacher probes, its
  standard error, and the local effective rank ``tr(H_xx) / ||H_xx||``, the quantity MeZO's
  analysis puts in place of d_x (Malladi et al. 2023, "Fine-Tuning Language Models with Just
  Forward Passes", Section 4, "effective rank");
* the spectrum of H_xx by stochastic Lanczos quadrature (SLQ: Ubaru, Chen & Saad 2017, "Fast
  estimation of tr(f(A)) via stochastic Lanczos quadrature"; as PyHessian does for the
  Hessian's eigenvalue density, Yao et al. 2020): with Rademacher probes v and m Lanczos steps,
  tr f(H) ~ d sum_k tau_k f(theta_k) (Ritz values theta_k, squared first components tau_k),
  for f(l) = l (Hutchinson's estimate, exactly: the first Lanczos coefficient is v^T H v / d),
  max(l, 0) (the positive part's trace, MeZO's one-sided effective rank) and |l| (the
  trace of |H_xx|, the two-sided one); and the nuclear norm ||H_xy||_* = tr (H_yx H_xy)^{1/2}
  by SLQ on H_yx H_xy with f(l) = sqrt(l). The effective rank of the theorem's assumption ER
  (docs/theory.md): r = (tr|H_xx| + ||H_xy||_*) / (L_x + L_xy), since
  -diag(|H_xx| + (H_xy H_yx)^{1/2}, ...) <= H <= diag(|H_xx| + (H_xy H_yx)^{1/2}, ...) and the
  y block's part is <= (L_y + L_xy) I. Each estimate comes with its standard error over the
  probes;
* per-example gradients g_i on the subset of n examples: the exact full-subset gradient norms
  ||grad_x F||^2, ||grad_y F||^2, the per-example heterogeneity
  s_b^2 = (1/n) sum_i ||g_i,b - grad_b F||^2, its population value over the N training
  examples (s_b^2 itself when n = N, else s_b^2 n / (n - 1) (N - 1) / N) and the heterogeneity
  of the components the optimizer actually samples (minibatches of B of the N examples drawn
  without replacement): sigma_b^2 = sigma_N^2 / B * (N - B) / (N - 1) (the finite-population
  variance of a mean, e.g. Cochran, "Sampling Techniques", 1977, Theorem 2.2).

The constants are those of F on the subset (local; a component f_i, one minibatch, can be
sharper than their mean F, so these underestimate H1's per-component constants).

F is the mean loss over the subset (eval mode: no dropout, so F is a deterministic function of
the weights). Every random draw (Lanczos start vectors, Hutchinson probes) comes from ``seed``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

__all__ = ["BlockHessian", "Constants", "SLQ", "measure_constants", "slq"]

Batch = object
LossFn = Callable[[Batch], torch.Tensor]


def _flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _split(vec: torch.Tensor, params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    out, i = [], 0
    for p in params:
        out.append(vec[i:i + p.numel()].view_as(p))
        i += p.numel()
    return out


class BlockHessian:
    """Hessian-vector products of F = mean_k loss(batch_k) in the blocks x and y.

    ``F = (1/K) sum_k loss_fn(batches[k])`` with equal weights (give batches of equal size).
    Products are exact (double backward), in float64 on the host as numpy arrays for scipy,
    computed in the parameters' dtype. ``count`` counts batch-level double-backward passes.
    """

    def __init__(self, loss_fn: LossFn, batches: Sequence[Batch],
                 x: Sequence[torch.Tensor], y: Sequence[torch.Tensor]):
        if not batches:
            raise ValueError("batches must hold at least one batch")
        if not x or not y:
            raise ValueError("both blocks need parameters: x (ZO) and y (FO)")
        self.loss_fn, self.batches = loss_fn, list(batches)
        self.x, self.y = list(x), list(y)
        self.d_x = sum(p.numel() for p in self.x)
        self.d_y = sum(p.numel() for p in self.y)
        self.count = 0
        self.seconds = 0.0

    def _product(self, wrt: str, along: str, v: np.ndarray) -> np.ndarray:
        """(d/d wrt) <grad_along F, v>: H_{wrt, along} v."""
        t0 = time.perf_counter()
        src = self.x if along == "x" else self.y
        dst = self.x if wrt == "x" else self.y
        dtype, device = src[0].dtype, src[0].device
        vt = _split(torch.as_tensor(v, dtype=dtype, device=device), src)
        total = None
        for batch in self.batches:
            loss = self.loss_fn(batch)
            g = torch.autograd.grad(loss, src, create_graph=True, allow_unused=True)
            dot = sum((gi * vi).sum() for gi, vi in zip(g, vt, strict=True) if gi is not None)
            if not torch.is_tensor(dot) or not dot.requires_grad:
                h = [torch.zeros_like(p) for p in dst]
            else:
                h = torch.autograd.grad(dot, dst, allow_unused=True)
                h = [torch.zeros_like(p) if hi is None else hi for hi, p in zip(h, dst,
                                                                                  strict=True)]
            flat = _flat([hi.detach() for hi in h]).double()
            total = flat if total is None else total + flat
            self.count += 1
        self.seconds += time.perf_counter() - t0
        return (total / len(self.batches)).cpu().numpy()

    def xx(self, v: np.ndarray) -> np.ndarray:
        return self._product("x", "x", v)

    def yy(self, v: np.ndarray) -> np.ndarray:
        return self._product("y", "y", v)

    def xy(self, v_y: np.ndarray) -> np.ndarray:
        """H_xy v_y (maps the y space to the x space)."""
        return self._product("x", "y", v_y)

    def yx(self, u_x: np.ndarray) -> np.ndarray:
        """H_yx u_x = H_xy^T u_x."""
        return self._product("y", "x", u_x)


@dataclass(frozen=True)
class Constants:
    """Local constants at one point (see the module docstring for each formula).

    ``*_residual`` are relative residuals of the eigen/singular pairs, ``*_hvps`` the
    batch-level Hessian-vector products each took; ``seconds`` is the total wall time.
    """

    L_x: float
    L_y: float
    L_xy: float
    L_x_residual: float
    L_y_residual: float
    L_xy_residual: float
    L_x_hvps: int
    L_y_hvps: int
    L_xy_hvps: int
    trace_xx: float
    trace_xx_se: float
    trace_probes: int
    effective_rank: float
    F: float
    grad_x_sq: float
    grad_y_sq: float
    s_x_sq: float
    s_y_sq: float
    sigma_x_sq: float
    sigma_y_sq: float
    batch_size: int
    examples: int
    population: int
    d_x: int
    d_y: int
    hvps: int
    seconds: float
    trace_pos_xx: float = math.nan
    trace_pos_xx_se: float = math.nan
    trace_abs_xx: float = math.nan
    trace_abs_xx_se: float = math.nan
    nuclear_xy: float = math.nan
    nuclear_xy_se: float = math.nan
    slq_steps: int = 0
    slq_hvps: int = 0
    effective_rank_pos: float = math.nan
    effective_rank_er: float = math.nan
    effective_rank_er_se: float = math.nan

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class SLQ:
    """Stochastic Lanczos quadrature of a symmetric operator (see :func:`slq`).

    ``estimates[name]`` holds one estimate of tr f(H) per probe (its mean is the estimate, its
    standard error over the probes the ``se``); ``nodes`` and ``weights`` are the probes'
    Ritz values and quadrature weights (the spectral density's quadrature, PyHessian's
    ``density``); ``steps`` the Lanczos steps taken per probe (fewer when an invariant
    subspace is found), ``reorthogonalized`` whether each new vector was orthogonalized
    against all earlier ones."""

    estimates: dict[str, np.ndarray]
    nodes: list[np.ndarray]
    weights: list[np.ndarray]
    steps: list[int]
    reorthogonalized: bool

    def mean(self, name: str) -> float:
        return float(np.mean(self.estimates[name]))

    def se(self, name: str) -> float:
        v = self.estimates[name]
        return float(np.std(v, ddof=1) / math.sqrt(len(v))) if len(v) > 1 else math.nan


SLQ_FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "trace": lambda t: t,
    "positive": lambda t: np.maximum(t, 0.0),
    "absolute": np.abs,
    "sqrt": lambda t: np.sqrt(np.maximum(t, 0.0)),
}


def slq(op: Callable[[np.ndarray], np.ndarray], d: int, *, probes: int, steps: int,
        rng: np.random.Generator, functions: Sequence[str] = ("trace", "positive", "absolute"),
        reorthogonalize: bool | None = None) -> SLQ:
    """Stochastic Lanczos quadrature: tr f(H) ~ d sum_k tau_k f(theta_k) per Rademacher probe.

    Each probe v (entries +-1, ||v||^2 = d) starts ``steps`` Lanczos steps on ``op`` from
    v / sqrt(d); the tridiagonal matrix's eigenvalues theta_k and the squared first components
    tau_k of its eigenvectors are a Gauss quadrature of the spectral measure of H seen from v,
    so d sum_k tau_k f(theta_k) is exact for polynomials f of degree < 2 steps and for f(l) = l
    it is v^T H v (Hutchinson). ``reorthogonalize`` (default: when d * steps <= 5e7) keeps the
    Lanczos vectors orthogonal against all earlier ones (full reorthogonalization, memory
    d * steps); without it only the three-term recurrence (memory 3 d), whose loss of
    orthogonality duplicates Ritz values but leaves the quadrature of smooth functions accurate
    (Ubaru et al. 2017, Section 4).

    Raises:
        ValueError: for probes < 2, steps < 1 or an unknown function name.
    """
    if isinstance(probes, bool) or not isinstance(probes, int) or probes < 2:
        raise ValueError(f"probes must be an integer >= 2, got {probes!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    unknown = set(functions) - set(SLQ_FUNCTIONS)
    if unknown:
        raise ValueError(f"functions must be names from {sorted(SLQ_FUNCTIONS)}, got "
                         f"{sorted(unknown)}")
    m = min(steps, d)
    full = (d * m <= 5e7) if reorthogonalize is None else bool(reorthogonalize)
    est: dict[str, list[float]] = {f: [] for f in functions}
    nodes, weights, taken = [], [], []
    for _ in range(probes):
        q = rng.choice(np.array([-1.0, 1.0]), size=d) / math.sqrt(d)
        basis = [q] if full else []
        alphas, betas = [], []
        prev, beta = np.zeros(d), 0.0
        for j in range(m):
            w = op(q) - beta * prev
            a = float(q @ w)
            w -= a * q
            if full:
                for b in basis:  # twice is enough (Kahan, Parlett)
                    w -= (b @ w) * b
                for b in basis:
                    w -= (b @ w) * b
            alphas.append(a)
            beta = float(np.linalg.norm(w))
            if j == m - 1 or beta <= 1e-10 * max(1.0, abs(a)):
                break
            betas.append(beta)
            prev, q = q, w / beta
            if full:
                basis.append(q)
        T = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
        theta, Q = np.linalg.eigh(T)
        tau = Q[0] ** 2
        for f in functions:
            est[f].append(float(d * (tau @ SLQ_FUNCTIONS[f](theta))))
        nodes.append(theta)
        weights.append(tau)
        taken.append(len(alphas))
    return SLQ({f: np.asarray(v) for f, v in est.items()}, nodes, weights, taken, full)


def _top_eig(op: Callable[[np.ndarray], np.ndarray], d: int, *, tol: float, ncv: int,
             rng: np.random.Generator) -> tuple[float, float]:
    """(|lambda|_max, relative residual ||H v - lambda v|| / |lambda|) of a symmetric operator
    of size d (a small one, d <= ncv + 1, formed explicitly). NaN when ARPACK does not
    converge in its iterations (the caller records it; the run goes on). A zero operator (a
    zero-initialised head makes the base weights' Hessian vanish) gives 0: ARPACK cannot
    start from a vector it maps to 0, so one product is tried first."""
    from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, LinearOperator, eigsh

    if d <= ncv + 1:
        M = np.stack([op(e) for e in np.eye(d)], axis=1)
        return float(np.abs(np.linalg.eigvalsh((M + M.T) / 2)).max()), 0.0
    v0 = rng.standard_normal(d)
    if not np.any(op(v0)):
        return 0.0, 0.0
    A = LinearOperator((d, d), matvec=op, dtype=np.float64)
    try:
        vals, vecs = eigsh(A, k=1, which="LM", tol=tol, ncv=ncv, v0=v0, maxiter=50)
    except (ArpackNoConvergence, ArpackError):
        return math.nan, math.nan
    lam, v = float(vals[0]), vecs[:, 0]
    res = float(np.linalg.norm(op(v) - lam * v) / max(abs(lam), 1e-300))
    return abs(lam), res


def _top_singular(hxy: Callable[[np.ndarray], np.ndarray],
                  hyx: Callable[[np.ndarray], np.ndarray], d_x: int, d_y: int, *, tol: float,
                  ncv: int, rng: np.random.Generator) -> tuple[float, float]:
    """(sigma_max(H_xy), relative residual max(||H_xy v - s u||, ||H_yx u - s v||) / s).

    A block with a small side (min(d_x, d_y) <= ncv + 1, where ARPACK's ``svds`` needs
    k < ncv < min(shape)) is formed explicitly from that side's unit vectors and decomposed
    exactly. A zero block gives 0 (as in :func:`_top_eig`)."""
    from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, LinearOperator, svds

    m = min(d_x, d_y)
    if m <= ncv + 1:
        if d_y <= d_x:
            M = np.stack([hxy(e) for e in np.eye(d_y)], axis=1)  # d_x x d_y
        else:
            M = np.stack([hyx(e) for e in np.eye(d_x)], axis=0)  # rows of H_xy
        return float(np.linalg.svd(M, compute_uv=False)[0]), 0.0
    start = rng.standard_normal(m)
    if not np.any(hxy(start) if d_y <= d_x else hyx(start)):
        return 0.0, 0.0
    A = LinearOperator((d_x, d_y), matvec=hxy, rmatvec=hyx, dtype=np.float64)
    try:
        u, sv, vt = svds(A, k=1, tol=tol, ncv=ncv, v0=start, maxiter=50, solver="arpack")
    except (ArpackNoConvergence, ArpackError):
        return math.nan, math.nan
    s0, u0, v0 = float(sv[0]), u[:, 0], vt[0]
    res = max(float(np.linalg.norm(hxy(v0) - s0 * u0)), float(np.linalg.norm(hyx(u0) - s0 * v0)))
    return s0, res / max(s0, 1e-300)


def measure_constants(model: torch.nn.Module, loss_fn: LossFn, examples: Sequence[Batch],
                      x: Sequence[torch.Tensor], y: Sequence[torch.Tensor], *,
                      batch_size: int, population: int | None = None,
                      hessian_batch: int | None = None,
                      collate: Callable[[Sequence[Batch]], Batch] | None = None,
                      tol: float = 1e-2, ncv: int = 8, trace_probes: int = 8,
                      slq_steps: int = 10, seed: int = 0) -> Constants:
    """Measure the local constants of F = mean loss over ``examples`` at the current weights.

    Args:
        model: the module (set to eval mode during the measurement, restored after).
        loss_fn: mean loss of a collated batch (a scalar tensor).
        examples: the evaluation subset, one item per example (collated by ``collate``,
            default: the item itself is a batch of one).
        x, y: the ZO block's and the FO block's parameters (disjoint).
        batch_size: B, the optimizer's minibatch size (for sigma_b^2 of its components).
        population: N, the size of the training set the minibatches are drawn from (default:
            the subset itself). With a subset of n < N examples, the population variance is
            estimated as s_n^2 n / (n - 1) (N - 1) / N (the unbiased sample variance, rescaled
            to the divisor N).
        hessian_batch: examples per Hessian-vector batch, dividing N (default: all in one).
        tol, ncv: Lanczos tolerance and basis size (scipy's ``eigsh`` / ``svds``).
        trace_probes: Rademacher probes of Hutchinson's estimator and of SLQ (>= 2).
        slq_steps: Lanczos steps per probe of SLQ (1: Hutchinson only, no spectrum; the
            nuclear norm of H_xy is then skipped). Each step is one Hessian-vector product of
            H_xx, two for H_yx H_xy.
        seed: seeds the start vectors and the probes.

    Raises:
        ValueError: naming the argument, for an empty subset or block, overlapping blocks,
            ``batch_size`` outside [1, N], fewer than 2 probes, or ``tol`` <= 0.
    """
    n = len(examples)
    if n < 2:
        raise ValueError(f"examples must hold at least 2 examples, got {n}")
    N = n if population is None else population
    if isinstance(N, bool) or not isinstance(N, int) or N < n:
        raise ValueError(f"population must be an integer >= {n} (the subset's size), "
                         f"got {population!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= N:
        raise ValueError(f"batch_size must be an integer in [1, {N}], got {batch_size!r}")
    if isinstance(trace_probes, bool) or not isinstance(trace_probes, int) or trace_probes < 2:
        raise ValueError(f"trace_probes must be an integer >= 2, got {trace_probes!r}")
    if not (isinstance(tol, int | float) and tol > 0):
        raise ValueError(f"tol must be a number > 0, got {tol!r}")
    hb = n if hessian_batch is None else hessian_batch
    if isinstance(hb, bool) or not isinstance(hb, int) or not 1 <= hb <= n or n % hb:
        raise ValueError(f"hessian_batch must be an integer that divides {n} (equal weights), "
                         f"got {hessian_batch!r}")
    x, y = list(x), list(y)
    if {id(p) for p in x} & {id(p) for p in y}:
        raise ValueError("x and y must be disjoint parameter lists")
    collate = collate or (lambda items: items[0] if len(items) == 1 else items)
    chunks = [collate(list(examples[i:i + hb])) for i in range(0, n, hb)]
    t0 = time.perf_counter()
    mode = model.training
    flags = {id(p): p.requires_grad for p in (*x, *y)}
    stack = contextlib.ExitStack()
    try:
        # fused attention kernels (flash, memory-efficient) have no double backward; the math
        # one computes the same attention and differentiates twice
        from torch.nn.attention import SDPBackend, sdpa_kernel

        stack.enter_context(sdpa_kernel(SDPBackend.MATH))
    except ImportError:  # torch < 2.3: no kernel selection; the default path is used
        pass
    model.eval()
    try:
        for p in (*x, *y):
            p.requires_grad_(True)
        rng = np.random.default_rng([seed, 8001])
        H = BlockHessian(loss_fn, chunks, x, y)
        c0 = H.count
        L_x, rx = _top_eig(H.xx, H.d_x, tol=tol, ncv=ncv, rng=rng)
        c1 = H.count
        L_y, ry = _top_eig(H.yy, H.d_y, tol=tol, ncv=ncv, rng=rng)
        c2 = H.count
        L_xy, rxy = _top_singular(H.xy, H.yx, H.d_x, H.d_y, tol=tol, ncv=ncv, rng=rng)
        c3 = H.count
        spec_xx = slq(H.xx, H.d_x, probes=trace_probes, steps=slq_steps, rng=rng)
        trace, trace_se = spec_xx.mean("trace"), spec_xx.se("trace")
        if slq_steps > 1:
            spec_xy = slq(lambda v: H.yx(H.xy(v)), H.d_y, probes=trace_probes,
                          steps=slq_steps, rng=rng, functions=("sqrt",))
            nuclear, nuclear_se = spec_xy.mean("sqrt"), spec_xy.se("sqrt")
            pos, pos_se = spec_xx.mean("positive"), spec_xx.se("positive")
            absolute, abs_se = spec_xx.mean("absolute"), spec_xx.se("absolute")
        else:
            nuclear = nuclear_se = pos = pos_se = absolute = abs_se = math.nan
        c4 = H.count
        # per-example gradients: exact F, grad F and the heterogeneity
        sum_x = sum_y = None
        sq_x = sq_y = 0.0
        F = 0.0
        for item in examples:
            loss = loss_fn(collate([item]))
            g = torch.autograd.grad(loss, [*x, *y], allow_unused=True)
            g = [torch.zeros_like(p) if gi is None else gi for gi, p in zip(g, [*x, *y],
                                                                          strict=True)]
            gx, gy = _flat(g[:len(x)]).double(), _flat(g[len(x):]).double()
            sq_x += float(gx @ gx)
            sq_y += float(gy @ gy)
            sum_x = gx if sum_x is None else sum_x + gx
            sum_y = gy if sum_y is None else sum_y + gy
            F += float(loss.detach())
        mean_x, mean_y = sum_x / n, sum_y / n
        gx2, gy2 = float(mean_x @ mean_x), float(mean_y @ mean_y)
        s_x = max(sq_x / n - gx2, 0.0)
        s_y = max(sq_y / n - gy2, 0.0)
        to_population = 1.0 if n == N else n / (n - 1) * (N - 1) / N
        fpc = to_population * ((N - batch_size) / (batch_size * (N - 1)) if N > 1 else 0.0)
    finally:
        stack.close()
        for p in (*x, *y):
            p.requires_grad_(flags[id(p)])
        model.train(mode)
    return Constants(
        L_x=L_x, L_y=L_y, L_xy=L_xy, L_x_residual=rx, L_y_residual=ry, L_xy_residual=rxy,
        L_x_hvps=c1 - c0, L_y_hvps=c2 - c1, L_xy_hvps=c3 - c2, trace_xx=trace,
        trace_xx_se=trace_se, trace_probes=trace_probes,
        effective_rank=trace / L_x if L_x > 0 else math.nan,
        trace_pos_xx=pos, trace_pos_xx_se=pos_se, trace_abs_xx=absolute,
        trace_abs_xx_se=abs_se, nuclear_xy=nuclear, nuclear_xy_se=nuclear_se,
        slq_steps=slq_steps, slq_hvps=c4 - c3,
        effective_rank_pos=pos / L_x if L_x > 0 else math.nan,
        effective_rank_er=(absolute + nuclear) / (L_x + L_xy) if L_x + L_xy > 0 else math.nan,
        effective_rank_er_se=math.hypot(abs_se, nuclear_se) / (L_x + L_xy)
        if L_x + L_xy > 0 else math.nan, F=F / n, grad_x_sq=gx2,
        grad_y_sq=gy2, s_x_sq=s_x, s_y_sq=s_y, sigma_x_sq=s_x * fpc, sigma_y_sq=s_y * fpc,
        batch_size=batch_size, examples=n, population=N, d_x=H.d_x, d_y=H.d_y, hvps=H.count,
        seconds=time.perf_counter() - t0)
