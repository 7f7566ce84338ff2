"""The lemma library: every inequality the derivation chains, as a sympy relation with its source.

Each :class:`Lemma` holds a sympy relation (``sp.Le`` or ``sp.Eq``) between a left-hand side,
usually one symbol naming the quantity being bounded, and a right-hand side in table symbols
(:mod:`hybridconv.theory.symbols`) and generic *quantities* (symbols made by :func:`quantity`,
e.g. ``L`` for the smoothness of a generic f, ``d`` for a dimension). A lemma is used by
substitution: :meth:`Lemma.instantiate` renames its symbols (``d="d_x"``, ``L="L_x"``) and
:meth:`Lemma.substitute_into` replaces its left-hand side by its right-hand side inside a larger
expression. For an inequality this gives an upper bound only where the larger expression is
non-decreasing in the replaced quantity (a nonnegative coefficient), which is how the derivation
uses it.

Every lemma names its source; where the source could not be checked against the text, or the
constants are this toolkit's own, the ``source`` and ``note`` fields say so.

References:
    [NS17] Nesterov, Spokoiny. Random gradient-free minimization of convex functions.
        Found. Comput. Math. 17 (2017), 527-566.
    [GL13] Ghadimi, Lan. Stochastic first- and zeroth-order methods for nonconvex stochastic
        programming. SIAM J. Optim. 23 (2013), 2341-2368.
    [MeZO] Malladi, Gao, Nichani, Damian, Lee, Chen, Arora. Fine-tuning language models with
        just forward passes. NeurIPS 2023.
    [MKR20] Mishchenko, Khaled, Richtarik. Random reshuffling: simple analysis with vast
        improvements. NeurIPS 2020, arXiv 2006.05988.
    [ZHSJ20] Zhang, He, Sra, Jadbabaie. Why gradient clipping accelerates training. ICLR 2020.

Example:
    >>> from hybridconv.theory.lemmas import get
    >>> lemma = get("gaussian_directional_second_moment")
    >>> lemma.rhs
    grad_sq*(d + 4)
    >>> lemma.instantiate(d=3, grad_sq=2)
    E_dir_sq <= 14
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import sympy as sp
from sympy.core.relational import Relational

from .assumptions import GeneralizedHybridSmoothness, HybridSmoothness, ZOEstimator
from .symbols import SYMBOLS, TABLE, name_of, sym

__all__ = ["Lemma", "LEMMAS", "get", "quantity", "zo_second_moment", "zo_variance"]

_LEMMA_NAME = re.compile(r"[a-z][a-z0-9_]*")
_QUANTITY_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_TABLE_SYMBOLS: frozenset[sp.Symbol] = frozenset(SYMBOLS.values())


def quantity(name: str, **assumptions: object) -> sp.Symbol:
    """A non-table symbol, nonnegative and real unless told otherwise.

    Keyword arguments are sympy assumptions added to (or overriding) the defaults
    ``real=True, nonnegative=True``; pass ``nonnegative=None`` for a signed real quantity, e.g.
    ``quantity("inner", nonnegative=None)``, and ``positive=True, integer=True`` for a dimension.

    Raises:
        ValueError: if ``name`` is not an identifier, or is a name of the symbol table (use
            :func:`hybridconv.theory.symbols.sym` for those, so that one name means one symbol).

    >>> quantity("d", positive=True, integer=True).is_integer
    True
    """
    if not isinstance(name, str) or not _QUANTITY_NAME.fullmatch(name):
        raise ValueError(f"quantity name must be an identifier, got {name!r}")
    if name in TABLE:
        raise ValueError(f"{name!r} is a table symbol; use symbols.sym({name!r}) instead")
    merged: dict[str, object] = {"real": True, "nonnegative": True}
    merged.update(assumptions)
    return sp.Symbol(name, **{key: value for key, value in merged.items() if value is not None})


def _as_expr(name: str, value: object, known: dict[str, sp.Symbol]) -> sp.Expr:
    """Convert one value given to :meth:`Lemma.instantiate` into a sympy expression."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number or a sympy expression, got {value!r}")
    if isinstance(value, str):
        if value in TABLE:
            return sym(value)
        if value in known:
            return known[value]
        raise ValueError(
            f"{name}={value!r}: a string must name a table symbol or a quantity of the lemma; "
            "pass a sympy expression otherwise"
        )
    try:
        return sp.sympify(value, strict=True)
    except sp.SympifyError:
        raise ValueError(
            f"{name} must be a number or a sympy expression, got {value!r}"
        ) from None


