"""The hybrid reshuffling theorems: the sharp theorem under each curvature model.

Algorithm (THEORY.md, "Algorithm: hybrid reshuffling SGD"): epoch t draws a permutation pi_t;
from z_t^0 = z_t, step i uses j = pi_t(i), a q-direction ZO estimate g_x of grad_x f_j and the
exact grad_y f_j, both at the same point z_t^i (Jacobi, not Gauss-Seidel), and updates
x <- x - eta_x g_x, y <- y - eta_y grad_y f_j.

Theorem (this toolkit's own; the reference paper's full text is not available, see
docs/theory.md). Under a curvature model (H1, H1-gen, the local effective rank, or the paper's
block l-smoothness), H2, H3 and H4, if the step sizes satisfy C1-C5
(:func:`hybrid_reshuffling_theorem`), then with gamma_x, gamma_y the derived descent
coefficients (in (0, 1], tending to 1 - theta/2 = 7/8 as the steps go to 0) and
B = Delta / (n T) + N_ep / n,

    (1/T) sum_t E[gamma_x eta_x ||grad_x F(z_t)||^2 + gamma_y eta_y ||grad_y F(z_t)||^2] <= B,
    min_t E||grad F(z_t)||^2 <= min(B / min(gamma_x eta_x, gamma_y eta_y),
                                    2 max(Lambda_x, Lambda_y) Delta),
    (1/T) sum_t E||grad F(z_t)||_D^2 <= min(B / min(gamma_x, gamma_y),
                                           2 max_b(eta_b Lambda_b) (Delta + (T - 1) N_ep / 2)),
    (1/T) sum_t E||grad_y F(z_t)||^2 <= min(B / (gamma_y eta_y), the same / eta_y).

The proof is :class:`~.proof.EpochProof`; every step is recorded and checked. The first
theorem is kept as :func:`~.legacy.hybrid_reshuffling_theorem_v1`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from .assumptions import (
    BlockLSmoothness,
    EffectiveRank,
    GeneralizedHybridSmoothness,
    Setting,
    ZOEstimator,
)
from .derivation import Derivation
from .proof import QUANTITIES, THEOREM_CONSTANTS, EpochProof, _min, _replace
from .symbols import sym
from .terms import source_terms

__all__ = [
    "THEOREM_CONSTANTS",
    "QUANTITIES",
    "Condition",
    "Theorem",
    "hybrid_reshuffling_theorem",
    "generalized_hybrid_reshuffling_theorem",
    "effective_rank_theorem",
    "lsmooth_theorem",
    "theorem_for",
]


@dataclass(frozen=True)
class Condition:
    """A step-size condition: ``lhs <= rhs``, named, with its role in the proof."""

    name: str
    lhs: sp.Expr
    rhs: sp.Expr
    description: str

    @property
    def relation(self) -> sp.Basic:
        return sp.Le(self.lhs, self.rhs, evaluate=False)

    def __str__(self) -> str:
        return f"{self.name}: {sp.sstr(self.lhs)} <= {sp.sstr(self.rhs)}"


@dataclass(frozen=True)
class Theorem:
    """A derived convergence theorem.

    Attributes:
        name: a label.
        setting: the assumptions it was derived from.
        weighted_bound: the bound on (1/T) sum_t E[eta_x ||grad_x F||^2 + eta_y ||grad_y F||^2]
            in table symbols.
        bound: the bound on min_t E||grad F(z_t)||^2.
        compact: the bound with the abbreviations of ``aux`` kept (for display).
        aux: abbreviation symbol -> its expression in table symbols.
        conditions: the step-size conditions under which the bounds hold.
        hypotheses: assumptions that are not inequalities on the symbols.
        derivation: the recorded chain of steps.
        epoch_noise: N_ep, the per-epoch noise (table symbols).
        numerator: B = Delta / (n T) + N_ep / n, the bound on the gamma-weighted measure.
        gamma: (gamma_x, gamma_y), the descent coefficients (table symbols).
        adapter_bound: the bound on the adapter-only measure (1/T) sum_t E||grad_y F||^2.
        alternatives: the small-T (gradient-gap) bounds, by measure.
        high_probability: the bound that holds with probability 1 - delta (l-smooth), if any.
        version: ``"sharp"`` or ``"v1"``.
        constants: the constants the proof used.
        terms: ``"main:<source>"`` -> the term of B carrying that source (Delta, sigma_x^2,
            sigma_y^2, beta^2, nu_0^2) and ``"alt:Delta"``, ``"alt:noise"`` -> the terms of the
            small-T bound on the block-weighted measure (table symbols).
        display_noise: source -> its coefficient in N_ep, in abbreviations (display).
        display_aux: abbreviation -> its expression in other abbreviations (display).
        display_conditions: the conditions in abbreviations (display).
    """

    name: str
    setting: Setting
    weighted_bound: sp.Expr
    bound: sp.Expr
    compact: sp.Expr
    aux: dict[sp.Symbol, sp.Expr]
    conditions: tuple[Condition, ...]
    hypotheses: tuple[str, ...]
    derivation: Derivation
    epoch_noise: sp.Expr
    numerator: sp.Expr | None = None
    gamma: tuple[sp.Expr, ...] = ()
    adapter_bound: sp.Expr | None = None
    alternatives: dict[str, sp.Expr] = field(default_factory=dict)
    high_probability: sp.Expr | None = None
    version: str = "v1"
    constants: dict[str, sp.Rational] = field(default_factory=dict)
    terms: dict[str, sp.Expr] = field(default_factory=dict)
    display_noise: dict[sp.Expr, sp.Expr] = field(default_factory=dict)
    display_aux: dict[sp.Symbol, sp.Expr] = field(default_factory=dict)
    display_conditions: tuple[Condition, ...] = ()

    def expand_aux(self, expr: sp.Expr) -> sp.Expr:
        """Replace the abbreviations by their expressions in table symbols."""
        return _replace(sp.sympify(expr), self.aux)


_HYPOTHESES = (
    "random reshuffling: a fresh uniform permutation each epoch, independent of the past",
    "fresh independent directions at every step, independent of the permutation",
    "both oracles queried at the same point (Jacobi update)",
)


def hybrid_reshuffling_theorem(setting: Setting | None = None, *,
                               constants: dict[str, sp.Rational] | None = None) -> Theorem:
    """Derive the sharp theorem for ``setting`` (default: H1, H3, Gaussian, central).

    Conditions (a_x = a_y = 1/2, b = 1/4, rho = 1/4, gamma_floor = 1/8 of
    :data:`THEOREM_CONSTANTS`; Lambda_b the model's block curvature, c_v the estimator's variance
    constant):

    * C1: n eta_x Lambda_x <= a_x           (in-epoch drift of the x block)
    * C2: n eta_y Lambda_y <= a_y           (in-epoch drift of the y block; MKR's 1/(2 L n))
    * C3: c_v eta_x Lambda_x / q <= b       (ZO variance; at n = 1 at least Nesterov-Spokoiny's
      step 1/(4 (d_x + 4) L_x))
    * C4x, C4y: gamma_b >= gamma_floor      (the descent survives noise, drift and Theta)
    * C5x, C5y: the drift's feedback contracts (polynomials in the step sizes, 0 at n = 1)

    Returns:
        the :class:`Theorem`, with its derivation recorded step by step.
    """
    setting = setting or Setting()
    proof = EpochProof(setting, constants).run()
    e = proof.expand
    gx, gy = proof.gamma_sym
    full = _min(e(proof.full_main), e(proof.full_alt))
    weighted = _min(e(proof.weighted_main), e(proof.weighted_alt))
    adapter = _min(e(proof.adapter_main), e(proof.adapter_alt))
    compact = _min(proof.full_main, proof.full_alt)
    conditions = tuple(Condition(*c) for c in proof.conditions())
    sm, est = setting.smoothness, setting.estimator
    n, T = sym("n"), sym("T")
    parts = source_terms(proof.noise_compact, {
        "sigma_x^2": sym("sigma_x") ** 2, "sigma_y^2": sym("sigma_y") ** 2,
        "beta^2": proof.beta**2, "nu_0^2": proof.nu0})
    terms = {"main:Delta": sym("Delta") / (n * T),
             **{f"main:{k}": e(v / n) for k, v in parts.items()}}
    L_D = e(proof.weighted_alt / (proof.Delta + (T - 1) * proof.noise_compact / 2))
    terms["alt:Delta"] = L_D * sym("Delta")
    terms["alt:noise"] = L_D * (T - 1) * e(proof.noise_compact) / 2
    return Theorem(
        name=f"hybrid reshuffling theorem ({sm.name}, {est.directions} directions, "
             f"{est.difference} difference)",
        setting=setting,
        weighted_bound=weighted,
        bound=full,
        compact=compact,
        aux=dict(proof.aux),
        conditions=conditions,
        hypotheses=tuple(sm.hypotheses) + _HYPOTHESES,
        derivation=proof.der,
        epoch_noise=e(proof.noise_compact),
        numerator=e(proof.numerator_compact),
        gamma=(proof.aux[gx], proof.aux[gy]),
        adapter_bound=adapter,
        alternatives={"full": e(proof.full_alt), "weighted": e(proof.weighted_alt),
                      "adapter": e(proof.adapter_alt)},
        version="sharp",
        constants=dict(proof.c),
        terms=terms,
        display_aux={**{a: v for a, v in proof.aux.items() if a not in (gx, gy)},
                     gx: proof.gamma_compact[0], gy: proof.gamma_compact[1]},
        display_conditions=tuple(Condition(*c) for c in proof.conditions(compact=True)),
        display_noise={src: part / src for src, part in zip(
            (sym("sigma_x") ** 2, sym("sigma_y") ** 2, proof.beta**2, proof.nu0),
            source_terms(proof.noise_compact, {"sx": sym("sigma_x") ** 2,
                                               "sy": sym("sigma_y") ** 2,
                                               "b": proof.beta**2, "nu": proof.nu0}).values(),
            strict=False)},
    )


def generalized_hybrid_reshuffling_theorem(estimator: ZOEstimator | None = None) -> Theorem:
    """The theorem under H1-gen: the H1 theorem with L_b = L0_b + L1_b G.

    The extra hypothesis (a gradient bound G on a convex region containing the run, see
    :class:`~.assumptions.GeneralizedHybridSmoothness`) is listed in ``hypotheses``; at
    L1 = 0 the theorem is the H1 theorem (``GeneralizedHybridSmoothness.reduction_to_h1``).
    """
    return hybrid_reshuffling_theorem(Setting(smoothness=GeneralizedHybridSmoothness(),
                                              estimator=estimator or ZOEstimator()))


def effective_rank_theorem(estimator: ZOEstimator | None = None) -> Theorem:
    """The theorem under the local effective rank r (MeZO): d_x becomes r in the ZO terms."""
    return hybrid_reshuffling_theorem(Setting(smoothness=EffectiveRank(),
                                              estimator=estimator or ZOEstimator()))


def lsmooth_theorem(estimator: ZOEstimator | None = None) -> Theorem:
    """The theorem under the paper's block l-smoothness at the gradient level G, with a
    high-probability conclusion (default: forward differences, Gaussian directions, as in the
    paper).

    On the hypothesis that the run stays where max_i ||grad f_i|| <= G, the bound B holds in
    expectation with Lambda_b = l_b(G); Markov's inequality then gives, with probability at
    least 1 - delta, min_t ||grad F(z_t)||^2 <= B / delta (``Theorem.high_probability``).
    """
    est = estimator or ZOEstimator("gaussian", "forward")
    th = hybrid_reshuffling_theorem(Setting(smoothness=BlockLSmoothness(), estimator=est))
    delta = sym("delta")
    der = th.derivation
    main = th.bound
    der.conclude(
        sp.Symbol(r"P(\min_t \|\nabla F(z_t)\|^2 \ge B / \delta)", nonnegative=True), delta,
        name="high-probability", kind="telescope",
        text="min_t ||grad F(z_t)||^2 >= 0 and its expectation is at most B (the bound above), "
             "so by Markov's inequality it exceeds B / delta with probability at most delta.",
        uses=("markov",),
    )
    return Theorem(**{**th.__dict__, "high_probability": main / delta,
                      "name": th.name + ", probability 1 - delta"})


def theorem_for(assumption: str = "h1", estimator: ZOEstimator | None = None, *,
                version: str = "sharp") -> Theorem:
    """The theorem named by ``assumption`` (h1, h1-gen, effective-rank, l-smooth) and
    ``version`` (``sharp``, the default, or ``v1``, H1 and H1-gen only)."""
    from .. import spec as vocab

    assumption = vocab.validate("assumption", assumption)
    version = vocab.validate("theorem", version, label="version")
    est = estimator or ZOEstimator()
    if version == "v1":
        from .legacy import (
            generalized_hybrid_reshuffling_theorem_v1,
            hybrid_reshuffling_theorem_v1,
        )

        if assumption == "h1":
            return hybrid_reshuffling_theorem_v1(Setting(estimator=est))
        if assumption == "h1-gen":
            return generalized_hybrid_reshuffling_theorem_v1(est)
        raise ValueError(f"the v1 theorem covers h1 and h1-gen, not {assumption!r}")
    if assumption == "h1":
        return hybrid_reshuffling_theorem(Setting(estimator=est))
    if assumption == "h1-gen":
        return generalized_hybrid_reshuffling_theorem(est)
    if assumption == "effective-rank":
        return effective_rank_theorem(est)
    return lsmooth_theorem(estimator)
