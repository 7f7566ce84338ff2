"""The sharp hybrid reshuffling theorem, proved step by step (each step a method).

Algorithm (THEORY.md): epoch t draws a permutation pi; from z^0 = z_t, step i uses
j = pi(i), a q-direction ZO estimate g_x of grad_x f_j and the exact grad_y f_j, both at z^i,
and updates z^{i+1} = z^i - D (g_x, grad_y f_j), D = diag(eta_x I, eta_y I).

Write g_x^i = grad_x f_j(z^i) + b^i + xi^i: b^i the smoothing bias (||b^i|| <= beta) and xi^i
the fresh-direction noise (zero mean given the past and pi). Over one epoch
z_{t+1} - z_t = -D (P + Xi) with P = sum_i (grad f_{pi(i)}(z^i) + b^i) the predictable part and
Xi = sum_i xi^i a martingale. The proof (:class:`EpochProof`, one method per step):

1. ``descent``: the curvature model's descent lemma for F over the whole epoch.
2. ``inner_product``: E<grad F(z_t), Xi> = 0 and the polarization identity split
   -<grad_b F, P_b> into -(n/2)||grad_b F||^2 - ||P_b||^2/(2n) + ||P_b - n grad_b F||^2/(2n).
3. ``step_norms``: the step's second-order term; the noise enters once, through
   E||Xi||_W^2 = N (martingale), plus a small cross term with the drift.
4. ``sum_lower_bound``: the -||P_b||^2 terms (nonpositive coefficient by C1, C2) are bounded
   below with Young's inequality, which keeps a share 1 - theta/2 of the descent at small steps.
5. ``drift_and_bias``: w = P - n grad F(z_t) is the in-epoch drift plus the smoothing bias.
6. ``zo_noise``: N by the estimator's variance (d_x + 1 for Gaussian directions; r + 1 under the
   effective rank), the gradient at the visited points split from the epoch-start gradients.
7. ``drift_feedback``: the drift V is bounded by the in-epoch deviation, which depends on the
   drift again; C5 makes the feedback a contraction, V <= R / (1 - rho).
8. ``heterogeneity``: H3.
9. ``descent_coefficients``: the coefficients of ||grad_b F||^2 define gamma_x, gamma_y
   (exact, derived: they tend to 1 - theta/2 as the steps go to 0); C4 keeps them positive.
10. ``telescope``: the block-weighted measure, the full gradient and the adapter-only measure.
11. ``small_T``: the gradient-gap bound ||grad F||_D^2 <= 2 max_b(eta_b Lambda_b)(F - F*), the
    better bound when the run cannot spend the gap in T epochs.

Every algebraic claim is recorded in a :class:`~.derivation.Derivation` and checked numerically
at admissible points by :func:`~.verify.verify_derivation`.
"""

from __future__ import annotations

import sympy as sp

from .. import spec as vocab
from .assumptions import Setting
from .derivation import Derivation, coefficient, without
from .symbols import sym

__all__ = ["THEOREM_CONSTANTS", "CONSTANT_ROLES", "QUANTITIES", "SUMS", "EpochProof"]

R = sp.Rational
THEOREM_CONSTANTS: dict[str, sp.Rational] = {
    "a_x": R(1, 2),          # C1: n eta_x Lambda_x <= a_x
    "a_y": R(1, 2),          # C2: n eta_y Lambda_y <= a_y (Mishchenko-Khaled-Richtarik's 1/(2Ln))
    "b": R(1, 4),            # C3: c_v eta_x Lambda_x / q <= b (Nesterov-Spokoiny: 1/(4(d+4)L))
    "theta": R(1, 4),        # Young weight of the descent: gamma -> 1 - theta/2 as eta -> 0
    "theta_noise": R(1, 8),  # cross term drift x ZO noise in the step's second-order term
    "theta_bias": R(1),      # drift against smoothing bias
    "theta_mu": R(1, 8),     # estimator: gradient part against the finite-difference remainder
    "theta_grad": R(1, 8),   # ||grad f_j(z^i)||^2 against ||grad f_j(z_t)||^2 (descent's noise)
    "theta_dev_x": R(1, 4),  # x deviation: sampled gradients and noise against drift and bias
    "theta_dev_y": R(1),     # y deviation: sampled gradients against drift
    "theta_grad_dev": R(1, 4),  # ||grad f_j(z^i)||^2 split inside the deviation
    "rho": R(1, 4),          # C5: the drift feedback contracts by at least this
    "gamma_floor": R(1, 8),  # C4: the descent coefficients stay at least this
}
"""The constants the sharp theorem is stated with; changing them re-derives the theorem."""

