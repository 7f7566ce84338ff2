"""The Bound object: what the rest of the package consumes from the theory.

A :class:`Bound` wraps a derived :class:`~.theorems.Theorem` (or a special case of it) and
offers evaluation with validation, a vectorized numpy evaluator, the step sizes that minimize
it (two rates and one shared rate), the leading-order epoch complexity, LaTeX, and
substitution of special cases.

Numbers enter only here: the symbolic core (symbols, assumptions, lemmas, theorems) imports
sympy alone; this module imports numpy lazily for its vectorized evaluators.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

import sympy as sp

from .. import spec as vocab
from .proof import _replace
from .symbols import TABLE, name_of, spec, sym, validate_value
from .theorems import (
    Condition,
    Theorem,
    theorem_for,
)

__all__ = [
    "MEASURES",
    "compile_numeric",
    "Bound",
    "StepSizes",
    "Complexity",
    "hybrid_bound",
    "natural_weights",
    "sample_admissible",
    "SPECIAL_CASES",
]


MEASURES = vocab.MEASURES.values
"""What a bound bounds: min_t E||grad F(z_t)||^2, the block-weighted average
(1/T) sum_t E||grad F(z_t)||_D^2, or the adapter-only average (1/T) sum_t E||grad_y F(z_t)||^2."""


def _xsubs(expr: sp.Expr, mapping: dict[sp.Symbol, sp.Expr]) -> sp.Expr:
    """Substitute symbols (fast: ``xreplace``; Min and Max stay unevaluated)."""
    return _replace(sp.sympify(expr), mapping)


def compile_numeric(args: tuple[sp.Symbol, ...] | list[sp.Symbol], expr: object,
                    modules: str = "numpy") -> Callable[..., object]:
    """``sympy.lambdify`` for the theorem's long expressions, fast to compile.

    The table symbols have LaTeX names (``\\eta_x``), which make lambdify rename them with a
    ``subs`` over the whole expression (slow on expressions with unevaluated Min and Max);
    here they are renamed once with an unevaluating replacement. The generated source (with
    common subexpressions eliminated) is kept between processes (:func:`_stored_source`).
    """
    plain = [sp.Symbol(f"a{i}", real=True) for i in range(len(args))]
    mapping = dict(zip(args, plain, strict=True))
    if isinstance(expr, tuple | list):
        renamed = tuple(_replace(sp.sympify(e), mapping) for e in expr)
    else:
        renamed = _replace(sp.sympify(expr), mapping)
    return _stored_source(plain, renamed, modules)


_SOURCE_FORMAT = 1
"""Version of the stored-source layout (part of the key)."""


@functools.cache
def _namespace(modules: str) -> dict[str, object]:
    """lambdify's global namespace for ``modules`` (the one every generated function gets)."""
    return sp.lambdify([], sp.Integer(0), modules=modules).__globals__


def _stored_source(args: list[sp.Symbol], expr: object,
                   modules: str) -> Callable[..., object]:
    """``sympy.lambdify(args, expr, modules, cse=True)``, its generated source kept on disk.

    Eliminating common subexpressions and printing the code are most of the time of a
    ``hybridconv theory bound`` call (about 1.5 s of it; the derivation takes about 0.5 s),
    and they give the same source every time. The source is stored as JSON under
    ``cache_dir()/lambdify/`` keyed by the SHA-256 of sympy's version, ``modules`` and the
    pickled arguments and expression (the whole expression, not a name: a changed theorem is
    a different key, so the store cannot go stale; pickling takes well under a millisecond
    where ``srepr`` took 0.7 s). Cold or warm, the function is executed from that source in
    lambdify's namespace for ``modules`` (plus the few names the source imports, recorded
    with it), so both compile the same code and give the same numbers. A store that cannot be
    read, written or executed is skipped (lambdify is run again). The store is executed as
    code: it is the user's own cache folder, trusted like the package itself.
    """
    import hashlib
    import importlib
    import inspect
    import json
    import pickle

    from .._io import cache_dir, write_text_atomic

    base = _namespace(modules)

    def build(record: dict) -> Callable[..., object]:
        namespace = dict(base)
        for name, (module, attr) in record["imports"].items():
            namespace[name] = getattr(importlib.import_module(module), attr)
        local: dict[str, object] = {}
        exec(compile(record["source"], "<hybridconv-compiled>", "exec"), namespace, local)
        return local["_lambdifygenerated"]

    key = hashlib.sha256(f"{_SOURCE_FORMAT}\n{sp.__version__}\n{modules}\n".encode())
    key.update(pickle.dumps((tuple(args), expr), protocol=4))
    path = cache_dir() / "lambdify" / f"{key.hexdigest()}.json"
    try:
        return build(json.loads(path.read_text()))
    except Exception:  # absent, unreadable or not executable here: generate it again
        pass
    f = sp.lambdify(args, expr, modules=modules, dummify=False, cse=True)
    imports = {}
    for name in f.__code__.co_names:
        if name not in base and name in f.__globals__:
            obj = f.__globals__[name]
            imports[name] = (obj.__module__, obj.__name__)
    record = {"source": inspect.getsource(f), "imports": imports}
    try:
        fn = build(record)
    except Exception:  # the source does not run outside lambdify: use lambdify's function
        return f
    try:
        write_text_atomic(path, json.dumps(record))
    except OSError:
        pass
    return fn


def _special_cases() -> dict[str, dict[str, sp.Expr]]:
    z = sp.Integer(0)
    return {
        # THEORY.md, "Special cases": d_x = 0 leaves random-reshuffling SGD on y
        "no_zo_block": {"d_x": z, "L_x": z, "L_xy": z, "sigma_x": z, "Theta_x": z,
                        "eta_x": sym("eta_y")},
        # no y block and n = 1: ZO gradient descent on x
        "zo_only": {"n": sp.Integer(1), "L_y": z, "L_xy": z, "sigma_x": z, "sigma_y": z,
                    "Theta_x": z, "Theta_y": z, "eta_y": sym("eta_x")},
        # one learning rate for both blocks
        "single_rate": {"eta_x": sym("eta"), "eta_y": sym("eta")},
        # separable f_i = g_i(x) + h_i(y)
        "decoupled": {"L_xy": z},
    }


SPECIAL_CASES: dict[str, dict[str, sp.Expr]] = _special_cases()
"""Name -> substitution (table names) of THEORY.md's special cases."""


@dataclass(frozen=True)
class StepSizes:
    """Step sizes that minimize a bound, for two rates and for one shared rate.

    ``gain`` is bound_single_rate / bound_two_rates (>= 1 up to the search's resolution): the
    loss of rate from forcing one learning rate.
    """

    eta_x: float
    eta_y: float
    bound_two_rates: float
    eta: float
    bound_single_rate: float
    ratio: float
    gain: float
    active: tuple[str, ...]
    measure: str

    def as_dict(self) -> dict[str, object]:
        return {"eta_x": self.eta_x, "eta_y": self.eta_y, "bound_two_rates": self.bound_two_rates,
                "eta": self.eta, "bound_single_rate": self.bound_single_rate,
                "ratio": self.ratio, "gain": self.gain, "active": list(self.active),
                "measure": self.measure}


