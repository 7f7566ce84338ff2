"""The first hybrid reshuffling theorem (v1), kept for comparison with the sharp one.

It is correct (an independent re-derivation of all its steps found no error) but loose where
users look: it keeps gamma = 1/4 of the descent, caps the steps 8x (drift) and 32x (ZO
variance) below the classical special cases, and bounds the smoothing bias by Ghadimi and Lan's
(mu/2) L (d + 3)^{3/2}. :func:`hybridconv.theory.theorems.hybrid_reshuffling_theorem` is the
default; ``hybridconv theory --theorem v1`` prints this one, and
``hybridconv.theory.compare`` sets the two side by side. Frozen: its derivation is the one
recorded in the history of docs/derivation.md and is not developed further.

Conditions (a = 1/16, b = 1/64, tau = gamma = 1/4; Lambda_b = L_b + L_xy, c1 = 2(d_x + 2) for
Gaussian directions): C1 n eta_x Lambda_x <= a, C2 n eta_y Lambda_y <= a, C3 c1 eta_x
Lambda_x / q <= b, C4 h(eta_x, eta_y) <= tau min(eta_x, eta_y); then
(1/T) sum_t E||grad F(z_t)||_D^2 <= 4 Delta / (n T) + 4 N / n.
"""

from __future__ import annotations

import sympy as sp

from .assumptions import (
    GeneralizedHybridSmoothness,
    Heterogeneity,
    HybridSmoothness,
    Setting,
    ZOEstimator,
)
from .derivation import Derivation
from .proof import _q
from .symbols import sym
from .theorems import Condition, Theorem

__all__ = ["THEOREM_CONSTANTS_V1", "QUANTITIES_V1", "hybrid_reshuffling_theorem_v1",
           "generalized_hybrid_reshuffling_theorem_v1"]

THEOREM_CONSTANTS_V1: dict[str, sp.Rational] = {
    "a": sp.Rational(1, 16),   # C1, C2: n eta_b Lambda_b <= a
    "b": sp.Rational(1, 64),   # C3: c1 eta_x Lambda_x / q <= b
    "tau": sp.Rational(1, 4),  # C4: share of the descent the heterogeneity may use
    # guaranteed descent: E F(z_{t+1}) <= F(z_t) - gamma n ||grad F||_D^2 + N
    "gamma": sp.Rational(1, 4),
}
"""The constants the conditions are stated with; changing them re-derives the theorem."""


QUANTITIES_V1: dict[str, sp.Symbol] = {
    "D": _q("D", r"\mathbb{E} F(z_{t+1}) - F(z_t)"),
    "I": _q("I", r"\mathcal{I}"),
    "X2": _q("X2", r"\mathcal{X}"),
    "Y2": _q("Y2", r"\mathcal{Y}"),
    "Ed": _q("Ed", r"\mathcal{E}_d"),
    "Edx": _q("Edx", r"\mathcal{E}_{x}"),
    "Edy": _q("Edy", r"\mathcal{E}_{y}"),
    "Gx": _q("Gx", r"\mathcal{G}_x"),
    "Gy": _q("Gy", r"\mathcal{G}_y"),
    "P": _q("P", r"\mathcal{P}"),
    "Q": _q("Q", r"\mathcal{Q}"),
    "W": _q("W", r"\mathcal{W}"),
    "N": _q("N", r"\mathcal{N}"),
    "Sx": _q("Sx", r"\mathcal{S}_x"),
    "Sy": _q("Sy", r"\mathcal{S}_y"),
    "sx2": _q("sx2", r"\hat\sigma_x^2"),
    "sy2": _q("sy2", r"\hat\sigma_y^2"),
}

