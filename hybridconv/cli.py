"""The ``hybridconv`` command.

    hybridconv theory [--latex | --json | --derivation] [--assumption h1|h1-gen]
                      [--directions gaussian|sphere|rademacher] [--difference central|forward]
    hybridconv theory bound --set NAME=VALUE ... [--json] [--no-check]
    hybridconv theory steps --set NAME=VALUE ... [--measure full|scaled] [--json]
    hybridconv theory complexity [--set NAME=VALUE ...] [--ratio R] [--json]
    hybridconv simulate --problem quadratic --method hybrid --sampling rr --eta-x 1e-3 ...
                        --out FILE.csv [--force] [--json-constants] [--no-progress]
    hybridconv check --problem quadratic --trials 64 [--falsify --budget N] [--json]
    hybridconv finetune --model minilm --task mr --method hybrid --epochs 5 --out DIR
                        [--lr-x --lr-y --mu --q --seed ...] [--resume | --force] [--json]
                        [--diagnostics-every K --diagnostics-examples N]
    hybridconv check-run RUN_DIR [--sweep DIR ...] [--metric test_loss|accuracy] [--json]
    hybridconv figures [--quick] [--only NAME] [--replot] [--workers N] [--out DIR] [--no-cache]

Errors (unknown or missing symbols, values out of range, unknown options) print one line on
stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from ._io import write_text_atomic

__all__ = ["main", "build_parser"]


class CLIError(Exception):
    """An error reported as one line and exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        raise CLIError(message)


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