@dataclass(frozen=True)
class Lemma:
    """One lemma: a sympy relation, what its symbols mean, when it holds, where it comes from.

    Attributes:
        name: registry key, snake_case.
        title: short human title.
        statement: ``sp.Le(lhs, rhs)`` or ``sp.Eq(lhs, rhs)``.
        quantities: the names of the non-table symbols of ``statement`` and ``conditions``,
            each with its meaning.
        hypotheses: the hypotheses in words.
        source: paper and theorem/equation, or "this toolkit" with the derivation.
        conditions: sympy relations on the symbols that the lemma needs (e.g. a step size).
        tight: when it is attained, or ``""`` if unknown.
        note: caveats.
    """

    name: str
    title: str
    statement: sp.Basic
    quantities: dict[str, str] = field(hash=False)
    hypotheses: tuple[str, ...]
    source: str
    conditions: tuple[sp.Basic, ...] = ()
    tight: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _LEMMA_NAME.fullmatch(self.name):
            raise ValueError(f"name must be snake_case, got {self.name!r}")
        if not isinstance(self.title, str) or not self.title.strip():
            raise ValueError(f"title must be a non-empty string, got {self.title!r}")
        if not isinstance(self.statement, (sp.LessThan, sp.Equality)):
            raise ValueError(
                f"statement of {self.name!r} must be a sympy Le or Eq relation, "
                f"got {self.statement!r}"
            )
        if not isinstance(self.source, str) or not self.source.strip():
            raise ValueError(f"source of {self.name!r} must be a non-empty string, "
                             f"got {self.source!r}")
        if not isinstance(self.hypotheses, tuple) or not all(
            isinstance(h, str) for h in self.hypotheses
        ):
            raise ValueError(f"hypotheses of {self.name!r} must be a tuple of strings, "
                             f"got {self.hypotheses!r}")
        if not isinstance(self.conditions, tuple) or not all(
            isinstance(c, Relational) for c in self.conditions
        ):
            raise ValueError(f"conditions of {self.name!r} must be a tuple of sympy relations, "
                             f"got {self.conditions!r}")
        if not isinstance(self.quantities, dict):
            raise ValueError(f"quantities of {self.name!r} must be a dict, "
                             f"got {self.quantities!r}")
        used: dict[str, sp.Symbol] = {}
        for symbol in self._free_symbols():
            if symbol in _TABLE_SYMBOLS:
                continue
            if symbol.name in used:
                raise ValueError(f"{self.name!r} uses two different symbols named "
                                 f"{symbol.name!r}")
            used[symbol.name] = symbol
        missing = sorted(set(used) - set(self.quantities))
        if missing:
            raise ValueError(f"quantities of {self.name!r} must describe every non-table symbol; "
                             f"missing {missing}")
        extra = sorted(set(self.quantities) - set(used))
        if extra:
            raise ValueError(f"quantities of {self.name!r} name symbols the statement and "
                             f"conditions do not use: {extra}")

    def _free_symbols(self) -> list[sp.Symbol]:
        symbols: set[sp.Basic] = set(self.statement.free_symbols)
        for condition in self.conditions:
            symbols |= condition.free_symbols
        return sorted((s for s in symbols if isinstance(s, sp.Symbol)), key=sp.default_sort_key)

    def _symbols(self) -> dict[str, sp.Symbol]:
        """Name -> symbol for every symbol of the statement and conditions (table names for
        table symbols)."""
        return {name_of(s): s for s in self._free_symbols()}

    @property
    def lhs(self) -> sp.Expr:
        """The left-hand side of :attr:`statement`."""
        return self.statement.lhs

    @property
    def rhs(self) -> sp.Expr:
        """The right-hand side of :attr:`statement`."""
        return self.statement.rhs

    def instantiate(self, **subs: object) -> sp.Basic:
        """The statement with symbols replaced, by name.

        Names are table names (``L_x``, ``mu``, ...) or the lemma's quantity names (``d``,
        ``grad_sq``, ...). Values are numbers, sympy expressions, or strings naming a table
        symbol (``d="d_x"``) or another quantity of the lemma. A table name the lemma does not
        use is accepted and changes nothing, so one dict of constants fits every lemma. With
        numbers everywhere the result is ``sympy.true`` or ``sympy.false``.

        Raises:
            ValueError: for a name that is neither a table name nor a quantity of this lemma
                (the message lists the known names), or a value that is not a number, a sympy
                expression or a known name.
        """
        known = self._symbols()
        mapping: dict[sp.Symbol, sp.Expr] = {}
        for name, value in subs.items():
            if name in known:
                mapping[known[name]] = _as_expr(name, value, known)
            elif name in TABLE:
                _as_expr(name, value, known)
            else:
                names = ", ".join(sorted(known))
                raise ValueError(
                    f"unknown name {name!r} for lemma {self.name!r}; its symbols are: {names} "
                    "(any table name is also accepted)"
                )
        return self.statement.subs(mapping, simultaneous=True)

    def substitute_into(self, expr: sp.Expr) -> sp.Expr:
        """Replace every occurrence of :attr:`lhs` in ``expr`` by :attr:`rhs`.

        For an inequality the result bounds ``expr`` from above only where ``expr`` is
        non-decreasing in :attr:`lhs`; that is the caller's responsibility.
        """
        return sp.sympify(expr).subs(self.lhs, self.rhs)

    def to_markdown(self) -> str:
        """One paragraph: title, source, the statement in LaTeX, hypotheses, conditions, caveats."""
        parts = [f"**{self.title}** ({self.source}). ${sp.latex(self.statement)}$"]
        if self.quantities:
            meanings = "; ".join(f"`{k}`: {v}" for k, v in self.quantities.items())
            parts.append(f"Where {meanings}.")
        if self.hypotheses:
            parts.append("Hypotheses: " + "; ".join(self.hypotheses) + ".")
        if self.conditions:
            parts.append(
                "Conditions: " + ", ".join(f"${sp.latex(c)}$" for c in self.conditions) + "."
            )
        if self.tight:
            parts.append(f"Tight: {self.tight}.")
        if self.note:
            parts.append(f"Note: {self.note}")
        return " ".join(parts)


def _le(lhs: sp.Expr, rhs: sp.Expr) -> sp.LessThan:
    return sp.Le(lhs, rhs, evaluate=False)


def _eq(lhs: sp.Expr, rhs: sp.Expr) -> sp.Equality:
    return sp.Eq(lhs, rhs, evaluate=False)


# ---------------------------------------------------------------------------------------------
# Shared generic quantities (single-function lemmas are stated for a generic f on R^d).
_L = quantity("L", positive=True)
_d = quantity("d", positive=True, integer=True)
_grad_sq = quantity("grad_sq")
_gamma = quantity("gamma", positive=True)
_mu = sym("mu")

_Q_L = "smoothness constant of the generic f: ||grad f(x) - grad f(y)|| <= L ||x - y||"
_Q_D = "dimension of the space of f (d >= 1)"
_Q_GRAD = "||grad f(x)||^2 at the current point x"
_H_SMOOTH = "f: R^d -> R is L-smooth (gradient L-Lipschitz), not necessarily convex"
_H_GAUSS = "u ~ N(0, I_d)"

LEMMAS: dict[str, Lemma] = {}
"""The registry, in insertion order."""


def _register(lemma: Lemma) -> Lemma:
    if lemma.name in LEMMAS:
        raise ValueError(f"lemma {lemma.name!r} is registered twice")
    LEMMAS[lemma.name] = lemma
    return lemma


def get(name: str) -> Lemma:
    """The registered lemma ``name``; ``ValueError`` listing the known names otherwise."""
    try:
        return LEMMAS[name]
    except (KeyError, TypeError):
        known = ", ".join(LEMMAS)
        raise ValueError(f"unknown lemma {name!r}; known lemmas: {known}") from None


