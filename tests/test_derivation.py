"""Every algebraic step of the derivation holds at random admissible points, and a wrong step
is caught (the check can fail)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import sympy as sp

from hybridconv.theory import Setting, ZOEstimator, hybrid_reshuffling_theorem
from hybridconv.theory.assumptions import BlockLSmoothness, EffectiveRank
from hybridconv.theory.bound import Bound, sample_admissible
from hybridconv.theory.proof import QUANTITIES, SUMS, THEOREM_CONSTANTS
from hybridconv.theory.report import derivation_markdown
from hybridconv.theory.symbols import sym
from hybridconv.theory.theorems import generalized_hybrid_reshuffling_theorem, lsmooth_theorem
from hybridconv.theory.verify import check_step, verify_derivation

FAST = {("gaussian", "central"), ("sphere", "forward"), ("rademacher", "central")}
SETTINGS = [
    pytest.param(Setting(estimator=ZOEstimator(d, f)), id=f"h1-{d}-{f}",
                 marks=() if (d, f) in FAST else pytest.mark.slow)
    for d in ("gaussian", "sphere", "rademacher") for f in ("central", "forward")
] + [
    pytest.param(Setting(smoothness=EffectiveRank(), estimator=ZOEstimator(d)), id=f"er-{d}")
    for d in ("gaussian", "sphere")
] + [pytest.param(Setting(smoothness=BlockLSmoothness(),
                          estimator=ZOEstimator("gaussian", "forward")), id="l-smooth")]


@pytest.mark.parametrize("setting", SETTINGS)
def test_every_step_holds(setting):
    th = hybrid_reshuffling_theorem(setting)
    bad = [r for r in verify_derivation(th, samples=1500, seed=1) if not r.ok]
    assert bad == []


def test_every_step_holds_generalized():
    th = generalized_hybrid_reshuffling_theorem(ZOEstimator("sphere"))
    assert [r for r in verify_derivation(th, samples=1500, seed=2) if not r.ok] == []


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
def test_every_step_holds_thorough(seed, theorem):
    assert [r for r in verify_derivation(theorem, samples=100_000, seed=seed) if not r.ok] == []


def test_closed_form_sums():
    k = sp.Symbol("k", integer=True, nonnegative=True)
    n = sym("n")
    assert sp.simplify(sp.summation(k**2, (k, 0, n - 1)) - SUMS["squares"]) == 0
    assert sp.simplify(sp.summation(k * (n - k), (k, 0, n - 1))
                       - SUMS["without_replacement"]) == 0


def test_steps_are_tight_where_the_proof_says(theorem):
    """The definitions and the drift contraction reach ratio 1; the lower-bound steps use a
    coefficient that reaches 0 on the caps C1, C2 (the quadratic term eats the descent there)."""
    res = {r.name: r for r in verify_derivation(theorem, samples=3000, seed=3)}
    for name in ("define-drift", "descent-coefficients"):
        assert res[name].worst_ratio == pytest.approx(1.0, rel=1e-9)
    assert res["solve-drift"].worst_ratio == pytest.approx(float(THEOREM_CONSTANTS["rho"]))


def _points(theorem, seed=4):
    return sample_admissible(Bound.from_theorem(theorem), 2000, seed=seed)


def _planted(step, **changes):
    return dataclasses.replace(step, **changes)


def test_planted_wrong_lower_bound_is_caught(theorem):
    """Claiming the ||P_x||^2 coefficient is nonpositive when it is not (the quadratic term
    counted with the wrong sign) must fail."""
    st = theorem.derivation.step("sum-lower-x")
    wrong = -st.claim[0]
    res = check_step(_planted(st, claim=(wrong, sp.Integer(0))), theorem, _points(theorem),
                     seed=0)
    assert not res.ok


def test_planted_wrong_polynomial_sum_is_caught(theorem):
    st = theorem.derivation.step("sum-squares")
    small, large = st.claim
    n = sym("n")
    res = check_step(_planted(st, claim=(small, large * sp.Rational(3, 4) + 0 * n)), theorem,
                     _points(theorem), seed=0)
    assert not res.ok


def test_planted_halved_feedback_is_caught(theorem):
    """Absorbing the drift's feedback with rho / 2 instead of rho breaks at C5's boundary."""
    st = theorem.derivation.step("absorb-deviation")
    V = QUANTITIES["V"]
    rho = THEOREM_CONSTANTS["rho"]
    wrong = st.after - rho / 2 * V
    # push points onto the C5 boundary: the larger step sizes of the sample
    res = check_step(_planted(st, claim=(st.before, wrong)), theorem, _points(theorem, seed=5),
                     seed=0)
    assert not res.ok


def test_planted_dropped_term_is_caught(theorem):
    """Dropping the heterogeneity term from the deviation (sigma_hat_x^2) must fail."""
    st = theorem.derivation.step("absorb-deviation")
    sx2 = QUANTITIES["sx2"]
    wrong = st.after.xreplace({sx2: 0})
    res = check_step(_planted(st, claim=(st.before, wrong)), theorem, _points(theorem), seed=0)
    assert not res.ok


def test_lemma_steps_need_nonnegative_coefficients(theorem):
    """A lemma substitution records 0 <= coefficient; a negative one is caught."""
    st = theorem.derivation.step("zo-noise")
    res = check_step(_planted(st, claim=(sp.Integer(0), -st.claim[1] - 1)), theorem,
                     _points(theorem), seed=0)
    assert not res.ok


def test_bound_is_derived_not_typed(theorem):
    """The theorem's numerator and descent coefficients are what the last steps of the chain
    carry."""
    der = theorem.derivation
    telescope = der.step("telescope")
    assert sp.simplify(sp.expand(theorem.expand_aux(telescope.after) - theorem.numerator)) == 0
    coeffs = der.step("descent-coefficients")
    assert coeffs.kind == "definition" and set(coeffs.defs) == {
        a for a in theorem.aux if str(a).startswith(r"\gamma")}


def test_derivation_markdown_reads_as_a_proof(theorem):
    md = derivation_markdown(theorem)
    for needle in ("## Assumptions", "## Theorem", "## Proof, step by step", "**C3**",
                   "descent-coefficients", "telescope", "small-T", "$$"):
        assert needle in md
    assert md.count("**Step ") == len(theorem.derivation.steps)


@pytest.mark.slow
def test_docs_derivation_is_up_to_date(theorem):
    path = Path(__file__).resolve().parents[1] / "docs" / "derivation.md"
    assert path.read_text() == derivation_markdown(theorem), (
        "docs/derivation.md is stale: run `hybridconv theory --derivation > docs/derivation.md`")


def test_docs_derivation_names_the_current_steps(theorem):
    """A fast check of docs/derivation.md: it lists every step of the current proof in order
    (the slow test compares the whole text)."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "derivation.md").read_text()
    names = [f"({s.name}, {s.kind})" for s in theorem.derivation.steps]
    positions = [text.find(n) for n in names]
    assert -1 not in positions, [n for n, p in zip(names, positions, strict=True) if p < 0]
    assert positions == sorted(positions)


def test_every_reference_resolves(theorem):
    """Each step cites lemmas of the library, assumptions, conditions or earlier steps."""
    from hybridconv.theory import lemmas

    known = set(lemmas.LEMMAS) | set(theorem.setting.names()) | {"definition"}
    known |= {c.name for c in theorem.conditions}
    for step in theorem.derivation.steps:
        for ref in step.uses:
            assert ref in known, f"step {step.name} cites unknown {ref!r}"
        known.add(step.name)


def test_high_probability_step_is_recorded():
    th = lsmooth_theorem()
    assert th.derivation.steps[-1].name == "high-probability"
    assert th.high_probability is not None and th.high_probability.has(sym("delta"))
    assert th.setting.estimator.difference == "forward"
