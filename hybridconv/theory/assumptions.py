"""The assumptions of the hybrid setting as objects (THEORY.md, "Assumptions").

Each assumption holds its statement in words, its constants (table symbols) and the sympy
forms the derivation uses. They are pluggable: a theorem is built from a :class:`Setting`
(curvature model, heterogeneity, estimator), so a user can encode a different variant.

A *curvature model* is what the one-epoch proof needs from the smoothness assumption
(:mod:`hybridconv.theory.proof`): a PSD matrix 𝐇 = diag(Lambda_x W, Lambda_y I) with
0 <= W <= I such that, for every component f_i and all points z, z' the run visits,

* (descent) |f_i(z') - f_i(z) - <grad f_i(z), z' - z>| <= (1/2) (z' - z)^T 𝐇 (z' - z);
* (drift) ||grad_b f_i(z') - grad_b f_i(z)||^2 <= A_bx ||x' - x||_W^2 + A_by ||y' - y||^2 for
  both blocks b, with ||v||_W^2 = v^T W v;
* (estimator) the ZO noise, measured in the W-norm, and the smoothing bias obey the constants
  below.

Four models: H1 (block Lipschitz gradients, W = I), H1-gen (H1 on a gradient-bounded region),
the local effective rank (W = H_x / Lambda_x with tr(W) <= r, after MeZO) and the paper's block
l-smoothness (H1 in the two-sided diagonal form with Lambda_b = l_b(G)).

References:
    [NS17] Nesterov, Spokoiny. Random gradient-free minimization of convex functions.
        Found. Comput. Math. 17 (2017).
    [GL13] Ghadimi, Lan. Stochastic first- and zeroth-order methods for nonconvex stochastic
        programming. SIAM J. Optim. 23 (2013).
    [ZHSJ20] Zhang, He, Sra, Jadbabaie. Why gradient clipping accelerates training. ICLR 2020.
    [LQTRJ23] Li, Qian, Tian, Rakhlin, Jadbabaie. Convex and non-convex optimization under
        generalized smoothness. NeurIPS 2023 (arXiv 2306.01264).
    [MeZO] Malladi et al. Fine-tuning language models with just forward passes. NeurIPS 2023.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import sympy as sp

from .. import spec as vocab
from .symbols import sym

__all__ = [
    "ASSUMPTIONS",
    "DIRECTIONS",
    "DIFFERENCES",
    "HybridSmoothness",
    "GeneralizedHybridSmoothness",
    "EffectiveRank",
    "BlockLSmoothness",
    "Heterogeneity",
    "ZOEstimator",
    "Setting",
    "curvature_model",
]

DIRECTIONS = vocab.DIRECTIONS.values
DIFFERENCES = vocab.DIFFERENCES.values
ASSUMPTIONS = vocab.ASSUMPTIONS.values
"""Views of :data:`hybridconv.spec.DIRECTIONS`, ``DIFFERENCES`` and ``ASSUMPTIONS`` (the
curvature models a theorem can be derived under: ``hybridconv theory --assumption``)."""


@dataclass(frozen=True)
class ZOEstimator:
    """H4, the ZO oracle: q-direction two-point estimator of grad_x f_j.

    g_x = (1/q) sum_k delta_k u_k with, for the central difference,
    delta_k = [f_j(x + mu u_k, y) - f_j(x - mu u_k, y)] / (2 mu), and for the forward
    difference delta_k = [f_j(x + mu u_k, y) - f_j(x, y)] / mu.

    For an L-smooth (not necessarily convex) f, both differences satisfy
    delta = <a, u> + rem with a = grad f and |rem| <= (L mu / 2) ||u||^2 (two-sided Taylor
    bound), and E[<a, u> u] = a for the three direction kinds (E u u^T = I). So, per direction,
    with d the dimension:

    ============  ==============================  ===========================  ==============
    directions    c_v: E||<a,u>u - a||^2/||a||^2  m6 = E||u||^6                 bias / (L mu)
    ============  ==============================  ===========================  ==============
    gaussian      d + 1 (exact)                   d (d + 2) (d + 4) (exact)     sqrt(d) (Stein)
    sphere        d - 1 (exact)                   d^3 (exact)                   sqrt(d) (ball)
    rademacher    d - 1 (exact)                   d^3 (exact)                   2.16 sqrt(d) (ES)
    ============  ==============================  ===========================  ==============

    Bias. Gaussian: E[g] = E[grad f(x + mu u)] (Stein's identity, [NS17] eq. (21)), so
    ||E g - grad f|| <= L mu E||u|| <= L mu sqrt(d). Sphere of radius sqrt(d): E[g] is the
    gradient of the ball average of f over the ball of radius mu sqrt(d) (Flaxman, Kalai,
    McMahan 2005, Lemma 1), hence a bias <= L mu sqrt(d) d/(d + 1) <= L mu sqrt(d). Rademacher
    has no smoothed function, but E<u,v> = 0 lets the remainder be centred:
    ||E[rem u]|| <= sup_v sqrt(Var rem) sqrt(E<u,v>^2), and the Efron-Stein inequality on the
    hypercube bounds Var rem by (1 + 2/sqrt(3))^2 L^2 mu^4 d (lemma
    ``rademacher_smoothing_bias``): a bias <= (1 + 2/sqrt(3)) L mu sqrt(d), against the plain
    Taylor bound L mu d / 2 (smaller for d < 19; both hold).
    The legacy constants c1, c2, cb (2(d+2), m6/2, (d+3)^{3/2}/2 for Gaussian, after [GL13]
    eq. (3.6)) are kept for :mod:`hybridconv.theory.legacy`.
    """

    directions: str = "gaussian"
    difference: str = "central"
    name: str = "H4"

    def __post_init__(self) -> None:
        vocab.validate("directions", self.directions)
        vocab.validate("difference", self.difference)

    @property
    def statement(self) -> str:
        return (
            f"{self.difference}-difference estimator with q {self.directions} directions: "
            "||E g_x - grad_x f|| <= beta, E||g_x - E g_x||_W^2 <= "
            "((1 + th) c_v ||grad_x f||^2 + (1 + 1/th) nu^2) / q"
        )

    # -- the sharp constants, in a dimension ``d`` (from the vocabulary row's moments) -------
    def _moment(self, key: str, d: sp.Expr | None) -> sp.Expr:
        m = self.moments()[key]
        return m if d is None else m.xreplace({sym("d_x"): d})

    def variance_constant(self, d: sp.Expr | None = None) -> sp.Expr:
        """c_v = E||<a,u>u - a||^2 / ||a||^2 = E<a,u>^2 ||u||^2 - 1 (a a unit vector; exact,
        since E<a,u>u = a): d + 1 for Gaussian directions, d - 1 for fixed-norm ones."""
        return self._moment("E_au2_u2", d) - 1

    def sixth_moment(self, d: sp.Expr | None = None) -> sp.Expr:
        """m6 = E||u||^6 (exact)."""
        return self._moment("E_u6", d)

    def bias_constant(self, d: sp.Expr | None = None) -> sp.Expr:
        """c_b with ||E g - grad f|| <= c_b L mu (see the class docstring)."""
        return self._moment("bias", d)

    # -- legacy constants (theorem v1) ----------------------------------------------------------
    def c1(self) -> sp.Expr:
        """2 E<a,u>^2 ||u||^2: 2 (d + 2) for Gaussian directions, 2 d for fixed-norm ones."""
        return 2 * self.moments()["E_au2_u2"]

    def c2(self) -> sp.Expr:
        """E||u||^6 / 2: d (d + 2) (d + 4) / 2 (Gaussian), d^3 / 2 (fixed norm)."""
        return self.moments()["E_u6"] / 2

    def cb(self) -> sp.Expr:
        """E||u||^3 / 2 or its bound: (d + 3)^{3/2} / 2 (Gaussian), d^{3/2} / 2 (fixed norm)."""
        return self.moments()["E_u3_bound"] / 2

    def moments(self) -> dict[str, sp.Expr]:
        """Exact direction moments the constants come from (a a unit vector):
        ``E<a,u>^2||u||^2``, ``E||u||^6``, ``E||u||^3`` (or an upper bound for the Gaussian,
        [NS17] Lemma 1: E||u||^p <= (d + p)^{p/2} for p >= 2) and the smoothing-bias factor
        ``bias``. They are the vocabulary row's (:data:`hybridconv.spec.DIRECTIONS`
        ``.properties``), in ``d = d_x``."""
        return dict(_moments(self.directions))


@functools.cache
def _moments(directions: str) -> tuple[tuple[str, sp.Expr], ...]:
    d = sym("d_x")
    rows = vocab.DIRECTIONS.properties[directions]
    return tuple((k, sp.sympify(v, locals={"d": d})) for k, v in rows.items())


@dataclass(frozen=True)
class HybridSmoothness:
    """H1, hybrid smoothness (block form).

    For every i and all z = (x, y), z' = (x', y')::

        ||grad_x f_i(z) - grad_x f_i(z')|| <= L_x ||x - x'|| + L_xy ||y - y'||
        ||grad_y f_i(z) - grad_y f_i(z')|| <= L_xy ||x - x'|| + L_y ||y - y'||

    Curvature model: 𝐇 = diag(Lambda_x I, Lambda_y I), Lambda_b = L_b + L_xy (the block descent
    lemma with 2 L_xy ab <= L_xy (a^2 + b^2), two-sided), W = I, and the drift constants from
    (L_x a + L_xy b)^2 <= (L_x + L_xy)(L_x a^2 + L_xy b^2) (Cauchy-Schwarz):
    A_xx = Lambda_x L_x, A_xy = Lambda_x L_xy, A_yx = Lambda_y L_xy, A_yy = Lambda_y L_y.
    """

    name: str = "H1"
    statement: str = (
        "||grad_x f_i(z) - grad_x f_i(z')|| <= L_x ||x-x'|| + L_xy ||y-y'||, "
        "||grad_y f_i(z) - grad_y f_i(z')|| <= L_xy ||x-x'|| + L_y ||y-y'||"
    )
    hypotheses: tuple[str, ...] = ()
    key: str = "h1"

    @property
    def L_x(self) -> sp.Expr:
        return sym("L_x")

    @property
    def L_y(self) -> sp.Expr:
        return sym("L_y")

    @property
    def L_xy(self) -> sp.Expr:
        return sym("L_xy")

    def constants(self) -> dict[str, sp.Expr]:
        """The three block constants as expressions (symbols here)."""
        return {"L_x": self.L_x, "L_y": self.L_y, "L_xy": self.L_xy}

    # -- the curvature model ------------------------------------------------------------------
    def lam_x(self) -> sp.Expr:
        return self.L_x + self.L_xy

    def lam_y(self) -> sp.Expr:
        return self.L_y + self.L_xy

    def drift(self) -> dict[str, sp.Expr]:
        """A_bb' of ||grad_b f(z') - grad_b f(z)||^2 <= A_bx ||dx||_W^2 + A_by ||dy||^2."""
        return {"xx": self.lam_x() * self.L_x, "xy": self.lam_x() * self.L_xy,
                "yx": self.lam_y() * self.L_xy, "yy": self.lam_y() * self.L_y}

    def zo_dimension(self) -> sp.Expr:
        """The dimension in the estimator constants (d_x; r under the effective rank)."""
        return sym("d_x")

    def zo_variance(self, est: ZOEstimator) -> sp.Expr:
        """c_v of E||<a,u>u - a||_W^2 <= c_v ||a||^2."""
        return est.variance_constant(self.zo_dimension())

    def zo_mu_variance(self, est: ZOEstimator) -> sp.Expr:
        """nu0^2 of E rem^2 ||u||_W^2 <= nu0^2, |rem| <= (L_x mu / 2)||u||^2."""
        return (sym("mu") * self.L_x) ** 2 / 4 * est.sixth_moment(self.zo_dimension())

    def zo_bias(self, est: ZOEstimator) -> sp.Expr:
        """beta of ||E g - grad_x f|| <= beta."""
        return est.bias_constant(self.zo_dimension()) * sym("mu") * self.L_x

    def supports(self, est: ZOEstimator) -> None:
        """Raise ValueError if the model has no constants for ``est``."""


@dataclass(frozen=True)
class GeneralizedHybridSmoothness(HybridSmoothness):
    """H1-gen, hybrid generalized smoothness: block-wise (L0, L1) smoothness.

    ||H_bb'(z)|| <= L0_bb' + L1_bb' ||grad f_i(z)|| for b, b' in {x, y} ([ZHSJ20], Def. 1,
    applied per block). With L1 = 0 it is H1.

    The theorem under H1-gen carries an explicit gradient bound: ||grad f_i(z)|| <= G on a
    convex region R that contains every iterate, the segments between consecutive iterates
    and the ZO perturbation segments [x - mu u, x + mu u] for every direction u the estimator can
    draw (bounded for sphere and Rademacher directions: radius mu sqrt(d_x); for Gaussian
    directions R must be the whole space). On R the Hessian blocks are bounded by L0 + L1 G, so
    H1 holds on R with ``L_b = L0_b + L1_b G`` (mean-value theorem), and the H1 derivation goes
    through unchanged. The simulator certifies a ball around every iterate that contains the
    step and the perturbations (``Problem.max_component_grad_norm(x, y, radius)``).
    """

    name: str = "H1-gen"
    statement: str = "||H_bb'(z)|| <= L0_bb' + L1_bb' ||grad f_i(z)||, b, b' in {x, y}"
    hypotheses: tuple[str, ...] = (
        "||grad f_i(z)|| <= G on a convex region containing the iterates, the segments between "
        "them and the ZO perturbation segments of every direction the estimator can draw "
        "(Gaussian directions: the whole space)",
    )
    key: str = "h1-gen"

    @property
    def L_x(self) -> sp.Expr:
        return sym("L0_x") + sym("L1_x") * sym("G")

    @property
    def L_y(self) -> sp.Expr:
        return sym("L0_y") + sym("L1_y") * sym("G")

    @property
    def L_xy(self) -> sp.Expr:
        return sym("L0_xy") + sym("L1_xy") * sym("G")

    def reduction_to_h1(self) -> dict[sp.Symbol, sp.Expr]:
        """The substitution under which H1-gen is H1: L1 = 0 and L0 = L."""
        return {
            sym("L1_x"): 0, sym("L1_y"): 0, sym("L1_xy"): 0,
            sym("L0_x"): sym("L_x"), sym("L0_y"): sym("L_y"), sym("L0_xy"): sym("L_xy"),
        }


@dataclass(frozen=True)
class EffectiveRank(HybridSmoothness):
    """ER, local effective rank (MeZO's Assumption 1, in a two-sided block form).

    There is a PSD matrix H_x on R^{d_x} with ||H_x|| <= Lambda_x = L_x + L_xy and
    tr(H_x) <= r Lambda_x such that, for every i and every point z of a convex region R that
    contains the iterates, the segments between them and the ZO perturbation segments,

        -diag(H_x, Lambda_y I) <= grad^2 f_i(z) <= diag(H_x, Lambda_y I),  Lambda_y = L_y + L_xy.

    MeZO (Malladi et al. 2023, Assumption 1, "local r-effective rank") assumes the upper bound
    grad^2 L <= H with tr(H) <= r ||H|| near the iterate, which suffices for one descent step;
    the reshuffling drift compares gradients at different points and needs both sides. H1 implies
    ER with H_x = Lambda_x I and r = d_x, so r <= d_x always.

    Consequences (W = H_x / Lambda_x, so 0 <= W <= I and tr W <= r):

    * descent with 𝐇 = diag(H_x, Lambda_y I);
    * drift: for M symmetric with -𝐇 <= M <= 𝐇, M = 𝐇^{1/2} K 𝐇^{1/2} with ||K|| <= 1, so
      ||(M v)_b||^2 <= ||𝐇_bb|| v^T 𝐇 v: A_xx = Lambda_x^2, A_xy = Lambda_x Lambda_y,
      A_yx = Lambda_y Lambda_x, A_yy = Lambda_y^2;
    * estimator (Gaussian; sphere directions have smaller moments): E<a,u>^2 u^T W u - a^T W a
      = ||a||^2 tr W + a^T W a <= (r + 1)||a||^2; |rem| <= (mu/2) u^T H_x u and
      E (u^T W u)^3 = (tr W)^3 + 6 tr W tr W^2 + 8 tr W^3 <= r (r + 2)(r + 4); the Stein bias
      ||E grad f(x + mu u) - grad f(x)|| <= mu sqrt(Lambda_x E u^T H_x u) <= mu Lambda_x sqrt(r).

    So d_x is replaced by r wherever the proof allows: in the ZO variance, the smoothing terms
    and the step cap C3.
    """

    name: str = "ER"
    statement: str = (
        "-diag(H_x, Lambda_y I) <= grad^2 f_i(z) <= diag(H_x, Lambda_y I) on the region the run "
        "visits, H_x PSD, ||H_x|| <= L_x + L_xy, tr(H_x) <= r (L_x + L_xy)"
    )
    hypotheses: tuple[str, ...] = (
        "the effective-rank bound holds on a convex region containing the iterates, the segments "
        "between them and the ZO perturbation segments (Gaussian directions: the whole space)",
    )
    key: str = "effective-rank"

    def drift(self) -> dict[str, sp.Expr]:
        lx, ly = self.lam_x(), self.lam_y()
        return {"xx": lx * lx, "xy": lx * ly, "yx": ly * lx, "yy": ly * ly}

    def zo_dimension(self) -> sp.Expr:
        return sym("r")

    def zo_variance(self, est: ZOEstimator) -> sp.Expr:
        return sym("r") + 1

    def zo_mu_variance(self, est: ZOEstimator) -> sp.Expr:
        r = sym("r")
        return (sym("mu") * self.lam_x()) ** 2 / 4 * r * (r + 2) * (r + 4)

    def zo_bias(self, est: ZOEstimator) -> sp.Expr:
        return sp.sqrt(sym("r")) * sym("mu") * self.lam_x()

    def supports(self, est: ZOEstimator) -> None:
        if est.directions == "rademacher":
            raise ValueError("the effective-rank theorem covers gaussian and sphere directions; "
                             "Rademacher moments of u^T H u are not bounded by the effective "
                             "rank alone")


@dataclass(frozen=True)
class BlockLSmoothness(HybridSmoothness):
    """The paper's block l-smoothness, two-sided, at a gradient level G.

    The reference paper (a secondhand summary, THEORY.md) states one-sided block
    l-smoothness grad^2 f(x, y) <= diag(l_x(||grad f||) I, l_y(||grad f||) I) with l_x, l_y
    non-decreasing and sub-quadratic. This model assumes it two-sided for every component:

        -diag(l_x(G) I, l_y(G) I) <= grad^2 f_i(z) <= diag(l_x(G) I, l_y(G) I)

    on a convex region R where max_i ||grad f_i|| <= G (l non-decreasing, so l(||grad f_i||) <=
    l(G) there) that contains the iterates, the segments between them and the ZO perturbation
    segments. The one-sided form gives the descent lemma but not the gradient differences the
    reshuffling drift needs. Curvature model: Lambda_b = l_b(G), W = I, A_bb' = l_b l_b'.

    H1 implies it at every G with l_x = L_x + t L_xy, l_y = L_y + L_xy / t for any t > 0
    (|v^T grad^2 f v| <= L_x a^2 + 2 L_xy ab + L_y b^2 and 2ab <= t a^2 + b^2 / t). A
    sub-quadratic l makes the gradient level reachable: ||grad f||^2 <= 2 l(||grad f||)(f - f*)
    ([LQTRJ23], Lemma 3.5) bounds the gradient on every sublevel set.
    """

    name: str = "l-smooth"
    statement: str = (
        "-diag(l_x(G) I, l_y(G) I) <= grad^2 f_i(z) <= diag(l_x(G) I, l_y(G) I) wherever "
        "max_i ||grad f_i(z)|| <= G (l_x, l_y non-decreasing)"
    )
    hypotheses: tuple[str, ...] = (
        "max_i ||grad f_i|| <= G on a convex region containing the iterates, the segments "
        "between them and the ZO perturbation segments of every direction the estimator can "
        "draw (Gaussian directions: the whole space)",
    )
    key: str = "l-smooth"

    @property
    def L_x(self) -> sp.Expr:
        return sym("l_x")

    @property
    def L_y(self) -> sp.Expr:
        return sym("l_y")

    @property
    def L_xy(self) -> sp.Expr:
        return sp.Integer(0)

    def drift(self) -> dict[str, sp.Expr]:
        lx, ly = sym("l_x"), sym("l_y")
        return {"xx": lx * lx, "xy": lx * ly, "yx": ly * lx, "yy": ly * ly}

    @staticmethod
    def from_h1(t: sp.Expr | int = 1) -> dict[sp.Symbol, sp.Expr]:
        """The substitution l_x = L_x + t L_xy, l_y = L_y + L_xy / t under which H1 gives it."""
        t = sp.sympify(t)
        return {sym("l_x"): sym("L_x") + t * sym("L_xy"),
                sym("l_y"): sym("L_y") + sym("L_xy") / t}


@dataclass(frozen=True)
class Heterogeneity:
    """H3, block heterogeneity.

    (1/n) sum_i ||grad_b f_i(z) - grad_b F(z)||^2 <= Theta_b ||grad F(z)||^2 + sigma_b^2
    for b in {x, y}. The relative part multiplies the *full* gradient norm, as in THEORY.md.
    """

    name: str = "H3"
    statement: str = (
        "(1/n) sum_i ||grad_b f_i(z) - grad_b F(z)||^2 <= Theta_b ||grad F(z)||^2 + sigma_b^2"
    )

    def variance_bound(self, block: str, grad_sq: sp.Expr) -> sp.Expr:
        """The right-hand side for block ``"x"`` or ``"y"`` given ||grad F||^2."""
        if block not in ("x", "y"):
            raise ValueError(f"block must be 'x' or 'y', got {block!r}")
        return sym(f"Theta_{block}") * grad_sq + sym(f"sigma_{block}") ** 2


@dataclass(frozen=True)
class Setting:
    """The assumptions a theorem is built from."""

    smoothness: HybridSmoothness = field(default_factory=HybridSmoothness)
    heterogeneity: Heterogeneity = field(default_factory=Heterogeneity)
    estimator: ZOEstimator = field(default_factory=ZOEstimator)

    def __post_init__(self) -> None:
        self.smoothness.supports(self.estimator)

    def names(self) -> list[str]:
        return [self.smoothness.name, "H2", self.heterogeneity.name, self.estimator.name]


def curvature_model(assumption: str) -> HybridSmoothness:
    """The curvature model named ``assumption`` (one of :data:`ASSUMPTIONS`)."""
    models = {"h1": HybridSmoothness, "h1-gen": GeneralizedHybridSmoothness,
              "effective-rank": EffectiveRank, "l-smooth": BlockLSmoothness}
    return models[vocab.validate("assumption", assumption)]()