# --- elementary inequalities -----------------------------------------------------------------
_a = quantity("a", nonnegative=None)
_b = quantity("b", nonnegative=None)
_c = quantity("c")
_register(Lemma(
    name="young",
    title="Young's inequality",
    statement=_le(2 * _a * _b, _c * _a**2 + _b**2 / _c),
    quantities={
        "a": "a real number (a norm or a coordinate)",
        "b": "a real number (a norm or a coordinate)",
        "c": "the free weight, c > 0",
    },
    hypotheses=("a, b real",),
    source="classical (Young / AM-GM); scalar form of <u, v> <= (c/2)||u||^2 + ||v||^2/(2c)",
    conditions=(sp.Gt(_c, 0, evaluate=False),),
    tight="equality iff b = c a",
    note="rhs - lhs = (sqrt(c) a - b / sqrt(c))^2.",
))

_m = quantity("m", positive=True, integer=True)
_register(Lemma(
    name="cauchy_schwarz_sum",
    title="Squared norm of a sum of m vectors",
    statement=_le(quantity("sum_sq"), _m * quantity("sq_sum")),
    quantities={
        "sum_sq": "||sum_{k=1}^m v_k||^2",
        "sq_sum": "sum_{k=1}^m ||v_k||^2",
        "m": "number of vectors, m >= 1",
    },
    hypotheses=("v_1, ..., v_m in R^d",),
    source="classical (Cauchy-Schwarz, or Jensen for ||.||^2)",
    tight="equality iff all v_k are equal",
))

_register(Lemma(
    name="martingale_sum",
    title="Second moment of a sum of martingale differences",
    statement=_eq(quantity("E_sum_sq"), quantity("sum_E_sq")),
    quantities={
        "E_sum_sq": "E||sum_{k=1}^m xi_k||^2",
        "sum_E_sq": "sum_{k=1}^m E||xi_k||^2",
    },
    hypotheses=(
        "E[xi_k | xi_1, ..., xi_{k-1}] = 0 for every k (martingale differences)",
        "E||xi_k||^2 < infinity for every k",
    ),
    source="classical: orthogonality of martingale increments, E<xi_j, xi_k> = 0 for j < k",
    tight="exact (identity)",
    note="This is why fresh ZO directions add their variances step by step: the ZO noise of "
         "one epoch is a martingale-difference sum.",
))

# --- Gaussian smoothing [NS17], [GL13] --------------------------------------------------------
_register(Lemma(
    name="gaussian_smoothing_unbiased",
    title="The Gaussian two-point estimator is unbiased for the smoothed gradient",
    statement=_eq(quantity("E_g", nonnegative=None), quantity("grad_f_mu", nonnegative=None)),
    quantities={
        "E_g": "E_u[(f(x + mu u) - f(x)) / mu * u] (one component; the identity is vectorial)",
        "grad_f_mu": "grad f_mu(x) with f_mu(x) = E_u f(x + mu u) (same component)",
    },
    hypotheses=(_H_GAUSS, "mu > 0", "f continuous with E|f(x + mu u)| finite near x"),
    source="Nesterov & Spokoiny 2017, Section 2, eq. (21)",
    tight="exact (identity)",
    note="Also holds for the central difference, whose mean is the same by symmetry of u.",
))

_register(Lemma(
    name="gaussian_smoothing_value_gap",
    title="Value gap of Gaussian smoothing",
    statement=_le(quantity("value_gap"), _mu**2 * _L * _d / 2),
    quantities={"value_gap": "|f_mu(x) - f(x)|, f_mu(x) = E_u f(x + mu u)", "L": _Q_L,
                "d": _Q_D},
    hypotheses=(_H_SMOOTH, _H_GAUSS),
    source="Nesterov & Spokoiny 2017, Thm 1, eq. (19)",
    tight="equality for f(x) = (L/2)||x||^2 and for f(x) = -(L/2)||x||^2",
))

_register(Lemma(
    name="gaussian_directional_second_moment",
    title="Second moment of the Gaussian directional-derivative estimator",
    statement=_le(quantity("E_dir_sq"), (_d + 4) * _grad_sq),
    quantities={"E_dir_sq": "E_u||<grad f(x), u> u||^2", "grad_sq": _Q_GRAD, "d": _Q_D},
    hypotheses=(_H_GAUSS, "f differentiable at x"),
    source="Nesterov & Spokoiny 2017, Thm 3, eq. (32)",
    tight="not tight: the exact value is (d + 2)||grad f(x)||^2",
    note="E<a,u>^2 ||u||^2 = (d + 2)||a||^2 exactly for u ~ N(0, I_d); NS17 state d + 4.",
))

_E_g_sq = quantity("E_g_sq")
_register(Lemma(
    name="gaussian_zo_second_moment_convex",
    title="Second moment of the Gaussian forward-difference estimator (convex f)",
    statement=_le(_E_g_sq, _mu**2 / 2 * _L**2 * (_d + 6)**3 + 2 * (_d + 4) * _grad_sq),
    quantities={
        "E_g_sq": "E_u||g_mu(x)||^2, g_mu(x) = (f(x + mu u) - f(x)) / mu * u",
        "grad_sq": _Q_GRAD, "L": _Q_L, "d": _Q_D,
    },
    hypotheses=("f: R^d -> R is convex and L-smooth", _H_GAUSS),
    source="Nesterov & Spokoiny 2017, Thm 4, eq. (35)",
    tight="not tight: as mu -> 0 the exact value is (d + 2)||grad f(x)||^2",
    note="Stated for CONVEX f. The same theorem gives mu^2/8 instead of mu^2/2 for the central "
         "difference, also under convexity. For nonconvex f use zo_second_moment_nonconvex.",
))