def _add_theory_options(p: argparse.ArgumentParser, *, sub: bool = False) -> None:
    """The theorem's options; on a sub-command their defaults are suppressed, so that a value
    given before the sub-command (``theory --assumption h1-gen bound ...``) is kept."""
    d = (lambda value: argparse.SUPPRESS) if sub else (lambda value: value)
    p.add_argument("--assumption", choices=("h1", "h1-gen"), default=d("h1"),
                   help="block hybrid smoothness (h1) or its generalized form (h1-gen)")
    p.add_argument("--directions", choices=("gaussian", "sphere", "rademacher"),
                   default=d("gaussian"), help="ZO direction distribution")
    p.add_argument("--difference", choices=("central", "forward"), default=d("central"),
                   help="ZO finite difference")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hybridconv", description="Hybrid ZO/FO fine-tuning: theory, "
                     "simulation and practice.")
    parser.add_argument("--version", action="version", version=f"hybridconv {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    th = sub.add_parser("theory", help="the hybrid reshuffling theorem: statement, bound, "
                        "step sizes, complexity")
    _add_theory_options(th)
    fmt = th.add_mutually_exclusive_group()
    fmt.add_argument("--latex", action="store_true", help="print the theorem as LaTeX")
    fmt.add_argument("--json", action="store_true", help="print the theorem as JSON")
    fmt.add_argument("--derivation", action="store_true",
                     help="print the whole derivation as Markdown with LaTeX")
    tsub = th.add_subparsers(dest="action", parser_class=_Parser)

    b = tsub.add_parser("bound", help="evaluate the bound at given values")
    _add_theory_options(b, sub=True)
    b.add_argument("--set", action="append", metavar="NAME=VALUE", help="a symbol's value")
    b.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="JSON output")
    b.add_argument("--no-check", action="store_true",
                   help="evaluate even where conditions fail (the output says which)")

    s = tsub.add_parser("steps", help="step sizes that minimize the bound")
    _add_theory_options(s, sub=True)
    s.add_argument("--set", action="append", metavar="NAME=VALUE", help="a symbol's value")
    s.add_argument("--measure", choices=("full", "scaled"), default="full",
                   help="full: min E||grad F||^2; scaled: blocks weighted by 1/(effective "
                        "smoothness)")
    s.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="JSON output")

    c = tsub.add_parser("complexity", help="leading-order epochs to reach E||grad F||^2 <= eps^2")
    _add_theory_options(c, sub=True)
    c.add_argument("--set", action="append", metavar="NAME=VALUE", help="a symbol's value")
    c.add_argument("--ratio", type=float, default=1.0, help="eta_y / eta_x (default 1)")
    c.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="JSON output")
    sim = sub.add_parser("simulate", help="run hybrid reshuffling SGD on a synthetic problem")
    sim.add_argument("--problem", choices=("quadratic", "nonconvex", "lora", "gensmooth"),
                     default="quadratic")
    sim.add_argument("--method", choices=("hybrid", "zo", "fo", "reversed"), default="hybrid",
                     help="oracles per block: hybrid = ZO on x, FO on y; reversed = FO on x, "
                          "ZO on y")
    sim.add_argument("--sampling", choices=("rr", "so", "ig", "wr"), default="rr")
    sim.add_argument("--eta-x", type=float, default=1e-3, help="learning rate of block x")
    sim.add_argument("--eta-y", type=float, default=1e-2, help="learning rate of block y")
    sim.add_argument("--mu", type=float, default=1e-3, help="ZO smoothing radius")
    sim.add_argument("--q", type=int, default=1, help="ZO directions per step")
    sim.add_argument("--directions", choices=("gaussian", "sphere", "rademacher"),
                     default="gaussian")
    sim.add_argument("--difference", choices=("central", "forward"), default="central")
    sim.add_argument("--n", type=int, default=16, help="number of components")
    sim.add_argument("--dx", type=int, default=20, help="dimension of block x")
    sim.add_argument("--dy", type=int, default=6, help="dimension of block y")
    sim.add_argument("--epochs", type=int, default=50)
    sim.add_argument("--trials", type=int, default=100)
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--out", metavar="FILE.csv", help="where to write the records")
    sim.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    sim.add_argument("--json-constants", action="store_true",
                     help="print the problem's certified constants as JSON (and stop)")
    sim.add_argument("--no-progress", action="store_true", help="no progress bar")
    ck = sub.add_parser("check", help="hold simulated runs against the bound (verdict with "
                        "confidence), or search for the worst instance (--falsify)")
    ck.add_argument("--problem", choices=("quadratic", "nonconvex", "lora", "gensmooth"),
                    default="quadratic")
    ck.add_argument("--n", type=int, default=8)
    ck.add_argument("--dx", type=int, default=10)
    ck.add_argument("--dy", type=int, default=4)
    ck.add_argument("--mu", type=float, default=1e-4)
    ck.add_argument("--q", type=int, default=1)
    ck.add_argument("--eta-x", type=float, help="default: --fraction-x of the largest admissible")
    ck.add_argument("--eta-y", type=float, help="default: --fraction-y of the largest admissible")
    ck.add_argument("--fraction-x", type=float, default=1.0)
    ck.add_argument("--fraction-y", type=float, default=1.0)
    ck.add_argument("--epochs", type=int, default=20)
    ck.add_argument("--trials", type=int, default=64)
    ck.add_argument("--seed", type=int, default=0)
    ck.add_argument("--confidence", type=float, default=0.99)
    ck.add_argument("--measure", choices=("min", "weighted"), default="min")
    ck.add_argument("--allow-outside", action="store_true",
                    help="check even if the instance breaks the conditions (the verdict says so)")
    ck.add_argument("--falsify", action="store_true", help="adversarial search over instances")
    ck.add_argument("--budget", type=int, default=60, help="instances the search simulates")
    ck.add_argument("--history", metavar="FILE.csv", help="write the search history")
    ck.add_argument("--mutations", action="store_true",
                    help="plant wrong bounds and report the kill rate (docs/mutations.md, .csv)")
    ck.add_argument("--report", action="store_true",
                    help="tightness report per family and regime (docs/tightness.md, .csv)")
    ck.add_argument("--quick", action="store_true", help="smaller budgets for --report")
    _add_engine(ck, "--report's independent searches")
    ck.add_argument("--out-dir", default=".", help="where docs/ is written (default: .)")
    ck.add_argument("--force", action="store_true", help="overwrite existing report files")
    ck.add_argument("--json", action="store_true")
    _add_finetune(sub)
    _add_figures(sub)
    _add_check_run(sub)
    return parser


