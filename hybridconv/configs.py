"""The configurations of ``hybridconv``'s verbs that are not already a library's config.

``simulate`` is :class:`ProblemConfig` + :class:`hybridconv.sim.SimConfig` +
:class:`SimulateOutput`; ``check`` is :class:`ProblemConfig` + :class:`CheckConfig`;
``finetune`` is ``hybridconv.finetune.trainer.FinetuneConfig`` + :class:`FinetuneOutput`;
``theory``, ``figures`` and ``check-run`` have theirs below. Every field is declared with
:func:`hybridconv.spec.option`, so its default, domain and help come from the vocabulary, and
``hybridconv.cli`` generates the options from these classes (:mod:`hybridconv.cliargs`).
No heavy imports here: building the parser stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import spec
from .spec import option

if TYPE_CHECKING:
    from .problems.base import Problem

__all__ = ["ProblemConfig", "SimulateOutput", "CheckConfig", "TheoryConfig", "BoundOptions",
           "StepsOptions", "ComplexityOptions", "FiguresConfig", "CheckRunConfig",
           "FinetuneOutput", "ExperimentConfig"]


def address_option() -> Any:
    """The ``--address`` option of every verb with a dask or ray backend."""
    return option(help="scheduler of the dask or ray cluster",
                  default_help="$HYBRIDCONV_ADDRESS, else a local cluster of --workers")


@dataclass(frozen=True)
class ProblemConfig:
    """A synthetic problem: family, number of components, block dimensions (the instance is
    drawn from the run's seed)."""

    problem: str = option("problem")
    n: int = option("n")
    d_x: int = option("d_x", positive=True)
    d_y: int | None = option("d_y", default=None,
                             reason="a LoRA problem needs d_y = r (m + p)",
                             default_help="6; with --problem lora m + p, the rank-1 adapter of "
                             "the m x p matrix of d_x = m p: 9 for d_x = 20")

    def __post_init__(self) -> None:
        spec.validate_fields(self)

    @property
    def dims(self) -> tuple[int, int]:
        """(d_x, d_y), with the family's d_y when it is not given."""
        if self.d_y is not None:
            return self.d_x, self.d_y
        if self.problem == "lora":
            from .problems.lora import lora_factors

            m, p = lora_factors(self.d_x)
            return self.d_x, m + p
        return self.d_x, int(spec.QUANTITIES["d_y"].default)

    def make(self, seed: int) -> Problem:
        """The problem instance of ``seed``."""
        from .problems import make_problem

        d_x, d_y = self.dims
        return make_problem(self.problem, self.n, d_x, d_y, seed=seed)


@dataclass(frozen=True)
class SimulateOutput:
    """Where ``hybridconv simulate`` writes."""

    out: str | None = option(help="where to write the records", metavar="FILE.csv",
                             required="unless --json-constants")
    force: bool = option(default=False, help="overwrite --out if it exists")
    json_constants: bool = option(default=False, help="print the problem's certified "
                                  "constants as JSON (and stop)")
    no_progress: bool = option(default=False, help="no progress bar")


@dataclass(frozen=True)
class CheckConfig:
    """``hybridconv check``: one verdict, an adversarial search (``falsify``), the mutation
    report or the tightness report."""

    mu: float = option("mu", positive=True)
    q: int = option("q")
    eta_x: float | None = option("eta_x", default=None, positive=True,
                                 reason="None: --fraction-x of the largest admissible",
                                 default_help="--fraction-x of the largest admissible step")
    eta_y: float | None = option("eta_y", default=None, positive=True,
                                 reason="None: --fraction-y of the largest admissible",
                                 default_help="--fraction-y of the largest admissible step")
    fraction_x: float = option("fraction_x")
    fraction_y: float = option("fraction_y")
    epochs: int = option("epochs")
    trials: int = option("trials")
    seed: int = option("seed")
    confidence: float = option("confidence")
    measure: str = option("measure")
    allow_outside: bool = option(default=False, help="check even if the instance breaks the "
                                 "conditions (the verdict says so)")
    falsify: bool = option(default=False, help="adversarial search over instances")
    budget: int = option("budget")
    history: str | None = option(help="write the search history (--falsify)",
                                 metavar="FILE.csv")
    mutations: bool = option(default=False, help="plant wrong bounds and report the kill rate "
                             "(docs/mutations.md, .csv)")
    report: bool = option(default=False, help="tightness report per family and regime "
                          "(docs/tightness.md, .csv)")
    quick: bool = option(default=False, help="smaller budgets for --report")
    workers: int = option("workers", help="processes for --report's independent searches "
                          "(same results)")
    backend: str = option("backend")
    address: str | None = address_option()
    out_dir: str = option(default=".", help="where docs/ is written (--mutations, --report)")
    force: bool = option(default=False, help="overwrite existing report or history files")
    json: bool = option(default=False, help="JSON output")
    no_progress: bool = option(default=False, help="no progress bar (--falsify, --mutations, "
                               "--report)")

    def __post_init__(self) -> None:
        spec.validate_fields(self)


@dataclass(frozen=True)
class TheoryConfig:
    """The theorem a ``theory`` verb states: smoothness assumption and ZO estimator."""

    assumption: str = option("assumption")
    directions: str = option("directions")
    difference: str = option("difference")
    theorem: str = option("theorem")

    def __post_init__(self) -> None:
        spec.validate_fields(self)


_SET = dict(help="a symbol's value (repeatable); symbols: " + ", ".join(spec.SYMBOLS),
            metavar="NAME=VALUE", append=True, default_help="none")


@dataclass(frozen=True)
class BoundOptions:
    """``theory bound``."""

    set: list[str] = option(default=[], **_SET)
    json: bool = option(default=False, help="JSON output")
    no_check: bool = option(default=False, help="evaluate even where conditions fail (the "
                            "output says which)")


@dataclass(frozen=True)
class StepsOptions:
    """``theory steps``."""

    set: list[str] = option(default=[], **_SET)
    weights: str = option("weights", deprecated_flags=("--measure",))
    json: bool = option(default=False, help="JSON output")
    compare: bool = option(default=False, help="measure too: run the hybrid (60 epochs, 8 "
                           "trials, a 7 x 7 grid from 1/100 to 30 times the caps) on the "
                           "regimes figure's quadratic with n, d_x, d_y from --set (default "
                           "8, 16, 4; its constants replace the others) and compare the "
                           "predicted best eta_y/eta_x and region with the measured best "
                           "cell and stability boundary")


@dataclass(frozen=True)
class ComplexityOptions:
    """``theory complexity``."""

    set: list[str] = option(default=[], **_SET)
    ratio: float = option("ratio")
    json: bool = option(default=False, help="JSON output")


@dataclass(frozen=True)
class FiguresConfig:
    """``hybridconv figures``."""

    quick: bool = option(default=False, help="small settings, a preview in minutes (written "
                         "to paper_figures/quick)")
    only: list[str] | None = option(help="one figure (repeatable)", metavar="NAME",
                                    append=True, default_help="all")
    replot: bool = option(default=False, help="redraw from the cached CSVs without computing")
    workers: int = option("workers", help="processes for the independent runs of a figure "
                          "(same results)")
    backend: str = option("backend")
    address: str | None = address_option()
    out: str | None = option(help="output folder", metavar="DIR",
                             default_help="paper_figures, or paper_figures/quick with --quick")
    no_cache: bool = option(default=False, help="compute the fine-tuning runs again instead of "
                            "reusing those cached (OUT/cache) by an earlier build with the same "
                            "settings and code")
    no_progress: bool = option(default=False, help="no progress bars")


@dataclass(frozen=True)
class CheckRunConfig:
    """``hybridconv check-run``."""

    run_dir: str = option(default=".", help="a run folder of hybridconv finetune",
                          positional=True, metavar="RUN_DIR")
    sweep: list[str] = option(default=[], help="run folders of a sweep over eta_y / eta_x: "
                              "the empirical best ratio", nargs="+", metavar="DIR")
    metric: str = option("metric")
    json: bool = option(default=False, help="JSON output")


@dataclass(frozen=True)
class FinetuneOutput:
    """Where ``hybridconv finetune`` writes, and the one-off download."""

    out: str | None = option(help="run folder (results.json, checkpoint.pt)", metavar="DIR",
                             default_help="runs/MODEL-TASK-METHOD-sSEED")
    resume: bool = option(default=False, help="continue the run in --out")
    force: bool = option(default=False, help="overwrite a finished run in --out")
    no_progress: bool = option(default=False, help="no progress bar")
    json: bool = option(default=False, help="print results.json")
    fetch: str | None = option(help="download and cache a large task once, then stop",
                               choices=("winogrande",))


@dataclass(frozen=True)
class ExperimentConfig:
    """``hybridconv experiment``: run a declarative sweep, or report its results."""

    specs: list[str] = option(default=[], help="sweep spec file(s) (TOML)", positional=True,
                              nargs="+", metavar="SPEC.toml")
    report: str | None = option(help="do not run: write the results of these specs' CSVs to "
                                "FILE.md", metavar="FILE.md", default_help="run the sweep")
    figure: str | None = option(help="with --report: also draw the fine-tuning figure from "
                                "the CSVs", metavar="FILE.png", default_help="none")
    limit: int | None = option("limit", nullable=True, default_help="all")
    only: list[str] | None = option(help="run only the runs whose setting KEY is one of the "
                                    "comma-separated values (repeatable; all must match), "
                                    "e.g. --only task=mr --only method=fo-peft,hybrid: a "
                                    "sweep's most wanted part first", metavar="KEY=V[,V]",
                                    append=True, default_help="every run")
    dry_run: bool = option(default=False, help="validate and list the runs still to do (the "
                           "first --limit of them), run nothing")
    workers: int = option("workers", help="processes for the runs (same results)")
    backend: str = option("backend")
    address: str | None = address_option()
    no_progress: bool = option(default=False, help="no progress bar")
