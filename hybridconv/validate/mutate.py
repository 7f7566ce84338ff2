"""Mutation check: plant wrong bounds and see whether the checker catches them.

The sharp bound is assembled from named parts (:mod:`hybridconv.theory.terms`): the numerator
B = Delta / (n T) + N_ep / n, split by noise source (the Delta term, sigma_x^2, sigma_y^2, the
smoothing bias beta^2 and the remainder nu_0^2), the descent coefficients gamma_x, gamma_y, and
the small-T bound (its Delta part and its noise part). Mutations:

* ``drop``: one term removed (a term of B, or a part of the small-T bound);
* ``halve``: one term's constant halved;
* ``theta``: the heterogeneity's share of the descent coefficients removed (gamma at
  Theta = 0: the claim that Theta costs nothing);
* ``exponent``: the exponent of eta_x, eta_y, d_x or n changed by +1 or -1 in every term that
  contains it (the step sizes: the whole bound).

A mutant is *killed* when some instance gives a significant violation under either measure:
the one-sided lower confidence bound of min_t E||grad F(z_t)||^2 or of the block-weighted
average (simultaneous over the pool's instances, both measures and the epochs, level
``confidence``) exceeds the mutant's value. Instances come from a pool simulated once
(:func:`instance_pool`: random instances of the quadratic, nonconvex and heterogeneous-Hessian
families plus edge cases), then from a falsifier run against each surviving mutant.

A survivor is explained: either it is pointwise at least the real bound on thousands of
admissible points (then it is a valid bound, and nothing can kill it), or the real bound is
loose where the mutated term matters (the report gives the largest empirical / mutant ratio
found and the largest share the term takes of the bound on the pool).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import sympy as sp

from .._io import write_text_atomic
from ..theory.bound import Bound, compile_numeric, sample_admissible
from ..theory.symbols import sym
from .check import ROUNDING_ABS, check, exceeds
from .falsify import FAMILY_SPACES, build_instance, decode_point, falsify

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Mutation", "mutations", "instance_pool", "mutation_report", "write_mutation_report",
           "POOL_FAMILIES"]

EXPONENT_SYMBOLS = ("eta_x", "eta_y", "d_x", "n")
POOL_FAMILIES: tuple[str, ...] = ("quadratic", "nonconvex", "hetero")
"""Families of the instance pool (all H1, Gaussian directions): hetero has Theta > 0."""


@dataclass(frozen=True)
class Mutation:
    """A planted wrong bound: its name, kind, the mutated :class:`Bound` and the term it
    changes (``None`` for exponent and theta mutations)."""

    name: str
    kind: str
    bound: Bound
    term: sp.Expr | None


def _assemble(bound: Bound, terms: dict[str, sp.Expr], gamma: tuple[sp.Expr, sp.Expr],
              factor: sp.Expr | int = 1) -> Bound:
    """The bound built from its parts, as the theorem builds it: min(B / min(gamma_x eta_x,
    gamma_y eta_y), alt_full) and min(B / min(gamma_x, gamma_y), alt_D), times ``factor``."""
    ex, ey = sym("eta_x"), sym("eta_y")
    num = sum((v for k, v in terms.items() if k.startswith("main:")), sp.Integer(0))
    alt_w = sum((v for k, v in terms.items() if k.startswith("alt:")), sp.Integer(0))
    alt_full = bound.alt_full
    if "alt:Delta" not in terms:          # the gap part of the small-T bound was dropped
        alt_full = sp.Integer(0)
    elif bound.terms.get("alt:Delta") is not None and terms["alt:Delta"] != \
            bound.terms["alt:Delta"]:     # halved
        alt_full = alt_full / 2
    gx, gy = gamma
    full = sp.Min(num / sp.Min(gx * ex, gy * ey, evaluate=False), alt_full, evaluate=False)
    weighted = sp.Min(num / sp.Min(gx, gy, evaluate=False), alt_w, evaluate=False)
    return dataclasses.replace(bound, expr=full * factor, weighted_expr=weighted * factor,
                               numerator=num, gamma=(gx, gy), alt_weighted=alt_w,
                               alt_full=alt_full, terms=dict(terms),
                               adapter_expr=None)


def _label(key: str) -> str:
    part, _, source = key.partition(":")
    return f"{source} (small-T)" if part == "alt" else source


def mutations(bound: Bound) -> list[Mutation]:
    """Every mutation of ``bound`` (see the module docstring). ``bound`` must be a sharp
    theorem's bound (it has named terms)."""
    if not bound.terms:
        raise ValueError("mutations need a bound with named terms (the sharp theorem's)")
    terms, gamma = dict(bound.terms), tuple(bound.gamma)
    out = []
    for key, expr in terms.items():
        dropped = {k: v for k, v in terms.items() if k != key}
        out.append(Mutation(f"drop {_label(key)}", "drop", _assemble(bound, dropped, gamma),
                            expr))
        halved = {**terms, key: expr / 2}
        out.append(Mutation(f"halve {_label(key)}", "halve", _assemble(bound, halved, gamma),
                            expr))
    no_theta = tuple(g.xreplace({sym("Theta_x"): 0, sym("Theta_y"): 0}) for g in gamma)
    out.append(Mutation("drop Theta from gamma", "theta", _assemble(bound, terms, no_theta),
                        None))
    for name in EXPONENT_SYMBOLS:
        s = sym(name)
        for delta in (1, -1):
            if name.startswith("eta"):  # the whole bound
                mutated = _assemble(bound, terms, gamma, factor=s**delta)
            else:
                changed = {k: (v * s**delta if v.has(s) else v) for k, v in terms.items()}
                mutated = _assemble(bound, changed, gamma)
            out.append(Mutation(f"exponent of {name} {delta:+d}", "exponent", mutated, None))
    return out


