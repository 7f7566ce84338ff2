"""The assumptions of the hybrid setting as objects (THEORY.md, "Assumptions").

Each assumption holds its statement in words, its constants (table symbols) and, where it
has one, the sympy form that the derivation uses. They are pluggable: the theorem is built
from an :class:`Setting` (smoothness, heterogeneity, estimator), so a user can encode a
different variant, e.g. another direction distribution with its own moment constants.

References:
    [NS17] Nesterov, Spokoiny. Random gradient-free minimization of convex functions.
        Found. Comput. Math. 17 (2017).
    [GL13] Ghadimi, Lan. Stochastic first- and zeroth-order methods for nonconvex stochastic
        programming. SIAM J. Optim. 23 (2013).
    [ZHSJ20] Zhang, He, Sra, Jadbabaie. Why gradient clipping accelerates training. ICLR 2020.
    [MeZO] Malladi et al. Fine-tuning language models with just forward passes. NeurIPS 2023.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import sympy as sp

from .. import spec as vocab
from .symbols import sym

__all__ = [
    "HybridSmoothness",
    "GeneralizedHybridSmoothness",
    "Heterogeneity",
    "ZOEstimator",
    "Setting",
    "DIRECTIONS",
    "DIFFERENCES",
]

DIRECTIONS = vocab.DIRECTIONS.values
DIFFERENCES = vocab.DIFFERENCES.values
"""Views of :data:`hybridconv.spec.DIRECTIONS` and :data:`hybridconv.spec.DIFFERENCES`."""


@dataclass(frozen=True)
class HybridSmoothness:
    """H1, hybrid smoothness (block form).

    For every i and all z = (x, y), z' = (x', y')::

        ||grad_x f_i(z) - grad_x f_i(z')|| <= L_x ||x - x'|| + L_xy ||y - y'||
        ||grad_y f_i(z) - grad_y f_i(z')|| <= L_xy ||x - x'|| + L_y ||y - y'||

    For C^2 functions: ||H_xx|| <= L_x, ||H_yy|| <= L_y, ||H_xy|| <= L_xy. It gives the block
    descent lemma (see ``lemmas.block_descent``). ``L_xy = 0`` means every f_i is additively
    separable, f_i(x, y) = g_i(x) + h_i(y).
    """

    name: str = "H1"
    statement: str = (
        "||grad_x f_i(z) - grad_x f_i(z')|| <= L_x ||x-x'|| + L_xy ||y-y'||, "
        "||grad_y f_i(z) - grad_y f_i(z')|| <= L_xy ||x-x'|| + L_y ||y-y'||"
    )

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

    hypotheses: tuple[str, ...] = ()


@dataclass(frozen=True)
class GeneralizedHybridSmoothness(HybridSmoothness):
    """H1-gen, hybrid generalized smoothness: block-wise (L0, L1) smoothness.

    ||H_bb'(z)|| <= L0_bb' + L1_bb' ||grad f_i(z)|| for b, b' in {x, y} ([ZHSJ20], Def. 1,
    applied per block). With L1 = 0 it is H1.

    The theorem under H1-gen carries an explicit gradient bound: ||grad f_i(z)|| <= G on a
    convex region R that contains every iterate, the segments between consecutive iterates
    and the ZO perturbation segments [x - mu u, x + mu u] (bounded for sphere and Rademacher
    directions; for Gaussian directions R must be the whole space). On R the Hessian blocks
    are bounded by L0 + L1 G, so H1 holds on R with ``L_b = L0_b + L1_b G`` (mean-value
    theorem), and the H1 derivation goes through unchanged. The simulator reports whether a
    run stayed where the gradient bound holds.
    """

    name: str = "H1-gen"
    statement: str = "||H_bb'(z)|| <= L0_bb' + L1_bb' ||grad f_i(z)||, b, b' in {x, y}"
    hypotheses: tuple[str, ...] = (
        "||grad f_i(z)|| <= G on a convex region containing the iterates, the segments between "
        "them and the ZO perturbation segments",
    )

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
class ZOEstimator:
    """H4, the ZO oracle: q-direction two-point estimator of grad_x f_j.

    g_x = (1/q) sum_k delta_k u_k with, for the central difference,
    delta_k = [f_j(x + mu u_k, y) - f_j(x - mu u_k, y)] / (2 mu), and for the forward
    difference delta_k = [f_j(x + mu u_k, y) - f_j(x, y)] / mu.

    For an L-smooth (not necessarily convex) f, both differences satisfy
    delta = <grad f, u> + r with |r| <= (L mu / 2) ||u||^2 (two-sided Taylor bound), so the
    constants below hold for both; the central difference's sharper constant needs convexity
    ([NS17], Thm 4 is stated for convex f) and is not used by the nonconvex theorem.

    Constants (single direction, d = d_x, nonconvex):
        E||g_1||^2 <= c1 ||grad_x f||^2 + c2 mu^2 L_x^2,  ||E g - grad_x f|| <= cb mu L_x,
    with, from E<a,u>^2 ||u||^2 and E||u||^6:

    ============  ==================  =========================  ===================
    directions    c1 = 2 E<a,u>^2|u|^2/|a|^2   c2 = E||u||^6 / 2     cb = E||u||^3 / 2
    ============  ==================  =========================  ===================
    gaussian      2 (d + 2)           d (d + 2) (d + 4) / 2      (d + 3)^{3/2} / 2 [GL13, eq. 3.6]
    sphere        2 d                 d^3 / 2                    d^{3/2} / 2
    rademacher    2 d                 d^3 / 2                    d^{3/2} / 2
    ============  ==================  =========================  ===================

    (sphere: radius sqrt(d), so E u u^T = I and ||u||^2 = d; Rademacher: ||u||^2 = d.) With q
    independent directions the variance is at most E||g_1||^2 / q ([MeZO], Lemma 2 gives the
    exact factor (d + q - 1)/q for sphere directions and mu -> 0).
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
            "E[g_x] = grad_x f_mu, ||E g_x - grad_x f|| <= cb mu L_x, "
            "E||g_x - E g_x||^2 <= (c1 ||grad_x f||^2 + c2 mu^2 L_x^2) / q"
        )

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
        """Exact direction moments the constants come from (a a unit vector).

        ``E<a,u>^2||u||^2`` and ``E||u||^6`` and ``E||u||^3`` (or an upper bound for the
        Gaussian third moment, [NS17] Lemma 1: E||u||^p <= (d + p)^{p/2} for p >= 2). They
        are the vocabulary row's (:data:`hybridconv.spec.DIRECTIONS` ``.properties``), in
        ``d = d_x``.
        """
        return dict(_moments(self.directions))


@functools.cache
def _moments(directions: str) -> tuple[tuple[str, sp.Expr], ...]:
    d = sym("d_x")
    rows = vocab.DIRECTIONS.properties[directions]
    return tuple((k, sp.sympify(v, locals={"d": d})) for k, v in rows.items())


@dataclass(frozen=True)
class Setting:
    """The assumptions a theorem is built from."""

    smoothness: HybridSmoothness = field(default_factory=HybridSmoothness)
    heterogeneity: Heterogeneity = field(default_factory=Heterogeneity)
    estimator: ZOEstimator = field(default_factory=ZOEstimator)

    def names(self) -> list[str]:
        return [self.smoothness.name, "H2", self.heterogeneity.name, self.estimator.name]