_MEANING = {
    "D": "one-epoch change of the objective, conditional on z_t",
    "I": "E<grad F(z_t), z_{t+1} - z_t>",
    "X2": "E||x_{t+1} - x_t||^2",
    "Y2": "E||y_{t+1} - y_t||^2",
    "Ed": "E||e_drift||_D^2 = eta_x E||e_drift,x||^2 + eta_y E||e_drift,y||^2",
    "Edx": "E||e_drift,x||^2, e_drift = sum_i [grad f_{pi(i)}(z_t^i) - grad f_{pi(i)}(z_t)]",
    "Edy": "E||e_drift,y||^2",
    "Gx": "||grad_x F(z_t)||^2",
    "Gy": "||grad_y F(z_t)||^2",
    "P": "sum_i E||grad_x f_{pi(i)}(z_t^i) - grad_x f_{pi(i)}(z_t)||^2 (x-drift)",
    "Q": "sum_i E||grad_y f_{pi(i)}(z_t^i) - grad_y f_{pi(i)}(z_t)||^2 (y-drift)",
    "W": "eta_x P + eta_y Q (weighted drift)",
    "N": "sum_i E||xi^i||^2, the ZO noise of the epoch (xi = g_x - E[g_x | past])",
    "Sx": "sum_i E||x_t^i - x_t||^2 (in-epoch deviation, x)",
    "Sy": "sum_i E||y_t^i - y_t||^2 (in-epoch deviation, y)",
    "sx2": "(1/n) sum_j ||grad_x f_j(z_t) - grad_x F(z_t)||^2",
    "sy2": "(1/n) sum_j ||grad_y f_j(z_t) - grad_y F(z_t)||^2",
}