_register(Lemma(
    name="zo_second_moment_nonconvex",
    title="Second moment of the Gaussian two-point estimator (nonconvex f)",
    statement=_le(
        _E_g_sq,
        2 * (_d + 2) * _grad_sq + _mu**2 * _L**2 / 2 * _d * (_d + 2) * (_d + 4),
    ),
    quantities={
        "E_g_sq": "E_u||g_1||^2 for one direction, g_1 = delta u, delta the forward "
                  "difference (f(x + mu u) - f(x)) / mu or the central difference "
                  "(f(x + mu u) - f(x - mu u)) / (2 mu)",
        "grad_sq": _Q_GRAD, "L": _Q_L, "d": _Q_D,
    },
    hypotheses=(_H_SMOOTH, _H_GAUSS, "forward or central difference"),
    source="this toolkit; from |r| <= (L mu/2)||u||^2, E<a,u>^2||u||^2 = (d+2)||a||^2, "
           "E||u||^6 = d(d+2)(d+4)",
    tight="not tight: a factor 2 is lost in each term by (s + t)^2 <= 2 s^2 + 2 t^2",
    note="delta = <grad f(x), u> + r with |r| <= (L mu / 2)||u||^2 for both differences (two-"
         "sided Taylor bound of an L-smooth f), so ||g_1||^2 <= 2<a,u>^2||u||^2 + 2 r^2||u||^2. "
         "Convexity is not used. The same constants as assumptions.ZOEstimator('gaussian'): "
         "c1 = 2(d+2), c2 = d(d+2)(d+4)/2; see zo_second_moment(estimator).",
))

_register(Lemma(
    name="smoothing_bias",
    title="Bias of the Gaussian-smoothed gradient",
    statement=_le(quantity("bias"), _mu / 2 * _L * (_d + 3)**sp.Rational(3, 2)),
    quantities={"bias": "||grad f_mu(x) - grad f(x)||", "L": _Q_L, "d": _Q_D},
    hypotheses=(_H_SMOOTH, _H_GAUSS),
    source="Ghadimi & Lan 2013, SIAM J. Optim. 23, Thm 3.1 b), eq. (3.6)",
    note="Holds for nonconvex f. It follows from ||grad f_mu - grad f|| <= (L mu / 2) "
         "E||u||^3 and E||u||^3 <= (d + 3)^{3/2} (NS17, Lemma 1).",
))

_register(Lemma(
    name="stein_smoothing_bias",
    title="Bias of the Gaussian two-point estimator (Stein)",
    statement=_le(quantity("bias"), _L * _mu * sp.sqrt(_d)),
    quantities={"bias": "||E_u[g_mu(x)] - grad f(x)||, forward or central difference",
                "L": _Q_L, "d": _Q_D},
    hypotheses=(_H_SMOOTH, _H_GAUSS),
    source="Stein's identity E[f(x + mu u) u] = mu E[grad f(x + mu u)] (Nesterov & Spokoiny "
           "2017, eq. (21)), then Jensen: ||E[grad f(x + mu u) - grad f(x)]|| <= L mu E||u|| "
           "<= L mu sqrt(E||u||^2) = L mu sqrt(d)",
    tight="within a factor sqrt(d) / E||u|| -> 1: f = (L/2) (x_1 - s)_+^2-type kinks attain "
          "L mu E|u_1| in one dimension",
    note="A factor (d + 3)^{3/2} / (2 sqrt(d)), about d/2, below Ghadimi & Lan's (3.6) "
         "(smoothing_bias); the central difference has the same mean by the symmetry of u.",
))

_register(Lemma(
    name="ball_smoothing_bias",
    title="Bias of the two-point estimator with sphere directions (ball smoothing)",
    statement=_le(quantity("bias"), _L * _mu * sp.sqrt(_d)),
    quantities={"bias": "||E_u[g_mu(x)] - grad f(x)||, u uniform on the sphere of radius "
                        "sqrt(d)", "L": _Q_L, "d": _Q_D},
    hypotheses=(_H_SMOOTH, "u uniform on the sphere of radius sqrt(d)"),
    source="Flaxman, Kalai, McMahan 2005 (SODA), Lemma 1: with v = u / sqrt(d) and delta = "
           "mu sqrt(d), E[(f(x + delta v) - f(x)) v] d / delta = grad f_hat(x), f_hat the average "
           "of f over the ball of radius delta; then ||grad f_hat - grad f|| <= L delta E||w|| = "
           "L mu sqrt(d) d / (d + 1) for w uniform in the unit ball",
    note="Same constant as the Gaussian case (stein_smoothing_bias), up to d / (d + 1).",
))

_register(Lemma(
    name="rademacher_smoothing_bias",
    title="Bias of the two-point estimator with Rademacher directions (Efron-Stein)",
    statement=_le(quantity("bias"), (1 + 2 / sp.sqrt(3)) * _L * _mu * sp.sqrt(_d)),
    quantities={"bias": "||E_u[g_mu(x)] - grad f(x)||, u uniform on {-1, 1}^d",
                "L": _Q_L, "d": _Q_D},
    hypotheses=(_H_SMOOTH, "u uniform on {-1, 1}^d"),
    source="this toolkit. Forward difference: g = (f(x + mu u) - f(x)) u / mu = <a, u> u + "
           "r(u) u / mu with a = grad f(x), r(u) = f(x + mu u) - f(x) - mu <a, u>; E<a,u>u = a, "
           "so the bias is E[r u] / mu, and since E<u, v> = 0, <v, E[r u]> = E[(r - E r) <u, v>] "
           "<= sqrt(Var r) for a unit v. Efron-Stein on independent signs (a resampled sign "
           "flips with probability 1/2): Var r <= (1/4) sum_i E (r(u) - r(u^(i)))^2, u^(i) = u "
           "with sign i flipped. With p = x + mu u and gamma_s = p - 2 s mu u_i e_i, "
           "r(u) - r(u^(i)) = 2 mu u_i int_0^1 (d_i f(gamma_s) - a_i) ds, so by Jensen its "
           "square is <= 4 mu^2 int_0^1 (A_i + B_i(s))^2 ds with A_i = d_i f(p) - a_i, "
           "B_i(s) = d_i f(gamma_s) - d_i f(p); sum_i A_i^2 = ||grad f(p) - a||^2 <= L^2 mu^2 d, "
           "|B_i(s)| <= L ||gamma_s - p|| = 2 L mu s, int_0^1 B_i^2 ds <= 4 L^2 mu^2 / 3; "
           "(A + B)^2 <= (1 + e) A^2 + (1 + 1/e) B^2 at the best e gives sum_i int (A_i + "
           "B_i)^2 <= (1 + 2/sqrt(3))^2 L^2 mu^2 d. Hence Var r <= (1 + 2/sqrt(3))^2 L^2 mu^4 d "
           "and bias <= (1 + 2/sqrt(3)) L mu sqrt(d). Central difference: its remainder "
           "(r(u) - r(-u)) / 2 has variance <= Var r (-u is Rademacher too)",
    tight="the order sqrt(d) is attained: f = (L/2) sum_i x_i |x_i| (gradient L|x_i|, "
          "L-Lipschitz) has bias exactly L mu sqrt(d) / 2 at 0, 0.23 of the bound",
    note="Rademacher directions define no smoothed function, so no Stein or ball argument "
         "applies; the centring and Efron-Stein replace them. The plain Taylor bound "
         "||E[r u]|| / mu <= L mu d / 2 also holds and is smaller for d < 19; the theorem uses "
         "this one, which grows like sqrt(d) as the Gaussian and sphere bounds do.",
))

