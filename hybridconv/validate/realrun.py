"""The theorem's bound along a real fine-tuning run (``hybridconv check-run RUN_DIR``).

A run of ``hybridconv finetune --diagnostics-every K`` leaves ``diagnostics.json``: at the
start, every K epochs and at the end, the local constants measured on a fixed training subset
(``hybridconv.finetune.diagnostics``). :func:`check_run` turns them into the theorem's inputs
and evaluates the bound (THEORY.md, "What the theorem must say") with them:

* L_x, L_y, L_xy: the largest value measured at any point (local estimates along the run, not
  certified global constants: the bound evaluated with them is a diagnosis, not a guarantee);
* sigma_x^2, sigma_y^2: the largest heterogeneity of the minibatch components measured, with
  Theta_x = Theta_y = 0 (H3 with a constant variance: every measured point satisfies it);
* Delta = F(z_0) - F* <= F(z_0): cross-entropy is >= 0, so F(z_0) on the subset bounds it;
* n = the minibatches per epoch, T = the epochs, eta_x = lr_x, eta_y = lr_y, mu, q from the
  run's configuration, d_x = the number of ZO parameters.

It reports whether the step-size conditions C1-C4 held at the learning rates used (and the
largest admissible rates), the bound at every measured epoch beside the measured
min over earlier measured points of ||grad F||^2 (exact full-subset gradients), which additive
term dominates the bound (``tightness.term_shares``), the same with d_x replaced by the
measured effective rank tr(H_xx) / ||H_xx|| (MeZO's argument, when that estimate is
significantly positive), the bound in the limit mu -> 0 (what is left when the smoothing terms
go), and the ratio eta_y / eta_x the theorem recommends (``Bound.optimal_step_sizes``
under the natural block weights, docs/theory.md). :func:`sweep_summary` finds the empirical
best ratio from a sweep of runs, to set beside it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .. import spec
from .._io import jsonable
from ..theory.bound import Bound, hybrid_bound, natural_weights

__all__ = ["RunCheck", "check_run", "load_run", "sweep_summary"]


def load_run(run_dir: str | Path) -> dict[str, object]:
    """config.json, results.json and diagnostics.json of a run directory, and ``points``: the
    measured points without the failed ones (those recorded with an ``error``).

    Raises:
        ValueError: naming the missing or unreadable file.
    """
    run = Path(run_dir)
    out: dict[str, object] = {}
    for name in ("config", "results", "diagnostics"):
        path = run / f"{name}.json"
        if not path.exists():
            hint = (" (run hybridconv finetune with --diagnostics-every K)"
                    if name == "diagnostics" else "")
            raise ValueError(f"{path} does not exist{hint}")
        try:
            out[name] = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from None
    diag = out["diagnostics"]
    points = [p for p in diag.get("points", []) if "error" not in p]  # type: ignore[union-attr]
    if not points:
        raise ValueError(f"{run / 'diagnostics.json'} holds no measured point")
    saved = diag.get("config")  # type: ignore[union-attr]
    if saved is not None:
        cfg = out["config"]
        for key in ("method", "seed", "lr_x", "lr_y", "batch_size", "model", "task"):
            if saved.get(key) != cfg.get(key):  # type: ignore[union-attr]
                raise ValueError(f"{run / 'diagnostics.json'} belongs to another run ({key} "
                                 f"{saved.get(key)!r} != {cfg.get(key)!r} in config.json)")
    out["points"] = points
    return out


@dataclass(frozen=True)
class RunCheck:
    """What :func:`check_run` finds. ``points`` has one row per measured point."""

    run_dir: str
    values: dict[str, float]
    violated: list[str]
    admissible: dict[str, float]
    points: pd.DataFrame
    shares: dict[str, float]
    dominant: str
    bound_final: float
    measured_final: float
    effective_rank: float
    bound_final_effective: float
    violated_effective: list[str]
    predicted_ratio: float
    predicted_ratio_effective: float
    used_ratio: float
    bound_final_mu0: float = math.nan
    shares_mu0: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready: non-finite numbers become ``None``."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "points"}
        d["points"] = self.points.to_dict("records")
        return jsonable(d)


def _ratio(bound: Bound, values: dict[str, float]) -> float:
    try:
        w = natural_weights(bound, **values)
        st = bound.optimal_step_sizes(weights=w, **values)
    except ValueError:
        return math.nan
    return float(st.ratio)


def check_run(run_dir: str | Path, *, bound: Bound | None = None) -> RunCheck:
    """Evaluate the bound with the constants measured along a run (see the module doc)."""
    from .tightness import term_shares

    data = load_run(run_dir)
    cfg, res = data["config"], data["results"]
    pts = pd.DataFrame(data["points"]).sort_values("epoch").reset_index(drop=True)
    bound = bound or hybrid_bound(directions=cfg.get("directions", "gaussian"),
                                  difference=cfg.get("difference", "central"))
    resolved = res.get("resolved", {})
    if "lr_x" not in resolved or "lr_y" not in resolved:
        raise ValueError(f"{run_dir}: the bound needs both blocks trained (method hybrid), got "
                         f"method {cfg.get('method')!r}")
    for key, want in (("fo_optimizer", "sgd"), ("fo_gradient", "clean"), ("sampling", "rr")):
        if cfg.get(key, want) != want:
            raise ValueError(f"{run_dir}: the theorem covers {key} = {want!r} (SGD on the FO "
                             f"block at the clean point, random reshuffling), got "
                             f"{cfg.get(key)!r}")
    n = math.ceil(int(res["train_examples"]) / int(cfg["batch_size"]))
    pts["grad_sq"] = pts["grad_x_sq"] + pts["grad_y_sq"]
    values = {
        "L_x": float(pts["L_x"].max()), "L_y": float(pts["L_y"].max()),
        "L_xy": float(pts["L_xy"].max()),
        "sigma_x": math.sqrt(float(pts["sigma_x_sq"].max())),
        "sigma_y": math.sqrt(float(pts["sigma_y_sq"].max())),
        "Theta_x": 0.0, "Theta_y": 0.0, "Delta": float(pts["F"].iloc[0]),
        "eta_x": float(resolved["lr_x"]), "eta_y": float(resolved["lr_y"]),
        "mu": float(resolved.get("mu", 1e-3)), "q": float(cfg.get("q", 1)), "n": float(n),
        "T": float(max(int(res["epochs"]), 1)), "d_x": float(pts["d_x"].iloc[0]),
    }
    notes = ["constants are local estimates of F on the diagnostics subset (a minibatch "
             "component can be sharper than their mean), not certified global constants"]
    if res.get("status") != "completed":
        notes.append(f"the run's status is {res.get('status')!r}: its last measured point "
                     "may be before T")
    if int(pts["epoch"].iloc[0]) != 0:
        notes.append("the first measured point is not the start: Delta uses F there")
    violated = bound.violated(**values)
    fixed = {k: v for k, v in values.items() if k not in ("eta_x", "eta_y")}
    try:
        ax, ay = bound.admissible_steps(**fixed)
        admissible = {"eta_x": ax, "eta_y": ay}
    except ValueError as e:
        admissible = {"eta_x": math.nan, "eta_y": math.nan}
        notes.append(str(e))
    # an effective rank is used only where Hutchinson's trace is significantly positive
    ok = pts["trace_xx"] > 2 * pts["trace_xx_se"]
    rank = pts.loc[ok, "effective_rank"]
    d_eff = float(rank.max()) if len(rank) else math.nan
    if not math.isfinite(d_eff):
        notes.append("tr(H_xx) is not significantly positive (> 2 standard errors) at any "
                     "point (Hutchinson's estimate is too noisy, or H_xx is indefinite): the "
                     "effective-rank version is skipped")
    else:
        notes.append("the effective-rank version replaces d_x everywhere in the bound, a "
                     "heuristic: MeZO's argument replaces it in the ZO variance term only and "
                     "assumes H_xx is bounded by a PSD matrix of that rank")
    eff = ({**values, "d_x": float(max(1, math.ceil(d_eff)))}  # d_x is an integer symbol
           if math.isfinite(d_eff) else None)
    rows = []
    for _, p in pts.iterrows():
        e = int(p["epoch"])
        before = pts[pts["epoch"] < e]["grad_sq"]
        row = {"epoch": e, "step": int(p["step"]), "F": float(p["F"]),
               "grad_sq": float(p["grad_sq"]), "L_x": float(p["L_x"]),
               "L_y": float(p["L_y"]), "L_xy": float(p["L_xy"]),
               "sigma_x_sq": float(p["sigma_x_sq"]), "sigma_y_sq": float(p["sigma_y_sq"]),
               "effective_rank": float(p["effective_rank"]),
               "measured_min": float(before.min()) if len(before) else math.nan,
               "bound": math.nan, "bound_effective": math.nan, "bound_mu0": math.nan}
        if e >= 1:
            row["bound"] = bound.evaluate(check=False, **{**values, "T": float(e)})
            row["bound_mu0"] = bound.evaluate(check=False, **{**values, "T": float(e),
                                                              "mu": 0.0})
            if eff is not None:
                row["bound_effective"] = bound.evaluate(check=False, **{**eff, "T": float(e)})
        rows.append(row)
    table = pd.DataFrame(rows)
    shares = term_shares(bound, values)
    dominant = max(shares, key=shares.get)
    shares_mu0 = term_shares(bound, {**values, "mu": 0.0})
    bound_mu0 = bound.evaluate(check=False, **{**values, "mu": 0.0})
    before_T = table.loc[table["epoch"] < values["T"], "grad_sq"]
    measured_final = float(before_T.min()) if len(before_T) else math.nan
    bound_final = bound.evaluate(check=False, **values)
    bound_eff = bound.evaluate(check=False, **eff) if eff is not None else math.nan
    return RunCheck(
        run_dir=str(run_dir), values=values, violated=violated, admissible=admissible,
        points=table, shares=shares, dominant=dominant, bound_final=bound_final,
        measured_final=measured_final, effective_rank=d_eff,
        bound_final_effective=bound_eff,
        violated_effective=bound.violated(**eff) if eff is not None else [],
        predicted_ratio=_ratio(bound, fixed),
        predicted_ratio_effective=_ratio(bound, {k: v for k, v in eff.items()
                                                 if k not in ("eta_x", "eta_y")})
        if eff is not None else math.nan,
        used_ratio=values["eta_y"] / values["eta_x"], bound_final_mu0=bound_mu0,
        shares_mu0=shares_mu0, notes=notes)


def sweep_summary(run_dirs: Sequence[str | Path], *, metric: str = "test_loss") -> pd.DataFrame:
    """One row per (eta_x, eta_y) of a sweep, sorted by the ratio eta_y / eta_x: mean, sd and
    count over the completed runs (seeds) of ``metric`` (``test_loss``, lower is better, or
    ``accuracy``, higher is better); ``failed`` counts runs that did not complete (diverged),
    left out of the mean; ``best`` marks the empirical best.

    Raises:
        ValueError: for an unknown metric, a run without both learning rates, or a sweep
            without a completed run.
    """
    metric = spec.validate("metric", metric)
    rows = []
    for d in run_dirs:
        path = Path(d) / "results.json"
        if not path.exists():
            raise ValueError(f"{path} does not exist")
        res = json.loads(path.read_text())
        r = res.get("resolved", {})
        if "lr_x" not in r or "lr_y" not in r:
            raise ValueError(f"{path}: not a hybrid run (needs lr_x and lr_y)")
        rows.append({"lr_x": r["lr_x"], "lr_y": r["lr_y"], "seed": res["config"]["seed"],
                     "value": res[metric] if res["status"] == "completed" else math.nan,
                     "status": res["status"]})
    df = pd.DataFrame(rows)
    agg = df.groupby(["lr_x", "lr_y"]).agg(
        mean=("value", "mean"), sd=("value", "std"), seeds=("value", "count"),
        failed=("status", lambda s: int((s != "completed").sum()))).reset_index()
    if not agg["mean"].notna().any():
        raise ValueError("no completed run in the sweep")
    agg.insert(0, "ratio", agg["lr_y"] / agg["lr_x"])
    agg = agg.sort_values("ratio", ignore_index=True)
    best = agg["mean"].idxmin() if metric == "test_loss" else agg["mean"].idxmax()
    agg["best"] = agg.index == best
    agg["metric"] = metric
    return agg