def _add_engine(parser: argparse.ArgumentParser, what: str) -> None:
    """--workers, --backend, --address: where independent jobs run (hybridconv.parallel)."""
    parser.add_argument("--workers", type=int, default=1,
                        help=f"processes for {what} (same results)")
    parser.add_argument("--backend", choices=("local", "dask", "ray"), default="local",
                        help=f"engine of {what}: joblib processes here, or a dask or ray "
                        "cluster")
    parser.add_argument("--address", help="scheduler of the dask or ray cluster (default "
                        "$HYBRIDCONV_ADDRESS, else a local cluster of --workers)")


def _add_check_run(sub) -> None:
    cr = sub.add_parser("check-run", help="the bound with the constants measured along a "
                        "fine-tuning run (needs --diagnostics-every in hybridconv finetune)")
    cr.add_argument("run_dir", metavar="RUN_DIR", help="a run folder of hybridconv finetune")
    cr.add_argument("--sweep", nargs="+", metavar="DIR", default=[],
                    help="run folders of a sweep over eta_y / eta_x: the empirical best ratio")
    cr.add_argument("--metric", choices=("test_loss", "accuracy"), default="test_loss",
                    help="what the sweep's best ratio optimizes")
    cr.add_argument("--json", action="store_true", help="JSON output")


def _check_run(args: argparse.Namespace) -> int:
    import math

    from .validate.realrun import check_run, sweep_summary

    try:
        rc = check_run(args.run_dir)
        sweep = sweep_summary(args.sweep, metric=args.metric) if args.sweep else None
    except ValueError as e:
        raise CLIError(str(e)) from None
    if args.json:
        out = rc.as_dict()
        if sweep is not None:
            out["sweep"] = json.loads(sweep.to_json(orient="records"))
        print(json.dumps(out, indent=2))
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
    print(f"bound at T = {v['T']:g}: {rc.bound_final:.4g}; measured min ||grad F||^2 over "
          f"earlier points: {rc.measured_final:.4g}; dominant term: {rc.dominant} "
          f"({rc.shares[rc.dominant]:.1%})")
    if math.isfinite(rc.effective_rank):
        print(f"with d_x = effective rank {rc.effective_rank:.4g}: bound "
              f"{rc.bound_final_effective:.4g}")
    print(f"eta_y / eta_x: used {rc.used_ratio:.4g}, theorem's best {rc.predicted_ratio:.4g}"
          + (f" (effective rank: {rc.predicted_ratio_effective:.4g})"
             if math.isfinite(rc.predicted_ratio_effective) else ""))
    if sweep is not None:
        best = sweep[sweep["best"]].iloc[0]
        print(f"sweep ({args.metric}, mean over seeds): best ratio {best['ratio']:.4g} "
              f"({best['mean']:.4g})")
    for note in rc.notes:
        print(f"note: {note}")
    return 0


def _add_figures(sub) -> None:
    from .figures import FIGURES

    fg = sub.add_parser("figures", help="regenerate the report's figures (PNG, PDF, the CSV "
                        "behind each, MANIFEST.json)")
    fg.add_argument("--quick", action="store_true",
                    help="small settings, a preview in minutes (written to paper_figures/quick)")
    fg.add_argument("--only", action="append", choices=list(FIGURES), metavar="NAME",
                    help=f"one figure (repeatable): {', '.join(FIGURES)}")
    fg.add_argument("--replot", action="store_true",
                    help="redraw from the cached CSVs without computing")
    _add_engine(fg, "the independent runs of a figure")
    fg.add_argument("--out", help="output folder (default paper_figures, or "
                    "paper_figures/quick with --quick)")
    fg.add_argument("--no-cache", action="store_true",
                    help="compute the fine-tuning runs again instead of reusing those cached "
                    "(OUT/cache) by an earlier build with the same settings and code")
    fg.add_argument("--no-progress", action="store_true", help="no progress bars")


