"""The one table of symbols that the whole package speaks.

Every constant a problem reports (``problem.constants()``) and every hyper-parameter an
algorithm reports (``algo.hyperparameters()``) is keyed by a name of this table, so that
``bound.evaluate(**problem.constants(), **algo.hyperparameters())`` needs no glue.

Blocks are ``x`` (zeroth-order block: the base model) and ``y`` (first-order block: the PEFT
module). Each symbol is declared with the sympy assumptions the mathematics gives it
(``positive=True`` or ``nonnegative=True``, ``integer=True``), and each has a numeric domain
that :func:`validate_value` enforces at the public boundary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import sympy as sp

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
        upper: the largest allowed value (``inf``: none); ``upper_strict`` excludes it.
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
    upper: float = math.inf
    upper_strict: bool = False

    def allowed(self) -> str:
        """The allowed range in words, as used in error messages."""
        kind = "an integer" if self.integer else "a finite real number"
        if math.isfinite(self.upper):
            lo = "(" if self.strict else "["
            hi = ")" if self.upper_strict else "]"
            return f"{kind} in {lo}{self.lower:g}, {self.upper:g}{hi}"
        op = ">" if self.strict else ">="
        return f"{kind} {op} {self.lower:g}"


def _row(name: str, description: str, *, lower: float = 0.0, strict: bool, integer: bool = False,
         group: str = "constant", latex: str | None = None, upper: float = math.inf,
         upper_strict: bool = False) -> SymbolSpec:
    assumptions = {"real": True}
    if integer:
        assumptions["integer"] = True
    if lower > 0 or (strict and lower >= 0):
        assumptions["positive"] = True
    elif lower >= 0:
        assumptions["nonnegative"] = True
    symbol = sp.Symbol(latex or name, **assumptions)
    return SymbolSpec(name, symbol, description, lower, strict, integer, group, upper,
                      upper_strict)


_ROWS: tuple[SymbolSpec, ...] = (
    # H1, block hybrid smoothness
    _row("L_x", "smoothness of every f_i in the ZO block x: ||H_xx|| <= L_x", strict=True, latex="L_x"),
    _row("L_y", "smoothness of every f_i in the FO block y: ||H_yy|| <= L_y", strict=True, latex="L_y"),
    _row("L_xy", "cross-block smoothness: ||H_xy|| <= L_xy (0 means separable)", strict=False, latex="L_{xy}"),
    # H1-gen, block (L0, L1) smoothness (Zhang, He, Sra, Jadbabaie 2020, Def. 1, per block)
    _row("L0_x", "generalized smoothness, constant part, block x", strict=True, latex="L^{0}_{x}"),
    _row("L1_x", "generalized smoothness, gradient-proportional part, block x", strict=False, latex="L^{1}_{x}"),
    _row("L0_y", "generalized smoothness, constant part, block y", strict=True, latex="L^{0}_{y}"),
    _row("L1_y", "generalized smoothness, gradient-proportional part, block y", strict=False, latex="L^{1}_{y}"),
    _row("L0_xy", "generalized smoothness, constant part, cross block", strict=False, latex="L^{0}_{xy}"),
    _row("L1_xy", "generalized smoothness, gradient-proportional part, cross block", strict=False, latex="L^{1}_{xy}"),
    _row("G", "bound on ||grad f_i|| over the region the run visits (H1-gen, l-smooth)", strict=False, latex="G"),
    # local effective rank (MeZO, Malladi et al. 2023, Assumption 1, two-sided block form)
    _row("r", "effective rank of the x-block curvature bound: tr(H_x) <= r (L_x + L_xy), 1 <= r <= d_x", lower=1, strict=False, latex="r"),
    # block l-smoothness, evaluated at the gradient bound G
    _row("l_x", "l_x(G): the x-block l-smoothness function at the gradient bound G", strict=True, latex="l_x"),
    _row("l_y", "l_y(G): the y-block l-smoothness function at the gradient bound G", strict=True, latex="l_y"),
    # H3, block heterogeneity
    _row("sigma_x", "heterogeneity of the x-block gradients (additive part)", strict=False, latex=r"\sigma_x"),
    _row("sigma_y", "heterogeneity of the y-block gradients (additive part)", strict=False, latex=r"\sigma_y"),
    _row("Theta_x", "heterogeneity of the x-block gradients (relative part)", strict=False, latex=r"\Theta_x"),
    _row("Theta_y", "heterogeneity of the y-block gradients (relative part)", strict=False, latex=r"\Theta_y"),
    # H2
    _row("Delta", "initial gap F(z_0) - F*", strict=False, latex=r"\Delta"),
    # hyper-parameters
    _row("eta_x", "learning rate of the ZO block x", strict=True, group="hyper", latex=r"\eta_x"),
    _row("eta_y", "learning rate of the FO block y", strict=True, group="hyper", latex=r"\eta_y"),
    _row("eta", "one shared learning rate (eta_x = eta_y = eta)", strict=True, group="hyper", latex=r"\eta"),
    _row("mu", "smoothing radius of the ZO estimator (0: the exact-gradient limit)", strict=False,
         group="hyper", latex=r"\mu"),
    _row("q", "number of random directions per ZO step", lower=1, strict=False, integer=True, group="hyper"),
    _row("n", "number of components f_i (steps per epoch)", lower=1, strict=False, integer=True, group="hyper"),
    _row("T", "number of epochs", lower=1, strict=False, integer=True, group="hyper"),
    _row("d_x", "dimension of the ZO block x", strict=False, integer=True, latex="d_x"),
    _row("d_y", "dimension of the FO block y", lower=1, strict=False, integer=True, latex="d_y"),
    # target
    _row("eps", "target accuracy: min_t E||grad F(z_t)||^2 <= eps^2", strict=True, group="target",
         latex=r"\varepsilon"),
    _row("delta", "failure probability of a high-probability statement", strict=True,
         group="target", latex=r"\delta", upper=1.0, upper_strict=True),
)

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
    """Check one numeric value against its symbol's domain and return it as a float.

    Raises:
        ValueError: naming the argument, the value received and the allowed range, for an
            unknown name, a non-number, NaN or infinity, a value out of range, or a
            non-integer where an integer is required.
    """
    row = spec(name)
    if isinstance(value, bool):
        raise ValueError(f"{name} must be {row.allowed()}, got {value!r}")
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {row.allowed()}, got {value!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"{name} must be {row.allowed()}, got {value!r}")
    if (row.strict and x <= row.lower) or (not row.strict and x < row.lower):
        raise ValueError(f"{name} must be {row.allowed()}, got {value!r}")
    if (row.upper_strict and x >= row.upper) or (not row.upper_strict and x > row.upper):
        raise ValueError(f"{name} must be {row.allowed()}, got {value!r}")
    if row.integer and x != int(x):
        raise ValueError(f"{name} must be {row.allowed()}, got {value!r}")
    return x


def validate_values(values: dict[str, object]) -> dict[str, float]:
    """:func:`validate_value` on every item of a mapping."""
    return {name: validate_value(name, value) for name, value in values.items()}