_EDGES = [
    # deterministic-like: far start, tiny noise, steps on the caps (the Delta term, converged)
    {"sigma_x": 1e-4, "sigma_y": 1e-4, "start_scale": 50.0, "frac_x": 1.0, "frac_y": 1.0,
     "m_x": 1.0, "m_y_rel": 1.0, "coupling_rel": 0.0, "L_y": 1.0},
    # the ZO noise floor: start at the minimizer, large sigma_x, small steps
    {"at_minimizer": 1.0, "sigma_x": 3.0, "sigma_y": 1e-4, "frac_x": 0.05, "frac_y": 0.05,
     "m_x": 1.0, "m_y_rel": 1.0, "coupling_rel": 0.0, "L_y": 1.0, "d_x": 32, "q": 1},
    # the FO reshuffling floor: sigma_y only, many components
    {"at_minimizer": 1.0, "sigma_x": 0.0, "sigma_y": 5.0, "n": 32, "frac_x": 0.5,
     "frac_y": 1.0, "m_x": 1.0, "m_y_rel": 1.0, "L_y": 1.0},
    # the smoothing remainder: forward differences, large mu, no heterogeneity
    {"at_minimizer": 1.0, "sigma_x": 0.0, "sigma_y": 0.0, "forward": 1.0, "mu": 0.1,
     "frac_x": 0.2, "frac_y": 0.2, "m_x": 1.0, "m_y_rel": 1.0, "d_x": 16},
    {"n": 1, "frac_x": 1.0, "frac_y": 1.0},
    {"d_x": 64, "frac_x": 1.0, "frac_y": 1.0},
    {"coupling_rel": 0.95, "frac_x": 1.0, "frac_y": 1.0},
    # small T against the gap bound: one epoch from a far start
    {"epochs_override": 1.0, "start_scale": 30.0, "frac_x": 0.05, "frac_y": 0.05,
     "m_x": 1.0, "m_y_rel": 1.0, "coupling_rel": 0.0, "L_y": 1.0},
    # the small-T bound's noise part: two epochs from the minimizer, ZO noise only, eta_y far
    # below eta_x (the bound has max_b eta_b Lambda_b), many trials. E||grad F(z_1)||^2 is one
    # epoch of ZO noise, L_x^2 eta_x^2 n (d_x + 1) sigma_x^2 / q, about 0.65 of the bound.
    {"at_minimizer": 1.0, "epochs_override": 2.0, "trials_override": 4096.0, "sigma_x": 3.0,
     "sigma_y": 0.0, "frac_x": 0.01, "frac_y": 5e-4, "m_x": 1.0, "m_y_rel": 1.0,
     "coupling_rel": 0.0, "L_y": 1.0, "d_x": 16, "n": 32, "q": 1, "mu": 1e-6, "forward": 0.0},
    # the ZO noise floor in the descent part: an isotropic quadratic started on its stationary
    # floor (E||grad F||^2 stays there: see _floor_start) and run long, so that neither the
    # warm-up nor the Delta term dilutes it: about 0.56 of the bound, the sigma_x^2 term ~96%
    {"floor_start": 1.0, "epochs_override": 2000.0, "trials_override": 1024.0,
     "sigma_x": 3.0, "sigma_y": 0.0, "frac_x": 0.01, "frac_y": 5e-4, "m_x": 1.0,
     "m_y_rel": 1.0, "coupling_rel": 0.0, "L_y": 1.0, "d_x": 4, "n": 16, "q": 1, "mu": 1e-6,
     "forward": 0.0},
    # Theta in the descent coefficients: strongly heterogeneous component Hessians (hetero),
    # a far start, few components and steps on the joint boundary (C4 binds there: gamma_x
    # falls to 1/8), small noise, so that the Delta term, divided by the gammas, decides it
    {"hetero_rel": 2.0, "sigma_x": 1e-4, "sigma_y": 1e-4, "start_scale": 50.0, "frac_x": 1.0,
     "frac_y": 1.0, "m_x": 1.0, "m_y_rel": 1.0, "coupling_rel": 0.0, "L_y": 1.0, "n": 2,
     "d_x": 1, "q": 4},
]
_EDGE_KEYS = ("at_minimizer", "epochs_override", "trials_override", "floor_start")
"""Edge-case keys that are not problem parameters: where the run starts, its length and
trials."""