_register(Lemma(
    name="zo_variance_nonconvex",
    title="Variance of the one-direction two-point estimator (nonconvex f)",
    statement=_le(
        quantity("E_var"),
        (1 + quantity("th", positive=True)) * quantity("c_v") * _grad_sq
        + (1 + 1 / quantity("th", positive=True)) * quantity("nu0_sq"),
    ),
    quantities={
        "E_var": "E||g_1 - E g_1||_W^2 for one direction, g_1 = delta u",
        "th": "the Young weight, > 0",
        "c_v": "E||<a,u>u - a||_W^2 / ||a||^2 for a = grad f(x): d + 1 (Gaussian), d - 1 "
               "(sphere, Rademacher) in the Euclidean norm W = I",
        "nu0_sq": "a bound on E rem^2 ||u||_W^2, rem = delta - <grad f(x), u>: "
                  "(L mu / 2)^2 E||u||^6 for an L-smooth f",
        "grad_sq": _Q_GRAD,
    },
    hypotheses=(_H_SMOOTH, "E u u^T = I (Gaussian, sphere of radius sqrt(d), Rademacher)",
                "forward or central difference"),
    source="this toolkit: g_1 - E g_1 = (<a,u>u - a) + (rem u - E[rem u]); "
           "||s + t||^2 <= (1 + th)||s||^2 + (1 + 1/th)||t||^2 and E||rem u - E rem u||_W^2 <= "
           "E rem^2 ||u||_W^2",
    tight="the first term is exact when rem = 0 (a quadratic and the central difference)",
    note="With q independent directions the variance is divided by q exactly. Replaces "
         "zo_second_moment_nonconvex in the sharp theorem: the variance (d + 1 instead of the "
         "second moment's d + 2) with a free split instead of a factor 2 on each part.",
))

# --- elementary vector inequalities used by the sharp theorem --------------------------------
_th = quantity("th", positive=True)
_u_sq, _v_sq = quantity("u_sq"), quantity("v_sq")
_register(Lemma(
    name="young_split",
    title="Squared norm of a sum, weighted split",
    statement=_le(quantity("sum_sq"), (1 + _th) * _u_sq + (1 + 1 / _th) * _v_sq),
    quantities={"sum_sq": "||u + v||^2", "u_sq": "||u||^2", "v_sq": "||v||^2",
                "th": "the weight, > 0"},
    hypotheses=("u, v in an inner-product space",),
    source="Young's inequality 2<u, v> <= th ||u||^2 + ||v||^2 / th",
    tight="equality iff v = th u",
))

_register(Lemma(
    name="young_lower",
    title="Squared norm of a sum, from below",
    statement=_le((1 - _th) * _u_sq - (1 / _th - 1) * _v_sq, quantity("sum_sq")),
    quantities={"sum_sq": "||u + v||^2", "u_sq": "||u||^2", "v_sq": "||v||^2",
                "th": "the weight, 0 < th <= 1"},
    hypotheses=("u, v in an inner-product space",),
    source="Young's inequality 2<u, v> >= -th ||u||^2 - ||v||^2 / th",
    tight="equality iff v = -th u",
    note="Used where the quantity ||u + v||^2 has a nonpositive coefficient.",
))

_register(Lemma(
    name="polarization",
    title="Polarization identity",
    statement=_eq(2 * quantity("inner_uv", nonnegative=None),
                  _u_sq + _v_sq - quantity("diff_sq")),
    quantities={"inner_uv": "<u, v>", "u_sq": "||u||^2", "v_sq": "||v||^2",
                "diff_sq": "||u - v||^2"},
    hypotheses=("u, v in an inner-product space",),
    source="classical",
    tight="exact (identity)",
    note="With u = n grad_b F(z_t) and v = P_b, the sum of the epoch's predictable gradients: "
         "-<grad_b F, P_b> = (||P_b - n grad_b F||^2 - n^2 ||grad_b F||^2 - ||P_b||^2) / (2n). "
         "The -||P_b||^2 part pays for the step's second-order term (as in Mishchenko, Khaled, "
         "Richtarik's nonconvex analysis), and the rest keeps most of the descent.",
))

_register(Lemma(
    name="gradient_gap",
    title="The gradient is bounded by the gap (block-scaled)",
    statement=_le(quantity("grad_D_sq"), 2 * quantity("L_D") * quantity("gap")),
    quantities={"grad_D_sq": "eta_x ||grad_x F(z)||^2 + eta_y ||grad_y F(z)||^2",
                "L_D": "max(eta_x Lambda_x, eta_y Lambda_y)",
                "gap": "F(z) - F*"},
    hypotheses=("grad^2 F <= diag(Lambda_x I, Lambda_y I) everywhere (two-sided not needed)",
                "F bounded below by F*"),
    source="the descent lemma in the coordinates z' = D^{-1/2} z, D = diag(eta_x I, eta_y I): "
           "F(z - D grad F / L_D) <= F(z) - ||grad F||_D^2 / (2 L_D), and F >= F*",
    tight="equality for F(z) = (1/2) z^T diag(Lambda_x I, Lambda_y I) z with eta_x Lambda_x = "
          "eta_y Lambda_y",
    note="With eta_x = eta_y = 1 it is ||grad F||^2 <= 2 max(Lambda_x, Lambda_y)(F - F*). It "
         "gives the small-T bound: the theorem's bound is the smaller of the descent bound and "
         "this one.",
))

