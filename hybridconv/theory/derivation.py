"""A recorded derivation: every step of the theorem's proof as a checkable sympy object.

A derivation keeps one running upper bound (a sympy expression that is linear in a few
nonnegative *quantities* such as ``G_x = ||grad_x F(z_t)||^2``) and transforms it step by step.
Each :class:`Step` records the expression before and after, the lemmas and conditions it uses,
and an *algebraic claim* that the test suite checks at many random admissible points:

* ``kind="lemma"``: a quantity is replaced by an upper bound that a lemma provides. The lemma
  itself is probabilistic (checked by Monte Carlo in the simulator); the algebraic claim here is
  that the quantity's coefficient is nonnegative, so replacing it by an upper bound is valid.
  With ``lower=True`` the quantity is replaced by a *lower* bound, and the claim is that its
  coefficient is nonpositive.
* ``kind="algebra"`` / ``"absorb"``: the new expression is an upper bound of the old one, using
  only algebra (Young, AM-GM, a bound on a polynomial in n) or the theorem's step-size
  conditions. The claim is ``before <= after`` for all nonnegative quantities.
* ``kind="definition"``: an equality (a name for an expression); the claim is ``before == after``.

:meth:`Derivation.to_markdown` prints the chain as a proof a reviewer can follow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

__all__ = ["Step", "Derivation", "KINDS", "coefficient", "without"]

KINDS = ("lemma", "algebra", "absorb", "definition", "solve", "telescope")


def coefficient(expr: sp.Expr, quantity: sp.Symbol) -> sp.Expr:
    """The coefficient of ``quantity`` in ``expr``, which is linear in it (a derivative: no
    expansion of the other factors)."""
    return sp.diff(expr, quantity)


def without(expr: sp.Expr, *quantities: sp.Symbol) -> sp.Expr:
    """``expr`` with the (linear) ``quantities`` set to 0."""
    return expr.xreplace({q: 0 for q in quantities})


@dataclass(frozen=True)
class Step:
    """One step of a derivation.

    Attributes:
        name: short label, unique in its derivation.
        kind: one of :data:`KINDS`.
        text: what the step does, in words (Markdown).
        target: the symbol whose bound is being derived (``D`` for the one-epoch descent,
            ``W`` for the in-epoch drift, ...).
        before: the bound before the step.
        after: the bound after the step (``target <= after``).
        uses: lemma names, assumption names and condition names the step relies on.
        claim: the algebraic inequality ``(small, large)`` that must hold, ``small <= large``,
            at every admissible point and for all nonnegative quantities.
        defs: substitutions that give defined quantities their meaning in the claim
            (e.g. ``W -> eta_x P + eta_y Q``).
    """

    name: str
    kind: str
    text: str
    target: sp.Symbol
    before: sp.Expr
    after: sp.Expr
    uses: tuple[str, ...]
    claim: tuple[sp.Expr, sp.Expr]
    defs: dict[sp.Symbol, sp.Expr] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")


class Derivation:
    """An ordered list of steps, with the running bound of each target.

    The methods that add steps compute the new bound with sympy (substitution, coefficient
    extraction) so that the final bound is *derived* by the code, not typed in. Bounds are kept
    unexpanded: they are linear in the quantities, so a coefficient is a derivative and the rest
    is the bound with the quantity set to 0 (:func:`coefficient`, :func:`without`).
    """

    def __init__(self, quantities: dict[sp.Symbol, str], aux: dict[sp.Symbol, sp.Expr]):
        self.quantities = dict(quantities)
        self.aux = dict(aux)
        self.steps: list[Step] = []
        self.current: dict[sp.Symbol, sp.Expr] = {}

    # -- building ---------------------------------------------------------------------------
    def start(self, target: sp.Symbol, bound: sp.Expr, *, name: str, text: str,
              uses: tuple[str, ...]) -> sp.Expr:
        """Open a target with a first bound that follows from lemmas (no algebraic claim)."""
        self.current[target] = bound
        self.steps.append(Step(name, "lemma", text, target, target, bound, uses,
                               (sp.Integer(0), sp.Integer(0))))
        return bound

    def substitute(self, target: sp.Symbol, quantity: sp.Symbol, upper: sp.Expr, *, name: str,
                   text: str, uses: tuple[str, ...], kind: str = "lemma",
                   lower: bool = False) -> sp.Expr:
        """Replace ``quantity`` by its upper bound ``upper`` in the target's bound.

        Valid when the coefficient of ``quantity`` is nonnegative (the bound is linear in it):
        that is the recorded claim. With ``lower=True``, ``upper`` is a lower bound of the
        quantity and the claim is that the coefficient is nonpositive.
        """
        before = self.current[target]
        coeff = sp.diff(before, quantity)
        if coeff.has(quantity):
            raise ValueError(f"step {name}: bound is not linear in {quantity}")
        after = before.xreplace({quantity: 0}) + coeff * upper
        self.current[target] = after
        claim = (coeff, sp.Integer(0)) if lower else (sp.Integer(0), coeff)
        self.steps.append(Step(name, kind, text, target, before, after, uses, claim))
        return after

    def define(self, target: sp.Symbol, after: sp.Expr, *, name: str, text: str,
               defs: dict[sp.Symbol, sp.Expr], uses: tuple[str, ...] = ()) -> sp.Expr:
        """Rewrite the bound with a named quantity; ``before == after`` once ``defs`` apply."""
        before = self.current[target]
        self.current[target] = after
        self.steps.append(Step(name, "definition", text, target, before, after, uses,
                               (before, after), dict(defs)))
        return after

    def bound_by(self, target: sp.Symbol, after: sp.Expr, *, name: str, text: str,
                 uses: tuple[str, ...], kind: str = "absorb",
                 defs: dict[sp.Symbol, sp.Expr] | None = None,
                 claim: tuple[sp.Expr, sp.Expr] | None = None) -> sp.Expr:
        """Replace the bound by a larger one (algebra or step-size conditions).

        The recorded claim is ``before <= after`` unless ``claim`` gives the inequality that
        justifies the step (a ``solve`` step records ``theta <= 1``).
        """
        before = self.current[target]
        self.current[target] = after
        self.steps.append(Step(name, kind, text, target, before, after, uses,
                               claim or (before, after), dict(defs or {})))
        return after

    def conclude(self, target: sp.Symbol, bound: sp.Expr, *, name: str, kind: str, text: str,
                 uses: tuple[str, ...]) -> sp.Expr:
        """A new target whose bound follows from the previous ones (telescoping, unweighting)."""
        self.current[target] = bound
        self.steps.append(Step(name, kind, text, target, target, bound, uses,
                               (sp.Integer(0), sp.Integer(0))))
        return bound

    def fact(self, name: str, small: sp.Expr, large: sp.Expr, *, text: str,
             uses: tuple[str, ...], kind: str = "algebra") -> None:
        """Record an auxiliary inequality ``small <= large`` used by later steps."""
        target = sp.Symbol(name)
        self.steps.append(Step(name, kind, text, target, small, large, uses, (small, large)))

    # -- reading ----------------------------------------------------------------------------
    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise ValueError(f"no step named {name!r}; steps: {[s.name for s in self.steps]}")

    def linear_parts(self, expr: sp.Expr) -> list[tuple[sp.Expr, sp.Expr]]:
        """(quantity or 1, coefficient) pairs of an expression linear in the quantities."""
        present = [q for q in self.quantities if expr.has(q)]
        parts = [(q, coefficient(expr, q)) for q in present]
        rest = without(expr, *present)
        if rest != 0:
            parts.append((sp.Integer(1), rest))
        return parts

    def to_markdown(self, *, title: str = "Derivation") -> str:
        """The chain as Markdown with LaTeX, one numbered step per entry."""
        lines = [f"## {title}", ""]
        if self.quantities:
            lines += ["Quantities (all nonnegative, at the start z_t of an epoch):", ""]
            lines += [f"- ${sp.latex(q)}$: {meaning}" for q, meaning in self.quantities.items()]
            lines.append("")
        if self.aux:
            lines += ["Abbreviations:", ""]
            lines += [f"- ${sp.latex(a)} = {sp.latex(e)}$" for a, e in self.aux.items()]
            lines.append("")
        for i, s in enumerate(self.steps, 1):
            uses = ", ".join(s.uses) if s.uses else "-"
            lines.append(f"**Step {i} ({s.name}, {s.kind}).** {s.text}  ")
            lines.append(f"_Uses:_ {uses}")
            lines.append("")
            if s.kind in ("algebra", "solve") and str(s.target) == s.name:
                lines.append(f"$$ {sp.latex(s.claim[0])} \\le {sp.latex(s.claim[1])} $$")
            else:
                rel = "=" if s.kind == "definition" else "\\le"
                lines.append(f"$$ {sp.latex(s.target)} {rel} {_latex_linear(s.after, self)} $$")
                if s.kind == "lemma" and s.claim[1] != 0:
                    lines.append("")
                    lines.append(f"(valid because the replaced quantity's coefficient "
                                 f"${sp.latex(sp.factor(s.claim[1]))}$ is nonnegative)")
                elif s.kind == "lemma" and s.claim[0] != 0:
                    lines.append("")
                    lines.append(f"(a lower bound is valid here because the replaced "
                                 f"quantity's coefficient ${sp.latex(sp.factor(s.claim[0]))}$ "
                                 f"is nonpositive)")
            lines.append("")
        return "\n".join(lines)



def _latex_linear(expr: sp.Expr, der: Derivation) -> str:
    """LaTeX of a bound linear in the quantities: each quantity with its (factored)
    coefficient."""
    if not any(expr.has(q) for q in der.quantities):
        return sp.latex(_tidy(expr))
    terms = []
    for q, c in der.linear_parts(expr):
        c = _tidy(c)
        if c == 0:
            continue
        terms.append(sp.latex(c) if q == 1 else
                     f"\\left({sp.latex(c)}\\right) {sp.latex(q)}")
    return " + ".join(terms) or "0"


def _tidy(expr: sp.Expr) -> sp.Expr:
    """A readable form of a coefficient: common factors pulled out (cheap; a full
    factorization of these polynomials takes minutes)."""
    return sp.factor_terms(expr)
