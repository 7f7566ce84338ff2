"""The additive terms of a bound, named by the proof, and their shares at given values.

The sharp theorem's bound is B / min(gamma_x eta_x, gamma_y eta_y) with
B = Delta / (n T) + N_ep / n, and N_ep is linear in four noise sources: the heterogeneity
sigma_x^2 (ZO variance, and the x drift it causes), sigma_y^2 (the y-block reshuffling drift),
the smoothing bias beta^2 and the finite-difference remainder nu_0^2. So B splits exactly into
five terms, each a product of a source and a coefficient that is nonnegative wherever the
conditions hold (:func:`bound_terms`); their shares of B are the shares of the bound
(:func:`term_shares`). The small-T bound 2 max_b(eta_b Lambda_b)(Delta + (T - 1) N_ep / 2) has
two terms of its own (the gap and the noise), reported with ``part="small-T"``.

For the v1 theorem, or a bound of your own, the terms are the monomials of the expanded
weighted bound grouped by their noise and step-size symbols, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sympy as sp

from .symbols import name_of

if TYPE_CHECKING:
    from .bound import Bound

__all__ = ["BoundTerm", "ROLES", "bound_terms", "compile_terms", "term_values", "term_shares",
           "source_terms"]

ROLES: dict[str, str] = {
    "Delta": "initial gap",
    "sigma_x^2": "ZO variance and the x drift it causes",
    "sigma_y^2": "y-block reshuffling drift",
    "beta^2": "smoothing bias",
    "nu_0^2": "smoothing variance",
    # v1 and monomial grouping
    "Delta/(nT)": "initial gap",
    "sigma_x^2 eta_x^2": "ZO variance",
    "sigma_x^2 eta_x^3": "x-block drift: reshuffling and ZO noise",
    "sigma_y^2 eta_y^3": "y-block reshuffling drift",
    "sigma_y^2 eta_x eta_y^2": "coupling L_xy: y drift seen by x",
    "sigma_x^2 eta_x^2 eta_y": "coupling L_xy: x noise and drift seen by y",
    "mu^2": "smoothing bias and variance",
}
"""Term key -> its role in the proof."""


@dataclass(frozen=True)
class BoundTerm:
    """An additive term of a bound's numerator B (or of its small-T bound).

    Attributes:
        name: the term named by its source and role, e.g.
            ``"sigma_x^2 (ZO variance and the x drift it causes)"``.
        expr: the term (table symbols).
        monomials: how many monomials of the expanded expression it gathers.
        part: ``"main"`` (a term of B) or ``"small-T"`` (of the gap bound).
    """

    name: str
    expr: sp.Expr
    monomials: int
    part: str = "main"


def source_terms(noise: sp.Expr, sources: Mapping[str, sp.Expr]) -> dict[str, sp.Expr]:
    """Split a noise expression linear in the ``sources`` (symbols or their squares) into
    source * coefficient parts; each coefficient is a derivative, nothing is expanded.

    Raises:
        ValueError: if something is left over (the expression is not linear in the sources).
    """
    out: dict[str, sp.Expr] = {}
    marks = {key: sp.Dummy(key) for key in sources}
    marked = noise
    for key, src in sources.items():
        marked = marked.subs(src, marks[key]) if not src.is_Symbol else marked.xreplace(
            {src: marks[key]})
    for key, src in sources.items():
        coeff = sp.diff(marked, marks[key])
        if coeff != 0:
            out[key] = coeff.xreplace({m: sources[k] for k, m in marks.items()}) * src
    rest = marked.xreplace({m: 0 for m in marks.values()})
    if sp.expand(rest) != 0:
        raise ValueError(f"the noise is not linear in its sources: {sp.sstr(rest)[:200]} left")
    return out


def _key(monomial: sp.Expr) -> str:
    names = {name_of(s): s for s in monomial.free_symbols}
    if "Delta" in names:
        return "Delta/(nT)"
    if "mu" in names:
        return "mu^2"
    parts = []
    for s in ("sigma_x", "sigma_y", "eta_x", "eta_y", "eta"):
        if s in names:
            p = sp.degree(monomial, names[s])
            parts.append(s if p == 1 else f"{s}^{p}")
    return " ".join(parts) or "constant"


def _monomial_terms(expr: sp.Expr) -> tuple[BoundTerm, ...]:
    groups: dict[str, list[sp.Expr]] = {}
    for m in sp.Add.make_args(sp.expand(expr)):
        if m != 0:
            groups.setdefault(_key(m), []).append(m)
    order = list(ROLES)
    keys = sorted(groups, key=lambda k: (order.index(k) if k in order else len(order), k))
    return tuple(BoundTerm(f"{k} ({ROLES.get(k, 'other')})", sp.Add(*groups[k]),
                           len(groups[k])) for k in keys)


def bound_terms(bound: Bound) -> tuple[BoundTerm, ...]:
    """The named additive terms of ``bound``'s numerator (and of its small-T bound).

    For the sharp theorem: the Delta term and one term per noise source (exact, their sum is
    B). Otherwise: the monomials of the weighted bound, grouped by symbols.

    >>> from hybridconv.theory.bound import hybrid_bound
    >>> for t in bound_terms(hybrid_bound()):
    ...     print(t.part, t.name)
    main Delta (initial gap)
    main sigma_x^2 (ZO variance and the x drift it causes)
    main sigma_y^2 (y-block reshuffling drift)
    main beta^2 (smoothing bias)
    main nu_0^2 (smoothing variance)
    small-T Delta (initial gap)
    small-T noise (epochs of noise before the gap is spent)
    """
    terms = getattr(bound, "terms", None)
    if not terms:
        return _monomial_terms(bound.weighted_expr)
    out = []
    for key, expr in terms.items():
        part, _, source = key.partition(":")
        role = ROLES.get(source, "epochs of noise before the gap is spent")
        out.append(BoundTerm(f"{source} ({role})", expr, len(sp.Add.make_args(expr)),
                             "small-T" if part == "alt" else "main"))
    return tuple(out)


def compile_terms(bound: Bound) -> tuple[tuple[str, tuple[str, ...], Callable[..., object]], ...]:
    """(name, argument names, function) for each main term (``Bound`` caches it)."""
    fns = []
    for t in bound_terms(bound):
        if t.part != "main":
            continue
        free = sorted(t.expr.free_symbols, key=name_of)
        dummies = {s: sp.Symbol("_" + name_of(s)) for s in free}
        fns.append((t.name, tuple(name_of(s) for s in free),
                    sp.lambdify([dummies[s] for s in free], t.expr.xreplace(dummies),
                                modules="math")))
    return tuple(fns)


def term_values(bound: Bound, values: Mapping[str, float]) -> dict[str, float]:
    """Each main term of :func:`bound_terms` evaluated at ``values`` (table names); they sum to
    the numerator B (the v1 theorem: its weighted bound)."""
    return {name: float(fn(*[float(values[a]) for a in args]))
            for name, args, fn in bound.term_functions}


def term_shares(bound: Bound, values: Mapping[str, float]) -> dict[str, float]:
    """Each main term of :func:`bound_terms` as a share of B at ``values`` (table names).

    The shares are nonnegative where the conditions hold and sum to 1.

    Raises:
        ValueError: if the terms sum to zero or less.
    """
    vals = term_values(bound, values)
    total = sum(vals.values())
    if not total > 0:
        raise ValueError(f"the bound's terms sum to {total!r} at these values")
    return {k: max(v, 0.0) / total for k, v in vals.items()}