CONSTANT_ROLES: dict[str, str] = {
    "a_x": "cap of C1, n eta_x Lambda_x <= a_x",
    "a_y": "cap of C2, n eta_y Lambda_y <= a_y: MKR's step 1/(2 L n) when d_x = 0",
    "b": "cap of C3, c_v eta_x Lambda_x / q <= b: at n = 1 at least Nesterov-Spokoiny's "
         "1/(4 (d_x + 4) L_x)",
    "theta": "Young weight in the descent; the descent coefficients tend to 1 - theta/2",
    "theta_noise": "Young weight of the drift-noise cross term (noise x (1 + theta_noise))",
    "theta_bias": "Young weight between the drift and the smoothing bias",
    "theta_mu": "Young weight between the estimator's gradient part and its remainder",
    "theta_grad": "Young weight of ||grad f_j(z^i)||^2 <= (1 + th)||grad f_j(z_t)||^2 + ... in "
                  "the descent's noise",
    "theta_dev_x": "Young weight of the x deviation split",
    "theta_dev_y": "Young weight of the y deviation split",
    "theta_grad_dev": "Young weight of the gradient split inside the deviation",
    "rho": "C5: the drift's feedback coefficient, V <= R + rho V",
    "gamma_floor": "C4: the descent coefficients gamma_x, gamma_y are at least this",
}


SUMS: dict[str, sp.Expr] = {
    "squares": sym("n") * (sym("n") - 1) * (2 * sym("n") - 1) / 6,
    "without_replacement": (sym("n") - 1) * sym("n") * (sym("n") + 1) / 6,
}
"""sum_{i<n} i^2 and sum_{i<n} i (n - i) in closed form (the tests check them against
``sympy.summation``)."""


def _q(name: str, latex: str) -> sp.Symbol:
    return sp.Symbol(latex, nonnegative=True, real=True)


QUANTITIES: dict[str, sp.Symbol] = {
    "D": _q("D", r"\mathbb{E} F(z_{t+1}) - F(z_t)"),
    "I": _q("I", r"\mathcal{I}"),
    "X2": _q("X2", r"\mathcal{X}"),
    "Y2": _q("Y2", r"\mathcal{Y}"),
    "Gx": _q("Gx", r"\mathcal{G}_x"),
    "Gy": _q("Gy", r"\mathcal{G}_y"),
    "Px": _q("Px", r"\mathcal{P}_x"),
    "Py": _q("Py", r"\mathcal{P}_y"),
    "Wx": _q("Wx", r"\mathcal{W}_x"),
    "Wy": _q("Wy", r"\mathcal{W}_y"),
    "Ex": _q("Ex", r"\mathcal{E}_x"),
    "Ey": _q("Ey", r"\mathcal{E}_y"),
    "Qx": _q("Qx", r"\mathcal{Q}_x"),
    "Qy": _q("Qy", r"\mathcal{Q}_y"),
    "N": _q("N", r"\mathcal{N}"),
    "Ag": _q("Ag", r"\mathcal{A}"),
    "V": _q("V", r"\mathcal{V}"),
    "Sx": _q("Sx", r"\mathcal{S}_x"),
    "Sy": _q("Sy", r"\mathcal{S}_y"),
    "sx2": _q("sx2", r"\hat\sigma_x^2"),
    "sy2": _q("sy2", r"\hat\sigma_y^2"),
}