def hybrid_reshuffling_theorem_v1(setting: Setting | None = None) -> Theorem:
    """Derive the hybrid reshuffling theorem for ``setting`` (default: H1, H3, Gaussian, central).

    Conditions (with a, b, tau of :data:`THEOREM_CONSTANTS_V1`; Lambda_x = L_x + L_xy,
    Lambda_y = L_y + L_xy; c1, c2 the estimator's constants):

    * C1: n eta_x Lambda_x <= a         (in-epoch drift of the x block)
    * C2: n eta_y Lambda_y <= a         (in-epoch drift of the y block)
    * C3: c1 eta_x Lambda_x / q <= b    (ZO variance, the classical eta_x ~ q / (d L))
    * C4: h(eta_x, eta_y) <= tau min(eta_x, eta_y)   (relative heterogeneity), with h the
      coefficient of ||grad F||^2 that the Theta terms carry, divided by n; h is O(eta^2), so
      C4 holds for small enough step sizes whatever Theta

    Returns:
        the :class:`Theorem`, with its derivation recorded step by step.
    """
    setting = setting or Setting()
    sm: HybridSmoothness = setting.smoothness
    het: Heterogeneity = setting.heterogeneity
    est: ZOEstimator = setting.estimator
    a, b = THEOREM_CONSTANTS_V1["a"], THEOREM_CONSTANTS_V1["b"]
    tau, gamma = THEOREM_CONSTANTS_V1["tau"], THEOREM_CONSTANTS_V1["gamma"]

    n, q, T, mu = sym("n"), sym("q"), sym("T"), sym("mu")
    ex, ey, Delta = sym("eta_x"), sym("eta_y"), sym("Delta")
    Lx, Ly, Lxy = sm.L_x, sm.L_y, sm.L_xy
    Q = QUANTITIES_V1
    D, I, X2, Y2 = Q["D"], Q["I"], Q["X2"], Q["Y2"]
    Ed, Edx, Edy, Gx, Gy = Q["Ed"], Q["Edx"], Q["Edy"], Q["Gx"], Q["Gy"]
    P, Qd, W, N, Sx, Sy, sx2, sy2 = (Q[k] for k in ("P", "Q", "W", "N", "Sx", "Sy", "sx2", "sy2"))

    # abbreviations (kept as symbols in the chain, expanded for evaluation)
    Lam_x = sp.Symbol(r"\Lambda_x", positive=True)
    Lam_y = sp.Symbol(r"\Lambda_y", positive=True)
    c1 = sp.Symbol("c_1", positive=True)
    c2 = sp.Symbol("c_2", nonnegative=True)
    beta = sp.Symbol(r"\beta", nonnegative=True)
    nu = sp.Symbol(r"\nu", nonnegative=True)
    aux = {
        Lam_x: Lx + Lxy,
        Lam_y: Ly + Lxy,
        c1: est.c1(),
        c2: est.c2(),
        beta: est.cb() * mu * Lx,
        nu: sp.sqrt(est.c2()) * mu * Lx,
    }
    quantities = {Q[k]: _MEANING[k] for k in Q}
    der = Derivation(quantities, aux)

    # ---- one epoch: block descent --------------------------------------------------------
    der.start(
        D, I + Lam_x / 2 * X2 + Lam_y / 2 * Y2, name="descent",
        text="Block descent lemma for F (F inherits H1 from the f_i by averaging), with "
             "2 L_xy ab <= L_xy (a^2 + b^2), applied to z_{t+1} - z_t, in expectation over the "
             "epoch's permutation and directions.",
        uses=("block_descent_amgm", sm.name),
    )
    der.substitute(
        D, I,
        -sp.Rational(3, 4) * n * (ex * Gx + ey * Gy) + 2 / n * Ed + 2 * n * ex * beta**2,
        name="inner-product",
        text="z_{t+1} - z_t = -D(n grad F(z_t) + e_drift + e_bias + e_noise), since pi_t is a "
             "permutation. The ZO noise has zero conditional mean and z_t is fixed within the "
             "epoch, so E<grad F(z_t), D e_noise> = 0. Young with weight n/2 on the rest: "
             "-<grad F, D v> <= (n/4)||grad F||_D^2 + (1/n)||v||_D^2, and "
             "||e_drift + e_bias||_D^2 <= 2||e_drift||_D^2 + 2 eta_x n^2 beta^2.",
        uses=("gaussian_smoothing_unbiased", "martingale_sum", "smoothing_bias", "young",
              "cauchy_schwarz_sum"),
    )
    der.substitute(
        D, X2, 4 * ex**2 * (n**2 * Gx + Edx + n**2 * beta**2 + N), name="x-step-size",
        text="||x_{t+1} - x_t||^2 = eta_x^2 ||n grad_x F + e_drift,x + e_bias + e_noise||^2 "
             "<= 4 eta_x^2 (n^2 G_x + ||e_drift,x||^2 + n^2 beta^2 + ||e_noise||^2); "
             "E||e_noise||^2 = N (martingale).",
        uses=("cauchy_schwarz_sum", "smoothing_bias", "martingale_sum"),
    )
    der.substitute(
        D, Y2, 2 * ey**2 * (n**2 * Gy + Edy), name="y-step-size",
        text="||y_{t+1} - y_t||^2 = eta_y^2 ||n grad_y F + e_drift,y||^2 "
             "<= 2 eta_y^2 (n^2 G_y + ||e_drift,y||^2).",
        uses=("cauchy_schwarz_sum",),
    )
    der.substitute(
        D, Ed, ex * Edx + ey * Edy, name="drift-norm",
        text="Definition of the D-weighted norm.", uses=("definition",),
    )
    der.substitute(
        D, Edx, n * P, name="drift-x",
        text="||sum_i v_i||^2 <= n sum_i ||v_i||^2 on the n drift terms of the x block.",
        uses=("cauchy_schwarz_sum",),
    )
    der.substitute(
        D, Edy, n * Qd, name="drift-y",
        text="Same for the y block.", uses=("cauchy_schwarz_sum",),
    )
    noise_bound = (2 * c1 * n * (Gx + sx2) + 2 * c1 * P + n * nu**2) / q
    der.substitute(
        D, N, noise_bound, name="zo-variance",
        text="Per step, E[||xi^i||^2 | past] <= (c1 ||grad_x f_j(z^i)||^2 + nu^2)/q (q "
             "independent directions, nonconvex second moment). Then "
             "||grad_x f_j(z^i)||^2 <= 2||grad_x f_j(z_t)||^2 + 2||drift_x^i||^2 and "
             "sum_i ||grad_x f_{pi(i)}(z_t)||^2 = n (G_x + sigma_hat_x^2).",
        uses=("zo_second_moment_nonconvex", "q_directions_variance", "martingale_sum", "young"),
    )
    omega = 2 + 2 * a + 4 * b
    cur = sp.expand(der.current[D])
    der.bound_by(
        D, cur.subs({P: 0, Qd: 0}) + omega * W, name="absorb-drift",
        text=f"The drift enters with coefficients eta_x (2 + 2 n Lambda_x eta_x + 4 c1 Lambda_x "
             f"eta_x / q) <= eta_x (2 + 2a + 4b) and eta_y (2 + n Lambda_y eta_y) <= eta_y (2 + a) "
             f"by C1-C3; with W = eta_x P + eta_y Q the drift costs at most "
             f"{sp.sstr(omega)} W.",
        uses=("C1", "C2", "C3"), defs={W: ex * P + ey * Qd},
    )

    # ---- the in-epoch drift W --------------------------------------------------------------
    Ax = 2 * (ex * Lx**2 + ey * Lxy**2)
    Ay = 2 * (ex * Lxy**2 + ey * Ly**2)
    der.start(
        W, Ax * Sx + Ay * Sy, name="drift-by-deviation",
        text="H1 at z^i and z_t: ||grad_x f_j(z^i) - grad_x f_j(z_t)||^2 <= "
             "2 L_x^2 ||x^i - x_t||^2 + 2 L_xy^2 ||y^i - y_t||^2 (and symmetrically for y); "
             "weight by eta_x, eta_y and sum.",
        uses=(sm.name, "young"),
    )
    der.fact("sum-squares", (n - 1) * n * (2 * n - 1) / 6, n**3 / 3,
             text="sum_{i<n} i^2 <= n^3/3.", uses=())
    der.fact("sum-without-replacement", n * (n + 1) / 6, n**2 / 3,
             text="sum_{i<n} i (n - i)/(n - 1) = n (n + 1)/6 <= n^2/3 "
                  "(n >= 2; the sum is 0 at n = 1).",
             uses=())
    der.fact("sum-linear", n * (n - 1) / 2, n**2 / 2, text="sum_{i<n} i <= n^2/2.", uses=())
    der.substitute(
        W, Sx,
        4 * ex**2 * (n**3 / 3 * Gx + n**2 / 3 * sx2 + n**2 / 2 * P + n**3 / 3 * beta**2 + n * N),
        name="deviation-x",
        text="x^i - x_t = -eta_x sum_{k<i} [grad_x f_{pi(k)}(z_t) + drift_x^k + bias^k + xi^k]. "
             "Four-term Cauchy-Schwarz; E||sum_{k<i} grad_x f_{pi(k)}(z_t)||^2 = i^2 G_x + "
             "i (n-i)/(n-1) sigma_hat_x^2 (sampling without replacement, pi_t independent of z_t); "
             "||sum_{k<i} drift^k||^2 <= i sum_k ||drift^k||^2; the noise is a martingale. Sum "
             "over i < n with the three sums above.",
        uses=("without_replacement_variance", "cauchy_schwarz_sum", "martingale_sum",
              "smoothing_bias", "sum-squares", "sum-without-replacement", "sum-linear"),
    )
    der.substitute(
        W, Sy, 2 * ey**2 * (n**3 / 3 * Gy + n**2 / 3 * sy2 + n**2 / 2 * Qd), name="deviation-y",
        text="Same for y, whose oracle is exact: two-term Cauchy-Schwarz.",
        uses=("without_replacement_variance", "cauchy_schwarz_sum", "sum-squares",
              "sum-without-replacement", "sum-linear"),
    )
    der.substitute(
        W, N, noise_bound, name="deviation-zo-variance",
        text="The epoch's ZO noise, as in step zo-variance.",
        uses=("zo_second_moment_nonconvex", "martingale_sum", "young"),
    )
    theta = 4 * a**2 + 16 * a * b
    curW = sp.expand(der.current[W])
    restW = curW.subs({P: 0, Qd: 0})
    der.fact("rho-x", n**2 * ex * (ex * Lx**2 + ey * Lxy**2), a**2,
             text="n^2 eta_x (eta_x L_x^2 + eta_y L_xy^2) <= a^2: from C1, C2, since "
                  "(L_x/Lambda_x)^2 + L_xy^2/(Lambda_x Lambda_y) <= 1.",
             uses=("C1", "C2"), kind="absorb")
    der.fact("rho-y", n**2 * ey * (ex * Lxy**2 + ey * Ly**2), a**2,
             text="n^2 eta_y (eta_x L_xy^2 + eta_y L_y^2) <= a^2, likewise.",
             uses=("C1", "C2"), kind="absorb")
    der.fact("rho-x-zo", 2 * c1 * n / q * ex * (ex * Lx**2 + ey * Lxy**2), 2 * a * b,
             text="(2 c1 n / q) eta_x (eta_x L_x^2 + eta_y L_xy^2) <= 2ab, from C1-C3.",
             uses=("C1", "C2", "C3"), kind="absorb")
    der.bound_by(
        W, restW + theta * W, name="absorb-deviation",
        text=f"The drift feeds back: the coefficients of P and Q are "
             f"8 rho_x (n^2/2 + 2 c1 n/q) eta_x <= (4a^2 + 16ab) eta_x and 2 rho_y n^2 eta_y <= "
             f"2 a^2 eta_y (rho_b from the facts above), so they cost at most "
             f"theta W with theta = {sp.sstr(theta)}.",
        uses=("rho-x", "rho-y", "rho-x-zo"), defs={W: ex * P + ey * Qd},
    )
    der.bound_by(
        W, restW / (1 - theta), name="solve-drift", kind="solve",
        text=f"W <= R + theta W with theta = {sp.sstr(theta)} < 1 gives W <= R / (1 - theta).",
        uses=(), claim=(theta, sp.Integer(1)),
    )

    # ---- back to the epoch ------------------------------------------------------------------
    der.substitute(
        D, W, der.current[W], name="insert-drift",
        text="Insert the drift bound.", uses=("solve-drift",),
    )
    der.substitute(
        D, sx2, het.variance_bound("x", Gx + Gy), name="heterogeneity-x",
        text="H3 for the x block.", uses=(het.name,),
    )
    der.substitute(
        D, sy2, het.variance_bound("y", Gx + Gy), name="heterogeneity-y",
        text="H3 for the y block.", uses=(het.name,),
    )
    cur = sp.expand(der.current[D])
    noise = sp.expand(cur.subs({Gx: 0, Gy: 0}))
    # C4 bounds the heterogeneity terms exactly as the chain carries them: the coefficient of
    # Theta_b (G_x + G_y) is O(eta^2) relative to n eta, so any Theta is admissible for small
    # enough step sizes (the terms multiply G_x and G_y alike, hence min(eta_x, eta_y)).
    theta_x, theta_y = sym("Theta_x"), sym("Theta_y")
    het_coeff = sp.expand(cur.coeff(Gx)).coeff(theta_x) * theta_x + \
        sp.expand(cur.coeff(Gx)).coeff(theta_y) * theta_y
    if sp.expand(het_coeff - (sp.expand(cur.coeff(Gy)).coeff(theta_x) * theta_x
                              + sp.expand(cur.coeff(Gy)).coeff(theta_y) * theta_y)) != 0:
        raise ValueError("heterogeneity terms must multiply G_x and G_y alike (H3)")
    c4_lhs = sp.factor(het_coeff / n)
    drift_x = omega / (1 - theta) * 8 * (a**2 / 3 + 2 * a * b)
    margin_x = sp.Rational(3, 4) - 2 * a - 4 * b - drift_x - tau
    margin_y = sp.Rational(3, 4) - a - omega / (1 - theta) * 4 * a**2 / 3 - tau
    if min(margin_x, margin_y) < gamma:
        raise ValueError("THEOREM_CONSTANTS_V1 leave no descent: margins "
                         f"{margin_x}, {margin_y} < gamma = {gamma}")
    der.bound_by(
        D, -gamma * n * (ex * Gx + ey * Gy) + noise, name="absorb-gradient",
        text=f"Coefficients of G_x and G_y: the descent -(3/4) n eta_b, plus at most "
             f"(2a + 4b) n eta_x and a n eta_y from the step-size terms (C1-C3), plus the drift's "
             f"{sp.sstr(omega / (1 - theta))} x [8 (a^2/3 + 2ab) n eta_x, (4a^2/3) n eta_y] "
             f"(facts rho-*), plus the heterogeneity terms Theta_b (G_x + G_y) (...), at most "
             f"tau n min(eta_x, eta_y) (G_x + G_y) by C4. What remains is at most -gamma n eta_b "
             f"with gamma = {sp.sstr(gamma)} (margins {sp.sstr(margin_x)}, {sp.sstr(margin_y)}).",
        uses=("C1", "C2", "C3", "C4", "rho-x", "rho-y", "rho-x-zo"),
    )

    # ---- over T epochs ----------------------------------------------------------------------
    Bw = sp.Symbol(r"\frac{1}{T}\sum_t \mathbb{E}\|\nabla F(z_t)\|_D^2", nonnegative=True)
    weighted_compact = Delta / (gamma * n * T) + noise / (gamma * n)
    der.conclude(
        Bw, weighted_compact, name="telescope", kind="telescope",
        text="Take total expectation of E F(z_{t+1}) <= F(z_t) - gamma n E||grad F(z_t)||_D^2 + N, "
        "sum over t < T and use F(z_T) >= F* (H2): gamma n sum_t E||grad F(z_t)||_D^2 <= "
        "Delta + T N.",
        uses=("H2",),
    )
    Bfull = sp.Symbol(r"\min_t \mathbb{E}\|\nabla F(z_t)\|^2", nonnegative=True)
    eta_min = sp.Min(ex, ey)
    full_compact = weighted_compact / eta_min
    der.conclude(
        Bfull, full_compact, name="unweight", kind="telescope",
        text="min_t E||grad F(z_t)||^2 <= (1/T) sum_t E||grad F(z_t)||^2 and "
        "||g||^2 <= ||g||_D^2 / min(eta_x, eta_y).",
        uses=(),
    )

    conditions = (
        Condition("C1", n * ex * (Lx + Lxy), a, "in-epoch drift of the x block"),
        Condition("C2", n * ey * (Ly + Lxy), a, "in-epoch drift of the y block"),
        Condition("C3", est.c1() * ex * (Lx + Lxy) / q, b,
                  "ZO variance: eta_x at most of order q / (d_x L_x)"),
        Condition("C4", sp.expand(c4_lhs.subs(aux)), tau * eta_min,
                  "relative heterogeneity (Theta) is absorbed by the descent; O(eta^2) on the "
                  "left, so it holds for small enough step sizes"),
    )
    weighted = sp.expand(weighted_compact.subs(aux))
    return Theorem(
        name=f"hybrid reshuffling theorem v1 ({sm.name}, {est.directions} directions, "
             f"{est.difference} difference)",
        setting=setting,
        weighted_bound=weighted,
        bound=weighted / eta_min,
        compact=full_compact,
        aux=aux,
        conditions=conditions,
        hypotheses=tuple(sm.hypotheses) + (
            "random reshuffling: a fresh uniform permutation each epoch, independent of the past",
            "fresh independent directions at every step, independent of the permutation",
            "both oracles queried at the same point (Jacobi update)",
        ),
        derivation=der,
        epoch_noise=sp.expand(noise.subs(aux)),
    )


def generalized_hybrid_reshuffling_theorem_v1(
    estimator: ZOEstimator | None = None,
) -> Theorem:
    """The theorem under H1-gen: the H1 theorem with L_b = L0_b + L1_b G.

    The extra hypothesis (a gradient bound G on a convex region containing the run, see
    :class:`~.assumptions.GeneralizedHybridSmoothness`) is listed in ``hypotheses``; at
    L1 = 0 the theorem is the H1 theorem (``GeneralizedHybridSmoothness.reduction_to_h1``).
    """
    setting = Setting(smoothness=GeneralizedHybridSmoothness(),
                      estimator=estimator or ZOEstimator())
    return hybrid_reshuffling_theorem_v1(setting)