def _figures(args: argparse.Namespace) -> int:
    from .figures.build import build, default_out
    from .figures.finetuning import FinetuneRunError

    if isinstance(args.workers, bool) or args.workers < 1:
        raise CLIError(f"--workers must be an integer >= 1, got {args.workers}")
    parts = ["hybridconv figures"] + (["--quick"] if args.quick else []) + (
        [f"--workers {args.workers}"] if args.workers != 1 else []) + (
        [f"--backend {args.backend}"] if args.backend != "local" else []) + (
        [f"--out {args.out}"] if args.out else [])
    try:
        built = build(args.only, quick=args.quick, replot=args.replot, workers=args.workers,
                      out=args.out, progress=not args.no_progress, command=" ".join(parts),
                      backend=args.backend, address=args.address, cache=not args.no_cache)
    except ValueError as e:
        raise CLIError(str(e)) from None
    except FinetuneRunError as e:  # a fine-tuning run failed (missing [llm] extra or data)
        raise CLIError(str(e)) from None
    out = Path(args.out) if args.out else default_out(args.quick)
    for name, entry in built.items():
        secs = entry["replot_seconds"] if args.replot else entry["compute_seconds"]
        note = " (replaced earlier files)" if entry["replaced"] else ""
        if "runs" in entry and not args.replot:
            note += (f" ({entry['runs']['reused']} cached runs reused, "
                     f"{entry['runs']['computed']} computed)")
        print(f"{name}: {out / (name + '.png')} in {secs:.1f} s{note}")
    print(f"manifest: {out / 'MANIFEST.json'}")
    return 0


def _add_finetune(sub) -> None:
    ft = sub.add_parser("finetune", help="fine-tune a real model offline: fo, fo-lora, zo, "
                        "zo-lora or hybrid (needs the [llm] extra and the data packages)")
    ft.add_argument("--model", default="minilm",
                    help="minilm, smollm2, random:SHAPE or a local Hugging Face directory")
    ft.add_argument("--task", choices=("mr", "boolq", "winogrande"), default="mr")
    ft.add_argument("--method", choices=("fo", "fo-lora", "zo", "zo-lora", "hybrid"),
                    default="hybrid")
    ft.add_argument("--epochs", type=int, default=5)
    ft.add_argument("--batch-size", type=int, default=16)
    ft.add_argument("--lr-x", type=float, help="learning rate of the ZO block "
                    "(default: per method, docs/finetune.md)")
    ft.add_argument("--lr-y", type=float, help="learning rate of the FO block")
    ft.add_argument("--mu", type=float, help="ZO smoothing radius")
    ft.add_argument("--q", type=int, default=1, help="ZO directions per step")
    ft.add_argument("--seed", type=int, default=0)
    ft.add_argument("--k-shot", type=int, default=16,
                    help="training examples per class (0: the whole train pool)")
    ft.add_argument("--test-size", type=int, default=1000)
    ft.add_argument("--max-length", type=int, default=64)
    ft.add_argument("--lora-r", type=int, default=8)
    ft.add_argument("--lora-alpha", type=int, default=16)
    ft.add_argument("--fo-optimizer", choices=("sgd", "adam", "adamw"), default="sgd")
    ft.add_argument("--directions", choices=("gaussian", "sphere", "rademacher"),
                    default="gaussian")
    ft.add_argument("--difference", choices=("central", "forward"), default="central")
    ft.add_argument("--fo-gradient", choices=("clean", "shared"), default="clean")
    ft.add_argument("--sampling", choices=("rr", "so", "ig", "wr"), default="rr")
    ft.add_argument("--device", default="cpu")
    ft.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    ft.add_argument("--autocast", choices=("none", "bfloat16", "float16"), default="none",
                    help="run the forward passes under torch.autocast in this dtype (weights, "
                    "ZO perturbation and restore stay in --dtype)")
    ft.add_argument("--diagnostics-every", type=int, default=0, metavar="K",
                    help="measure the local constants (L_x, L_y, L_xy, sigma, effective rank) "
                    "at the start, every K epochs and at the end into diagnostics.json "
                    "(LoRA methods; 0: off)")
    ft.add_argument("--diagnostics-examples", type=int, default=32, metavar="N",
                    help="size of the fixed training subset the diagnostics use")
    ft.add_argument("--diagnostics-probes", type=int, default=8,
                    help="Hutchinson probes for tr(H_xx)")
    ft.add_argument("--out", metavar="DIR", help="run folder (results.json, checkpoint.pt)")
    ft.add_argument("--resume", action="store_true", help="continue the run in --out")
    ft.add_argument("--force", action="store_true", help="overwrite a finished run in --out")
    ft.add_argument("--no-progress", action="store_true")
    ft.add_argument("--json", action="store_true", help="print results.json")
    ft.add_argument("--fetch", choices=("winogrande",),
                    help="download and cache a large task once, then stop")