@dataclass(frozen=True)
class Complexity:
    """Leading-order epoch complexity T(eps) to reach min_t E||grad F(z_t)||^2 <= eps^2.

    Attributes:
        eps_exponent: p in T(eps) = Theta(eps^p) (e.g. -4).
        epochs: the leading-order expression of T in eps and the remaining symbols.
        eta: the step size (single rate, eta_y = ratio * eta_x) that achieves it.
        noise_power: the power of eta of the dominant noise term (None if there is none).
        mu_max: the smoothing radius below which the mu-terms stay under eps^2/4 (None if the
            bound has no mu-term).
        regime: a sentence saying which term dominates.
        eps_max: the formula holds for eps <= eps_max (where eta(eps) meets C1-C3's caps).
        probability: the target holds with probability >= 1 - delta (a high-probability
            theorem), not in expectation.
    """

    eps_exponent: sp.Rational
    epochs: sp.Expr
    eta: sp.Expr
    noise_power: sp.Rational | None
    mu_max: sp.Expr | None
    regime: str
    eps_max: sp.Expr = sp.oo
    probability: bool = False

    def as_dict(self) -> dict[str, object]:
        return {"eps_exponent": str(self.eps_exponent),
                "eps_exponent_float": float(self.eps_exponent),
                "epochs": sp.sstr(self.epochs), "epochs_latex": sp.latex(self.epochs),
                "eta": sp.sstr(self.eta),
                "noise_power": None if self.noise_power is None else str(self.noise_power),
                "mu_max": None if self.mu_max is None else sp.sstr(self.mu_max),
                "regime": self.regime, "eps_max": sp.sstr(self.eps_max),
                "measure": ("min_t ||grad F(z_t)||^2 <= eps^2 with probability >= 1 - delta"
                            if self.probability else "min_t E||grad F(z_t)||^2 <= eps^2")}


