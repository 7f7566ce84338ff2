"""Every algebraic step of the derivation holds at random admissible points, and a wrong step
is caught (the check can fail)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import sympy as sp

from hybridconv.theory import Setting, ZOEstimator, hybrid_reshuffling_theorem
from hybridconv.theory.bound import Bound, sample_admissible
from hybridconv.theory.report import derivation_markdown
from hybridconv.theory.theorems import (
    QUANTITIES,
    generalized_hybrid_reshuffling_theorem,
)
from hybridconv.theory.verify import check_step, verify_derivation

SETTINGS = [
    pytest.param(Setting(estimator=ZOEstimator(d, f)), id=f"{d}-{f}")
    for d in ("gaussian", "sphere", "rademacher") for f in ("central", "forward")
]


@pytest.mark.parametrize("setting", SETTINGS)
def test_every_step_holds(setting):
    th = hybrid_reshuffling_theorem(setting)
    bad = [r for r in verify_derivation(th, samples=3000, seed=1) if not r.ok]
    assert bad == []


def test_every_step_holds_generalized():
    th = generalized_hybrid_reshuffling_theorem()
    assert [r for r in verify_derivation(th, samples=3000, seed=2) if not r.ok] == []


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
def test_every_step_holds_thorough(seed, theorem):
    assert [r for r in verify_derivation(theorem, samples=200_000, seed=seed) if not r.ok] == []


def test_steps_are_tight_where_the_proof_says(theorem):
    """The absorption steps reach their boundary (ratio 1): the conditions are used fully."""
    res = {r.name: r for r in verify_derivation(theorem, samples=5000, seed=3)}
    for name in ("rho-x", "rho-y", "absorb-drift"):
        assert res[name].worst_ratio == pytest.approx(1.0, rel=1e-6)


def _points(theorem, seed=4):
    return sample_admissible(Bound.from_theorem(theorem), 3000, seed=seed)


def _planted(step, **changes):
    return dataclasses.replace(step, **changes)


def test_planted_wrong_descent_constant_is_caught(theorem):
    """Claiming gamma = 1/2 instead of 1/4 in the x block must fail."""
    st = theorem.derivation.step("absorb-gradient")
    n = next(s for s in st.after.free_symbols if s.name == "n")
    ex = next(s for s in st.after.free_symbols if s.name == r"\eta_x")
    wrong = st.after - sp.Rational(1, 4) * n * ex * QUANTITIES["Gx"]
    res = check_step(_planted(st, claim=(st.before, wrong)), theorem, _points(theorem), seed=0)
    assert not res.ok


def test_planted_wrong_polynomial_bound_is_caught(theorem):
    st = theorem.derivation.step("sum-squares")
    small, large = st.claim
    res = check_step(_planted(st, claim=(small, large * sp.Rational(3, 4))), theorem,
                     _points(theorem), seed=0)
    assert not res.ok


def test_planted_halved_drift_cost_is_caught(theorem):
    st = theorem.derivation.step("absorb-drift")
    W = QUANTITIES["W"]
    wrong = sp.expand(st.after).subs(W, W / 2)
    res = check_step(_planted(st, claim=(st.before, wrong)), theorem, _points(theorem), seed=0)
    assert not res.ok


def test_planted_dropped_term_is_caught(theorem):
    """Dropping the ZO-variance term from the absorbed bound must fail."""
    st = theorem.derivation.step("absorb-deviation")
    after = sp.expand(st.after)
    sx2 = QUANTITIES["sx2"]
    wrong = after - after.coeff(sx2) * sx2
    res = check_step(_planted(st, claim=(st.before, wrong)), theorem, _points(theorem), seed=0)
    assert not res.ok


def test_lemma_steps_need_nonnegative_coefficients(theorem):
    """A lemma substitution records 0 <= coefficient; a negative one is caught."""
    st = theorem.derivation.step("zo-variance")
    res = check_step(_planted(st, claim=(sp.Integer(0), -st.claim[1] - 1)), theorem,
                     _points(theorem), seed=0)
    assert not res.ok


def test_bound_is_derived_not_typed(theorem):
    """The theorem's weighted bound is exactly what the last steps of the chain carry."""
    der = theorem.derivation
    last = der.steps[-2]
    assert last.name == "telescope"
    assert sp.simplify(theorem.expand_aux(last.after) - theorem.weighted_bound) == 0


def test_derivation_markdown_reads_as_a_proof(theorem):
    md = derivation_markdown(theorem)
    for needle in ("## Assumptions", "## Theorem", "## Proof, step by step", "**C3**",
                   "absorb-gradient", "telescope", "$$"):
        assert needle in md
    assert md.count("**Step ") == len(theorem.derivation.steps)


def test_docs_derivation_is_up_to_date(theorem):
    path = Path(__file__).resolve().parents[1] / "docs" / "derivation.md"
    assert path.read_text() == derivation_markdown(theorem), (
        "docs/derivation.md is stale: run `hybridconv theory --derivation > docs/derivation.md`")


def test_every_reference_resolves(theorem):
    """Each step cites lemmas of the library, assumptions, conditions or earlier steps."""
    from hybridconv.theory import lemmas

    known = set(lemmas.LEMMAS) | set(theorem.setting.names()) | {"definition"}
    known |= {c.name for c in theorem.conditions}
    for step in theorem.derivation.steps:
        for ref in step.uses:
            assert ref in known, f"step {step.name} cites unknown {ref!r}"
        known.add(step.name)
