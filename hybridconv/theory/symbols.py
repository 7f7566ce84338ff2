"""The one table of symbols that the whole package speaks.

Every constant a problem reports (``problem.constants()``) and every hyper-parameter an
algorithm reports (``algo.hyperparameters()``) is keyed by a name of this table, so that
``bound.evaluate(**problem.constants(), **algo.hyperparameters())`` needs no glue.

Blocks are ``x`` (zeroth-order block: the base model) and ``y`` (first-order block: the PEFT
module). Each symbol is declared with the sympy assumptions the mathematics gives it
(``positive=True`` or ``nonnegative=True``, ``integer=True``), and each has a numeric domain
that :func:`validate_value` enforces at the public boundary. The rows (names, domains, LaTeX
names, descriptions) are those of :data:`hybridconv.spec.SYMBOLS`, the package's one
vocabulary; this module adds the sympy symbols.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from .. import spec as vocab

__all__ = [
    "SymbolSpec",
    "TABLE",
    "SYMBOLS",
    "sym",
    "spec",
    "validate_value",
    "validate_values",
]


@dataclass(frozen=True)
class SymbolSpec:
    """One row of the symbol table.

    Attributes:
        name: the key used everywhere (``"L_x"``, ``"eta_y"``, ...).
        symbol: the sympy symbol, declared with its assumptions.
        description: what it means, in one line.
        lower: the smallest allowed value.
        strict: whether ``lower`` itself is excluded (``x > lower`` rather than ``x >= lower``).
        integer: whether only whole numbers are allowed.
        group: ``"constant"`` (a property of the problem), ``"hyper"`` (chosen by the user) or
            ``"target"`` (an accuracy).
    """

    name: str
    symbol: sp.Symbol
    description: str
    lower: float
    strict: bool
    integer: bool
    group: str

    def allowed(self) -> str:
        """The allowed range in words, as used in error messages."""
        kind = "an integer" if self.integer else "a finite real number"
        op = ">" if self.strict else ">="
        return f"{kind} {op} {self.lower:g}"


def _row(q: vocab.Quantity) -> SymbolSpec:
    """The sympy symbol of a vocabulary row, declared with the assumptions its domain gives."""
    lower = float(q.lower or 0.0)
    assumptions = {"real": True}
    if q.integer:
        assumptions["integer"] = True
    if lower > 0 or (q.strict and lower >= 0):
        assumptions["positive"] = True
    elif lower >= 0:
        assumptions["nonnegative"] = True
    symbol = sp.Symbol(q.latex or q.name, **assumptions)
    return SymbolSpec(q.name, symbol, q.description, lower, q.strict, q.integer, q.group)


_ROWS: tuple[SymbolSpec, ...] = tuple(_row(q) for q in vocab.SYMBOLS.values())
"""Built from :data:`hybridconv.spec.SYMBOLS` (names, domains, LaTeX, descriptions)."""

TABLE: dict[str, SymbolSpec] = {row.name: row for row in _ROWS}
"""Name -> :class:`SymbolSpec`."""

SYMBOLS: dict[str, sp.Symbol] = {row.name: row.symbol for row in _ROWS}
"""Name -> sympy symbol."""

_BY_SYMBOL: dict[sp.Symbol, str] = {row.symbol: row.name for row in _ROWS}


def sym(name: str) -> sp.Symbol:
    """The sympy symbol of a table name; ``ValueError`` for an unknown name."""
    return spec(name).symbol


def spec(name: str) -> SymbolSpec:
    """The table row of ``name``; ``ValueError`` naming the known symbols otherwise."""
    try:
        return TABLE[name]
    except KeyError:
        known = ", ".join(TABLE)
        raise ValueError(f"unknown symbol {name!r}; known symbols: {known}") from None


def name_of(symbol: sp.Symbol) -> str:
    """The table name of a table symbol (``Symbol('\\eta_x')`` -> ``'eta_x'``)."""
    try:
        return _BY_SYMBOL[symbol]
    except KeyError:
        return str(symbol)


def validate_value(name: str, value: object) -> float:
    """Check one numeric value against its symbol's domain and return it as a float
    (:func:`hybridconv.spec.validate` on the symbol's row).

    Raises:
        ValueError: naming the argument, the value received and the allowed range, for an
            unknown name, a non-number, NaN or infinity, a value out of range, or a
            non-integer where an integer is required.
    """
    spec(name)  # unknown names: the symbol table's message
    return float(vocab.validate(name, value))


def validate_values(values: dict[str, object]) -> dict[str, float]:
    """:func:`validate_value` on every item of a mapping."""
    return {name: validate_value(name, value) for name, value in values.items()}
