"""How tight is the bound? The tightness report: one row per problem family and regime.

:func:`tightness_table` runs, for each family of :data:`FAMILIES` and each regime of
:data:`~.searches.REGIMES`, the search of :func:`~.searches.search_regime` (the block-weighted
measure, against the family's bound) and says which term of the bound dominates at the worst
instance found (:func:`hybridconv.theory.terms.term_shares`); :func:`tightness_report` writes
``docs/tightness.md`` and ``docs/tightness.csv`` with the table, the best ratio per family, the
isotropic noise floor (:mod:`.floors`) and the PEPit comparison (:mod:`.pepit`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import spec
from .._io import write_text_atomic
from ..theory.terms import term_shares
from .falsify import FAMILY_BOUNDS, family_bound
from .floors import isotropic_noise_floor
from .pepit import PEPIT_MISSING, pepit_gd_comparison, pepit_versions
from .searches import REGIMES, Found, search_regime

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FAMILIES", "REGIMES", "COLUMNS", "AIM", "BEST_AIM", "tightness_report",
           "tightness_table"]

FAMILIES: tuple[str, ...] = ("quadratic", "nonconvex", "gensmooth", "lora", "hetero", "lowrank")
"""Problem families of the report (each against the bound of ``falsify.FAMILY_BOUNDS``)."""

COLUMNS: tuple[str, ...] = (
    "family", "regime", "measure", "epochs", "max_ratio", "ci_lower", "ci_upper",
    "recheck_verdict", "search_ratio", "empirical", "bound", "dominant_term", "dominant_share",
    "second_term", "second_share", "evaluations", "skipped", "seconds", "instance")
"""Columns of the report's DataFrame and CSV. ``max_ratio`` is the re-checked ratio of the
worst instance (fresh seed, more trials) and ``ci_lower``, ``ci_upper`` its one-sided
confidence bounds divided by the bound; ``search_ratio`` is the ratio the search saw (common
random numbers, fewer trials, so biased upward by the selection)."""

AIM = 0.1
"""The bound should be within 10x of the worst instance found: ratio >= AIM."""
BEST_AIM = 0.5
"""The best ratio found per family should be at least this (within 2x somewhere)."""


def _compact(d: Mapping[str, object]) -> str:
    def fmt(v: object) -> object:
        if isinstance(v, float):
            return int(v) if v.is_integer() and abs(v) < 1e6 else float(f"{v:.4g}")
        return v

    return json.dumps({k: fmt(v) for k, v in d.items()}, separators=(",", ":"))


def _row(family: str, regime: str, epochs: int, found: Found | None, seconds: float,
         error: str = "") -> dict[str, object]:
    if found is None:
        return {c: math.nan for c in COLUMNS} | {
            "family": family, "regime": regime, "measure": "weighted", "epochs": epochs,
            "recheck_verdict": "none", "dominant_term": "", "second_term": "",
            "seconds": seconds, "instance": json.dumps({"error": error[:200]})}
    v = found.verdict
    shares = sorted(term_shares(family_bound(family), found.values).items(),
                    key=lambda kv: -kv[1])
    second = shares[1] if len(shares) > 1 else ("", 0.0)
    return {
        "family": family, "regime": regime, "measure": v.measure, "epochs": epochs,
        "max_ratio": float(v.ratio), "ci_lower": float(v.ci_lower / v.bound),
        "ci_upper": float(v.ci_upper / v.bound), "recheck_verdict": v.verdict,
        "search_ratio": float(found.search_ratio), "empirical": float(v.empirical),
        "bound": float(v.bound), "dominant_term": shares[0][0],
        "dominant_share": float(shares[0][1]), "second_term": second[0],
        "second_share": float(second[1]), "evaluations": int(found.evaluations),
        "skipped": int(found.skipped), "seconds": seconds, "instance": _compact(found.worst),
    }


def _search_job(family: str, regime: str, budget: int, seed: int, trials: int, epochs: int,
                recheck_trials: int, confidence: float, quick: bool) -> dict[str, object]:
    t0 = time.perf_counter()
    try:
        found = search_regime(family, regime, budget=budget, seed=seed, trials=trials,
                              epochs=epochs, recheck_trials=recheck_trials,
                              confidence=confidence, quick=quick)
        return _row(family, regime, epochs, found, time.perf_counter() - t0)
    except ValueError as e:  # no admissible instance in the regime
        return _row(family, regime, epochs, None, time.perf_counter() - t0, str(e))


def _settings(budget: int, seed: int, trials: int, epochs: int,
              quick: bool) -> dict[str, object]:
    """The validated settings a report runs with (``quick`` shrinks them)."""
    budget = spec.validate("budget", budget)
    if budget < 10:
        raise ValueError(f"budget must be an integer >= 10, got {budget!r}")
    seed, trials, epochs = (spec.validate(k, v) for k, v in
                            (("seed", seed), ("trials", trials), ("epochs", epochs)))
    if trials < 2:
        raise ValueError(f"trials must be an integer >= 2, got {trials!r}")
    if quick:
        budget, trials, epochs = 10, 4, 5
    return {"budget": budget, "seed": seed, "trials": trials, "epochs": epochs,
            "recheck_trials": 8 * trials,
            "noise_floor_epochs": 10 if quick else max(30, 5 * epochs), "quick": quick}


def tightness_table(*, budget: int = 60, seed: int = 0, trials: int = 32, epochs: int = 20,
                    quick: bool = False, workers: int = 1, progress: bool = False,
                    families: tuple[str, ...] = FAMILIES,
                    regimes: tuple[str, ...] = tuple(REGIMES)) -> pd.DataFrame:
    """The report's table without writing anything: one row per (family, regime), columns
    :data:`COLUMNS` (arguments as in :func:`tightness_report`). The searches are independent
    and seeded, so ``workers > 1`` (joblib processes, :func:`hybridconv.parallel.run_jobs`)
    gives the same numbers as a serial run, except the ``seconds`` column."""
    import pandas as pd

    from ..parallel import run_jobs

    st = _settings(budget, seed, trials, epochs, quick)
    workers = spec.validate("workers", workers)
    for family in families:
        if family not in FAMILIES:
            raise ValueError(f"families must be names from {FAMILIES}, got {family!r}")
    for regime in regimes:
        if regime not in REGIMES:
            raise ValueError(f"regimes must be names from {tuple(REGIMES)}, got {regime!r}")
    jobs = [{"family": family, "regime": regime, "budget": st["budget"], "seed": seed,
             "trials": st["trials"], "recheck_trials": st["recheck_trials"],
             "epochs": st["noise_floor_epochs"] if regime == "noise floor" else st["epochs"],
             "confidence": 0.99, "quick": quick}
            for family in families for regime in regimes]
    rows = run_jobs(_search_job, jobs, workers=workers, progress=progress, desc="tightness")
    return pd.DataFrame(rows, columns=list(COLUMNS))


# -- the report ----------------------------------------------------------------------------------
_WHY: dict[str, str] = {
    "initial gap": (
        "the descent keeps gamma <= 7/8 of the first-order decrease, and a run that has not "
        "converged in T epochs spends less of the gap than the bound charges (the small-T "
        "bound 2 max_b(eta_b Lambda_b) Delta caps this); for nonconvex, gensmooth and LoRA f* "
        "is a certified lower bound, so Delta also counts the gap to the true infimum"),
    "ZO variance and the x drift it causes": (
        "the Young weights (1 + 1/8)^3 and gamma <= 7/8 (0.81 against the exact floor's 1/2 "
        "per Lambda_x eta_x^2 c_v sigma_x^2 / q), the largest curvature Lambda_x where a "
        "stationary run sees the average one, and near the caps the drift the ZO noise "
        "causes; for LoRA and gensmooth sigma_x is a worst case over the certified region"),
    "smoothing bias": (
        "beta = L_x mu sqrt(d_x) bounds the bias for any L-smooth function; on a quadratic the "
        "bias is 0"),
    "smoothing variance": (
        "(L_x mu / 2)^2 E||u||^6 is exact for forward differences on an isotropic quadratic, "
        "times the Young weight 1 + 1/theta_mu = 9; the central difference of a quadratic has "
        "no remainder at all"),
    "y-block reshuffling drift": (
        "the in-epoch deviation is bounded with a two-term Young split and the drift's "
        "feedback absorbed with rho = 1/4"),
}


def _why(term: str) -> str:
    for role, text in _WHY.items():
        if term.endswith(f"({role})"):
            return text
    return "a term of the proof"


def _results_table(df: pd.DataFrame) -> list[str]:
    lines = ["| family | regime | epochs | max ratio | ci | search | recheck | dominant term "
             "(share) | second (share) | instance |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in df.itertuples(index=False):
        if not math.isfinite(float(r.max_ratio)):
            lines.append(f"| {r.family} | {r.regime} | {r.epochs} | n/a | | | none | | | "
                         f"`{r.instance}` |")
            continue
        lines.append(
            f"| {r.family} | {r.regime} | {r.epochs} | {r.max_ratio:.3g} | "
            f"[{r.ci_lower:.3g}, {r.ci_upper:.3g}] | {r.search_ratio:.3g} | "
            f"{r.recheck_verdict} | {r.dominant_term} ({r.dominant_share:.0%}) | "
            f"{r.second_term} ({r.second_share:.0%}) | `{r.instance}` |")
    return lines


def _summary(df: pd.DataFrame) -> list[str]:
    fin = df[np.isfinite(df["max_ratio"].astype(float))]
    lines = ["## Summary", ""]
    worst = fin.loc[fin["max_ratio"].idxmax()] if len(fin) else None
    lines.append(f"- Rows: {len(df)}; violations at 99% confidence: "
                 f"{int((df['recheck_verdict'] == 'violated').sum())}; largest ratio "
                 + (f"{worst['max_ratio']:.3g} ({worst['family']}, {worst['regime']})."
                    if worst is not None else "none."))
    lines.append(f"- Best ratio per family (aim: >= {BEST_AIM}):")
    for family, grp in fin.groupby("family", sort=False):
        best = grp.loc[grp["max_ratio"].idxmax()]
        mark = "met" if best["max_ratio"] >= BEST_AIM else "missed"
        lines.append(f"  - {family} ({FAMILY_BOUNDS[family][0]}, {FAMILY_BOUNDS[family][1]} "
                     f"directions): {best['max_ratio']:.3g} in the {best['regime']} regime "
                     f"({mark}).")
    met = fin[fin["max_ratio"] >= AIM]
    lines.append(f"- Within 10x (ratio >= {AIM}): {len(met)} of {len(fin)} rows.")
    loose = fin[fin["max_ratio"] < AIM]
    if len(loose):
        lines.append(f"- Looser than 10x: {len(loose)} rows. By the term that dominates there:")
        for term, grp in loose.groupby("dominant_term", sort=False):
            where = "; ".join(f"{r.family}/{r.regime} {r.max_ratio:.2g} "
                              f"({r.dominant_share:.0%})" for r in grp.itertuples())
            lines.append(f"  - **{term}**: {where}. Why loose: {_why(str(term))}.")
    missing = df[~np.isfinite(df["max_ratio"].astype(float))]
    if len(missing):
        lines.append("- No admissible instance found: "
                     + "; ".join(f"{r.family}/{r.regime}" for r in missing.itertuples()) + ".")
    return lines


def _floor_section(floor: pd.DataFrame | str) -> list[str]:
    lines = ["## The stationary noise floor of an isotropic quadratic", ""]
    if isinstance(floor, str):
        return lines + [floor, ""]
    lines += [
        "Hybrid, random reshuffling, q = 1, Gaussian directions, n = 8, d_x = 16, d_y = 4, "
        "H = I, sigma_x = 1, sigma_y = 0 (`hybridconv.validate.floors.isotropic_noise_floor`): "
        "the closed-form floor of E||grad F||^2 (first order in eta_x) against the bound as "
        "T -> infinity, at step sizes that are a fraction of their caps on both blocks.",
        "",
        "| fraction of the caps | eta_x | eta_y | floor | bound | floor / bound | gamma_x |",
        "|---|---|---|---|---|---|---|"]
    for r in floor.itertuples(index=False):
        lines.append(f"| {r.fraction:g} | {r.eta_x:.4g} | {r.eta_y:.4g} | {r.floor:.4g} | "
                     f"{r.bound:.4g} | {r.ratio:.3f} | {r.gamma_x:.3f} |")
    lines += ["", "Near the caps the descent coefficient gamma_x falls (the ZO noise's own drift "
              "and the multiplicative noise take their share) and the ratio with it.", ""]
    return lines


def _pepit_section(pepit: pd.DataFrame | str) -> list[str]:
    lines = ["## Deterministic first-order sub-case against PEPit", ""]
    if isinstance(pepit, str):
        return lines + [pepit + "."]
    lines += [
        "No ZO block, n = 1, sigma_y = Theta_y = 0: gradient descent with step eta on an "
        "L-smooth nonconvex f with f(x_0) - f* <= Delta. `ours` is "
        "`hybrid_bound().special_case(\"no_zo_block\")` = min(Delta / (gamma_y eta T), "
        "2 L Delta) (C2: eta L <= 1/2). `PEPit` is the worst case of min_{t<T} "
        "||grad f(x_t)||^2 over PEPit's `SmoothFunction` class with a minimizer x* and, at x_0 "
        ".. x_T, the necessary conditions f(x_t) - f* >= ||grad f(x_t)||^2 / (2L) of a global "
        "minimum (the SDP's dual value: an upper bound on the exact worst case); `witness` is "
        "gradient descent run on a Huber function (a lower bound on it). The exact worst case "
        f"lies between the two. Versions: {pepit_versions()}.",
        "",
        "| L | Delta | eta | T | PEPit | witness | ours | PEPit / ours |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in pepit.itertuples(index=False):
        lines.append(f"| {r.L:g} | {r.Delta:g} | {r.eta:.4g} | {r.T} | {r.pepit:.5g} | "
                     f"{r.witness:.5g} | {r.ours:.5g} | {r.ratio:.3f} |")
    lines += ["", "Our bound is above PEPit's worst case at every point (PEPit / ours <= 1: "
                  f"{bool((pepit['ratio'] <= 1 + 1e-6).all())}); it is loose by a factor of "
                  f"{1 / pepit['ratio'].max():.2f} to {1 / pepit['ratio'].min():.2f}. At T = 1 "
                  "the gradient-gap bound 2 L Delta is the worst case itself; for larger T the "
                  "descent keeps gamma_y <= 7/8 of eta ||grad f||^2 per step where gradient "
                  "descent achieves eta (1 - L eta / 2) ||grad f||^2."]
    return lines


def _markdown(df: pd.DataFrame, pepit: pd.DataFrame | str, floor: pd.DataFrame | str, *,
              settings: Mapping[str, object], seconds: float) -> str:
    lines = [
        "# Tightness report: how close the bound comes to the worst instance found",
        "",
        "Generated by `hybridconv check --report` (`hybridconv.validate.tightness."
        "tightness_report`; do not edit by hand). Regenerate with",
        "",
        "```",
        f"hybridconv check --report --budget {settings['budget']} --seed {settings['seed']}"
        + (" --quick" if settings["quick"] else "") + " --force",
        "```",
        "",
        f"Settings: {', '.join(f'{k} = {v}' for k, v in settings.items())}; "
        f"{seconds:.0f} s in all."
        + ("" if set(df["family"]) == set(FAMILIES) and set(df["regime"]) == set(REGIMES)
           else f" This is a subset of the rows (families {sorted(set(df['family']))}, "
                f"regimes {sorted(set(df['regime']))}: `tightness_report(families=..., "
                "regimes=...)`)."),
        "",
        f"**Aim.** The bound within 10x of the worst instance found (ratio >= {AIM}), and "
        f"within 2x somewhere in every family (best ratio >= {BEST_AIM}). Where it is looser, "
        "the table says which term of the bound dominates there (`hybridconv.theory.terms`: "
        "the numerator B = Delta / (n T) + N_ep / n split by noise source, each term's share "
        "at the worst instance).",
        "",
        "**Method.** For each family, against the bound of the hypotheses it satisfies "
        "(gensmooth: H1-gen with sphere directions, whose perturbation segments a finite G "
        "certifies; lowrank: the effective rank; the others: H1 with Gaussian directions), and "
        "each regime, the falsifier (`falsify`, differential evolution seeded by a Latin "
        "hypercube, common random numbers) searches the regime's space inside the theorem's "
        "conditions for the largest empirical / bound; the worst instance is re-checked with "
        f"{settings['recheck_trials']} fresh trials (`max ratio`, with one-sided 99% "
        "confidence bounds divided by the bound: `ci`). Outside the noise-floor regime the "
        "worst instance is then polished: its step fractions moved to the top of their range "
        "(one or both; LoRA: also its smallest certified region, region_scale = 1), "
        "re-checked the same way, the largest ratio kept (its `search` is then that "
        "re-check). `search` is the ratio the search saw "
        "(biased upward by the selection). A search is not exhaustive: each max is a lower "
        "bound on the worst ratio of its regime. Every row measures the block-weighted "
        "average (1/T) sum_{t<T} E[eta_x ||grad_x F||^2 + eta_y ||grad_y F||^2] against the "
        "bound on it: epoch 0 is one term of T and cannot decide a row.",
        "",
        "## Regimes",
        "",
        "| regime | restriction |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in REGIMES.items()],
        "",
        "## Results",
        "",
        *_results_table(df),
        "",
        *_summary(df),
        "",
        *_floor_section(floor),
        *_pepit_section(pepit),
    ]
    return "\n".join(lines) + "\n"


def tightness_report(out_dir: str | Path = ".", *, budget: int = 60, seed: int = 0,
                     trials: int = 32, epochs: int = 20, quick: bool = False,
                     force: bool = False, workers: int = 1, progress: bool = False,
                     families: tuple[str, ...] = FAMILIES,
                     regimes: tuple[str, ...] = tuple(REGIMES)) -> pd.DataFrame:
    """Search every (family, regime) for the largest weighted empirical / bound ratio; write the
    report.

    Writes ``out_dir/docs/tightness.md`` and ``out_dir/docs/tightness.csv`` (``docs/`` is
    created), each atomically (a temporary file, then ``os.replace``).

    Args:
        out_dir: the directory that receives ``docs/``.
        budget: instances simulated per (family, regime) (>= 10).
        seed: seeds the searches, the problems and the common random numbers.
        trials, epochs: per simulated instance in the search; the re-check uses 8 x trials,
            the noise-floor regime 5 x epochs (at least 30).
        quick: shrink everything (budget 10, 4 trials, 5 epochs, 10 noise-floor epochs, a
            smaller large-d_x range, fewer PEPit points) to run in a few minutes.
        force: overwrite existing files; without it an existing file is an error.
        workers: joblib processes for the (family, regime) searches (same numbers).
        progress: a tqdm bar over the searches.
        families, regimes: the rows (default: all of :data:`FAMILIES` and ``REGIMES``).

    Returns:
        the report, one row per (family, regime), columns :data:`COLUMNS`; ``attrs["pepit"]``
        holds the PEPit comparison (a DataFrame) or the reason it is missing (a string), and
        ``attrs["floor"]`` the isotropic noise floor.

    Raises:
        ValueError: naming the file when it exists and ``force`` is False (checked before any
            computation), or for bad arguments.
    """
    settings = _settings(budget, seed, trials, epochs, quick)
    docs = Path(out_dir) / "docs"
    md_path, csv_path = docs / "tightness.md", docs / "tightness.csv"
    if not force:
        for path in (md_path, csv_path):
            if path.exists():
                raise ValueError(f"{path} exists; pass force=True to overwrite it")
    start = time.perf_counter()
    df = tightness_table(budget=budget, seed=seed, trials=trials, epochs=epochs, quick=quick,
                         workers=workers, progress=progress, families=families,
                         regimes=regimes)
    try:
        pepit: pd.DataFrame | str = pepit_gd_comparison(
            etas=(1 / 2, 1 / 32) if quick else (1 / 2, 1 / 8, 1 / 32),
            T_values=(1, 5, 10) if quick else (1, 2, 5, 10, 20))
    except ImportError:
        pepit = PEPIT_MISSING
    floor = isotropic_noise_floor(fractions=(0.05, 1.0) if quick else (0.01, 0.05, 0.2, 0.5,
                                                                       1.0))
    df.attrs["pepit"], df.attrs["floor"] = pepit, floor
    text = _markdown(df, pepit, floor, settings=settings, seconds=time.perf_counter() - start)
    docs.mkdir(parents=True, exist_ok=True)
    write_text_atomic(csv_path, df.to_csv(index=False))
    write_text_atomic(md_path, text)
    return df