@dataclass(frozen=True)
class Bound:
    """A convergence bound with its conditions.

    Attributes:
        theorem: the theorem it comes from (derivation, hypotheses, compact form).
        expr: the bound on min_t E||grad F(z_t)||^2, in table symbols.
        weighted_expr: the bound on (1/T) sum_t E[eta_x ||grad_x F||^2 + eta_y ||grad_y F||^2].
        conditions: the conditions under which it holds.
        fixed: the substitutions applied to the theorem (special cases, ``subs``).
        numerator: B, the bound on the gamma-weighted measure (None for a bound of your own).
        gamma: the descent coefficients (gamma_x, gamma_y) (``(1, 1)`` for the v1 theorem).
        alt_weighted: the small-T bound on the block-weighted measure (None if there is none).
        adapter_expr: the bound on the adapter-only measure (1/T) sum_t E||grad_y F(z_t)||^2.
        terms: the named terms of the numerator and of the small-T bound
            (:func:`~.terms.bound_terms`), empty for a bound of your own.
        alt_full: the small-T bound on min_t E||grad F(z_t)||^2 (None if there is none).
        only: ``"x"`` or ``"y"`` for a one-block special case (the other block absent): its
            measures divide by that block's gamma alone.

    Example:
        >>> b = hybrid_bound()
        >>> v = dict(L_x=1, L_y=1, L_xy=0.5, sigma_x=0.1, sigma_y=0.1, Theta_x=0, Theta_y=0,
        ...          Delta=1, eta_x=1e-4, eta_y=1e-3, mu=1e-4, q=1, n=10, T=1000, d_x=10)
        >>> b.evaluate(**v) > 0
        True
    """

    theorem: Theorem
    expr: sp.Expr
    weighted_expr: sp.Expr
    conditions: tuple[Condition, ...]
    fixed: dict[str, sp.Expr] = field(default_factory=dict)
    numerator: sp.Expr | None = None
    gamma: tuple[sp.Expr, sp.Expr] = (sp.Integer(1), sp.Integer(1))
    alt_weighted: sp.Expr | None = None
    adapter_expr: sp.Expr | None = None
    terms: dict[str, sp.Expr] = field(default_factory=dict)
    alt_full: sp.Expr | None = None
    only: str | None = None

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_theorem(cls, theorem: Theorem) -> Bound:
        if theorem.version == "v1":
            return cls(theorem, theorem.bound, theorem.weighted_bound, theorem.conditions,
                       numerator=theorem.weighted_bound,
                       adapter_expr=theorem.weighted_bound / sym("eta_y"))
        return cls(theorem, theorem.bound, theorem.weighted_bound, theorem.conditions,
                   numerator=theorem.numerator, gamma=tuple(theorem.gamma),
                   alt_weighted=theorem.alternatives.get("weighted"),
                   adapter_expr=theorem.adapter_bound, terms=dict(theorem.terms),
                   alt_full=theorem.alternatives.get("full"))

    def subs(self, **values: object) -> Bound:
        """Substitute table symbols by numbers (validated) or sympy expressions.

        Conditions that become true are dropped; a condition that becomes false raises
        ``ValueError`` naming it.
        """
        mapping: dict[sp.Symbol, sp.Expr] = {}
        for name, value in values.items():
            if isinstance(value, sp.Basic):
                spec(name)
                mapping[sym(name)] = value
            else:
                mapping[sym(name)] = sp.nsimplify(validate_value(name, value), rational=True)
        return self._subs(mapping, {k: v for k, v in values.items()})

    def with_expression(self, expr: sp.Expr, *,
                        weighted_expr: sp.Expr | None = None) -> Bound:
        """A bound of your own, held under this bound's conditions (for checking it).

        ``expr`` bounds min_t E||grad F(z_t)||^2 and is written in table symbols
        (:func:`~.symbols.sym`); ``weighted_expr`` bounds the block-weighted measure. Without
        it the new bound makes no claim there (``weighted_expr = oo``), so checks of the
        weighted measure pass trivially. The conditions stay this bound's: they are what
        ``hybridconv.testing`` and the falsifier use to pick admissible step sizes.

        >>> from hybridconv.theory import sym
        >>> b = hybrid_bound().with_expression(2 * sym("L_x") * sym("Delta"))
        >>> b.evaluate(check=False, L_x=1, Delta=3, L_y=1, L_xy=0, sigma_x=0, sigma_y=0,
        ...            Theta_x=0, Theta_y=0, mu=1e-3, q=1, n=2, d_x=1, eta_x=1e-3,
        ...            eta_y=1e-3, T=1)
        6.0

        Raises:
            ValueError: when an expression is a string or uses a symbol outside the table,
                or ``weighted_expr`` uses a symbol that neither ``expr`` nor the conditions
                contain.
        """
        def table(e: object, arg: str) -> sp.Expr:
            if isinstance(e, str):
                raise ValueError(f"{arg} must be a sympy expression in table symbols "
                                 "(hybridconv.theory.sym), got a string")
            try:
                e = sp.sympify(e)
            except (sp.SympifyError, TypeError):
                raise ValueError(f"{arg} must be a sympy expression, got {e!r}") from None
            mapping = {}
            for s in e.free_symbols:
                try:
                    mapping[s] = sym(name_of(s))  # plain Symbol("L_x") -> the table's symbol
                except ValueError as err:
                    raise ValueError(f"{arg}: {err}") from None
            return e.xreplace(mapping)

        new = table(expr, "expr")
        weighted = sp.oo if weighted_expr is None else table(weighted_expr, "weighted_expr")
        known = set(new.free_symbols)
        for c in self.conditions:
            known |= c.lhs.free_symbols | c.rhs.free_symbols
        extra = {name_of(s) for s in weighted.free_symbols - known}
        if extra:
            raise ValueError(f"weighted_expr uses {', '.join(sorted(extra))}, which neither "
                             "expr nor the conditions contain")
        return Bound(self.theorem, new, weighted, self.conditions, dict(self.fixed))

    def _subs(self, mapping: dict[sp.Symbol, sp.Expr], record: Mapping[str, object]) -> Bound:
        conds = []
        for c in self.conditions:
            lhs, rhs = _xsubs(c.lhs, mapping), _xsubs(c.rhs, mapping)
            gap = sp.expand(lhs - rhs)
            if gap.is_number and gap > 0:
                raise ValueError(f"condition {c.name} fails after substitution: "
                                 f"{sp.sstr(lhs)} <= {sp.sstr(rhs)} is false")
            if not (gap.is_number and gap <= 0):
                conds.append(Condition(c.name, lhs, rhs, c.description))
        fixed = dict(self.fixed)
        fixed.update({k: (v if isinstance(v, sp.Basic) else sp.sympify(v))
                      for k, v in record.items()})

        def opt(e: sp.Expr | None) -> sp.Expr | None:
            return None if e is None else _xsubs(e, mapping)

        return Bound(self.theorem, _xsubs(self.expr, mapping), _xsubs(self.weighted_expr, mapping),
                     tuple(conds), fixed, numerator=opt(self.numerator),
                     gamma=tuple(_xsubs(g, mapping) for g in self.gamma),
                     alt_weighted=opt(self.alt_weighted), adapter_expr=opt(self.adapter_expr),
                     terms={k: _xsubs(v, mapping) for k, v in self.terms.items()},
                     alt_full=opt(self.alt_full))

    def special_case(self, name: str) -> Bound:
        """One of :data:`SPECIAL_CASES` (``no_zo_block``, ``zo_only``, ``single_rate``,
        ``decoupled``)."""
        try:
            case = SPECIAL_CASES[name]
        except KeyError:
            raise ValueError(f"special case must be one of {sorted(SPECIAL_CASES)}, "
                             f"got {name!r}") from None
        out = self._subs({sym(k): v for k, v in case.items()}, case)
        only = {"no_zo_block": "y", "zo_only": "x"}.get(name)
        if only is None or out.numerator is None or self.theorem.version == "v1":
            return out
        return out._one_block(only)

    def _one_block(self, block: str) -> Bound:
        """The bound when only ``block`` exists (the other block has dimension 0): its gradient
        is the whole gradient, so the measures divide by that block's gamma eta alone, and the
        other block's conditions (C4, C5) are void."""
        i = 0 if block == "x" else 1
        eta = sym(f"eta_{block}")
        g = self.gamma[i]
        expr = self.numerator / (g * eta)
        weighted = self.numerator / g
        if self.alt_full is not None:
            expr = sp.Min(expr, self.alt_full, evaluate=False)
        if self.alt_weighted is not None:
            weighted = sp.Min(weighted, self.alt_weighted, evaluate=False)
        other = "y" if block == "x" else "x"
        conds = tuple(c for c in self.conditions if c.name not in (f"C4{other}", f"C5{other}"))
        return dataclasses.replace(self, expr=expr, weighted_expr=weighted, conditions=conds,
                                   only=block,
                                   adapter_expr=expr if block == "y" else None)

    # -- symbols and validation ---------------------------------------------------------------
    @cached_property
    def symbols(self) -> tuple[str, ...]:
        """Table names the bound (every measure) and its conditions need, sorted."""
        free = set(self.expr.free_symbols) | set(self.weighted_expr.free_symbols)
        for c in self.conditions:
            free |= c.lhs.free_symbols | c.rhs.free_symbols
        return tuple(sorted(name_of(s) for s in free))

    def _values(self, values: Mapping[str, object]) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, value in values.items():
            out[name] = validate_value(name, value)  # unknown names raise here
        if "eta" in out and "eta" not in self.symbols:
            for k in ("eta_x", "eta_y"):
                if k in out and out[k] != out["eta"]:
                    raise ValueError(f"eta = {out['eta']:g} (one shared rate) conflicts with "
                                     f"{k} = {out[k]:g}; give one or the other")
                out[k] = out["eta"]
        missing = [s for s in self.symbols if s not in out]
        if missing:
            raise ValueError(f"missing values for {', '.join(missing)} "
                             f"(the bound needs {', '.join(self.symbols)})")
        return out

    def violated(self, **values: object) -> list[str]:
        """The conditions that the values break, as strings (empty if all hold).

        Each side is evaluated by its lambdified function (:attr:`_cond_fns`, built once per
        bound): microseconds a call where sympy's ``subs`` took a fifth of a second, which
        the searches of the validator call thousands of times."""
        import numpy as np

        v = self._values(values)
        args = [np.float64(v[s]) for s in self._args]  # overflow gives inf, not an exception
        bad = []
        for i, f in enumerate(self._cond_fns):
            with np.errstate(all="ignore"):
                lhs, rhs = (float(x) for x in f(*args))
            if not lhs <= rhs + 1e-12 * abs(rhs):  # printed only when broken (0.25 s for all)
                bad.append(f"{self._cond_texts[i]} (got {lhs:.6g} > {rhs:.6g})")
        return bad

    @cached_property
    def _cond_texts(self) -> tuple[str, ...]:
        return tuple(str(c) if len(str(c)) < 200 else f"{c.name}: {c.description}"
                     for c in self.conditions)

    def holds(self, **values: object) -> bool:
        """Whether every condition holds at ``values``."""
        return not self.violated(**values)

    def descent_expr(self, measure: str = "min") -> sp.Expr:
        """The descent part of the bound on ``measure``, without the small-T (gradient-gap)
        alternative: B / min(gamma_x eta_x, gamma_y eta_y) for ``"min"``, B / min(gamma_x,
        gamma_y) for ``"weighted"``, B / (gamma_y eta_y) for ``"adapter"``. For a bound with
        no such structure (v1, your own), the bound itself."""
        if measure not in MEASURES:
            raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")
        if self.numerator is None or self.theorem.version == "v1":
            return {"min": self.expr, "weighted": self.weighted_expr,
                    "adapter": self.adapter_expr}[measure]
        gx, gy = self.gamma
        ex, ey = sym("eta_x"), sym("eta_y")
        if self.only is not None:  # a one-block special case: that block's gamma alone
            g, eta = (gx, ex) if self.only == "x" else (gy, ey)
            den = {"min": g * eta, "weighted": g,
                   "adapter": g * eta if self.only == "y" else None}[measure]
            return None if den is None else self.numerator / den
        den = {"min": sp.Min(gx * ex, gy * ey, evaluate=False),
               "weighted": sp.Min(gx, gy, evaluate=False), "adapter": gy * ey}[measure]
        return self.numerator / den

    @cached_property
    def _descent_fns(self) -> dict[str, Callable[..., object]]:
        """Compiled on first use, per measure."""
        return {}

    def _descent_fn(self, measure: str) -> Callable[..., object]:
        if measure not in self._descent_fns:
            expr = self.descent_expr(measure)
            if expr is None:
                raise ValueError(f"this bound makes no claim on the {measure} measure")
            self._descent_fns[measure] = compile_numeric([sym(s) for s in self._args], expr)
        return self._descent_fns[measure]

    def evaluate(self, *, check: bool = True, weighted: bool = False, measure: str | None = None,
                 small_T: bool = True, **values: object) -> float:
        """The bound's value at ``values`` (table names).

        ``measure`` is ``"min"`` (min_t E||grad F(z_t)||^2, the default), ``"weighted"`` (the
        block-weighted measure, ``weighted_expr``; also ``weighted=True``) or ``"adapter"``
        ((1/T) sum_t E||grad_y F(z_t)||^2, ``adapter_expr``). ``small_T=False`` leaves out the
        gradient-gap alternative (:meth:`descent_expr`), e.g. for a stationary floor.

        Values so large that the bound overflows float64 give ``inf`` (in numpy float64
        arithmetic, not an ``OverflowError``).

        Raises:
            ValueError: for unknown names, missing symbols, values outside their domain and,
                unless ``check=False``, values that break a condition (each one is named).
        """
        import numpy as np

        measure = measure or ("weighted" if weighted else "min")
        if measure not in MEASURES:
            raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")
        v = self._values(values)
        if check:
            bad = self.violated(**v)
            if bad:
                raise ValueError("conditions violated: " + "; ".join(bad))
        if not small_T:
            fn = self._descent_fn(measure)
        elif measure == "min":
            fn = self._fn
        elif measure == "weighted":
            fn = self._weighted_fn
        else:
            fn = self._adapter_fn
        with np.errstate(all="ignore"):
            return float(fn(*[np.float64(v[s]) for s in self._args]))

    # -- vectorized evaluators ------------------------------------------------------------------
    @cached_property
    def _args(self) -> tuple[str, ...]:
        return self.symbols

    @cached_property
    def _gamma_fns(self) -> tuple[Callable[..., object], ...]:
        return tuple(compile_numeric([sym(s) for s in self._args], g) for g in self.gamma)

    def gamma_functions(self, values: Mapping[str, object]) -> tuple[float, float]:
        """(gamma_x, gamma_y) at ``values`` (table names), the descent coefficients."""
        v = self._values(values)
        return tuple(float(f(*[v[s] for s in self._args])) for f in self._gamma_fns)

    @cached_property
    def term_functions(self) -> tuple[tuple[str, tuple[str, ...], Callable[..., object]], ...]:
        """The main terms of :func:`~.terms.bound_terms`, compiled once per bound."""
        from .terms import compile_terms

        return compile_terms(self)

    @cached_property
    def _fn(self) -> Callable[..., object]:
        return compile_numeric([sym(s) for s in self._args], self.expr)

    @cached_property
    def _weighted_fn(self) -> Callable[..., object]:
        return compile_numeric([sym(s) for s in self._args], self.weighted_expr)

    @cached_property
    def _adapter_fn(self) -> Callable[..., object]:
        if self.adapter_expr is None:
            raise ValueError("this bound makes no claim on the adapter-only measure")
        free = {name_of(s) for s in self.adapter_expr.free_symbols} - set(self._args)
        if free:
            raise ValueError(f"the adapter bound needs {', '.join(sorted(free))}")
        return compile_numeric([sym(s) for s in self._args], self.adapter_expr)

    @cached_property
    def _cond_fns(self) -> tuple[Callable[..., object], ...]:
        return tuple(compile_numeric([sym(s) for s in self._args], (c.lhs, c.rhs))
                     for c in self.conditions)

    @cached_property
    def _caps(self) -> dict[str, tuple[Callable[..., object], ...]]:
        """Per step size, functions giving the caps of conditions linear in it alone."""
        names = ("eta_x", "eta_y", "eta")
        out: dict[str, list[Callable[..., object]]] = {}
        for s in names:
            if s not in self._args:
                continue
            for c in self.conditions:
                lhs = sp.expand(c.lhs)
                others = [o for o in names if o != s]
                if (lhs.has(sym(s)) and not any(lhs.has(sym(o)) for o in others)
                        and not c.rhs.has(sym(s)) and lhs.is_polynomial(sym(s))
                        and sp.degree(lhs, sym(s)) == 1):
                    f = compile_numeric([sym(k) for k in self._args],
                                        c.rhs / lhs.coeff(sym(s), 1))
                    out.setdefault(s, []).append(f)
        return {k: tuple(v) for k, v in out.items()}

    def admissible_steps(self, fraction_x: float = 1.0, fraction_y: float = 1.0,
                         **values: object) -> tuple[float, float]:
        """Step sizes (eta_x, eta_y) = (fraction_x cap_x, fraction_y cap_y) inside the conditions.

        cap_b is the largest eta_b that the conditions linear in eta_b alone allow (C1-C3); if
        another condition (C4, C5) then fails, both rates are scaled down by the largest factor
        (found by bisection, to about 1e-12) at which every condition holds: the point is then
        on that condition's boundary along the ray.
        ``values`` are the constants and the other hyper-parameters (table names).

        >>> b = hybrid_bound()
        >>> ex, ey = b.admissible_steps(L_x=1, L_y=1, L_xy=0, sigma_x=1, sigma_y=1,
        ...     Theta_x=0, Theta_y=0, Delta=1, mu=1e-3, q=1, n=10, T=10, d_x=10)
        >>> b.holds(L_x=1, L_y=1, L_xy=0, sigma_x=1, sigma_y=1, Theta_x=0, Theta_y=0, Delta=1,
        ...         mu=1e-3, q=1, n=10, T=10, d_x=10, eta_x=ex, eta_y=ey)
        True
        """
        import numpy as np

        for name, f in (("fraction_x", fraction_x), ("fraction_y", fraction_y)):
            if not (isinstance(f, int | float) and 0 < f <= 1):
                raise ValueError(f"{name} must be a number in (0, 1], got {f!r}")
        v = {k: validate_value(k, x) for k, x in values.items()
             if k not in ("eta_x", "eta_y", "eta")}
        need = [s for s in self._args if s not in ("eta_x", "eta_y") and s not in v]
        if need:
            raise ValueError(f"missing values for {', '.join(need)}")
        args = {**v, "eta_x": 1.0, "eta_y": 1.0}
        caps = []
        for s in ("eta_x", "eta_y"):
            cap = math.inf
            for f in self._caps.get(s, ()):
                try:
                    with np.errstate(all="ignore"):
                        val = float(f(*[np.float64(args.get(k, 1.0)) for k in self._args]))
                except ZeroDivisionError:  # eta_b's coefficient is 0 here: no cap from it
                    continue
                if math.isfinite(val) and val > 0:
                    cap = min(cap, val)
            caps.append(cap if math.isfinite(cap) else 1.0)
        ex, ey = caps[0] * fraction_x, caps[1] * fraction_y

        def underflow(scale: float) -> None:  # a tiny fraction of a small cap reaches 0
            for name, f, eta in (("fraction_x", fraction_x, ex), ("fraction_y", fraction_y, ey)):
                if not eta * scale > 0:
                    raise ValueError(f"{name} {f!r} makes the step size underflow to 0 (the "
                                     "fraction times the largest admissible step); use a "
                                     "larger fraction")

        underflow(1.0)
        if not self.violated(**v, eta_x=ex, eta_y=ey):
            return ex, ey
        hi = 1.0  # scale both down to the largest s (to 1e-12 relative) that holds (C4, C5)
        for _ in range(200):
            lo = hi / 2
            underflow(lo)
            if not self.violated(**v, eta_x=ex * lo, eta_y=ey * lo):
                for _ in range(40):
                    mid = (lo + hi) / 2
                    if self.violated(**v, eta_x=ex * mid, eta_y=ey * mid):
                        hi = mid
                    else:
                        lo = mid
                return ex * lo, ey * lo
            hi = lo
        raise ValueError("no admissible step sizes found at these values: "
                         + "; ".join(self.violated(**v, eta_x=ex, eta_y=ey)))

    def vectorized(self, *, weighted: bool = False, check: bool = False,
                   small_T: bool = True) -> Callable[..., object]:
        """A numpy function of keyword arrays (table names) that broadcasts; with
        ``weighted=True`` it evaluates ``weighted_expr``; with ``small_T=False`` the descent
        part alone (:meth:`descent_expr`, without the gradient-gap alternative).

        No validation by default: it is the fast path for sweeps (1e6 points in well under a
        second), and a value outside a symbol's domain (a negative L_x, say) gives a number
        that means nothing. ``check=True`` checks every array against its symbol's domain
        first (``ValueError`` naming the symbol and the first bad value), at about twice the
        cost. A missing symbol is a ``ValueError`` either way.

        >>> import numpy as np
        >>> f = hybrid_bound().vectorized()
        >>> f(L_x=1, L_y=1, L_xy=0, sigma_x=0.1, sigma_y=0.1, Theta_x=0, Theta_y=0, Delta=1,
        ...   eta_x=np.array([1e-4, 2e-4]), eta_y=1e-3, mu=0, q=1, n=10, T=100, d_x=10).shape
        (2,)
        """
        if small_T:
            fn = self._weighted_fn if weighted else self._fn
        else:
            fn = self._descent_fn("weighted" if weighted else "min")
        names = self._args

        def evaluate(**values: object) -> object:
            import numpy as np

            missing = [s for s in names if s not in values]
            if missing:
                raise ValueError(f"missing values for {', '.join(missing)}")
            args = [np.asarray(values[s], dtype=float) for s in names]
            if check:
                for s, a in zip(names, args, strict=True):
                    row = TABLE[s]
                    bad = ~np.isfinite(a) | (a <= row.lower if row.strict else a < row.lower)
                    if row.integer:
                        bad |= a != np.floor(a)
                    if bad.any():
                        raise ValueError(f"{s} must be {row.allowed()}, got "
                                         f"{a[bad].flat[0]!r}")
            return np.broadcast_to(fn(*args), np.broadcast_shapes(*(a.shape for a in args)))

        return evaluate

    def conditions_vectorized(self) -> Callable[..., object]:
        """A numpy function of keyword arrays: True where every condition holds."""
        fns, names = self._cond_fns, self._args

        def admissible(**values: object) -> object:
            import numpy as np

            args = [np.asarray(values[s], dtype=float) for s in names]
            shape = np.broadcast_shapes(*(a.shape for a in args))
            ok = np.ones(shape, dtype=bool)
            for f in fns:
                lhs, rhs = f(*args)
                ok &= np.broadcast_to(np.asarray(lhs) <= np.asarray(rhs) * (1 + 1e-12), shape)
            return ok

        return admissible

    # -- optimal step sizes -------------------------------------------------------------------
    def optimal_step_sizes(self, *, weights: tuple[float, float] = (1.0, 1.0),
                           resolution: int = 81, **values: object) -> StepSizes:
        """The step sizes that minimize the bound, for two rates and for one shared rate.

        The objective is a bound on min_t E[w_x ||grad_x F||^2 + w_y ||grad_y F||^2], i.e.
        B_D * max(w_x / eta_x, w_y / eta_y); ``weights=(1, 1)`` is the bound on
        min_t E||grad F||^2 itself. The search is a log-spaced grid over the admissible region
        (the conditions as a mask), refined twice around the best point; it is exact to about
        0.5% in each rate.

        Note: with weights (1, 1), the objective is minimized on the diagonal eta_x = eta_y
        whenever the diagonal is admissible (B_D grows with each rate while only the smaller
        rate divides it), so ``gain`` is 1 there. A gain > 1 needs weights that value the blocks
        differently, e.g. the natural block scales w_b = 1/(effective smoothness of block b),
        see docs/theory.md.
        """
        import numpy as np

        if len(weights) != 2 or not all(math.isfinite(w) and w > 0 for w in weights):
            raise ValueError(f"weights must be two finite numbers > 0, got {weights!r}")
        if not isinstance(resolution, int) or resolution < 11:
            raise ValueError(f"resolution must be an integer >= 11, got {resolution!r}")
        given = {k: v for k, v in values.items() if k not in ("eta_x", "eta_y", "eta")}
        v = {k: validate_value(k, x) for k, x in given.items()}
        need = [s for s in self._args if s not in ("eta_x", "eta_y") and s not in v]
        if need:
            raise ValueError(f"missing values for {', '.join(need)}")
        if not {"eta_x", "eta_y"} <= set(self._args):
            raise ValueError("this bound has no free step sizes eta_x, eta_y")
        ok = self.conditions_vectorized()
        wx, wy = weights
        measure_fn = self._weights_objective(wx, wy)

        def objective(ex: object, ey: object) -> object:
            args = {**v, "eta_x": ex, "eta_y": ey}
            obj = measure_fn(*[np.asarray(args[s], dtype=float) for s in self._args])
            return np.where(ok(**args), obj, np.inf)

        scale = max(v.get(k, 0.0) for k in ("L_x", "L_y", "L_xy", "L0_x", "L0_y")) or 1.0
        hi = math.log10(10.0 / scale)
        lo = hi - 14.0

        def search2(lo_x: float, hi_x: float, lo_y: float, hi_y: float) -> tuple[float, float]:
            gx = np.logspace(lo_x, hi_x, resolution)
            gy = np.logspace(lo_y, hi_y, resolution)
            vals = objective(gx[:, None], gy[None, :])
            i, j = np.unravel_index(np.argmin(vals), vals.shape)
            if not np.isfinite(vals[i, j]):
                raise ValueError("no admissible step sizes: the conditions cannot all hold "
                                 f"at these values ({'; '.join(self._why_empty(v))})")
            return float(gx[i]), float(gy[j])

        ex, ey = search2(lo, hi, lo, hi)
        width = 14.0 / (resolution - 1)
        for _ in range(3):
            ex, ey = search2(math.log10(ex) - 2 * width, math.log10(ex) + 2 * width,
                             math.log10(ey) - 2 * width, math.log10(ey) + 2 * width)
            width *= 4.0 / (resolution - 1)
        best2 = float(objective(np.float64(ex), np.float64(ey)))

        def search1(lo1: float, hi1: float) -> float:
            g = np.logspace(lo1, hi1, resolution * 4)
            vals = objective(g, g * 1.0)
            k = int(np.argmin(vals))
            if not np.isfinite(vals[k]):
                raise ValueError("no admissible single step size at these values")
            return float(g[k])

        e1 = search1(lo, hi)
        w1 = 14.0 / (resolution * 4 - 1)
        for _ in range(3):
            e1 = search1(math.log10(e1) - 2 * w1, math.log10(e1) + 2 * w1)
            w1 *= 4.0 / (resolution * 4 - 1)
        best1 = float(objective(np.float64(e1), np.float64(e1)))
        if best1 < best2:  # the diagonal is part of the two-rate search space
            ex, ey, best2 = e1, e1, best1
        point = {**v, "eta_x": ex, "eta_y": ey}
        active = []
        for c, fn in zip(self.conditions, self._cond_fns, strict=True):
            lhs, rhs = (float(x) for x in fn(*[point[s] for s in self._args]))
            if lhs >= rhs * (1 - 1e-2):
                active.append(c.name)
        active = tuple(active)
        measure = ("min_t E||grad F||^2" if weights == (1.0, 1.0)
                   else f"min_t E[{wx:g} ||grad_x F||^2 + {wy:g} ||grad_y F||^2]")
        gain = best1 / best2 if best2 > 0 else 1.0  # a zero bound (no noise, Delta = 0): any
        return StepSizes(ex, ey, best2, e1, best1, ey / ex, gain, active, measure)  # rate

    def _weights_objective(self, wx: float, wy: float) -> Callable[..., object]:
        """A bound on min_t E[w_x ||grad_x F||^2 + w_y ||grad_y F||^2] as a numpy function of
        ``self._args``: B max_b(w_b / (gamma_b eta_b)) from the gamma-weighted measure, the
        small-T bounds alt_D max_b(w_b / eta_b) and max_b(w_b) alt_full, the smallest."""
        ex, ey = sym("eta_x"), sym("eta_y")
        if self.numerator is None:
            main = self.weighted_expr * sp.Max(wx / ex, wy / ey, evaluate=False)
        else:
            gx, gy = self.gamma
            main = self.numerator * sp.Max(wx / (gx * ex), wy / (gy * ey), evaluate=False)
        if self.alt_weighted is not None:
            main = sp.Min(main, self.alt_weighted * sp.Max(wx / ex, wy / ey, evaluate=False),
                          evaluate=False)
        if self.alt_full is not None:
            main = sp.Min(main, max(wx, wy) * self.alt_full, evaluate=False)
        return compile_numeric([sym(s) for s in self._args], main)

    def _fixed_symbols(self) -> dict[sp.Symbol, sp.Expr]:
        return {sym(k): (v if isinstance(v, sp.Basic) else sp.sympify(v))
                for k, v in self.fixed.items()}

    def _gamma_at_zero(self, ray: dict[sp.Symbol, sp.Expr], eta: sp.Symbol) -> list[sp.Expr]:
        """gamma_x, gamma_y along the ray eta_x = eta, eta_y = r eta as eta -> 0, computed on
        the theorem's compact form (in abbreviations: short to expand)."""
        th = self.theorem
        out = []
        for i, g in enumerate(self.gamma):
            syms = [a for a in th.display_aux if str(a) == (r"\gamma_x", r"\gamma_y")[i]]
            compact = th.display_aux[syms[0]] if syms else g
            at0 = sp.expand(_xsubs(compact, ray)).subs(eta, 0)
            out.append(th.expand_aux(at0) if syms else at0)
        return out

    def _why_empty(self, v: Mapping[str, float]) -> list[str]:
        out = []
        for c, fn in zip(self.conditions, self._cond_fns, strict=True):
            try:
                lhs, rhs = (float(x) for x in fn(*[v.get(s, 1e-12) for s in self._args]))
            except (TypeError, ValueError, ZeroDivisionError):
                continue
            out.append(f"{c.name}: {lhs:.4g} <= {rhs:.4g} at the smallest steps searched")
        return out

    # -- complexity ---------------------------------------------------------------------------
    def complexity(self, *, ratio: float = 1.0, **values: object) -> Complexity:
        """Leading-order number of epochs to reach min_t E||grad F(z_t)||^2 <= eps^2; for a
        high-probability theorem (l-smooth), min_t ||grad F(z_t)||^2 <= eps^2 with probability
        at least 1 - delta, which Markov's inequality gets from the bound at delta eps^2: every
        result below with eps replaced by eps sqrt(delta) (``delta`` among the values, or left
        symbolic). See :meth:`_complexity` for the method.
        """
        out = self._complexity(ratio=ratio, **{k: x for k, x in values.items()
                                               if k != "delta"})
        if self.theorem.high_probability is None:
            return out
        eps, delta = sym("eps"), sym("delta")
        d = sp.nsimplify(validate_value("delta", values["delta"]), rational=True) \
            if "delta" in values else delta

        def at(e: sp.Expr | None) -> sp.Expr | None:
            return None if e is None else sp.simplify(e.subs(eps, eps * sp.sqrt(d)))

        eps_max = out.eps_max if out.eps_max == sp.oo else sp.simplify(out.eps_max / sp.sqrt(d))
        return Complexity(out.eps_exponent, at(out.epochs), at(out.eta), out.noise_power,
                          at(out.mu_max), out.regime + "; with probability >= 1 - delta "
                          "(Markov's inequality: the bound at delta eps^2)", eps_max,
                          probability=True)

    def _complexity(self, *, ratio: float = 1.0, **values: object) -> Complexity:
        """Leading-order number of epochs to reach min_t E||grad F(z_t)||^2 <= eps^2.

        Method: set eta_x = eta, eta_y = ratio * eta; treat mu as a free accuracy parameter
        (``mu_max`` is how small it must be for the smoothing terms to stay under eps^2/4;
        ``--set mu=0`` is the exact-gradient limit; a fixed mu > 0 leaves a floor and is
        refused); write the rest of the bound as K_T / (eta T) + sum_p K_p eta^p, whose
        smallest power p with K_p != 0 dominates as eps -> 0. The budget eps^2/2 (the Delta
        term) + eps^2/4 (noise) + eps^2/4 (smoothing) gives eta = (eps^2 / (4 K_p))^(1/p) and
        T = 2 K_T / (eta eps^2), i.e. T = Theta(eps^(-2 - 2/p)): eps^-4 for a noise term linear
        in eta (fresh ZO directions, sigma_x > 0), eps^-3 for the reshuffling term eta^2
        (sigma_x = 0), eps^-2 without noise (eta at its largest admissible value). Higher
        powers of eta make the bound at (eta, T) equal to eps^2 (1 + o(1)). The formula holds
        for eps <= ``eps_max``, where eta(eps) meets the step-size caps of C1-C3; C4 is O(eta^2)
        against eta and holds for small eps.
        """
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not (
                math.isfinite(ratio) and ratio > 0):
            raise ValueError(f"ratio must be a finite number > 0, got {ratio!r}")
        for k in ("eps", "T", "eta_x", "eta_y", "eta"):
            if k in values:
                raise ValueError(f"{k} is determined by the complexity and cannot be set")
        v = {k: validate_value(k, x) for k, x in values.items()}
        eta, eps, mu = sym("eta"), sym("eps"), sym("mu")
        r = sp.nsimplify(ratio, rational=True)
        sub = {sym("eta_x"): eta, sym("eta_y"): r * eta}
        fixed = {sym(k): sp.nsimplify(x, rational=True) for k, x in v.items() if k != "mu"}

        def on_ray(e: sp.Expr) -> sp.Expr:
            e = _xsubs(e, {**sub, **fixed})
            return e.subs(sp.Min(eta, r * eta), eta * sp.Min(1, r))

        T = sym("T")
        if self.numerator is not None:
            # leading order as eps -> 0: eta -> 0, where gamma_b tends to its constant term
            # (the small-T alternative no longer applies, since T -> infinity)
            g0 = [sp.nsimplify(_xsubs(x, {**self._fixed_symbols(), **fixed}))
                  for x in self._gamma_at_zero(sub, eta)]
            if not all(x.is_number and x > 0 for x in g0):
                raise ValueError("the descent coefficients do not tend to positive constants "
                                 f"as the steps go to 0: {g0}")
            den = eta * sp.Min(g0[0], r * g0[1])
            num = sp.expand(on_ray(self.numerator))
        else:
            num = sp.expand(on_ray(self.expr) * eta * sp.Min(1, r))
            den = eta * sp.Min(1, r)
        mu_free = num.xreplace({mu: 0})
        mu_part = sp.expand(num - mu_free)
        mu_max = None
        if mu_part != 0:
            low = min(sp.degree(t, eta) for t in sp.Add.make_args(mu_part))
            floor = (sum(t for t in sp.Add.make_args(mu_part) if sp.degree(t, eta) == low)
                     / eta**low) if low == 1 else sp.Integer(0)
            floor = sp.factor(floor / (den / eta))
            if "mu" in v and v["mu"] > 0 and floor != 0:
                value = floor.subs(mu, sp.nsimplify(v["mu"], rational=True))
                raise ValueError(
                    f"with mu fixed at {v['mu']:g} the bound keeps a floor of "
                    f"{sp.sstr(sp.nsimplify(value))} (smoothing bias) that no T removes; the "
                    "complexity is an eps -> 0 rate: leave mu free (mu_max(eps) is reported) "
                    "or set mu=0")
            if "mu" not in v and floor != 0:
                roots = sp.solve(sp.Eq(floor, eps**2 / 4), mu)
                mu_max = sp.simplify(roots[-1]) if roots else None
        K_T = sp.factor(mu_free.coeff(T, -1) * eta / den)
        rest = sp.expand(mu_free - mu_free.coeff(T, -1) / T)
        powers: dict[sp.Rational, sp.Expr] = {}
        for term in sp.Add.make_args(rest):
            if term == 0:
                continue
            if not term.is_polynomial(eta):
                raise ValueError(f"unexpected term in the bound: {term}")
            p = sp.Rational(sp.degree(term, eta)) - 1
            powers[p] = powers.get(p, 0) + term / eta ** (p + 1)
        nonzero = {}
        for p in sorted(powers):  # the lowest power dominates; the others need no factoring
            if powers[p] != 0:
                nonzero[p] = sp.factor(powers[p] / (den / eta))
                break
        caps = []
        for c in self.conditions:
            if sp.count_ops(c.lhs) + sp.count_ops(c.rhs) > 200:  # C4, C5: not caps
                continue
            lhs, rhs = sp.expand(on_ray(c.lhs)), on_ray(c.rhs)
            if lhs.has(eta) and lhs.is_polynomial(eta) and sp.degree(lhs, eta) == 1 \
                    and not rhs.has(eta):
                caps.append(sp.simplify(rhs / lhs.coeff(eta, 1)))
        eta_cap = sp.Min(*caps) if caps else sp.oo
        if nonzero:
            p = min(nonzero)
            Kp = nonzero[p]
            eta_eps = (eps**2 / (4 * Kp)) ** (1 / p)
            epochs = sp.simplify(2 * K_T / (eta_eps * eps**2))
            exponent = sp.Rational(-2) - 2 / p
            eps_max = sp.sqrt(4 * Kp * eta_cap**p) if eta_cap != sp.oo else sp.oo
            which = {1: "noise linear in eta (fresh ZO directions: sigma_x > 0)",
                     2: "the reshuffling drift, quadratic in eta"}.get(int(p), f"eta^{p} noise")
            regime = f"dominated by {which}: T = Theta(eps^{exponent})"
            return Complexity(exponent, epochs, eta_eps, p, mu_max, regime, eps_max)
        epochs = sp.simplify(2 * K_T / (eta_cap * eps**2))
        regime = ("no noise term: eta at its largest admissible value (C1-C3; check C4 there), "
                  "T = Theta(eps^-2)")
        return Complexity(sp.Rational(-2), epochs, eta_cap, None, mu_max, regime, sp.oo)

    # -- display ----------------------------------------------------------------------------
    def latex(self) -> str:
        """The bound in compact form (with abbreviations), its abbreviations and conditions."""
        th = self.theorem
        if th.version == "v1":
            lines = [r"\min_{t<T} \mathbb{E}\|\nabla F(z_t)\|^2 \le "
                     + sp.latex(self._compact()),
                     r"\text{where } " + r",\ ".join(
                         f"{sp.latex(a)} = {sp.latex(e)}" for a, e in th.aux.items())]
        else:
            lines = [r"\min_{t<T} \mathbb{E}\|\nabla F(z_t)\|^2 \le "
                     + sp.latex(th.compact),
                     r"B = \frac{\Delta}{nT} + \frac{N_{ep}}{n},\ N_{ep} = "
                     + " + ".join(f"{sp.latex(src)} \\left({sp.latex(c)}\\right)"
                                  for src, c in self._display_noise().items()),
                     r"\text{where } " + r",\ ".join(
                         f"{sp.latex(a)} = {sp.latex(e)}" for a, e in self._display_aux().items())
                     + r",\ \gamma_x, \gamma_y \text{ the derived descent coefficients}"]
        lines.append(r"\text{if } " + r",\ ".join(
            f"{sp.latex(c.lhs)} \\le {sp.latex(c.rhs)}" for c in self.conditions
            if sp.count_ops(c.lhs) + sp.count_ops(c.rhs) < 60)
            + ("" if th.version == "v1" else
               r"\text{, and C4, C5 (see the derivation)}"))
        return "\n".join(lines)

    def _mapping(self) -> dict[sp.Symbol, sp.Expr]:
        return {sym(k): v for k, v in self.fixed.items()}

    def _display_aux(self) -> dict[sp.Symbol, sp.Expr]:
        th, mapping = self.theorem, self._mapping()
        gammas = {g for g in th.aux if str(g).startswith(r"\gamma")}
        return {a: _xsubs(e, mapping) for a, e in th.aux.items() if a not in gammas}

    def _display_noise(self) -> dict[sp.Expr, sp.Expr]:
        mapping = self._mapping()
        vanish = {a: 0 for a, e in self._display_aux().items() if sp.expand(e) == 0}
        out = {}
        for src, c in self.theorem.display_noise.items():
            src2 = sp.sympify(src).xreplace(mapping).xreplace(vanish)
            c2 = sp.factor(c.xreplace(mapping).xreplace(vanish))
            if src2 != 0 and c2 != 0:
                out[src2] = c2
        return out

    def _leading_noise(self) -> dict[sp.Expr, sp.Expr]:
        """Each source's coefficient in N_ep to lowest order in (eta_x, eta_y)."""
        ex, ey = sym("eta_x"), sym("eta_y")
        out = {}
        for src, c in self._display_noise().items():
            terms = sp.Add.make_args(sp.expand(c))
            order = min(sp.Poly(t, ex, ey).total_degree() for t in terms)
            out[src] = sp.factor(sum(t for t in terms
                                     if sp.Poly(t, ex, ey).total_degree() == order))
        return out

    def _compact(self) -> sp.Expr:
        mapping = {sym(k): v for k, v in self.fixed.items()}
        if not mapping:
            return self.theorem.compact
        vanish = {a: 0 for a, e in self.theorem.aux.items() if sp.simplify(e.subs(mapping)) == 0}
        return self.theorem.compact.subs(mapping).subs(vanish)

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready description."""
        th = self.theorem
        out = {
            "theorem": th.name,
            "version": th.version,
            "measure": "min_t E||grad F(z_t)||^2",
            "bound": sp.sstr(self.expr),
            "weighted_bound": sp.sstr(self.weighted_expr),
            "latex": self.latex(),
            "conditions": [{"name": c.name, "lhs": sp.sstr(c.lhs), "rhs": sp.sstr(c.rhs),
                            "description": c.description} for c in self.conditions],
            "assumptions": th.setting.names(),
            "hypotheses": list(th.hypotheses),
            "symbols": list(self.symbols),
            "constants": {k: str(v) for k, v in th.constants.items()},
            "fixed": {k: sp.sstr(v) for k, v in self.fixed.items()},
        }
        if th.version != "v1":
            out["numerator"] = sp.sstr(self.numerator)
            out["gamma"] = [sp.sstr(g) for g in self.gamma]
            out["adapter_bound"] = sp.sstr(self.adapter_expr)
            out["terms"] = {k: sp.sstr(v) for k, v in self.terms.items()}
        if th.high_probability is not None:
            out["high_probability"] = sp.sstr(th.high_probability)
        return out

    def __str__(self) -> str:
        th = self.theorem
        if th.version == "v1":
            conds = "\n".join(f"  {c}   [{c.description}]" for c in self.conditions)
            return (f"{th.name}\n"
                    f"assumptions: {', '.join(th.setting.names())}\n"
                    f"bound on min_t E||grad F(z_t)||^2:\n  {sp.sstr(self._compact())}\n"
                    f"where:\n" + "\n".join(f"  {sp.sstr(a)} = {sp.sstr(e)}"
                                             for a, e in th.aux.items())
                    + f"\nconditions:\n{conds}")
        g0 = 1 - th.constants["theta"] / 2
        noise = "\n  + ".join(f"{sp.sstr(src)} * ({sp.sstr(c)} + higher order)"
                              for src, c in self._leading_noise().items()) or "0"
        conds = []
        for c in self.conditions:
            text = str(c) if len(str(c)) < 120 else (
                f"{c.name}: {sp.sstr(c.lhs)} <= gamma_{c.name[-1]}" if c.name.startswith("C4")
                else f"{c.name}: a polynomial inequality in the step sizes (--json)")
            conds.append(f"  {text}   [{c.description}]")
        lines = [
            th.name,
            f"assumptions: {', '.join(th.setting.names())}",
            "bound on min_t E||grad F(z_t)||^2:",
            "  min(B / min(gamma_x eta_x, gamma_y eta_y), 2 max(Lambda_x, Lambda_y) Delta)",
            "bound on (1/T) sum_t E[eta_x ||grad_x F||^2 + eta_y ||grad_y F||^2]:",
            "  min(B / min(gamma_x, gamma_y), 2 max(eta_x Lambda_x, eta_y Lambda_y) "
            "(Delta + (T - 1) N_ep / 2))",
            "with B = Delta / (n T) + N_ep / n, N_ep (leading order in the step sizes; the "
            "exact terms: --json, docs/derivation.md) =",
            f"  {noise}",
            "where:",
            *[f"  {sp.sstr(a)} = {sp.sstr(e)}" for a, e in self._display_aux().items()],
            f"  gamma_x, gamma_y = the descent coefficients derived by the proof (-> {g0} as the "
            "steps go to 0; expressions in --json and docs/derivation.md)",
        ]
        if th.high_probability is not None:
            lines.append("with probability at least 1 - delta: min_t ||grad F(z_t)||^2 <= "
                         "(the bound) / delta")
        lines += ["conditions:", *conds]
        return "\n".join(lines)


def hybrid_bound(*, assumption: str = "h1", directions: str = "gaussian",
                 difference: str = "central", version: str = "sharp") -> Bound:
    """The hybrid reshuffling bound for the given assumption, estimator and theorem version.

    Args:
        assumption: ``"h1"`` (block hybrid smoothness), ``"h1-gen"`` (generalized, with a
            gradient bound G), ``"effective-rank"`` (the local effective rank r, MeZO) or
            ``"l-smooth"`` (the paper's block l-smoothness at a gradient level G).
        directions: ``"gaussian"``, ``"sphere"`` or ``"rademacher"``.
        difference: ``"central"`` or ``"forward"``.
        version: ``"sharp"`` (default) or ``"v1"`` (the first theorem, H1 and H1-gen only).

    The bound is derived and compiled once per process and options (later calls return the
    same immutable object); the compiled functions' source is also kept on disk between
    processes (:func:`compile_numeric`).
    """
    options = (assumption, directions, difference, version)
    if all(isinstance(o, str) for o in options):
        return _hybrid_bound(*options)
    return _derive_bound(*options)  # refuses the options with a ValueError naming them


@functools.cache
def _hybrid_bound(assumption: str, directions: str, difference: str, version: str) -> Bound:
    """One derivation and one set of compiled functions per process and options: a Bound is
    immutable (its compiled functions are cached properties), so every caller shares it."""
    return _derive_bound(assumption, directions, difference, version)


def _derive_bound(assumption: object, directions: object, difference: object,
                  version: object) -> Bound:
    from .assumptions import ZOEstimator

    est = ZOEstimator(directions, difference)
    return Bound.from_theorem(theorem_for(assumption, est, version=version))


def natural_weights(bound: Bound, **values: object) -> tuple[float, float]:
    """Block weights w_b = 1 / (effective smoothness of block b), for ``optimal_step_sizes``.

    The x block's effective smoothness is the ZO-inflated c_v Lambda_x / q of condition C3
    (c_v = d_x + 1 for Gaussian directions, r + 1 under the effective rank; the v1 theorem:
    c1 = 2(d_x + 2)), the y block's is Lambda_y of condition C2: the measure
    sum_b ||grad_b F||^2 / L_eff,b is the block-coordinate analogue of ||grad F||^2 / L, the
    decrease one block step of size 1/L_eff,b achieves. Under it the optimal ratio
    eta_y / eta_x is about c_v Lambda_x / (q Lambda_y), i.e. of order d_x / q.
    """
    th = bound.theorem
    est, sm = th.setting.estimator, th.setting.smoothness
    names = ("d_x", "q", "r", "L_x", "L_y", "L_xy", "L0_x", "L1_x", "L0_y", "L1_y", "L0_xy",
             "L1_xy", "G", "l_x", "l_y")
    subs = {sym(k): validate_value(k, x) for k, x in values.items() if k in names}
    c = est.c1() if th.version == "v1" else sm.zo_variance(est)
    ex_x = c * sm.lam_x() / sym("q")
    ex_y = sm.lam_y()
    need = sorted({name_of(s) for s in (ex_x.free_symbols | ex_y.free_symbols)} -
                  {name_of(s) for s in subs})
    if need:
        raise ValueError(f"missing values for {', '.join(need)} (needed by the block weights)")
    lx, ly = float(ex_x.subs(subs)), float(ex_y.subs(subs))
    if not (lx > 0 and ly > 0):
        raise ValueError("the block weights need Lambda_x > 0, Lambda_y > 0 and a ZO variance "
                         "constant > 0 (d_x >= 1; d_x >= 2 for sphere and Rademacher "
                         "directions)")
    return 1.0 / lx, 1.0 / ly


_RANGES: dict[str, tuple[float, float, float]] = {
    # name: (log10 low, log10 high, probability of exactly 0 where 0 is allowed)
    "L_x": (-2, 2, 0.0), "L_y": (-2, 2, 0.0), "L_xy": (-3, 2, 0.2),
    "L0_x": (-2, 2, 0.0), "L0_y": (-2, 2, 0.0), "L0_xy": (-3, 2, 0.2),
    "L1_x": (-3, 1, 0.3), "L1_y": (-3, 1, 0.3), "L1_xy": (-3, 1, 0.3), "G": (-2, 2, 0.2),
    "sigma_x": (-3, 2, 0.15), "sigma_y": (-3, 2, 0.15),
    "Theta_x": (-3, 0.5, 0.3), "Theta_y": (-3, 0.5, 0.3),
    "Delta": (-2, 3, 0.05), "mu": (-8, 0, 0.1), "eps": (-4, 0, 0.0),
    "l_x": (-2, 2, 0.0), "l_y": (-2, 2, 0.0), "r": (0, 4, 0.0), "delta": (-4, -0.05, 0.0),
}
_INTEGERS: dict[str, tuple[int, ...]] = {
    "n": (1, 2, 3, 10, 64, 1000), "q": (1, 2, 4, 16, 64), "T": (1, 10, 1000, 10**6),
    "d_x": (0, 1, 2, 10, 100, 10**4, 10**6), "d_y": (1, 8, 1000),
}


def sample_admissible(bound: Bound, size: int, *, seed: int, boundary: float = 0.2,
                      fixed: Mapping[str, float] | None = None) -> dict[str, object]:
    """Random points (numpy arrays of length ``size``) where every condition holds.

    Constants are drawn log-uniformly over wide ranges (with exact zeros where the domain
    allows), integers from a table of edge values (n = 1, d_x = 0, q = 1, ...). Each step size
    is drawn as a fraction of its cap from the conditions that bound it alone (C1-C3 type); a
    share ``boundary`` of the points sits exactly on the cap. Conditions that are not simple
    caps (C4, C5) are then enforced by shrinking the relative heterogeneities Theta (C4 is
    monotone in them) and, where that is not enough, both step sizes (every condition holds
    for small enough steps). Same seed, same points.
    """
    import numpy as np

    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be an integer >= 1, got {size!r}")
    if not 0 <= boundary <= 1:
        raise ValueError(f"boundary must be in [0, 1], got {boundary!r}")
    rng = np.random.default_rng(seed)
    fixed = {k: validate_value(k, v) for k, v in (fixed or {}).items()}
    pts: dict[str, object] = {}
    for name in bound.symbols:
        if name in fixed:
            pts[name] = np.full(size, fixed[name])
        elif name in _INTEGERS:
            choices = _INTEGERS[name]
            if name == "d_x" and bound.theorem.setting.estimator.directions != "gaussian":
                choices = tuple(c for c in choices if c >= 1)  # no sphere in dimension 0
            pts[name] = rng.choice(np.array(choices, dtype=float), size)
        elif name in _RANGES:
            lo, hi, p0 = _RANGES[name]
            x = 10.0 ** rng.uniform(lo, hi, size)
            if p0 > 0 and not spec(name).strict:
                x = np.where(rng.uniform(size=size) < p0, 0.0, x)
            pts[name] = x
    steps = [s for s in ("eta_x", "eta_y", "eta") if s in bound.symbols and s not in fixed]
    args = [pts.get(k, np.ones(size)) for k in bound.symbols]
    for s in steps:
        cap = np.full(size, np.inf)
        for f in bound._caps.get(s, ()):
            with np.errstate(divide="ignore", invalid="ignore"):
                val = np.broadcast_to(np.asarray(f(*args), dtype=float), (size,))
            cap = np.minimum(cap, np.where(np.isfinite(val) & (val > 0), val, np.inf))
        cap = np.where(np.isfinite(cap), cap, 1.0)
        frac = np.where(rng.uniform(size=size) < boundary, 1.0, 10.0 ** rng.uniform(-4, 0, size))
        pts[s] = cap * frac
    if "r" in pts and "r" not in fixed and "d_x" in pts:  # the effective rank is <= d_x
        pts["r"] = np.clip(pts["r"], 1.0, np.maximum(np.asarray(pts["d_x"]), 1.0))
    ok = bound.conditions_vectorized()
    shrink = [t for t in ("Theta_x", "Theta_y") if t in pts and t not in fixed]
    for attempt in range(400):
        good = np.asarray(ok(**pts))
        if good.all():
            break
        if shrink and attempt < 100:
            for t in shrink:
                pts[t] = np.where(good, pts[t], pts[t] * 0.5)
        elif steps:
            for t in steps:
                pts[t] = np.where(good, pts[t], pts[t] * 0.5)
        else:
            break
    good = np.asarray(ok(**pts))
    if not good.all():
        raise ValueError(f"could not make {int((~good).sum())} of {size} points admissible")
    return pts