def _finetune(args: argparse.Namespace) -> int:
    try:
        if args.fetch:
            from .finetune.tasks import fetch_winogrande

            print(fetch_winogrande())
            return 0
        if not args.out:
            raise CLIError("--out DIR is required")
        from .finetune.trainer import FinetuneConfig, finetune

        cfg = FinetuneConfig(
            model=args.model, task=args.task, method=args.method, epochs=args.epochs,
            batch_size=args.batch_size, lr_x=args.lr_x, lr_y=args.lr_y, mu=args.mu, q=args.q,
            seed=args.seed, k_shot=args.k_shot or None, test_size=args.test_size,
            max_length=args.max_length, lora_r=args.lora_r, lora_alpha=args.lora_alpha,
            fo_optimizer=args.fo_optimizer, directions=args.directions,
            difference=args.difference, fo_gradient=args.fo_gradient,
            sampling=args.sampling, device=args.device, dtype=args.dtype,
            diagnostics_every=args.diagnostics_every,
            diagnostics_examples=args.diagnostics_examples,
            diagnostics_probes=args.diagnostics_probes, autocast=args.autocast)
        res = finetune(cfg, args.out, resume=args.resume, force=args.force,
                       progress=not args.no_progress)
    except ImportError as e:
        raise CLIError(f"{e.name or e} is not installed: pip install -e '.[llm]' and "
                       f"pip install --no-deps -r requirements-data.txt") from None
    except (ValueError, OSError) as e:
        raise CLIError(str(e).splitlines()[0] if str(e) else repr(e)) from None
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"{res['status']}: accuracy {res['accuracy']:.4f} after {res['epochs']} epochs, "
              f"{res['steps']} steps, {res['forward_passes']} forward passes, "
              f"{res['wall_s']:.1f} s, peak {res['peak_mem_bytes'] / 2**20:.0f} MiB "
              f"-> {Path(args.out) / 'results.json'}")
    return 0 if res["status"] == "completed" else 1


