"""A recorded derivation: every step of the theorem's proof as a checkable sympy object.

A derivation keeps one running upper bound (a sympy expression that is linear in a few
nonnegative *quantities* such as ``G_x = ||grad_x F(z_t)||^2``) and transforms it step by step.
Each :class:`Step` records the expression before and after, the lemmas and conditions it uses,
and an *algebraic claim* that the test suite checks at many random admissible points:

* ``kind="lemma"``: a quantity is replaced by an upper bound that a lemma provides. The lemma
  itself is probabilistic (checked by Monte Carlo in the simulator); the algebraic claim here is
  that the quantity's coefficient is nonnegative, so replacing it by an upper bound is valid.
* ``kind="algebra"`` / ``"absorb"``: the new expression is an upper bound of the old one, using
  only algebra (Young, AM-GM, a bound on a polynomial in n) or the theorem's step-size
  conditions. The claim is ``before <= after`` for all nonnegative quantities.
* ``kind="definition"``: an equality (a name for an expression); the claim is ``before == after``.

:meth:`Derivation.to_markdown` prints the chain as a proof a reviewer can follow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

__all__ = ["Step", "Derivation", "KINDS"]

KINDS = ("lemma", "algebra", "absorb", "definition", "solve", "telescope")


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
    extraction) so that the final bound is *derived* by the code, not typed in.
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
                   text: str, uses: tuple[str, ...], kind: str = "lemma") -> sp.Expr:
        """Replace ``quantity`` by its upper bound ``upper`` in the target's bound.

        Valid when the coefficient of ``quantity`` is nonnegative (the bound is linear in it):
        that is the recorded claim.
        """
        before = self.current[target]
        expanded = sp.expand(before)
        coeff = expanded.coeff(quantity)
        if sp.expand(expanded - coeff * quantity).has(quantity):
            raise ValueError(f"step {name}: bound is not linear in {quantity}")
        after = sp.expand(expanded - coeff * quantity + coeff * upper)
        self.current[target] = after
        self.steps.append(Step(name, kind, text, target, before, after, uses,
                               (sp.Integer(0), coeff)))
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
                shown = sp.collect(sp.expand(s.after), list(self.quantities))
                lines.append(f"$$ {sp.latex(s.target)} {rel} {sp.latex(shown)} $$")
                if s.kind == "lemma" and s.claim[1] != 0:
                    lines.append("")
                    lines.append(f"(valid because the replaced quantity's coefficient "
                                 f"${sp.latex(sp.factor(s.claim[1]))}$ is nonnegative)")
            lines.append("")
        return "\n".join(lines)