_register(Lemma(
    name="effective_rank_estimator",
    title="The two-point estimator under a curvature bound of effective rank r",
    statement=_le(quantity("E_var_H"),
                  (1 + _th) * (quantity("rk", positive=True) + 1) * _grad_sq
                  + (1 + 1 / _th) * (_mu * _L) ** 2 / 4
                  * quantity("rk", positive=True) * (quantity("rk", positive=True) + 2)
                  * (quantity("rk", positive=True) + 4)),
    quantities={"E_var_H": "E||g_1 - E g_1||_W^2, W = H / L, one direction",
                "th": "the Young weight, > 0", "rk": "tr(H) / L, the effective rank",
                "L": "||H||, H PSD with -H <= grad^2 f <= H on the perturbation segments",
                "grad_sq": _Q_GRAD},
    hypotheses=("-H <= grad^2 f <= H along every perturbation segment, H PSD, ||H|| <= L, "
                "tr(H) <= r L", "u ~ N(0, I_d) (sphere directions have smaller moments)"),
    source="Malladi et al. 2023 (MeZO), Assumption 1 and Lemma 2, in a two-sided form; "
           "moments of Gaussian quadratic forms: E<a,u>^2 u^T W u = ||a||^2 tr W + 2 a^T W a, "
           "E (u^T W u)^3 = (tr W)^3 + 6 tr W tr W^2 + 8 tr W^3; |rem| <= (mu/2) u^T H u",
    note="The bias is at most mu L sqrt(r) (Stein: ||E grad f(x + mu u) - grad f(x)|| <= "
         "mu sqrt(||H|| E u^T H u)). Every dimension d of the H1 constants becomes r.",
))

_register(Lemma(
    name="effective_rank_drift",
    title="Gradient differences under a two-sided block curvature bound",
    statement=_le(quantity("diff_b_sq"),
                  quantity("H_bb", positive=True) * quantity("quad_H")),
    quantities={"diff_b_sq": "||grad_b f(z') - grad_b f(z)||^2",
                "H_bb": "||𝐇_bb||, the norm of the curvature bound's block b",
                "quad_H": "(z' - z)^T 𝐇 (z' - z)"},
    hypotheses=("-𝐇 <= grad^2 f <= 𝐇 on the segment [z, z'], 𝐇 PSD block diagonal",),
    source="this toolkit: the averaged Hessian M on the segment satisfies -𝐇 <= M <= 𝐇, so "
           "M = 𝐇^{1/2} K 𝐇^{1/2} with ||K|| <= 1 and ||(M v)_b||^2 <= ||𝐇_bb|| ||K 𝐇^{1/2} v||^2 "
           "<= ||𝐇_bb|| v^T 𝐇 v",
    tight="for M = 𝐇 = L I it is ||M v||^2 = L^2 ||v||^2",
))

_register(Lemma(
    name="lsmooth_gradient_bound",
    title="Gradient bound of an l-smooth function on a sublevel set",
    statement=_le(quantity("grad_sq_f"), 2 * quantity("l_of_grad") * quantity("gap")),
    quantities={"grad_sq_f": "||grad f(z)||^2", "l_of_grad": "l(||grad f(z)||)",
                "gap": "f(z) - inf f"},
    hypotheses=("f l-smooth with l non-decreasing, f bounded below",),
    source="Li, Qian, Tian, Rakhlin, Jadbabaie 2023 (NeurIPS, arXiv 2306.01264), Lemma 3.5 "
           "(as recalled; not verified against the text)",
    note="For sub-quadratic l, g^2 <= 2 l(g) Delta has a largest solution G(Delta): the "
         "gradient is bounded on every sublevel set, which is where the paper's high-probability "
         "argument gets its level G.",
))

_register(Lemma(
    name="markov",
    title="Markov's inequality",
    statement=_le(quantity("prob"), quantity("mean") / quantity("level", positive=True)),
    quantities={"prob": "P(X >= level) for a nonnegative random X", "mean": "E X",
                "level": "the threshold, > 0"},
    hypotheses=("X >= 0",),
    source="classical",
    tight="for X taking the values 0 and level",
))

# --- several directions, sampling without replacement ----------------------------------------
_q = sym("q")
_register(Lemma(
    name="q_directions_variance",
    title="q sphere directions divide the gradient term by q (mu -> 0)",
    statement=_eq(quantity("E_q_sq"), (_d + _q - 1) / _q * _grad_sq),
    quantities={
        "E_q_sq": "E||(1/q) sum_{k=1}^q <a, u_k> u_k||^2, a = grad f(x)",
        "grad_sq": "||a||^2 = ||grad f(x)||^2", "d": _Q_D,
    },
    hypotheses=(
        "u_1, ..., u_q i.i.d. uniform on the sphere of radius sqrt(d) (E u u^T = I, "
        "||u||^2 = d)",
        "the limit mu -> 0 of the two-point estimator (directional derivatives)",
    ),
    source="Malladi et al. 2023 (MeZO), NeurIPS, Lemma 2",
    tight="exact (identity)",
    note="E||<a,u>u||^2 = d||a||^2 and E<a,u_k><a,u_l><u_k,u_l> = ||a||^2 for k != l, so the "
         "mean of q has (q d + q (q - 1)) ||a||^2 / q^2. For Gaussian directions the factor is "
         "(d + q + 1)/q.",
))