def _check(args: argparse.Namespace) -> int:
    from .problems import make_problem
    from .sim import SimConfig
    from .theory.bound import hybrid_bound
    from .validate import check, falsify

    bound = hybrid_bound(assumption="h1-gen" if args.problem == "gensmooth" else "h1")
    if args.mutations or args.report:
        return _reports(args, bound)
    try:
        if args.falsify:
            if args.history and Path(args.history).exists() and not args.force:
                raise CLIError(f"{args.history} exists; pass --force to overwrite it")
            res = falsify(bound, args.problem, budget=args.budget, seed=args.seed,
                          trials=args.trials, epochs=args.epochs,
                          confidence=args.confidence)
            out = {**res.verdict.as_dict(), "search_ratio": res.ratio,
                   "ratio_ci": list(res.ratio_ci), "worst": res.worst,
                   "evaluations": res.evaluations, "family": args.problem}
            if args.history:
                write_text_atomic(Path(args.history), res.history.to_csv(index=False))
        else:
            problem = make_problem(args.problem, args.n, args.dx, args.dy, seed=args.seed)
            hyper = {"mu": args.mu, "q": args.q, "n": args.n, "T": args.epochs}
            consts = problem.constants()
            ex, ey = bound.admissible_steps(args.fraction_x, args.fraction_y, **consts, **hyper)
            config = SimConfig(eta_x=ex if args.eta_x is None else args.eta_x,
                               eta_y=ey if args.eta_y is None else args.eta_y, mu=args.mu,
                               q=args.q, epochs=args.epochs, trials=args.trials,
                               seed=args.seed)
            v = check(bound, problem, config, confidence=args.confidence,
                      measure=args.measure, allow_outside=args.allow_outside)
            out = {**v.as_dict(), "eta_x": config.eta_x, "eta_y": config.eta_y,
                   "family": args.problem}
    except ValueError as e:
        raise CLIError(str(e)) from None
    if args.json:
        print(json.dumps(_json_safe(out), indent=2, allow_nan=False))
    else:
        print(f"verdict: {out['verdict']} at confidence {out['confidence']:g} "
              f"({out['trials']} trials, {out['epochs']} epochs)")
        print(f"empirical {out['empirical']:.6g} (one-sided CI [{out['ci_lower']:.6g}, "
              f"{out['ci_upper']:.6g}]) vs bound {out['bound']:.6g}: ratio {out['ratio']:.4g}")
        if args.falsify:
            print(f"worst of {out['evaluations']} instances: ratio {out['search_ratio']:.4g}; "
                  f"{json.dumps(out['worst'])}")
    return 0


def _json_safe(obj: object) -> object:
    """Valid JSON: numpy scalars to floats, infinities and NaN to strings."""
    import math

    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, bool | str | int) or obj is None:
        return obj
    try:
        x = float(obj)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(obj)
    return x if math.isfinite(x) else str(x)


def _reports(args: argparse.Namespace, bound) -> int:
    try:
        if args.mutations:
            from .validate.mutate import mutation_report, write_mutation_report

            if args.problem not in ("quadratic", "nonconvex"):
                raise CLIError("--mutations plants wrong H1 bounds on the quadratic and nonconvex "
                               "families; drop --problem")
            for name in ("mutations.md", "mutations.csv"):
                target = Path(args.out_dir) / "docs" / name
                if target.exists() and not args.force:
                    raise CLIError(f"{target} exists; pass --force to overwrite it")
            rep = mutation_report(bound, seed=args.seed, falsify_budget=args.budget // 3,
                                  confidence=args.confidence)
            md, csv = write_mutation_report(rep, args.out_dir, force=args.force)
            out = {"kill_rate": float(rep["killed"].mean()), "killed": int(rep["killed"].sum()),
                   "mutations": len(rep), "files": [str(md), str(csv)]}
        else:
            from .parallel import defaults
            from .validate.tightness import tightness_report

            if args.workers < 1:
                raise CLIError(f"--workers must be an integer >= 1, got {args.workers}")
            with defaults(backend=args.backend, address=args.address):
                table = tightness_report(args.out_dir, budget=args.budget, seed=args.seed,
                                         quick=args.quick, force=args.force,
                                         workers=args.workers)
            out = {"rows": len(table), "max_ratio": float(table["max_ratio"].max()),
                   "files": [str(Path(args.out_dir) / "docs" / "tightness.md"),
                             str(Path(args.out_dir) / "docs" / "tightness.csv")]}
    except ValueError as e:
        raise CLIError(str(e)) from None
    print(json.dumps(out, indent=2) if args.json else
          "\n".join(f"{k}: {v}" for k, v in out.items()))
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from .problems import make_problem
    from .sim import SimConfig, simulate

    try:
        problem = make_problem(args.problem, args.n, args.dx, args.dy, seed=args.seed)
        if args.json_constants:
            print(json.dumps(problem.constants(), indent=2))
            return 0
        config = SimConfig(method=args.method, sampling=args.sampling, eta_x=args.eta_x,
                           eta_y=args.eta_y, mu=args.mu, q=args.q, directions=args.directions,
                           difference=args.difference, epochs=args.epochs, trials=args.trials,
                           seed=args.seed)
    except ValueError as e:
        raise CLIError(str(e)) from None
    if args.out is None:
        raise CLIError("--out FILE.csv is required (or --json-constants)")
    out = Path(args.out)
    if out.is_dir():
        raise CLIError(f"--out {out} is a directory; give a file name")
    if out.exists() and not args.force:
        raise CLIError(f"{out} exists; pass --force to overwrite it")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CLIError(f"cannot create the folder of --out {out}: {e.strerror}") from None
    if not os.access(out.parent, os.W_OK):
        raise CLIError(f"cannot write to the folder of --out {out}")
    df = simulate(problem, config, progress=not args.no_progress)
    try:
        write_text_atomic(out, df.to_csv(index=False))
    except OSError as e:
        raise CLIError(f"cannot write {out}: {e.strerror}") from None
    last = df[df["epoch"] == df["epoch"].max()]
    print(f"wrote {len(df)} rows to {out}: final mean ||grad F||^2 = "
          f"{last['grad_sq'].mean():.4g} over {int((~last['diverged']).sum())} of "
          f"{config.trials} trials ({int(last['diverged'].sum())} diverged)")
    return 0