def _floor_start(problem: object, config: object) -> tuple[np.ndarray, np.ndarray] | None:
    """A start on the stationary ZO noise floor of an isotropic quadratic, or None.

    For H_xx = L_x I, no coupling and sigma_y = 0, the error e_t = x_t - x* obeys (first order
    in eta_x) E||e_{t+1}||^2 = c^2 E||e_t||^2 + (1 - c^2) floor / L_x^2 at epoch ends: from a
    start with L_x^2 ||e_0||^2 = floor (the closed form,
    :meth:`~hybridconv.problems.quadratic.QuadraticProblem.noise_floor`), E||grad F(z_t)||^2
    stays at the floor for every t, with no warm-up. None for a problem that is not such a
    quadratic."""
    from ..problems.quadratic import QuadraticProblem

    if (type(problem) is not QuadraticProblem or problem.coupling != 0
            or problem.m_x != problem.L_x or problem.sigma_y_target != 0):
        return None
    floor = problem.noise_floor(method="hybrid", sampling=config.sampling, eta_x=config.eta_x,
                                eta_y=config.eta_y, directions=config.directions, q=config.q)
    z = problem.minimizer()
    x0, y0 = z[: problem.d_x].copy(), z[problem.d_x:].copy()
    x0 += math.sqrt(floor / problem.d_x) / problem.L_x
    return x0, y0