_MEANING = {
    "D": "one-epoch change of the objective, conditional on z_t",
    "I": "E<grad F(z_t), z_{t+1} - z_t>",
    "X2": "E||x_{t+1} - x_t||_W^2 (W = I under H1; H_x / Lambda_x under the effective rank)",
    "Y2": "E||y_{t+1} - y_t||^2",
    "Gx": "||grad_x F(z_t)||^2",
    "Gy": "||grad_y F(z_t)||^2",
    "Px": "E||P_x||^2, P = sum_i (grad f_{pi(i)}(z^i) + b^i) the epoch's predictable part",
    "Py": "E||P_y||^2",
    "Wx": "E||w_x||^2, w = P - n grad F(z_t) (drift and bias)",
    "Wy": "E||w_y||^2",
    "Ex": "E||e_x||^2, e = sum_i [grad f_{pi(i)}(z^i) - grad f_{pi(i)}(z_t)] (drift)",
    "Ey": "E||e_y||^2",
    "Qx": "sum_i E||grad_x f_{pi(i)}(z^i) - grad_x f_{pi(i)}(z_t)||^2",
    "Qy": "sum_i E||grad_y f_{pi(i)}(z^i) - grad_y f_{pi(i)}(z_t)||^2",
    "N": "sum_i E||xi^i||_W^2, the epoch's ZO noise",
    "Ag": "sum_i E||grad_x f_{pi(i)}(z^i)||^2, the gradient energy at the visited points",
    "V": "c_Qx Q_x + c_Qy Q_y, the drift as it enters the descent",
    "Sx": "sum_i E||x^i - x_t||_W^2 (in-epoch deviation, x)",
    "Sy": "sum_i E||y^i - y_t||^2 (in-epoch deviation, y)",
    "sx2": "(1/n) sum_j ||grad_x f_j(z_t) - grad_x F(z_t)||^2",
    "sy2": "(1/n) sum_j ||grad_y f_j(z_t) - grad_y F(z_t)||^2",
}


def _min(*args: sp.Expr) -> sp.Expr:
    return sp.Min(*args, evaluate=False)


def _max(*args: sp.Expr) -> sp.Expr:
    return sp.Max(*args, evaluate=False)


def _replace(expr: sp.Expr, mapping: dict[sp.Symbol, sp.Expr]) -> sp.Expr:
    """``expr.xreplace(mapping)`` that leaves Min and Max unevaluated."""
    if isinstance(expr, (sp.Min, sp.Max)):
        return type(expr)(*[_replace(a, mapping) for a in expr.args], evaluate=False)
    if expr.has(sp.Min, sp.Max) and expr.args:
        return expr.func(*[_replace(a, mapping) for a in expr.args])
    return expr.xreplace(mapping)


