"""Mutation check: plant wrong bounds and see whether the checker catches them.

Mutations of a bound B = B_D / min(eta_x, eta_y) (``Bound.expr``), made on the theorem's
compact form so that each term is a term of the proof (the Delta term, the ZO variance, each
drift term, the smoothing terms):

* ``drop``: one additive term of B_D removed;
* ``halve``: one term's constant halved;
* ``exponent``: the exponent of eta_x, eta_y, d_x or n changed by +1 or -1 in every term of
  B that contains it (for the step sizes, every term: each is divided by min(eta_x, eta_y)).

A mutant is *killed* when some instance gives a significant violation under either measure:
the one-sided lower confidence bound of min_t E||grad F(z_t)||^2 or of the block-weighted
average (simultaneous over the pool's instances, both measures and the epochs, level
``confidence``) exceeds the mutant's value. The weighted measure matters: for short runs the
min measure is decided by epoch 0 (``Verdict.trivial``). Instances come from a pool simulated
once (falsifier-style random instances plus edge cases: deterministic-like starts, n = 1,
large d_x, starts at the minimizer), then from a falsifier run against each surviving mutant.

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

from .. import spec
from .._io import write_text_atomic
from ..theory.bound import Bound, sample_admissible
from ..theory.symbols import sym
from .check import check
from .falsify import FAMILY_SPACES, _decode, _instance, falsify

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Mutation", "mutations", "instance_pool", "mutation_report", "write_mutation_report"]

EXPONENT_SYMBOLS = ("eta_x", "eta_y", "d_x", "n")


@dataclass(frozen=True)
class Mutation:
    """A planted wrong bound: its name, kind and the mutated :class:`Bound`."""

    name: str
    kind: str
    bound: Bound
    term: sp.Expr | None


def _terms(bound: Bound) -> tuple[list[sp.Expr], sp.Expr]:
    th = bound.theorem
    eta_min = sp.Min(sym("eta_x"), sym("eta_y"))
    fixed = {sym(k): v for k, v in bound.fixed.items()}
    weighted = sp.expand((th.compact * eta_min).subs(fixed))
    return [t for t in sp.Add.make_args(weighted) if t != 0], bound.expr / bound.weighted_expr


def _label(term: sp.Expr) -> str:
    return sp.sstr(term).replace("\\", "")


def mutations(bound: Bound) -> list[Mutation]:
    """Every mutation of ``bound`` (see the module docstring)."""
    terms, divisor = _terms(bound)
    aux = bound.theorem.aux
    full = [sp.expand(t.subs(aux)) for t in terms]
    base = sum(full)

    def make(weighted: sp.Expr) -> Bound:
        weighted = sp.expand(weighted)
        return dataclasses.replace(bound, expr=weighted * divisor, weighted_expr=weighted)

    out = []
    for t, tf in zip(terms, full, strict=True):
        out.append(Mutation(f"drop {_label(t)}", "drop", make(base - tf), t))
        out.append(Mutation(f"halve {_label(t)}", "halve", make(base - tf / 2), t))
    for name in EXPONENT_SYMBOLS:
        s = sym(name)
        for delta in (1, -1):
            if name.startswith("eta"):  # every term of B = B_D / min(eta_x, eta_y) has it
                mutated = base * s**delta
            else:
                mutated = sum(tf * s**delta if tf.has(s) else tf for tf in full)
            out.append(Mutation(f"exponent of {name} {delta:+d}", "exponent", make(mutated), None))
    return out


def instance_pool(bound: Bound, *, families: tuple[str, ...] = ("quadratic", "nonconvex"),
                  size: int = 48, seed: int = 0, trials: int = 32, epochs: int = 10,
                  confidence: float = 0.99) -> pd.DataFrame:
    """Simulate a pool of admissible instances once: values, empirical and confidence bounds.

    Half random draws from the falsifier's spaces, half edge cases (deterministic-like starts
    far from the minimizer, n = 1, large d_x, step sizes on their caps, starts at the
    minimizer). The confidence bounds are simultaneous over the whole pool.
    """
    import pandas as pd

    rng = np.random.default_rng([seed, 31])
    specs: list[tuple[str, dict[str, float]]] = []
    edges = [
        {"sigma_x": 1e-3, "sigma_y": 1e-3, "start_scale": 100.0, "frac_x": 1.0, "frac_y": 1.0},
        {"n": 1, "frac_x": 1.0, "frac_y": 1.0},
        {"d_x": 64, "frac_x": 1.0, "frac_y": 1.0},
        {"n": 32, "sigma_y": 10.0, "sigma_x": 1e-3, "frac_x": 1.0, "frac_y": 1.0},
        {"q": 16, "sigma_x": 10.0, "frac_x": 1.0, "frac_y": 1.0},
        {"coupling_rel": 0.95, "frac_x": 1.0, "frac_y": 1.0},
    ]
    edges.append({"at_minimizer": 1.0})
    for i in range(size):
        family = families[(i // 2) % len(families)]
        space = FAMILY_SPACES[family]
        p = _decode(space, rng.uniform(size=len(space)))
        if i % 2 == 1:
            p.update(edges[(i // 2) % len(edges)])
        specs.append((family, p))
    rows = []
    for i, (family, p) in enumerate(specs):
        at_min = bool(p.pop("at_minimizer", 0.0))
        try:
            problem, config, x0, y0 = _instance(family, p, bound, epochs=epochs, trials=trials,
                                                seed=seed + i, problem_seed=seed + i)
            if at_min and hasattr(problem, "minimizer"):
                z = problem.minimizer()
                x0, y0 = z[: problem.d_x], z[problem.d_x:]
            verdicts = {m: check(bound, problem, config, confidence=confidence,
                                 instances=2 * len(specs), measure=m, x0=x0, y0=y0)
                        for m in spec.MEASURES.values}
        except ValueError:
            continue
        values = {**problem.constants(x0, y0), **config.hyperparameters(problem.n)}
        v, w = verdicts["min"], verdicts["weighted"]
        rows.append({"family": family, "at_minimizer": at_min,
                     **{f"p_{k}": x for k, x in p.items()}, "values": values,
                     "empirical": v.empirical, "ci_lower": v.ci_lower, "ci_upper": v.ci_upper,
                     "bound": v.bound, "ratio": v.ratio, "trivial": v.trivial,
                     "w_empirical": w.empirical, "w_ci_lower": w.ci_lower,
                     "w_bound": w.bound, "w_ratio": w.ratio})
    return pd.DataFrame(rows)


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
        "(a term dropped, a term's constant halved, an exponent changed) and asks whether some "
        "admissible instance violates it significantly (one-sided lower confidence bound, "
        "simultaneous over the instance pool, above the mutant's value).",
        "",
        f"**Kill rate: {killed} of {len(report)} ({100 * killed / len(report):.0f}%).**",
        "",
        "Survivors are explained. A survivor that is pointwise at least the proven bound is "
        "itself a valid bound. Every other survivor is evidence that the proven bound is loose "
        "where the mutated term matters: the largest empirical/mutant ratio found stays below "
        "1. Those are the places where a tighter theorem would pay off.",
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
                    confidence: float = 0.99) -> pd.DataFrame:
    """Run every mutation against the pool, then the falsifier on survivors.

    Returns one row per mutation: name, kind, killed, killed_by, max_ratio (largest
    empirical / mutant found), term_share (largest share of the bound the mutated term takes on
    the pool), explanation.
    """
    import pandas as pd

    pool = instance_pool(bound, seed=seed, confidence=confidence) if pool is None else pool
    if pool.empty:
        raise ValueError("the instance pool is empty")
    aux = bound.theorem.aux
    rows = []
    for index, m in enumerate(mutations(bound)):
        with np.errstate(all="ignore"):
            vals = np.array([m.bound.evaluate(check=False, **v) for v in pool["values"]])
            wvals = np.array([m.bound.evaluate(check=False, weighted=True, **v)
                              for v in pool["values"]])
            ratios = np.concatenate([
                np.where(vals > 0, pool["empirical"].to_numpy() / vals, np.inf),
                np.where(wvals > 0, pool["w_empirical"].to_numpy() / wvals, np.inf)])
        killed = bool(np.any(pool["ci_lower"].to_numpy() > vals)
                      or np.any(pool["w_ci_lower"].to_numpy() > wvals))
        killed_by = "pool" if killed else ""
        share = math.nan
        if m.term is not None:
            f = sp.lambdify([sym(k) for k in bound.symbols],
                            m.term.subs(aux) / bound.weighted_expr, modules="numpy")
            with np.errstate(all="ignore"):
                share = float(max(f(*[v[k] for k in bound.symbols]) for v in pool["values"]))
        max_ratio = float(np.max(ratios))
        if not killed and falsify_budget >= 10:
            try:
                res = falsify(m.bound, falsify_family, budget=falsify_budget,
                              seed=seed + 1000 + index,
                              trials=16, epochs=8, recheck_trials=128, confidence=confidence)
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
                               + (f"; the term takes at most {share:.3g} of the bound on the "
                                  "pool" if math.isfinite(share) else ""))
        rows.append({"mutation": m.name, "kind": m.kind, "killed": killed,
                     "killed_by": killed_by, "max_ratio": max_ratio, "term_share": share,
                     "explanation": explanation})
    return pd.DataFrame(rows)