_k = quantity("k", integer=True)
_n = sym("n")
_register(Lemma(
    name="without_replacement_variance",
    title="Variance of a mean sampled without replacement",
    statement=_eq(quantity("E_dev_sq"), (_n - _k) / (_k * (_n - 1)) * quantity("sigma_sq")),
    quantities={
        "E_dev_sq": "E||(1/k) sum_{i<k} v_{pi(i)} - vbar||^2 for a uniform random permutation "
                    "pi of {1..n}",
        "sigma_sq": "(1/n) sum_i ||v_i - vbar||^2, vbar = (1/n) sum_i v_i",
        "k": "number of vectors taken, 1 <= k <= n",
    },
    hypotheses=("v_1, ..., v_n fixed vectors", "pi a uniformly random permutation"),
    source="classical sampling without replacement; e.g. Mishchenko, Khaled, Richtarik 2020, "
           "Lemma 1",
    conditions=(sp.Ge(_k, 1, evaluate=False), sp.Le(_k, _n, evaluate=False),
                sp.Ge(_n, 2, evaluate=False)),
    tight="exact (identity)",
    note="With replacement the variance is sigma_sq / k; without replacement it vanishes at "
         "k = n, which is what makes reshuffling beat sampling with replacement.",
))

# --- first-order and zeroth-order rates --------------------------------------------------------
_sigma = quantity("sigma")
_Delta, _T = sym("Delta"), sym("T")
_register(Lemma(
    name="random_reshuffling_nonconvex",
    title="Random reshuffling on a nonconvex finite sum",
    statement=_le(
        quantity("min_grad_sq"),
        12 * _Delta / (_gamma * _n * _T) + 2 * _gamma**2 * _L**2 * _n * _sigma**2,
    ),
    quantities={
        "min_grad_sq": "min_{t=0..T-1} E||grad f(x_t)||^2, x_t the iterate at the start of "
                       "epoch t",
        "gamma": "step size",
        "L": "smoothness constant of every f_i",
        "sigma": "heterogeneity bound B: (1/n) sum_i ||grad f_i(x) - grad f(x)||^2 <= sigma^2",
    },
    hypotheses=(
        "f = (1/n) sum_i f_i, every f_i L-smooth, f bounded below by f*, Delta = f(x_0) - f*",
        "(1/n) sum_i ||grad f_i(x) - grad f(x)||^2 <= 2 A (f(x) - f*) + B^2 with A = 0, "
        "B = sigma",
        "random reshuffling: a fresh uniform permutation every epoch, n steps per epoch",
    ),
    source="Mishchenko, Khaled, Richtarik 2020 (NeurIPS, arXiv 2006.05988), Thm 4, A = 0",
    conditions=(sp.Le(_gamma, 1 / (2 * _L * _n), evaluate=False),),
    note="Constants as recalled, not verified against the text: the search tool returned only "
         "the abstract and introduction of arXiv 2006.05988. The form Delta/(gamma n T) + "
         "gamma^2 L^2 n sigma^2 under gamma <= 1/(2 L n) is also the one in THEORY.md; the "
         "recalled 12 = 4 x 3 comes from the general-A proof, where (1 + a)^T <= 3 under a "
         "second step-size bound that is void at A = 0. Tests rely on the form only.",
))

_register(Lemma(
    name="zo_gradient_descent_nonconvex",
    title="ZO gradient descent (Gaussian forward difference) on a nonconvex L-smooth f",
    statement=_le(
        quantity("avg_grad_sq"),
        4 * _Delta / (_gamma * _T)
        + _mu**2 * _L**2 / 2 * (_d + 3)**3
        + _L**3 * _gamma * _mu**2 * _d * (_d + 2) * (_d + 4),
    ),
    quantities={
        "avg_grad_sq": "(1/T) sum_{k=0}^{T-1} E||grad f(x_k)||^2",
        "gamma": "step size", "L": _Q_L, "d": _Q_D,
    },
    hypotheses=(
        _H_SMOOTH,
        "f bounded below by f*, Delta = f(x_0) - f*",
        "x_{k+1} = x_k - gamma g_k, g_k = (f(x_k + mu u_k) - f(x_k)) / mu * u_k, "
        "u_k ~ N(0, I_d) i.i.d.; T iterations (n = 1, no y block)",
    ),
    source="form of Nesterov & Spokoiny 2017, Section 7 (random gradient method on smooth "
           "nonconvex f, h = 1/(4(d+4)L)); constants from this toolkit: descent lemma for f with "
           "smoothing_bias and zo_second_moment_nonconvex",
    conditions=(sp.Le(_gamma, 1 / (4 * (_d + 4) * _L), evaluate=False),),
    note="NS17's own constants (and whether they bound grad f or grad f_mu) could not be "
         "verified against the text; the bound here is derived for E||grad f||^2: "
         "<grad f, grad f_mu> >= ||grad f||^2/2 - bias^2/2, and gamma L (d+2) <= 1/4 absorbs the "
         "2(d+2)||grad f||^2 variance term, leaving a decrease of (gamma/4) E||grad f||^2 per "
         "step. At NS17's step gamma = 1/(4(d+4)L) it reads 16 (d+4) L Delta / T "
         "+ mu^2 L^2 ((d+3)^3/2 + d(d+2)/4). The central difference satisfies the same bound "
         "(same mean, same second-moment constants). Tests rely on the form.",
))

# --- block descent lemmas (H1, H1-gen) ----------------------------------------------------------
_F_next = quantity("F_next", nonnegative=None)
_F_z = quantity("F_z", nonnegative=None)
_inner = quantity("inner", nonnegative=None)
_A = quantity("a")
_B = quantity("b")
_BLOCK_QUANTITIES = {
    "F_next": "F(z + D)",
    "F_z": "F(z)",
    "inner": "<grad F(z), D>",
    "a": "||D_x||, the norm of the x-block of the step",
    "b": "||D_y||, the norm of the y-block of the step",
}


def _block_rhs(l_x: sp.Expr, l_xy: sp.Expr, l_y: sp.Expr) -> sp.Expr:
    return _F_z + _inner + (l_x * _A**2 + 2 * l_xy * _A * _B + l_y * _B**2) / 2


_L_x, _L_y, _L_xy = sym("L_x"), sym("L_y"), sym("L_xy")
_register(Lemma(
    name="block_descent",
    title="Block descent lemma (H1)",
    statement=_le(_F_next, _block_rhs(_L_x, _L_xy, _L_y)),
    quantities=dict(_BLOCK_QUANTITIES),
    hypotheses=("H1: every f_i, hence F, has block-Lipschitz gradients with L_x, L_xy, L_y",
                "D = (D_x, D_y) any step"),
    source="this toolkit, from H1 (THEORY.md): F(z + D) - F(z) - <grad F(z), D> = "
           "int_0^1 <grad F(z + sD) - grad F(z), D> ds, bounded block by block",
    tight="for F(z) = (1/2) z^T H z with 1-D blocks, H = [[L_x, L_xy], [L_xy, L_y]], "
          "and D_x, D_y >= 0",
))

