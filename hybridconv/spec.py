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

:func:`validate` is the one check: ``validate("mu", 0.0, positive=True)`` raises
``ValueError("mu must be a finite real number > 0, got 0.0")`` (the theory's rule is mu >= 0,
a run's is mu > 0: one flag, stated here); ``validate("directions", "normal")`` names the allowed
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

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Choice",
    "shown",
    "Quantity",
    "CHOICES",
    "QUANTITIES",
    "SYMBOLS",
    "ALIASES",
    "DIRECTIONS",
    "DIFFERENCES",
    "SAMPLINGS",
    "SIM_METHODS",
    "POOLS",
    "METHODS",
    "PEFT_KINDS",
    "BASELINES",
    "HEADS",
    "SCHEDULES",
    "FO_OPTIMIZERS",
    "FO_GRADIENTS",
    "ASSUMPTIONS",
    "THEOREMS",
    "FAMILIES",
    "MEASURES",
    "DTYPES",
    "AUTOCASTS",
    "BACKENDS",
    "WEIGHTS",
    "METRICS",
    "TASKS",
    "COUPLINGS",
    "option",
    "validate_fields",
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
        properties: value -> facts other modules read (for directions: the moments the
            theory's constants come from, as expressions in ``d``).
    """

    name: str
    values: tuple[str, ...]
    default: str | None
    help: str
    aliases: dict[str, str] = field(default_factory=dict)
    deprecated: bool = True
    descriptions: dict[str, str] = field(default_factory=dict)
    properties: dict[str, dict[str, str]] = field(default_factory=dict)

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
        raise ValueError(f"{label} must be {self.allowed()}, got {shown(value)}")


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
        bad = ValueError(f"{label} must be {self.allowed()}, got {shown(value)}")
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



def shown(value: object, limit: int = 60) -> str:
    """``repr(value)`` for an error message, at most ``limit`` characters: a huge integer is
    shown by its leading digits and its length, anything else cut with an ellipsis.

    >>> shown(10**300)
    'an integer of 301 digits (1000000000...)'
    >>> shown(0.5)
    '0.5'
    """
    text = repr(value)
    if len(text) <= limit:
        return text
    if isinstance(value, int) and not isinstance(value, bool):
        digits = text.lstrip("-")
        return f"an integer of {len(digits)} digits ({text[:10 + (text[0] == '-')]}...)"
    return text[: limit - 3] + "..."


# --- choice lists ----------------------------------------------------------------------------

_FIXED_NORM = {"E_au2_u2": "d", "E_u6": "d**3", "E_u3_bound": "d**(3/2)"}
DIRECTIONS = Choice(
    "directions", ("gaussian", "sphere", "rademacher"), "gaussian",
    "ZO direction distribution (E u u^T = I for all three)",
    descriptions={"gaussian": "u ~ N(0, I_d)",
                  "sphere": "uniform on the sphere of radius sqrt(d)",
                  "rademacher": "independent +-1 coordinates"},
    properties={"gaussian": {"E_au2_u2": "d + 2", "E_u6": "d*(d + 2)*(d + 4)",
                             "E_u3_bound": "(d + 3)**(3/2)", "bias": "sqrt(d)",
                             "bias_lemma": "stein_smoothing_bias"},
                "sphere": {**_FIXED_NORM, "bias": "sqrt(d)",
                           "bias_lemma": "ball_smoothing_bias"},
                "rademacher": {**_FIXED_NORM, "bias": "(1 + 2/sqrt(3))*sqrt(d)",
                               "bias_lemma": "rademacher_smoothing_bias"}})
"""Each distribution's moments (``a`` a unit vector, ``d`` the dimension): E<a,u>^2 ||u||^2,
E||u||^6 and E||u||^3 or an upper bound of it (the Gaussian's: [NS17] Lemma 1,
E||u||^p <= (d + p)^{p/2}), and ``bias``, the factor c_b of the smoothing bias
||E g - grad f|| <= c_b L mu (Stein's identity for Gaussian directions, ball smoothing for the
sphere: sqrt(d); Efron-Stein on the hypercube for Rademacher: (1 + 2/sqrt(3)) sqrt(d)) and
``bias_lemma``, the lemma of
:mod:`hybridconv.theory.lemmas` that proves it;
``hybridconv.theory.assumptions.ZOEstimator`` builds the estimator's constants from them.
Adding a distribution: docs/vocabulary.md."""
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
BASELINES = Choice(
    "baseline", ("probe", "zero-shot"), None,
    "result rows that train nothing: a linear probe on frozen features, the untrained model",
    descriptions={"probe": "logistic regression (L-BFGS, L2 chosen on dev) on frozen features",
                  "zero-shot": "the model's accuracy before training (prompt-based LMs)"})
"""Baseline rows of an experiment (``hybridconv.experiments``), beside :data:`METHODS`."""
HEADS = Choice(
    "head", ("layernorm", "standardized"), "layernorm",
    "normalisation before a classifier's zero-initialised linear head: a non-affine LayerNorm "
    "per example, or per coordinate with the training set's feature statistics (the probe's; "
    "fragile under ZO perturbation of the base, see docs/finetune.md)")
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
    "assumption", ("h1", "h1-gen", "effective-rank", "l-smooth"), "h1",
    "smoothness assumption of the theorem: block hybrid smoothness (h1), its generalized "
    "(L0, L1) form (h1-gen), the local effective rank r of the ZO block's curvature (MeZO) or "
    "the paper's block l-smoothness at a gradient level G with a probability 1 - delta "
    "conclusion (l-smooth)",
    descriptions={"h1": "block Lipschitz gradients L_x, L_y, L_xy",
                  "h1-gen": "block (L0, L1) smoothness on a region where ||grad f_i|| <= G",
                  "effective-rank": "two-sided curvature bound diag(H_x, Lambda_y I) with "
                                    "tr(H_x) <= r (L_x + L_xy): d_x becomes r",
                  "l-smooth": "two-sided block l-smoothness, l_b(G) at the gradient level G"})
THEOREMS = Choice(
    "theorem", ("sharp", "v1"), "sharp",
    "which derivation of the hybrid reshuffling theorem: the sharp one or the first one (v1), "
    "kept for comparison (h1 and h1-gen only)")
FAMILIES = Choice(
    "problem", ("quadratic", "nonconvex", "lora", "gensmooth", "hetero", "lowrank"),
    "quadratic", "synthetic problem family with certified constants",
    descriptions={"hetero": "quadratic with heterogeneous component Hessians (Theta > 0)",
                  "lowrank": "quadratic whose ZO-block curvature has effective rank r << d_x"})
MEASURES = Choice(
    "measure", ("min", "weighted", "adapter"), "min",
    "what a check compares with the bound: min_t E||grad F(z_t)||^2, the block-weighted "
    "(1/T) sum_t E[eta_x ||grad_x F||^2 + eta_y ||grad_y F||^2], or the adapter-only "
    "(1/T) sum_t E||grad_y F||^2")
DTYPES = Choice("dtype", ("float32", "bfloat16", "float16"), "float32",
                "dtype of the model's weights")
AUTOCASTS = Choice("autocast", ("none", "bfloat16", "float16"), "none",
                   "run forward passes under torch.autocast in this dtype")
BACKENDS = Choice("backend", ("local", "dask", "ray"), "local",
                  "engine of independent jobs: joblib processes here, or a dask or ray cluster")
WEIGHTS = Choice(
    "weights", ("unit", "natural"), "unit",
    "block weights of the bound that 'theory steps' minimizes: unit = min E||grad F||^2; "
    "natural = each block's ||grad_b F||^2 weighted by 1/(its effective smoothness)",
    aliases={"full": "unit", "scaled": "natural"})
"""Not a ``measure``: the two spellings of 'theory steps --measure full|scaled' were easy to
confuse with 'check --measure min|weighted' (what a check compares with the bound); they are
deprecated aliases of ``unit`` / ``natural``."""
METRICS = Choice("metric", ("test_loss", "accuracy"), "test_loss",
                 "what a learning-rate sweep's best ratio optimizes (lowest test loss or "
                 "highest accuracy, mean over seeds)")
COUPLINGS = Choice(
    "coupling", ("zero", "weak", "strong"), "zero",
    "cross-block coupling regimes the hypothesis strategies draw: L_xy = 0, L_xy in "
    "[1e-3, 1e-1] sqrt(m_x m_y), L_xy in [0.9, 0.99] sqrt(m_x m_y)")
POOLS = Choice("pool", ("auto", "threads", "processes"), "auto",
               "how a simulation runs its blocks of trials side by side: threads (numpy "
               "releases the GIL in its arrays, not in the Python between them), processes "
               "(joblib's reusable loky pool: no GIL, a start-up of about a second when the pool "
               "is cold), or auto: processes for runs long enough to repay that start-up")
GENERATORS = Choice(
    "generator", ("numpy", "torch"), "numpy",
    "random-number generator of a simulation's directions: numpy's (PCG64, float64 ziggurat; "
    "the numbers of earlier versions) or torch's (mt19937, float32 Box-Muller cast to float64: "
    "about 3x faster draws on CPU)")
TASKS = Choice("task", ("mr", "boolq", "piqa", "winogrande"), "mr",
               "offline classification task (docs/finetune.md)")

CHOICES: dict[str, Choice] = {c.name: c for c in (
    DIRECTIONS, DIFFERENCES, SAMPLINGS, PEFT_KINDS, SCHEDULES, HEADS, FO_OPTIMIZERS,
    FO_GRADIENTS, ASSUMPTIONS, THEOREMS, FAMILIES, MEASURES, DTYPES, AUTOCASTS, BACKENDS,
    WEIGHTS, METRICS, TASKS, COUPLINGS, POOLS, GENERATORS)}
"""Name -> :class:`Choice`. ``method`` is not here: the simulator's and the fine-tuner's
method lists differ (:data:`SIM_METHODS`, :data:`METHODS`); pass the list explicitly."""


# --- quantities ------------------------------------------------------------------------------

def _sym(name: str, description: str, *, lower: float = 0.0, strict: bool, integer: bool = False,
         group: str = "constant", latex: str | None = None,
         default: float | int | None = None, upper: float | None = None,
         upper_strict: bool = False) -> Quantity:
    return Quantity(name, description, lower=lower, strict=strict, integer=integer,
                    group=group, symbol=True, latex=latex, default=default, upper=upper,
                    upper_strict=upper_strict)


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
    _sym("G", "bound on ||grad f_i|| over the region the run visits (H1-gen, l-smooth)",
         strict=False, latex="G"),
    # local effective rank (MeZO, Malladi et al. 2023, Assumption 1, two-sided block form)
    _sym("r", "effective rank of the ZO block's curvature bound: tr(H_x) <= r (L_x + L_xy), "
         "1 <= r <= d_x", lower=1, strict=False, latex="r"),
    # block l-smoothness at the gradient level G
    _sym("l_x", "l_x(G): the x-block l-smoothness function at the gradient level G",
         strict=True, latex="l_x"),
    _sym("l_y", "l_y(G): the y-block l-smoothness function at the gradient level G",
         strict=True, latex="l_y"),
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
    _sym("mu", "smoothing radius of the ZO estimator (the theory allows mu >= 0, 0 being "
         "the exact-gradient limit; a run needs mu > 0)",
         strict=False, group="hyper", latex=r"\mu", default=1e-3),
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
    _sym("delta", "failure probability of a high-probability statement", strict=True,
         group="target", latex=r"\delta", upper=1.0, upper_strict=True),
)

_OPTION_ROWS: tuple[Quantity, ...] = (
    Quantity("trials", "independent trials K run side by side", lower=1, integer=True,
             default=100),
    Quantity("epochs", "number of epochs (the theory's T)", lower=1, integer=True, default=10),
    Quantity("epoch", "an epoch index (0 = the first; at most 10^7: the sampler replays its "
             "stream up to it)", lower=0, integer=True, upper=10**7, default=0),
    Quantity("seed", "random seed (every random draw derives from it)", lower=0, integer=True,
             upper=2**63 - 1, default=0),
    Quantity("workers", "processes for independent jobs (results do not depend on it)",
             lower=1, integer=True, default=1),
    Quantity("threads", "worker threads of one run: a simulation's blocks of trials, or the "
             "regeneration of a ZO direction (results do not depend on it)", lower=1,
             integer=True),
    Quantity("confidence", "confidence level of a statistical verdict", lower=0.0,
             strict=True, upper=1.0, upper_strict=True, default=0.99),
    Quantity("instances", "checks done at once (the confidence is split over them)", lower=1,
             integer=True, default=1),
    Quantity("budget", "instances an adversarial search simulates", lower=1, integer=True,
             default=60),
    Quantity("fraction_x", "eta_x as a fraction of the largest step size the conditions "
             "admit", lower=0.0, strict=True, upper=1.0, default=1.0),
    Quantity("fraction_y", "eta_y as a fraction of the largest step size the conditions "
             "admit", lower=0.0, strict=True, upper=1.0, default=1.0),
    Quantity("ratio", "eta_y / eta_x", lower=0.0, strict=True, default=1.0),
    Quantity("limit", "run at most this many of the unfinished runs", lower=1, integer=True),
    Quantity("batch_size", "examples per step", lower=1, integer=True, default=16),
    Quantity("eval_batch_size", "examples per forward pass of the evaluation", lower=1,
             integer=True, default=64),
    Quantity("k_shot", "training examples per class", lower=1, integer=True, default=16),
    Quantity("test_size", "test examples (at most)", lower=1, integer=True, default=1000),
    Quantity("lora_r", "LoRA rank", lower=1, integer=True, default=8),
    Quantity("lora_alpha", "LoRA scaling alpha (scale alpha / r)", lower=1, integer=True,
             default=16),
    Quantity("num_virtual_tokens", "virtual tokens of prompt or prefix tuning", lower=1,
             integer=True, default=10),
    Quantity("max_length", "tokens per example (longer ones are truncated)", lower=8,
             integer=True, default=64),
    Quantity("weight_decay", "weight decay of the FO block", lower=0.0, default=0.0),
    Quantity("beta", "an Adam decay rate (betas[0], betas[1])", lower=0.0, upper=1.0,
             upper_strict=True),
    Quantity("adam_eps", "Adam's epsilon (added to the denominator)", lower=0.0, strict=True,
             default=1e-8),
    Quantity("diagnostics_every", "measure the local constants every K epochs (0: off)",
             lower=0, integer=True, default=0),
    Quantity("diagnostics_examples", "size of the fixed training subset of the diagnostics",
             lower=2, integer=True, default=32),
    Quantity("diagnostics_probes", "Hutchinson probes for tr(H_xx)", lower=2, integer=True,
             default=8),
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


# --- configuration fields --------------------------------------------------------------------

_FROM_SPEC: Any = object()


def option(row: str | None = None, *, default: Any = _FROM_SPEC, among: Choice | None = None,
           help: str | None = None, positive: bool = False, nullable: bool = False,
           reason: str | None = None, flags: tuple[str, ...] = (),
           deprecated_flags: tuple[str, ...] = (), cli: bool = True,
           metavar: str | None = None, default_help: str | None = None,
           schedule: bool = False, required: str | None = None,
           choices: tuple[str, ...] | None = None, positional: bool = False,
           nargs: str | None = None, append: bool = False,
           none_value: str | None = None) -> Any:
    """A dataclass field whose domain, default and help come from the vocabulary row ``row``.

    The configs (``SimConfig``, ``FinetuneConfig``, the CLI verbs' configs) declare their
    fields with it, :func:`validate_fields` checks an instance, and ``hybridconv.cli``
    generates every option from the same metadata, so keyword arguments, options, defaults and
    help texts cannot drift apart.

    Args:
        row: the vocabulary row (a choice list or a quantity); ``None`` for a plain field
            (a path, a switch), which then needs ``help``.
        default: overrides the row's default; a different value needs ``reason`` (shown in
            ``--help``; ``tests/test_vocabulary.py`` checks this).
        among: the choice list when the row's name has several (``method``).
        help: overrides the row's help text.
        positive: exclude 0 from the row's domain (``mu`` in a run).
        nullable: ``None`` is allowed (meaning: see ``default_help``).
        flags: more option strings (``("--lr-x",)``), accepted as equals.
        deprecated_flags: old option strings, accepted with a warning.
        cli: whether the CLI has an option for it.
        metavar, default_help: how ``--help`` shows the value and a ``None`` default.
        schedule: a callable (epoch -> value) is allowed besides a number.
        required: when a plain field is required, the condition in words (shown in ``--help``).
        choices, positional, nargs, append: for plain fields, as ``argparse`` has them.
        none_value: the command-line word that means ``None`` (``--k-shot 0``).
    """
    meta_row = among.name if among is not None else row
    spec_default: Any = None
    spec_help = help
    if among is not None:
        spec_default, spec_help = among.default, help or among.help
    elif row is not None:
        key = canonical(row)
        if key in CHOICES:
            spec_default, spec_help = CHOICES[key].default, help or CHOICES[key].help
        elif key in QUANTITIES:
            spec_default = QUANTITIES[key].default
            spec_help = help or QUANTITIES[key].description
        else:
            raise ValueError(f"unknown vocabulary row {row!r}")
    if spec_help is None:
        raise ValueError("a plain option needs help text")
    if default is _FROM_SPEC:
        default = spec_default
    elif row is not None and spec_default is not None and default != spec_default \
            and not reason:
        raise ValueError(f"option {row!r}: default {default!r} differs from the vocabulary's "
                         f"{spec_default!r}; give the reason")
    meta = {"row": meta_row, "among": among, "help": spec_help, "positive": positive,
            "nullable": nullable or default is None, "reason": reason, "flags": tuple(flags),
            "deprecated_flags": tuple(deprecated_flags), "cli": cli, "metavar": metavar,
            "default_help": default_help, "schedule": schedule, "required": required,
            "choices": choices, "positional": positional, "nargs": nargs, "append": append,
            "none_value": none_value}
    if isinstance(default, list | dict | set):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def validate_fields(obj: Any) -> None:
    """Check every field of a dataclass instance declared with :func:`option` (one
    :func:`validate` call per field, labelled with the field's name) and store the normalized
    value (``int`` for integer quantities, the canonical spelling of a choice)."""
    for f in dataclasses.fields(obj):
        meta = f.metadata
        if not meta.get("row"):
            continue
        value = getattr(obj, f.name)
        if value is None and meta["nullable"]:
            continue
        if meta["schedule"] and callable(value):
            continue
        new = validate(meta["row"], value, label=f.name, among=meta["among"],
                       positive=meta["positive"])
        if new is not value:
            object.__setattr__(obj, f.name, new)
