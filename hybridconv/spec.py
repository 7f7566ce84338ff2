"""The one vocabulary of hybridconv: every choice list, symbol and option, in one place.

Three engines speak this vocabulary: the theory (sympy symbols, built from :data:`SYMBOLS`),
the simulator (``SimConfig``) and the fine-tuner (``FinetuneConfig``, ``HybridZOFO``); the
CLI, the validators and the hypothesis strategies derive from it. Nothing here imports sympy,
numpy or torch, so every module can import it.

Rows:

* :class:`Choice` -- a named list of allowed strings (directions, differences, samplings,
  methods, PEFT kinds, schedules, ...) with its default, help text and deprecated aliases.
* :class:`Quantity` -- a number with its domain (lower/upper bound, strict or not, integer or
  real), default and help text. The theory's symbols (``L_x``, ``eta_x``, ``mu``, ``d_x``, ...)
  are quantities with ``symbol=True`` and a LaTeX name.

One spelling per quantity across engines: step sizes are ``eta_x`` / ``eta_y`` (the
fine-tuner's ``lr_x`` / ``lr_y`` are the same quantities under the names torch users know, so
both spellings are accepted: ``ALIASES``), the ZO dimension is ``d_x`` (CLI ``--d-x``), the
sampling scheme is ``sampling``.

:func:`validate` is the one check: ``validate("mu", 0.0)`` raises ``ValueError("mu must be a
finite real number > 0, got 0.0")``; ``validate("directions", "normal")`` names the allowed
values. Adding a choice (a new direction distribution, say) is one row here plus its
implementation per backend: see docs/vocabulary.md.

>>> validate("directions", "sphere")
'sphere'
>>> validate("q", 2)
2
>>> validate("eta_x", -1.0)
Traceback (most recent call last):
...
ValueError: eta_x must be a finite real number > 0, got -1.0
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Choice",
    "Quantity",
    "CHOICES",
    "QUANTITIES",
    "SYMBOLS",
    "ALIASES",
    "DIRECTIONS",
    "DIFFERENCES",
    "SAMPLINGS",
    "SIM_METHODS",
    "METHODS",
    "PEFT_KINDS",
    "SCHEDULES",
    "FO_OPTIMIZERS",
    "FO_GRADIENTS",
    "ASSUMPTIONS",
    "FAMILIES",
    "MEASURES",
    "DTYPES",
    "AUTOCASTS",
    "BACKENDS",
    "choices",
    "choice",
    "quantity",
    "validate",
    "validate_many",
    "canonical",
]


@dataclass(frozen=True)
class Choice:
    """A named list of allowed strings.

    Attributes:
        name: the argument's name (``"directions"``).
        values: the allowed values, in the order help texts list them.
        default: the default value (one of ``values``) or ``None`` when there is none.
        help: one line for ``--help`` and docs.
        aliases: deprecated or convenience spellings -> canonical value; a deprecated alias
            (``deprecated=True``) warns with ``DeprecationWarning`` when used.
        deprecated: whether using an alias warns.
        descriptions: value -> one line, for docs and ``--help``.
    """

    name: str
    values: tuple[str, ...]
    default: str | None
    help: str
    aliases: dict[str, str] = field(default_factory=dict)
    deprecated: bool = True
    descriptions: dict[str, str] = field(default_factory=dict)

    def allowed(self) -> str:
        return "one of " + ", ".join(self.values)

    def check(self, value: object, *, label: str | None = None) -> str:
        label = label or self.name
        if isinstance(value, str):
            if value in self.values:
                return value
            if value in self.aliases:
                new = self.aliases[value]
                if self.deprecated:
                    warnings.warn(f"{label} {value!r} is deprecated; use {new!r}",
                                  DeprecationWarning, stacklevel=3)
                return new
        raise ValueError(f"{label} must be {self.allowed()}, got {value!r}")


@dataclass(frozen=True)
class Quantity:
    """A number with its domain.

    Attributes:
        name: the key used everywhere (``"eta_x"``).
        description: one line.
        lower, upper: bounds (``None``: unbounded on that side).
        strict: whether ``lower`` itself is excluded.
        integer: whether only whole numbers are allowed.
        default: the default value, or ``None``.
        group: ``"constant"`` (a property of the problem), ``"hyper"`` (chosen by the user),
            ``"target"`` (an accuracy) or ``"option"`` (a setting of a run, not a symbol).
        symbol: whether the theory has a sympy symbol for it.
        latex: the symbol's LaTeX name (default: ``name``).
        upper_strict: whether ``upper`` itself is excluded.
    """

    name: str
    description: str
    lower: float | None = 0.0
    strict: bool = False
    integer: bool = False
    default: float | int | None = None
    group: str = "option"
    symbol: bool = False
    latex: str | None = None
    upper: float | None = None
    upper_strict: bool = False

    def allowed(self) -> str:
        """The allowed range in words, as used in error messages."""
        kind = "an integer" if self.integer else "a finite real number"
        parts = []
        if self.lower is not None:
            parts.append(f"{'>' if self.strict else '>='} {self.lower:g}")
        if self.upper is not None:
            parts.append(f"{'<' if self.upper_strict else '<='} {self.upper:g}")
        return f"{kind} {' and '.join(parts)}".rstrip()

    def check(self, value: object, *, label: str | None = None) -> float | int:
        """The value, as ``int`` for integer quantities and ``float`` otherwise."""
        label = label or self.name
        bad = ValueError(f"{label} must be {self.allowed()}, got {value!r}")
        if isinstance(value, bool) or isinstance(value, str):
            raise bad
        try:
            x = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            raise bad from None
        if not math.isfinite(x):
            raise bad
        if self.lower is not None and (x < self.lower or (self.strict and x == self.lower)):
            raise bad
        if self.upper is not None and (x > self.upper or (self.upper_strict and x == self.upper)):
            raise bad
        if self.integer:
            if x != math.floor(x):
                raise bad
            try:
                return int(value)  # type: ignore[call-overload]
            except (TypeError, ValueError, OverflowError):
                raise bad from None
        return x


# --- choice lists ----------------------------------------------------------------------------

DIRECTIONS = Choice(
    "directions", ("gaussian", "sphere", "rademacher"), "gaussian",
    "ZO direction distribution (E u u^T = I for all three)",
    descriptions={"gaussian": "u ~ N(0, I_d)",
                  "sphere": "uniform on the sphere of radius sqrt(d)",
                  "rademacher": "independent +-1 coordinates"})
DIFFERENCES = Choice(
    "difference", ("central", "forward"), "central",
    "ZO finite difference: [f(x+mu u) - f(x-mu u)]/(2 mu) or [f(x+mu u) - f(x)]/mu")
SAMPLINGS = Choice(
    "sampling", ("rr", "so", "ig", "wr"), "rr",
    "order of the components in an epoch",
    descriptions={"rr": "random reshuffling (a fresh permutation every epoch)",
                  "so": "shuffle once (one permutation, reused)",
                  "ig": "incremental (fixed order 0..n-1)",
                  "wr": "with replacement (n uniform indices per epoch)"})
SIM_METHODS = Choice(
    "method", ("hybrid", "zo", "fo", "reversed"), "hybrid",
    "oracle per block of the simulator: hybrid = ZO on x, FO on y; reversed = FO on x, ZO on y",
    descriptions={"hybrid": "ZO on x, FO on y", "zo": "ZO on both blocks",
                  "fo": "FO on both blocks", "reversed": "FO on x, ZO on y"})
METHODS = Choice(
    "method", ("fo", "fo-peft", "zo", "zo-peft", "hybrid"), "hybrid",
    "fine-tuning method: which weights are trained and by which oracle",
    aliases={"fo-lora": "fo-peft", "zo-lora": "zo-peft"}, deprecated=False,
    descriptions={"fo": "FO (backprop) on every weight",
                  "fo-peft": "FO on the PEFT module (and head); base frozen",
                  "zo": "ZO (MeZO) on every weight",
                  "zo-peft": "ZO on the PEFT module (and head); base frozen",
                  "hybrid": "ZO on the base, FO on the PEFT module (and head)"})
"""Fine-tuning methods. ``fo-lora`` / ``zo-lora`` are accepted and mean ``fo-peft`` /
``zo-peft`` with ``peft="lora"`` (the default PEFT kind)."""
PEFT_KINDS = Choice(
    "peft", ("lora", "prompt", "prefix"), "lora",
    "PEFT module (through peft): LoRA, prompt tuning or prefix tuning")
SCHEDULES = Choice(
    "schedule", ("jacobi", "gauss-seidel"), "jacobi",
    "order of the two oracles in a hybrid step: jacobi = both at the same point (the "
    "theorem's algorithm); gauss-seidel = FO step on y first, then ZO on x at the new y "
    "(LMAO's order; not covered by the theorem)")
FO_OPTIMIZERS = Choice(
    "fo_optimizer", ("sgd", "adam", "adamw"), "sgd",
    "update rule of the FO block (sgd is what the theorem covers)")
FO_GRADIENTS = Choice(
    "fo_gradient", ("clean", "shared"), "clean",
    "FO gradient at the clean point, or from the first perturbed pass (one pass fewer, "
    "O(mu) bias)")
ASSUMPTIONS = Choice(
    "assumption", ("h1", "h1-gen"), "h1",
    "smoothness assumption of the theorem: block hybrid smoothness (h1) or its generalized "
    "(L0, L1) form (h1-gen)")
FAMILIES = Choice(
    "problem", ("quadratic", "nonconvex", "lora", "gensmooth"), "quadratic",
    "synthetic problem family with certified constants")
MEASURES = Choice(
    "measure", ("min", "weighted"), "min",
    "what a check compares with the bound: min_t E||grad F(z_t)||^2, or the block-weighted "
    "(1/T) sum_t E[eta_x ||grad_x F||^2 + eta_y ||grad_y F||^2]")
DTYPES = Choice("dtype", ("float32", "bfloat16", "float16"), "float32",
                "dtype of the model's weights")
AUTOCASTS = Choice("autocast", ("none", "bfloat16", "float16"), "none",
                   "run forward passes under torch.autocast in this dtype")
BACKENDS = Choice("backend", ("local", "dask", "ray"), "local",
                  "engine of independent jobs: joblib processes here, or a dask or ray cluster")

CHOICES: dict[str, Choice] = {c.name: c for c in (
    DIRECTIONS, DIFFERENCES, SAMPLINGS, PEFT_KINDS, SCHEDULES, FO_OPTIMIZERS, FO_GRADIENTS,
    ASSUMPTIONS, FAMILIES, MEASURES, DTYPES, AUTOCASTS, BACKENDS)}
"""Name -> :class:`Choice`. ``method`` is not here: the simulator's and the fine-tuner's
method lists differ (:data:`SIM_METHODS`, :data:`METHODS`); pass the list explicitly."""


# --- quantities ------------------------------------------------------------------------------

def _sym(name: str, description: str, *, lower: float = 0.0, strict: bool, integer: bool = False,
         group: str = "constant", latex: str | None = None,
         default: float | int | None = None) -> Quantity:
    return Quantity(name, description, lower=lower, strict=strict, integer=integer,
                    group=group, symbol=True, latex=latex, default=default)


_SYMBOL_ROWS: tuple[Quantity, ...] = (
    # H1, block hybrid smoothness
    _sym("L_x", "smoothness of every f_i in the ZO block x: ||H_xx|| <= L_x", strict=True,
         latex="L_x"),
    _sym("L_y", "smoothness of every f_i in the FO block y: ||H_yy|| <= L_y", strict=True,
         latex="L_y"),
    _sym("L_xy", "cross-block smoothness: ||H_xy|| <= L_xy (0 means separable)", strict=False,
         latex="L_{xy}"),
    # H1-gen, block (L0, L1) smoothness (Zhang, He, Sra, Jadbabaie 2020, Def. 1, per block)
    _sym("L0_x", "generalized smoothness, constant part, block x", strict=True,
         latex="L^{0}_{x}"),
    _sym("L1_x", "generalized smoothness, gradient-proportional part, block x", strict=False,
         latex="L^{1}_{x}"),
    _sym("L0_y", "generalized smoothness, constant part, block y", strict=True,
         latex="L^{0}_{y}"),
    _sym("L1_y", "generalized smoothness, gradient-proportional part, block y", strict=False,
         latex="L^{1}_{y}"),
    _sym("L0_xy", "generalized smoothness, constant part, cross block", strict=False,
         latex="L^{0}_{xy}"),
    _sym("L1_xy", "generalized smoothness, gradient-proportional part, cross block",
         strict=False, latex="L^{1}_{xy}"),
    _sym("G", "bound on ||grad f_i|| over the region the run visits (H1-gen only)",
         strict=False, latex="G"),
    # H3, block heterogeneity
    _sym("sigma_x", "heterogeneity of the x-block gradients (additive part)", strict=False,
         latex=r"\sigma_x"),
    _sym("sigma_y", "heterogeneity of the y-block gradients (additive part)", strict=False,
         latex=r"\sigma_y"),
    _sym("Theta_x", "heterogeneity of the x-block gradients (relative part)", strict=False,
         latex=r"\Theta_x"),
    _sym("Theta_y", "heterogeneity of the y-block gradients (relative part)", strict=False,
         latex=r"\Theta_y"),
    # H2
    _sym("Delta", "initial gap F(z_0) - F*", strict=False, latex=r"\Delta"),
    # hyper-parameters
    _sym("eta_x", "learning rate of the ZO block x (the fine-tuner's lr_x)", strict=True,
         group="hyper", latex=r"\eta_x", default=1e-3),
    _sym("eta_y", "learning rate of the FO block y (the fine-tuner's lr_y)", strict=True,
         group="hyper", latex=r"\eta_y", default=1e-2),
    _sym("eta", "one shared learning rate (eta_x = eta_y = eta)", strict=True, group="hyper",
         latex=r"\eta"),
    _sym("mu", "smoothing radius of the ZO estimator (0 only in the theory: the "
         "exact-gradient limit)", strict=False, group="hyper", latex=r"\mu", default=1e-3),
    _sym("q", "number of random directions per ZO step", lower=1, strict=False, integer=True,
         group="hyper", default=1),
    _sym("n", "number of components f_i (steps per epoch)", lower=1, strict=False,
         integer=True, group="hyper", default=16),
    _sym("T", "number of epochs", lower=1, strict=False, integer=True, group="hyper",
         default=10),
    _sym("d_x", "dimension of the ZO block x", strict=False, integer=True, latex="d_x",
         default=20),
    _sym("d_y", "dimension of the FO block y", lower=1, strict=False, integer=True,
         latex="d_y", default=6),
    # target
    _sym("eps", "target accuracy: min_t E||grad F(z_t)||^2 <= eps^2", strict=True,
         group="target", latex=r"\varepsilon"),
)

_OPTION_ROWS: tuple[Quantity, ...] = (
    Quantity("trials", "independent trials K run side by side", lower=1, integer=True,
             default=100),
    Quantity("epochs", "number of epochs (the theory's T)", lower=1, integer=True, default=10),
    Quantity("seed", "random seed (every random draw derives from it)", lower=0, integer=True,
             upper=2**63 - 1, default=0),
    Quantity("workers", "processes for independent jobs (results do not depend on it)",
             lower=1, integer=True, default=1),
    Quantity("threads", "threads of one simulation, over fixed blocks of trials (results do "
             "not depend on it)", lower=1, integer=True),
    Quantity("confidence", "confidence level of a statistical verdict", lower=0.0,
             strict=True, upper=1.0, upper_strict=True, default=0.99),
    Quantity("budget", "instances an adversarial search simulates", lower=1, integer=True,
             default=60),
    Quantity("batch_size", "examples per step", lower=1, integer=True, default=16),
    Quantity("k_shot", "training examples per class", lower=1, integer=True),
    Quantity("lora_r", "LoRA rank", lower=1, integer=True, default=8),
    Quantity("lora_alpha", "LoRA scaling alpha (scale alpha / r)", lower=1, integer=True,
             default=16),
    Quantity("num_virtual_tokens", "virtual tokens of prompt or prefix tuning", lower=1,
             integer=True, default=10),
    Quantity("max_length", "tokens per example (longer ones are truncated)", lower=8,
             integer=True, default=64),
)

QUANTITIES: dict[str, Quantity] = {q.name: q for q in _SYMBOL_ROWS + _OPTION_ROWS}
"""Name -> :class:`Quantity` (the theory's symbols and the runs' numeric options)."""

SYMBOLS: dict[str, Quantity] = {q.name: q for q in _SYMBOL_ROWS}
"""The theory's symbol table (``hybridconv.theory.symbols`` builds the sympy symbols)."""