_register(Lemma(
    name="block_descent_amgm",
    title="Block descent lemma, cross term split (H1)",
    statement=_le(_F_next, _F_z + _inner
                  + ((_L_x + _L_xy) * _A**2 + (_L_y + _L_xy) * _B**2) / 2),
    quantities=dict(_BLOCK_QUANTITIES),
    hypotheses=("H1", "D = (D_x, D_y) any step"),
    source="block_descent with 2 L_xy a b <= L_xy (a^2 + b^2)",
    tight="when block_descent is tight and ||D_x|| = ||D_y||",
    note="This is the form the theorem uses: each block gets its own effective smoothness "
         "L_x + L_xy and L_y + L_xy.",
))

_H1_GEN = GeneralizedHybridSmoothness()
_register(Lemma(
    name="generalized_block_descent",
    title="Block descent lemma under generalized smoothness (H1-gen)",
    statement=_le(_F_next, _block_rhs(_H1_GEN.L_x, _H1_GEN.L_xy, _H1_GEN.L_y)),
    quantities=dict(_BLOCK_QUANTITIES),
    hypotheses=(
        "H1-gen: ||H_bb'(z)|| <= L0_bb' + L1_bb' ||grad f_i(z)|| for every i and blocks b, b'",
        "||grad f_i|| <= G on a convex region containing z and z + D",
    ),
    source="Zhang, He, Sra, Jadbabaie 2020 (ICLR), Def. 1 applied per block; on the region the "
           "Hessian blocks are at most L0 + L1 G, then block_descent",
    tight="as block_descent with L_b = L0_b + L1_b G",
    note="Reduces to block_descent at L1 = 0, L0 = L (GeneralizedHybridSmoothness."
         "reduction_to_h1). The gradient bound G must hold on the whole segment [z, z + D].",
))


def zo_second_moment(estimator: ZOEstimator) -> Lemma:
    """``zo_second_moment_nonconvex`` with the constants of ``estimator``, in the x block.

    The statement is E||g_1||^2 <= c1 ||grad_x f||^2 + c2 mu^2 L_x^2 for one direction, with
    ``c1 = estimator.c1()`` and ``c2 = estimator.c2()`` in terms of ``d_x`` (the constants the
    theorem uses). With q directions the variance is at most this divided by q.

    Raises:
        TypeError: if ``estimator`` is not an :class:`~hybridconv.theory.assumptions.ZOEstimator`.

    >>> zo_second_moment(ZOEstimator("sphere")).rhs
    L_x**2*\\mu**2*d_x**3/2 + 2*d_x*grad_sq
    """
    if not isinstance(estimator, ZOEstimator):
        raise TypeError(f"estimator must be a ZOEstimator, got {estimator!r}")
    moments = estimator.moments()
    return Lemma(
        name=f"zo_second_moment_{estimator.directions}_{estimator.difference}",
        title=f"Second moment of the {estimator.difference}-difference estimator, "
              f"{estimator.directions} directions (nonconvex f)",
        statement=_le(
            _E_g_sq,
            estimator.c1() * _grad_sq + estimator.c2() * _mu**2 * sym("L_x")**2,
        ),
        quantities={
            "E_g_sq": "E||g_1||^2 for one direction in the x block",
            "grad_sq": "||grad_x f(x, y)||^2",
        },
        hypotheses=(
            "f is L_x-smooth in x (H1), not necessarily convex",
            f"{estimator.directions} directions in R^(d_x), {estimator.difference} difference",
        ),
        source=f"this toolkit; from |r| <= (L_x mu/2)||u||^2, "
               f"E<a,u>^2||u||^2 = {moments['E_au2_u2']} ||a||^2, "
               f"E||u||^6 = {moments['E_u6']}",
        note="c1 = 2 E<a,u>^2||u||^2 / ||a||^2 and c2 = E||u||^6 / 2, as in "
             "assumptions.ZOEstimator.",
    )


def zo_variance(smoothness: HybridSmoothness, estimator: ZOEstimator) -> Lemma:
    """``zo_variance_nonconvex`` with the constants of a curvature model and an estimator.

    E||g_1 - E g_1||_W^2 <= (1 + th) c_v ||grad_x f||^2 + (1 + 1/th) nu0^2 for one direction,
    with ``c_v = smoothness.zo_variance(estimator)`` and ``nu0^2 =
    smoothness.zo_mu_variance(estimator)`` (d_x under H1, r under the effective rank).

    >>> from hybridconv.theory.assumptions import HybridSmoothness
    >>> zo_variance(HybridSmoothness(), ZOEstimator("sphere")).rhs.has(sym("d_x"))
    True
    """
    if not isinstance(estimator, ZOEstimator):
        raise TypeError(f"estimator must be a ZOEstimator, got {estimator!r}")
    if not isinstance(smoothness, HybridSmoothness):
        raise TypeError(f"smoothness must be a curvature model, got {smoothness!r}")
    smoothness.supports(estimator)
    th = quantity("th", positive=True)
    return Lemma(
        name=f"zo_variance_{smoothness.key.replace('-', '_')}_{estimator.directions}",
        title=f"Variance of the two-point estimator, {estimator.directions} directions, "
              f"under {smoothness.name}",
        statement=_le(
            quantity("E_var"),
            (1 + th) * smoothness.zo_variance(estimator) * _grad_sq
            + (1 + 1 / th) * smoothness.zo_mu_variance(estimator),
        ),
        quantities={"E_var": "E||g_1 - E g_1||_W^2 for one direction in the x block",
                    "th": "the Young weight, > 0", "grad_sq": "||grad_x f(x, y)||^2"},
        hypotheses=(f"{smoothness.name} on the perturbation segments",
                    f"{estimator.directions} directions, {estimator.difference} difference"),
        source="zo_variance_nonconvex with the model's constants"
               + ("; effective_rank_estimator" if smoothness.key == "effective-rank" else ""),
    )