def _bound(args: argparse.Namespace):
    from .theory.bound import hybrid_bound

    return hybrid_bound(assumption=args.assumption, directions=args.directions,
                        difference=args.difference)


def _theory(args: argparse.Namespace) -> int:
    import sympy as sp

    bound = _bound(args)
    action = getattr(args, "action", None)
    if action is None:
        if args.derivation:
            from .theory.report import derivation_markdown

            print(derivation_markdown(bound.theorem), end="")
        elif args.latex:
            print(bound.latex())
        elif args.json:
            print(json.dumps(bound.as_dict(), indent=2))
        else:
            print(bound)
        return 0

    values = _parse_set(args.set)
    if action == "bound":
        try:
            value = bound.evaluate(check=False, **values)
            violated = bound.violated(**values)
        except ValueError as e:
            raise CLIError(str(e)) from None
        if violated and not args.no_check:
            raise CLIError("conditions violated: " + "; ".join(violated)
                           + " (use --no-check to evaluate anyway)")
        out = {"value": value, "holds": not violated, "violated": violated,
               "measure": "min_t E||grad F(z_t)||^2", "values": values}
        if args.json:
            print(json.dumps(out, indent=2))
        else:
            print(f"bound on min_t E||grad F(z_t)||^2: {value:.6g}")
            print("conditions: " + ("all hold" if not violated else "; ".join(violated)))
        return 0

    if action == "steps":
        from .theory.bound import natural_weights

        try:
            weights = (1.0, 1.0) if args.measure == "full" else natural_weights(bound, **values)
            st = bound.optimal_step_sizes(weights=weights, **values)
        except ValueError as e:
            raise CLIError(str(e)) from None
        out = st.as_dict()
        if args.json:
            print(json.dumps(out, indent=2))
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
            cx = bound.complexity(ratio=args.ratio, **values)
        except ValueError as e:
            raise CLIError(str(e)) from None
        out = cx.as_dict()
        if args.json:
            print(json.dumps(out, indent=2))
        else:
            print(f"epochs to reach min_t E||grad F(z_t)||^2 <= eps^2: "
                  f"T = Theta(eps^{cx.eps_exponent})")
            print(f"leading order: T = {sp.sstr(cx.epochs)}")
            print(f"step size: eta = {sp.sstr(cx.eta)}")
            if cx.mu_max is not None:
                print(f"smoothing radius: mu <= {sp.sstr(cx.mu_max)}")
            print(cx.regime)
        return 0
    raise CLIError(f"unknown theory action {action!r}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = build_parser()
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
        if args.command == "check-run":
            return _check_run(args)
        raise CLIError(f"unknown command {args.command!r}")
    except CLIError as e:
        print(f"hybridconv: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