class EpochProof:
    """The one-epoch proof for a :class:`~.assumptions.Setting`; call the steps in order.

    After :meth:`run`, ``numerator`` is Delta/(nT) + N_ep/n, ``gamma`` = (gamma_x, gamma_y),
    ``conditions`` the conditions as (name, lhs, rhs, description), ``epoch_noise`` N_ep, and
    the bounds are in ``full``, ``weighted``, ``adapter`` (each the smaller of the descent bound
    and the small-T bound), all in table symbols.
    """

    def __init__(self, setting: Setting, constants: dict[str, sp.Rational] | None = None):
        self.setting = setting
        self.c = dict(THEOREM_CONSTANTS if constants is None else constants)
        sm, est = setting.smoothness, setting.estimator
        self.n, self.q, self.T = sym("n"), sym("q"), sym("T")
        self.ex, self.ey, self.Delta = sym("eta_x"), sym("eta_y"), sym("Delta")
        self.Lam_x = sp.Symbol(r"\Lambda_x", positive=True)
        self.Lam_y = sp.Symbol(r"\Lambda_y", positive=True)
        self.cv = sp.Symbol("c_v", nonnegative=True)
        self.nu0 = sp.Symbol(r"\nu_0^2", nonnegative=True)
        self.beta = sp.Symbol(r"\beta", nonnegative=True)
        self.A = {k: sp.Symbol(f"A_{{{k}}}", nonnegative=True) for k in ("xx", "xy", "yx", "yy")}
        drift = sm.drift()
        self.aux: dict[sp.Symbol, sp.Expr] = {
            self.Lam_x: sm.lam_x(), self.Lam_y: sm.lam_y(), self.cv: sm.zo_variance(est),
            self.nu0: sm.zo_mu_variance(est), self.beta: sm.zo_bias(est),
            **{self.A[k]: drift[k] for k in self.A},
        }
        self.Q = QUANTITIES
        self.der = Derivation({self.Q[k]: _MEANING[k] for k in self.Q}, self.aux)
        self.uses_model = (sm.name,)
        self.zo_lemma = ("effective_rank_estimator" if sm.key == "effective-rank"
                         else "zo_variance_nonconvex")
        self.bias_lemma = vocab.DIRECTIONS.properties[est.directions]["bias_lemma"]
        if sm.key == "effective-rank":
            self.bias_lemma = "effective_rank_estimator"
        self.c_Q: dict[str, sp.Expr] = {}
        self.k_Q: dict[str, sp.Expr] = {}

    # ------------------------------------------------------------------------------------------
    def run(self) -> EpochProof:
        """All steps, in the order of the proof."""
        self.descent()
        self.inner_product()
        self.step_norms()
        self.sum_lower_bound()
        self.drift_and_bias()
        self.zo_noise()
        self.drift_feedback()
        self.heterogeneity()
        self.descent_coefficients()
        self.telescope()
        self.small_T()
        return self

    # -- 1 ----------------------------------------------------------------------------------------
    def descent(self) -> None:
        Q = self.Q
        self.der.start(
            Q["D"], Q["I"] + self.Lam_x / 2 * Q["X2"] + self.Lam_y / 2 * Q["Y2"], name="descent",
            text="The curvature model's descent lemma for F (an average of the f_i) over the "
                 "whole epoch, z_{t+1} - z_t, in expectation over the epoch's permutation and "
                 "directions: F(z') <= F(z) + <grad F(z), z' - z> + (1/2)(Lambda_x ||x' - x||_W^2 "
                 "+ Lambda_y ||y' - y||^2) (H1: the block descent lemma with 2 L_xy ab <= "
                 "L_xy (a^2 + b^2)).",
            uses=("block_descent_amgm",) + self.uses_model,
        )

    # -- 2 ----------------------------------------------------------------------------------------
    def inner_product(self) -> None:
        Q, n, ex, ey = self.Q, self.n, self.ex, self.ey
        inner = sum(eta * (-n / 2 * Q[f"G{b}"] - Q[f"P{b}"] / (2 * n) + Q[f"W{b}"] / (2 * n))
                    for b, eta in (("x", ex), ("y", ey)))
        self.der.substitute(
            Q["D"], Q["I"], inner, name="inner-product",
            text="z_{t+1} - z_t = -D (P + Xi) since pi is a permutation. z_t is fixed in the "
                 "epoch and Xi is a martingale, so E<grad F(z_t), D Xi> = 0. Per block, "
                 "polarization with u = n grad_b F(z_t), v = P_b: -<grad_b F, P_b> = "
                 "(||w_b||^2 - n^2 ||grad_b F||^2 - ||P_b||^2) / (2n), w = P - n grad F(z_t).",
            uses=("martingale_sum", "polarization"),
        )

    # -- 3 ----------------------------------------------------------------------------------------
    def step_norms(self) -> None:
        Q, ex, ey = self.Q, self.ex, self.ey
        th4 = self.c["theta_noise"]
        self.der.substitute(
            Q["D"], Q["X2"], ex**2 * (Q["Px"] + Q["Wx"] / th4 + (1 + th4) * Q["N"]),
            name="x-step",
            text="||x_{t+1} - x_t||_W^2 = eta_x^2 ||P_x + Xi||_W^2. E||Xi||_W^2 = N (orthogonal "
                 "martingale increments) and E<P_x, Xi>_W = E<w_x, Xi>_W (n grad_x F(z_t) is "
                 f"fixed), at most E||w_x||^2 / (2 th) + th N / 2 with th = {th4}; "
                 "||v||_W <= ||v|| (W <= I).",
            uses=("martingale_sum", "young"),
        )
        self.der.substitute(
            Q["D"], Q["Y2"], ey**2 * Q["Py"], name="y-step",
            text="||y_{t+1} - y_t||^2 = eta_y^2 ||P_y||^2: the y oracle is exact.",
            uses=("definition",),
        )

    # -- 4 ----------------------------------------------------------------------------------------
    def sum_lower_bound(self) -> None:
        Q, n = self.Q, self.n
        th = self.c["theta"]
        for b in ("x", "y"):
            self.der.substitute(
                Q["D"], Q[f"P{b}"], (1 - th) * n**2 * Q[f"G{b}"] - (1 / th - 1) * Q[f"W{b}"],
                lower=True, name=f"sum-lower-{b}",
                text=f"The coefficient of E||P_{b}||^2 is -(eta_{b} / (2n))(1 - n eta_{b} "
                     f"Lambda_{b}) <= 0 by C{1 if b == 'x' else 2}, so a lower bound may replace "
                     f"it: ||n grad_{b} F + w_{b}||^2 >= (1 - th) n^2 ||grad_{b} F||^2 - "
                     f"(1/th - 1)||w_{b}||^2 with th = {th}.",
                uses=("young_lower", "C1" if b == "x" else "C2"),
            )

    # -- 5 ----------------------------------------------------------------------------------------
    def drift_and_bias(self) -> None:
        Q, n = self.Q, self.n
        th5 = self.c["theta_bias"]
        self.der.substitute(
            Q["D"], Q["Wx"], (1 + th5) * Q["Ex"] + (1 + 1 / th5) * n**2 * self.beta**2,
            name="bias-split",
            text="w_x = e_x + sum_i b^i with ||b^i|| <= beta (the estimator's smoothing bias), "
                 f"so ||w_x||^2 <= (1 + th)||e_x||^2 + (1 + 1/th) n^2 beta^2, th = {th5}.",
            uses=("young_split", self.bias_lemma),
        )
        self.der.substitute(Q["D"], Q["Wy"], Q["Ey"], name="y-drift",
                            text="w_y = e_y: no bias in the FO block.", uses=("definition",))
        for b in ("x", "y"):
            self.der.substitute(
                Q["D"], Q[f"E{b}"], (n - 1) * Q[f"Q{b}"], name=f"drift-{b}",
                text=f"e_{b} sums n - 1 nonzero terms (the first step is at z_t): "
                     f"||sum v_i||^2 <= (n - 1) sum ||v_i||^2.",
                uses=("cauchy_schwarz_sum",),
            )

    # -- 6 ----------------------------------------------------------------------------------------
    def _noise_bound(self, th_grad: sp.Rational) -> tuple[sp.Expr, sp.Expr]:
        """N <= ((1 + th_mu) c_v Ag + n (1 + 1/th_mu) nu0^2) / q, and Ag's bound."""
        Q, n, q = self.Q, self.n, self.q
        th7 = self.c["theta_mu"]
        noise = ((1 + th7) * self.cv * Q["Ag"] + n * (1 + 1 / th7) * self.nu0) / q
        energy = (1 + th_grad) * n * (Q["Gx"] + Q["sx2"]) + (1 + 1 / th_grad) * Q["Qx"]
        return noise, energy

    def zo_noise(self) -> None:
        Q = self.Q
        noise, energy = self._noise_bound(self.c["theta_grad"])
        self.der.substitute(
            Q["D"], Q["N"], noise, name="zo-noise",
            text="Per step, given the past and pi, E||xi^i||_W^2 <= ((1 + th) c_v "
                 "||grad_x f_j(z^i)||^2 + (1 + 1/th) nu_0^2) / q (q independent directions, "
                 f"th = {self.c['theta_mu']}); sum over the epoch.",
            uses=(self.zo_lemma, "q_directions_variance", "martingale_sum"),
        )
        self.der.substitute(
            Q["D"], Q["Ag"], energy, name="gradient-energy",
            text="||grad_x f_j(z^i)||^2 <= (1 + th)||grad_x f_j(z_t)||^2 + (1 + 1/th)||drift||^2 "
                 f"with th = {self.c['theta_grad']}, and sum_i ||grad_x f_{{pi(i)}}(z_t)||^2 = "
                 "n (G_x + sigma_hat_x^2).",
            uses=("young_split",),
        )

    # -- 7 ----------------------------------------------------------------------------------------
    def drift_feedback(self) -> None:
        Q, n, ex, ey, der = self.Q, self.n, self.ex, self.ey, self.der
        cur = der.current[Q["D"]]
        self.c_Q = {b: coefficient(cur, Q[f"Q{b}"]) for b in ("x", "y")}
        rest = without(cur, Q["Qx"], Q["Qy"])
        der.define(Q["D"], rest + Q["V"], name="define-drift",
                   text="Name the drift as it enters the descent: V = c_Qx Q_x + c_Qy Q_y, with "
                        "the coefficients the chain has produced (both >= 0 under C1, C2).",
                   defs={Q["V"]: self.c_Q["x"] * Q["Qx"] + self.c_Q["y"] * Q["Qy"]})
        A = self.A
        V = Q["V"]
        der.start(
            V, self.c_Q["x"] * (A["xx"] * Q["Sx"] + A["xy"] * Q["Sy"])
            + self.c_Q["y"] * (A["yx"] * Q["Sx"] + A["yy"] * Q["Sy"]),
            name="drift-by-deviation",
            text="The curvature model's drift bound at z^i and z_t: ||grad_b f_j(z^i) - "
                 "grad_b f_j(z_t)||^2 <= A_bx ||x^i - x_t||_W^2 + A_by ||y^i - y_t||^2; sum over "
                 "the epoch and weight by c_Qx, c_Qy.",
            uses=("effective_rank_drift",) + self.uses_model,
        )
        der.fact("sum-squares", SUMS["squares"], (n - 1) * n * (2 * n - 1) / 6,
                 text="sum_{i<n} i^2 = (n - 1) n (2n - 1) / 6 (used exactly).", uses=())
        der.fact("sum-without-replacement", SUMS["without_replacement"],
                 (n - 1) * n * (n + 1) / 6,
                 text="sum_{i<n} i (n - i) = (n - 1) n (n + 1) / 6, so sum_{i<n} i (n - i) / "
                      "(n - 1) = n (n + 1) / 6 for n >= 2 (the sum is 0 at n = 1, where "
                      "n (n + 1) / 6 is an upper bound).", uses=())
        th6, s2 = self.c["theta_dev_x"], (n - 1) * n * (2 * n - 1) / 6
        der.substitute(
            V, Q["Sx"],
            ex**2 * ((1 + th6) * (s2 * Q["Gx"] + n * (n + 1) / 6 * Q["sx2"] + (n - 1) * Q["N"])
                     + (1 + 1 / th6) * (n * (n - 1) * Q["Qx"] + 2 * s2 * self.beta**2)),
            name="deviation-x",
            text="x^i - x_t = -eta_x (C_i + R_i + M_i): C_i = sum_{k<i} grad_x f_{pi(k)}(z_t), "
                 "R_i = sum_{k<i} (drift^k + b^k), M_i = sum_{k<i} xi^k. C_i depends on pi only "
                 "and M_i is a martingale given pi, so E||C_i + M_i||^2 = E||C_i||^2 + "
                 "E||M_i||^2; then ||C + M + R||^2 <= (1 + th)||C + M||^2 + (1 + 1/th)||R||^2 "
                 f"(th = {th6}), ||R_i||^2 <= 2 i sum_{{k<i}} ||drift^k||^2 + 2 i^2 beta^2, and "
                 "E||C_i||^2 = i^2 G_x + i (n - i)/(n - 1) sigma_hat_x^2 (sampling without "
                 "replacement). Sum over i < n; sum_i E||M_i||^2 <= (n - 1) N.",
            uses=("without_replacement_variance", "martingale_sum", "young_split",
                  "cauchy_schwarz_sum", "sum-squares", "sum-without-replacement",
                  self.bias_lemma),
        )
        th6y = self.c["theta_dev_y"]
        der.substitute(
            V, Q["Sy"],
            ey**2 * ((1 + th6y) * (s2 * Q["Gy"] + n * (n + 1) / 6 * Q["sy2"])
                     + (1 + 1 / th6y) * n * (n - 1) / 2 * Q["Qy"]),
            name="deviation-y",
            text="Same for y, whose oracle is exact: no noise, no bias; ||R_i||^2 <= i sum_{k<i} "
                 f"||drift^k||^2; th = {th6y}.",
            uses=("without_replacement_variance", "young_split", "cauchy_schwarz_sum",
                  "sum-squares", "sum-without-replacement"),
        )
        noise, energy = self._noise_bound(self.c["theta_grad_dev"])
        der.substitute(V, Q["N"], noise, name="deviation-zo-noise",
                       text="The epoch's ZO noise, as in step zo-noise.",
                       uses=(self.zo_lemma, "q_directions_variance", "martingale_sum"))
        der.substitute(V, Q["Ag"], energy, name="deviation-gradient-energy",
                       text="The gradient energy, as in step gradient-energy, with th = "
                            f"{self.c['theta_grad_dev']}.", uses=("young_split",))
        curV = der.current[V]
        self.k_Q = {b: coefficient(curV, Q[f"Q{b}"]) for b in ("x", "y")}
        restV = without(curV, Q["Qx"], Q["Qy"])
        rho = self.c["rho"]
        der.bound_by(
            V, restV + rho * V, name="absorb-deviation",
            text=f"The drift feeds back: by C5 its coefficients are at most rho = {rho} times "
                 "those of V, so k_Qx Q_x + k_Qy Q_y <= rho V.",
            uses=("C5x", "C5y"), defs={V: self.c_Q["x"] * Q["Qx"] + self.c_Q["y"] * Q["Qy"]},
        )
        der.bound_by(V, restV / (1 - rho), name="solve-drift", kind="solve",
                     text=f"V <= R + rho V with rho = {rho} < 1 gives V <= R / (1 - rho).",
                     uses=(), claim=(rho, sp.Integer(1)))
        der.substitute(Q["D"], V, der.current[V], name="insert-drift",
                       text="Insert the drift bound.", uses=("solve-drift",))

    # -- 8 ----------------------------------------------------------------------------------------
    def heterogeneity(self) -> None:
        Q, het = self.Q, self.setting.heterogeneity
        for b in ("x", "y"):
            self.der.substitute(Q["D"], Q[f"s{b}2"], het.variance_bound(b, Q["Gx"] + Q["Gy"]),
                                name=f"heterogeneity-{b}", text=f"H3 for the {b} block.",
                                uses=(het.name,))

    # -- 9 ----------------------------------------------------------------------------------------
    def descent_coefficients(self) -> None:
        Q, n, ex, ey, der = self.Q, self.n, self.ex, self.ey, self.der
        cur = der.current[Q["D"]]
        self.gamma_sym = (sp.Symbol(r"\gamma_x", real=True), sp.Symbol(r"\gamma_y", real=True))
        # expanded in the abbreviations, so that eta_b cancels (gamma_b is finite at eta = 0)
        self.gamma_compact = (sp.expand(-coefficient(cur, Q["Gx"]) / (n * ex)),
                              sp.expand(-coefficient(cur, Q["Gy"]) / (n * ey)))
        noise = without(cur, Q["Gx"], Q["Gy"])
        self.noise_compact = noise
        gx, gy = self.gamma_sym
        der.define(
            Q["D"], -n * (gx * ex * Q["Gx"] + gy * ey * Q["Gy"]) + noise,
            name="descent-coefficients",
            text="Collect the coefficients of ||grad_x F||^2 and ||grad_y F||^2: they define "
                 "gamma_x and gamma_y (exact expressions, derived above; as the steps go to 0 "
                 f"they tend to 1 - theta/2 = {1 - self.c['theta'] / 2}). C4 keeps them at least "
                 f"{self.c['gamma_floor']}. What remains is N_ep, the noise of one epoch.",
            uses=("C4x", "C4y"),
            defs={gx: self.gamma_compact[0], gy: self.gamma_compact[1]},
        )
        self.aux[gx] = self.gamma_compact[0].xreplace(self.aux)
        self.aux[gy] = self.gamma_compact[1].xreplace(self.aux)
        self.der.aux = dict(self.aux)

    # -- 10 ---------------------------------------------------------------------------------------
    def telescope(self) -> None:
        n, T, Delta, ex, ey, der = self.n, self.T, self.Delta, self.ex, self.ey, self.der
        gx, gy = self.gamma_sym
        num = Delta / (n * T) + self.noise_compact / n
        self.numerator_compact = num
        self.weighted_symbol = sp.Symbol(
            r"\frac{1}{T}\sum_t \mathbb{E}[\gamma_x \eta_x\|\nabla_x F\|^2 + "
            r"\gamma_y \eta_y\|\nabla_y F\|^2]", nonnegative=True)
        der.conclude(
            self.weighted_symbol, num, name="telescope", kind="telescope",
            text="Take total expectation of E F(z_{t+1}) <= F(z_t) - n (gamma_x eta_x G_x + "
                 "gamma_y eta_y G_y) + N_ep, sum over t < T and use F(z_T) >= F* (H2).",
            uses=("H2",),
        )
        self.full_main = num / _min(gx * ex, gy * ey)
        self.weighted_main = num / _min(gx, gy)
        self.adapter_main = num / (gy * ey)
        der.conclude(
            sp.Symbol(r"\min_t \mathbb{E}\|\nabla F(z_t)\|^2", nonnegative=True), self.full_main,
            name="unweight", kind="telescope",
            text="min_t E||grad F||^2 <= (1/T) sum_t E||grad F||^2, and ||g||^2 <= "
                 "(gamma_x eta_x ||g_x||^2 + gamma_y eta_y ||g_y||^2) / min(gamma_x eta_x, "
                 "gamma_y eta_y); likewise the block-weighted measure (1/T) sum_t "
                 "E||grad F||_D^2 divides by min(gamma_x, gamma_y) and the adapter-only measure "
                 "(1/T) sum_t E||grad_y F||^2 by gamma_y eta_y.",
            uses=(),
        )

    # -- 11 ---------------------------------------------------------------------------------------
    def small_T(self) -> None:
        Delta, T, ex, ey, der = self.Delta, self.T, self.ex, self.ey, self.der
        L_D = _max(ex * self.Lam_x, ey * self.Lam_y)
        self.weighted_alt = 2 * L_D * (Delta + (T - 1) * self.noise_compact / 2)
        self.full_alt = 2 * _max(self.Lam_x, self.Lam_y) * Delta
        self.adapter_alt = self.weighted_alt / ey
        der.conclude(
            sp.Symbol(r"\frac{1}{T}\sum_t \mathbb{E}\|\nabla F(z_t)\|_D^2", nonnegative=True),
            _min(self.weighted_main, self.weighted_alt), name="small-T", kind="telescope",
            text="The gradient gap ||grad F(z)||_D^2 <= 2 max_b(eta_b Lambda_b)(F(z) - F*) "
                 "(grad^2 F <= diag(Lambda_x I, Lambda_y I)) and E F(z_t) - F* <= Delta + t N_ep "
                 "(the descent coefficients are >= 0) bound the average over t < T by "
                 "2 max_b(eta_b Lambda_b)(Delta + (T - 1) N_ep / 2); at t = 0, "
                 "min_t E||grad F||^2 <= 2 max(Lambda_x, Lambda_y) Delta. The theorem's bounds "
                 "are the smaller of these and the descent bounds: the gap bound wins when the "
                 "run cannot spend the gap in T epochs (small eta n T).",
            uses=("gradient_gap", "H2"),
        )

    # -- results ---------------------------------------------------------------------------------
    def expand(self, expr: sp.Expr) -> sp.Expr:
        """An expression in table symbols (abbreviations expanded; the values of the
        abbreviations are in table symbols, so one replacement suffices). Min and Max are
        rebuilt unevaluated: comparing two long polynomials symbolically is slow and useless."""
        return _replace(sp.sympify(expr), self.aux)

    def conditions(self, *, compact: bool = False) -> list[tuple[str, sp.Expr, sp.Expr, str]]:
        """(name, lhs, rhs, description) of C1-C5, in table symbols (``compact``: in the
        abbreviations, for display)."""
        n, q, ex, ey = self.n, self.q, self.ex, self.ey
        c = self.c
        e = (lambda x: x) if compact else self.expand
        gx, gy = self.gamma_sym
        return [
            ("C1", n * ex * e(self.Lam_x), c["a_x"], "in-epoch drift of the x block"),
            ("C2", n * ey * e(self.Lam_y), c["a_y"],
             "in-epoch drift of the y block (1/(2 L n) when d_x = 0: Mishchenko-Khaled-"
             "Richtarik's step)"),
            ("C3", e(self.cv) * ex * e(self.Lam_x) / q, c["b"],
             "ZO variance: eta_x at most q / (4 c_v Lambda_x), c_v = d_x + 1 for Gaussian "
             "directions (r + 1 under the effective rank)"),
            ("C4x", c["gamma_floor"], e(gx), "the x block keeps a descent coefficient"),
            ("C4y", c["gamma_floor"], e(gy), "the y block keeps a descent coefficient"),
            ("C5x", e(self.k_Q["x"]), c["rho"] * e(self.c_Q["x"]),
             "the x-drift's feedback contracts (k_Qx <= rho c_Qx)"),
            ("C5y", e(self.k_Q["y"]), c["rho"] * e(self.c_Q["y"]),
             "the y-drift's feedback contracts (k_Qy <= rho c_Qy)"),
        ]