def instance_pool(bound: Bound, *, families: tuple[str, ...] = POOL_FAMILIES, size: int = 66,
                  seed: int = 0, trials: int = 32, epochs: int = 20,
                  confidence: float = 0.99) -> pd.DataFrame:
    """Simulate a pool of admissible instances once: values, empirical and confidence bounds.

    Half random draws from the falsifier's spaces, half edge cases (deterministic-like starts,
    noise floors of the ZO and the FO block, the smoothing remainder, n = 1, large d_x, strong
    coupling, one epoch; two epochs of ZO noise from the minimizer, the ZO floor from a start
    on it, strong heterogeneity on the C4 boundary), each edge with each family (``size`` =
    2 x 11 edges x 3 families by default; an edge that does not apply to a family, such as
    the floor start off the isotropic quadratic, is left out). The confidence bounds are
    simultaneous over the whole pool.

    The edges are there so that each term of the bound carries most of it somewhere: a
    mutation of a term can only be caught where that term matters and the bound is within 2x.
    """
    import pandas as pd

    rng = np.random.default_rng([seed, 31])
    specs: list[tuple[str, dict[str, float]]] = []
    for i in range(size):
        family = families[(i // 2) % len(families)]
        space = FAMILY_SPACES[family]
        p = decode_point(space, rng.uniform(size=len(space)))
        if i % 2 == 1:
            p.update({k: v for k, v in _EDGES[(i // 2) % len(_EDGES)].items()
                      if k in space or k in _EDGE_KEYS})
        specs.append((family, p))
    rows = []
    for i, (family, p) in enumerate(specs):
        at_min = bool(p.pop("at_minimizer", 0.0))
        floor_start = bool(p.pop("floor_start", 0.0))
        T = int(p.pop("epochs_override", epochs))
        n_trials = int(p.pop("trials_override", trials))
        try:
            problem, config, x0, y0 = build_instance(family, p, bound, epochs=T,
                                                     trials=n_trials, seed=seed + i,
                                                     problem_seed=seed + i)
            if at_min and hasattr(problem, "minimizer"):
                z = problem.minimizer()
                x0, y0 = z[: problem.d_x], z[problem.d_x:]
            if floor_start:
                start = _floor_start(problem, config)
                if start is None:
                    continue
                x0, y0 = start
            verdicts = {m: check(bound, problem, config, confidence=confidence,
                                 instances=2 * len(specs), measure=m, x0=x0, y0=y0)
                        for m in ("min", "weighted")}
        except ValueError:
            continue
        values = {**problem.constants(x0, y0), **config.hyperparameters(problem.n)}
        v, w = verdicts["min"], verdicts["weighted"]
        rows.append({"family": family, "at_minimizer": at_min, "floor_start": floor_start,
                     "epochs": T, "trials": n_trials, "difference": config.difference,
                     **{f"p_{k}": x for k, x in p.items()}, "values": values,
                     "empirical": v.empirical, "ci_lower": v.ci_lower, "ci_upper": v.ci_upper,
                     "bound": v.bound, "ratio": v.ratio, "trivial": v.trivial,
                     "w_empirical": w.empirical, "w_ci_lower": w.ci_lower,
                     "w_bound": w.bound, "w_ratio": w.ratio})
    return pd.DataFrame(rows)


def _ratios(empirical: pd.Series, lower: pd.Series, values: np.ndarray) -> np.ndarray:
    """empirical / mutant, as ``check`` reports it (a zero value: 0 unless the lower confidence
    bound is > 0, then inf)."""
    emp, low = empirical.to_numpy(dtype=float), lower.to_numpy(dtype=float)
    return np.where(values > 0, emp / np.where(values > 0, values, 1.0),
                    np.where(low > ROUNDING_ABS, np.inf, 0.0))


def _always_larger(bound: Bound, mutant: Bound, *, seed: int) -> bool:
    """Whether the mutant is at least the real bound (both measures) at admissible points that
    can be simulated (d_x >= 1)."""
    pts = sample_admissible(bound, 4000, seed=seed)
    with np.errstate(all="ignore"):
        real = np.concatenate([np.asarray(bound.vectorized()(**pts)),
                               np.asarray(bound.vectorized(weighted=True)(**pts))])
        mut = np.concatenate([np.asarray(mutant.vectorized()(**pts)),
                              np.asarray(mutant.vectorized(weighted=True)(**pts))])
    simulable = np.tile(np.asarray(pts.get("d_x", np.ones(4000))) >= 1, 2)
    ok = np.isfinite(real) & simulable
    return bool(np.all(np.where(ok, mut >= real * (1 - 1e-12), True)))


def write_mutation_report(report: pd.DataFrame, out_dir: str | Path, *,
                          force: bool = False) -> tuple[Path, Path]:
    """Write ``docs/mutations.md`` and ``docs/mutations.csv`` under ``out_dir`` atomically."""
    out = Path(out_dir) / "docs"
    md, csv = out / "mutations.md", out / "mutations.csv"
    for f in (md, csv):
        if f.exists() and not force:
            raise ValueError(f"{f} exists; pass force=True (--force) to overwrite it")
    out.mkdir(parents=True, exist_ok=True)
    killed = int(report["killed"].sum())
    lines = [
        "# Mutation check",
        "",
        "Generated by `hybridconv check --mutations --force`. Each row plants a wrong bound "
        "(a term of the sharp bound dropped, a term's constant halved, the heterogeneity "
        "removed from the descent coefficients, an exponent changed) and asks whether some "
        "admissible instance violates it significantly (one-sided lower confidence bound, "
        "simultaneous over the instance pool, above the mutant's value). The pool has "
        f"instances of {', '.join(POOL_FAMILIES)} (hetero: component Hessians differ, "
        "Theta > 0) and edge cases (deterministic-like starts, the ZO and FO noise floors, "
        "forward differences with a large mu, n = 1, large d_x, one epoch; two epochs of ZO "
        "noise from the minimizer with 4,096 trials, the ZO floor from a start on it over "
        "2,000 epochs, strong heterogeneity on the C4 boundary): each term of the bound "
        "carries most of it on some instance, where a mutation of it can be caught.",
        "",
        f"**Kill rate: {killed} of {len(report)} ({100 * killed / len(report):.0f}%).**",
        "",
    ]
    if "pool_size" in report.attrs:
        verdict = ("is significantly exceeded on some of the"
                   if report.attrs.get("pool_real_exceeded") else
                   "holds on every one of the")
        lines += [
            f"The real bound {verdict} {report.attrs['pool_size']} pool instances "
            "(a kill counts only if the real bound holds there): the largest "
            "empirical/bound is "
            f"{report.attrs['pool_max_ratio']:.4g} (min_t E||grad F||^2) and "
            f"{report.attrs['pool_max_w_ratio']:.4g} (block-weighted)"
            + (": a ratio of 1 is the small-T bound met with equality (one epoch on an "
               "isotropic quadratic, where ||grad F(z_0)||^2 = 2 Lambda Delta), which is not a "
               "violation (the column max empirical/mutant leaves such instances out)."
               if max(report.attrs["pool_max_ratio"], report.attrs["pool_max_w_ratio"])
               > 1 - 1e-9 else "."),
            "",
        ]
    lines += [
        "Survivors are explained. A survivor that is pointwise at least the proven bound is "
        "itself a valid bound. Every other survivor is evidence that the proven bound is loose "
        "where the mutated term matters: the largest empirical/mutant ratio found stays below "
        "1.",
        "",
        "| mutation | kind | killed | by | max empirical/mutant | term's max share "
        "| why it survives |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report.itertuples():
        share = "" if not math.isfinite(r.term_share) else f"{r.term_share:.3g}"
        lines.append(f"| `{r.mutation}` | {r.kind} | {'yes' if r.killed else 'no'} | "
                     f"{r.killed_by} | {r.max_ratio:.3g} | {share} | {r.explanation} |")
    write_text_atomic(md, "\n".join(lines) + "\n")
    write_text_atomic(csv, report.to_csv(index=False))
    return md, csv


def mutation_report(bound: Bound, *, pool: pd.DataFrame | None = None, seed: int = 0,
                    falsify_budget: int = 20, falsify_family: str = "quadratic",
                    confidence: float = 0.99, only: tuple[str, ...] | None = None,
                    progress: bool = False) -> pd.DataFrame:
    """Run every mutation (or those named in ``only``) against the pool, then the falsifier on
    survivors (``progress``: a line on stderr while the pool is built, then a tqdm bar over
    the mutations).

    Returns one row per mutation: name, kind, killed, killed_by, max_ratio (largest
    empirical / mutant found), term_share (largest share of B the mutated term takes on the
    pool), explanation.
    """
    import pandas as pd

    if progress and pool is None:
        import sys

        print("hybridconv: simulating the instance pool ...", file=sys.stderr, flush=True)
    pool = instance_pool(bound, seed=seed, confidence=confidence) if pool is None else pool
    if pool.empty:
        raise ValueError("the instance pool is empty")
    numerator = compile_numeric([sym(k) for k in bound.symbols], bound.numerator)
    rows = []
    chosen = mutations(bound)
    if only is not None:
        unknown = set(only) - {m.name for m in chosen}
        if unknown:
            raise ValueError(f"unknown mutations {sorted(unknown)}")
    # index in the full list, so a mutation's falsifier seed does not depend on ``only``
    planted = [(i, m) for i, m in enumerate(chosen) if only is None or m.name in only]
    if progress:
        from tqdm.auto import tqdm

        planted = tqdm(planted, desc="mutations", unit="mutation")
    for index, m in planted:
        with np.errstate(all="ignore"):
            vals = np.array([m.bound.evaluate(check=False, **v) for v in pool["values"]])
            wvals = np.array([m.bound.evaluate(check=False, weighted=True, **v)
                              for v in pool["values"]])
            ratios = np.concatenate([
                _ratios(pool["empirical"], pool["ci_lower"], vals),
                _ratios(pool["w_empirical"], pool["w_ci_lower"], wvals)])
        killed = bool(np.any(exceeds(pool["ci_lower"].to_numpy(), vals))
                      or np.any(exceeds(pool["w_ci_lower"].to_numpy(), wvals)))
        killed_by = "pool" if killed else ""
        share = math.nan
        if m.term is not None:
            f = compile_numeric([sym(k) for k in bound.symbols], m.term)
            with np.errstate(all="ignore"):
                share = float(max(
                    float(f(*[v[k] for k in bound.symbols]))
                    / float(numerator(*[v[k] for k in bound.symbols]))
                    for v in pool["values"]))
        # instances where the real bound itself is met with equality (the one-epoch edge)
        # say nothing about a mutant's slack: left out of the largest ratio (not of the kill)
        informative = np.concatenate([pool["ratio"].to_numpy(dtype=float) < 1 - 1e-9,
                                      pool["w_ratio"].to_numpy(dtype=float) < 1 - 1e-9])
        max_ratio = float(np.max(ratios[informative] if informative.any() else ratios))
        if not killed and falsify_budget >= 10:
            try:
                res = falsify(m.bound, falsify_family, budget=falsify_budget,
                              seed=seed + 1000 + index, trials=16, epochs=8,
                              recheck_trials=128, confidence=confidence)
                max_ratio = max(max_ratio, res.ratio)
                if res.verdict.verdict == "violated":
                    killed, killed_by = True, "falsifier"
            except ValueError:
                pass
        explanation = ""
        if not killed:
            if _always_larger(bound, m.bound, seed=seed):
                explanation = ("valid bound: at least the proven one at every sampled admissible "
                               "point, so no instance can violate it")
            else:
                explanation = (f"the proven bound is loose where this matters: the largest "
                               f"empirical/mutant ratio found is {max_ratio:.3g} < 1"
                               + (f"; the term takes at most {share:.3g} of B on the pool"
                                  if math.isfinite(share) else ""))
        rows.append({"mutation": m.name, "kind": m.kind, "killed": killed,
                     "killed_by": killed_by, "max_ratio": max_ratio, "term_share": share,
                     "explanation": explanation})
    out = pd.DataFrame(rows)
    out.attrs.update(pool_size=len(pool), pool_max_ratio=float(pool["ratio"].max()),
                     pool_max_w_ratio=float(pool["w_ratio"].max()),
                     pool_real_exceeded=bool(
                         np.any(exceeds(pool["ci_lower"].to_numpy(), pool["bound"].to_numpy()))
                         or np.any(exceeds(pool["w_ci_lower"].to_numpy(),
                                           pool["w_bound"].to_numpy()))))
    return out