ALIASES: dict[str, str] = {"lr_x": "eta_x", "lr_y": "eta_y", "dx": "d_x", "dy": "d_y",
                           "kind": "sampling"}
"""Other spellings -> the one name. ``lr_x`` / ``lr_y`` stay first-class in the fine-tuner
(torch users know them); ``dx`` / ``dy`` / ``kind`` are deprecated spellings."""


def canonical(name: str) -> str:
    """The one spelling of a name (``"lr_x"`` -> ``"eta_x"``)."""
    return ALIASES.get(name, name)


def choices(name: str) -> tuple[str, ...]:
    """The allowed values of a choice list (``choices("directions")``)."""
    return choice(name).values


def choice(name: str) -> Choice:
    try:
        return CHOICES[canonical(name)]
    except KeyError:
        raise ValueError(f"unknown choice list {name!r}; known: {', '.join(CHOICES)}") from None


def quantity(name: str) -> Quantity:
    try:
        return QUANTITIES[canonical(name)]
    except KeyError:
        raise ValueError(f"unknown quantity {name!r}; known: {', '.join(QUANTITIES)}") from None


def validate(name: str, value: Any, *, label: str | None = None,
             among: Choice | None = None, positive: bool = False) -> Any:
    """Check ``value`` against the vocabulary row of ``name`` and return it normalized.

    ``label``: the name the error message uses (default ``name``; the CLI passes the option
    as typed, e.g. ``"--eta-x"``). ``among``: the choice list to use when ``name`` has more
    than one (``method``: :data:`SIM_METHODS` or :data:`METHODS`). ``positive``: exclude 0 for
    a quantity whose domain includes it (``mu``: the theory allows the limit mu = 0, a run
    needs mu > 0).

    Raises:
        ValueError: naming the argument, the value received and the allowed range or values.
    """
    if among is not None:
        return among.check(value, label=label or name)
    key = canonical(name)
    if key in CHOICES:
        return CHOICES[key].check(value, label=label or name)
    if key in QUANTITIES:
        row = QUANTITIES[key]
        if positive and not row.strict and (row.lower or 0.0) <= 0.0:
            row = Quantity(row.name, row.description, lower=0.0, strict=True,
                           integer=row.integer, upper=row.upper,
                           upper_strict=row.upper_strict)
        return row.check(value, label=label or name)
    raise ValueError(f"unknown argument {name!r}")


def validate_many(values: dict[str, Any]) -> dict[str, Any]:
    """:func:`validate` on every item of a mapping (keys kept as given)."""
    return {k: validate(k, v) for k, v in values.items()}
