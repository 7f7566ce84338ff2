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

It reports whether the step-size conditions held at the learning rates used (and the
largest admissible rates) and, each as bound / measured:

* under H1 (``hybrid_bound()``): the bound on min_t E||grad F(z_t)||^2 at every measured epoch
  beside the measured min over earlier measured points of ||grad F||^2 (exact full-subset
  gradients), and which additive term dominates (``theory.terms.term_shares``);
* under the effective rank ER (``hybrid_bound(assumption="effective-rank")``): the same with
  r = (tr|H_xx| + ||H_xy||_*) / (L_x + L_xy) measured by stochastic Lanczos quadrature
  (``finetune.diagnostics``), its largest upper 95% confidence value over the points (the
  estimate + 2 standard errors; where the run's diagnostics have no spectrum, it is skipped
  with a note);
* the adapter-only measure (1/T) sum_{t<T} E||grad_y F(z_t)||^2 (``measure="adapter"``),
  under both, against the mean of ||grad_y F||^2 over the measured points before T (the
  average over all epochs when the diagnostics ran every epoch, a sample of it otherwise);

the bound in the limit mu -> 0 (what is left when the smoothing terms go), and the ratio
eta_y / eta_x the theorem recommends (``Bound.optimal_step_sizes`` under the natural block
weights, docs/theory.md) under H1 and ER. :func:`sweep_summary` finds the empirical best ratio
from a sweep of runs, to set beside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .. import spec
from .._io import jsonable, read_json_object
from ..theory.bound import Bound, hybrid_bound, natural_weights
from ..theory.terms import term_shares

__all__ = ["RunCheck", "check_run", "load_run", "predicted_ratio", "sweep_summary"]


POINT_KEYS = ("epoch", "step", "F", "grad_x_sq", "grad_y_sq", "L_x", "L_y", "L_xy",
              "sigma_x_sq", "sigma_y_sq", "d_x", "trace_xx", "trace_xx_se", "effective_rank")
"""What every measured point of diagnostics.json holds."""
UNDEFINED_OK = ("effective_rank",)
"""Point keys that may be undefined (NaN, or null in strict JSON): the effective rank
tr(H_xx) / L_x where H_xx = 0, as at the start of a run with a zero-initialised head (the loss
does not depend on the base weights there)."""


def _read_object(path: Path) -> dict:
    """A run file's JSON object; ``ValueError`` naming the file otherwise."""
    return read_json_object(path, "rerun the fine-tuning run that wrote it")


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
        out[name] = _read_object(path)
    diag = out["diagnostics"]
    dpath = run / "diagnostics.json"
    if not isinstance(diag.get("points", []), list) or not all(  # type: ignore[union-attr]
            isinstance(p, dict) for p in diag.get("points", [])):  # type: ignore[union-attr]
        raise ValueError(f"{dpath} is malformed: 'points' must be a list of objects")
    points = [p for p in diag.get("points", []) if "error" not in p]  # type: ignore[union-attr]
    if not points:
        raise ValueError(f"{dpath} holds no measured point")
    for p in points:
        for key in POINT_KEYS:
            v = p.get(key)
            if key in UNDEFINED_OK and key in p and (v is None or (
                    isinstance(v, float) and math.isnan(v))):
                p[key] = math.nan
                continue
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ValueError(f"{dpath} is malformed: a point's {key!r} must be a finite "
                                 f"number, got {v!r}")
        for key in ("sigma_x_sq", "sigma_y_sq", "L_x", "L_y", "L_xy", "d_x", "grad_x_sq",
                    "grad_y_sq", "epoch", "step"):
            if p[key] < 0:
                raise ValueError(f"{dpath} is malformed: {key} must be >= 0, got {p[key]!r} "
                                 f"at epoch {p['epoch']}")
    res, cfg = out["results"], out["config"]
    rpath = run / "results.json"
    for key, kind in (("resolved", dict), ("train_examples", int), ("epochs", int),
                      ("status", str)):
        if not isinstance(res.get(key), kind) or isinstance(res.get(key), bool):  # type: ignore[union-attr]
            raise ValueError(f"{rpath} is malformed: {key!r} must be a {kind.__name__}, got "
                             f"{res.get(key)!r}")  # type: ignore[union-attr]
    for key, v in res["resolved"].items():  # type: ignore[index]
        if key in ("lr_x", "lr_y", "mu") and (isinstance(v, bool) or not isinstance(
                v, int | float) or not math.isfinite(v) or v <= 0):
            raise ValueError(f"{rpath} is malformed: resolved {key} must be a finite number "
                             f"> 0, got {v!r}")
    bs = cfg.get("batch_size")  # type: ignore[union-attr]
    if isinstance(bs, bool) or not isinstance(bs, int) or bs < 1:
        raise ValueError(f"{run / 'config.json'} is malformed: 'batch_size' must be an "
                         f"integer >= 1, got {bs!r}")
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
    """What :func:`check_run` finds. ``points`` has one row per measured point.

    ``bound_final`` / ``measured_final``: H1, min-measure; ``*_er``: under the effective rank
    (``effective_rank``, the r used, NaN where unmeasured); ``*_adapter``: the adapter-only
    measure; ``ratios`` the bound / measured ratios by name."""

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
    bound_final_er: float
    violated_er: list[str]
    measured_adapter: float
    bound_adapter: float
    bound_adapter_er: float
    predicted_ratio: float
    predicted_ratio_er: float
    used_ratio: float
    bound_final_mu0: float = math.nan
    shares_mu0: dict[str, float] = field(default_factory=dict)
    shares_er: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ratios(self) -> dict[str, float]:
        """bound / measured: H1 (min), ER (min), H1 adapter, ER adapter."""
        def q(b: float, m: float) -> float:
            return b / m if m > 0 and math.isfinite(b) else math.nan

        return {"h1": q(self.bound_final, self.measured_final),
                "effective-rank": q(self.bound_final_er, self.measured_final),
                "h1 adapter": q(self.bound_adapter, self.measured_adapter),
                "effective-rank adapter": q(self.bound_adapter_er, self.measured_adapter)}

    def as_dict(self) -> dict[str, object]:
        """JSON-ready: non-finite numbers become ``None``."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "points"}
        d["points"] = self.points.to_dict("records")
        d["ratios"] = self.ratios
        return jsonable(d)


def predicted_ratio(bound: Bound, values: dict[str, float]) -> float:
    """The theorem's best eta_y / eta_x under the natural block weights at ``values`` (the
    constants and n, T, mu, q; no step sizes); NaN where no admissible pair exists."""
    try:
        w = natural_weights(bound, **values)
        st = bound.optimal_step_sizes(weights=w, **values)
    except ValueError:
        return math.nan
    return float(st.ratio)


def _effective_rank(pts: pd.DataFrame, notes: list[str]) -> float:
    """The largest upper 95% confidence value (estimate + 2 se) of ER's r over the points, at
    least 1; NaN (with a note) where the diagnostics have no spectrum."""
    if "effective_rank_er" not in pts or not pts["effective_rank_er"].notna().any():
        notes.append("the diagnostics have no spectrum of H_xx (stochastic Lanczos "
                     "quadrature: diagnostics from before it, or slq_steps = 1): the "
                     "effective-rank bound is skipped")
        return math.nan
    se = pts["effective_rank_er_se"].fillna(0.0)
    upper = (pts["effective_rank_er"] + 2 * se).max()
    notes.append("the effective rank r = (tr|H_xx| + ||H_xy||_*) / (L_x + L_xy) is measured on "
                 "F (the subset's mean), not on every component, and taken at its largest "
                 "upper confidence value (estimate + 2 standard errors) over the points")
    return float(max(1.0, upper))


def _claim(bound: Bound, values: dict[str, float], measure: str = "min") -> float:
    """The bound's value where its conditions hold; NaN where they do not (the theorem claims
    nothing there: evaluated anyway, its descent coefficients can be negative)."""
    if bound.violated(**values):
        return math.nan
    return bound.evaluate(check=False, measure=measure, **values)


def check_run(run_dir: str | Path, *, bound: Bound | None = None) -> RunCheck:
    """Evaluate the bound with the constants measured along a run (see the module doc)."""
    data = load_run(run_dir)
    cfg, res = data["config"], data["results"]
    pts = pd.DataFrame(data["points"]).sort_values("epoch").reset_index(drop=True)
    directions = cfg.get("directions", "gaussian")
    difference = cfg.get("difference", "central")
    bound = bound or hybrid_bound(directions=directions, difference=difference)
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
    r = _effective_rank(pts, notes)
    er_bound = er_values = None
    if math.isfinite(r):
        try:
            er_bound = hybrid_bound(assumption="effective-rank", directions=directions,
                                    difference=difference)
            er_values = {**values, "r": min(r, values["d_x"])}
        except ValueError as e:  # e.g. Rademacher directions: no ER theorem
            notes.append(f"no effective-rank theorem here: {e}")
    measured_T = pts["epoch"] < values["T"]
    if len(pts) < values["T"] + 1:
        notes.append("the adapter-only measure is the mean of ||grad_y F||^2 over the measured "
                     "points before T, a sample of the average over all epochs (diagnostics "
                     "every epoch make it the average itself)")
    rows = []
    for _, p in pts.iterrows():
        e = int(p["epoch"])
        before = pts[pts["epoch"] < e]
        row = {"epoch": e, "step": int(p["step"]), "F": float(p["F"]),
               "grad_sq": float(p["grad_sq"]), "grad_y_sq": float(p["grad_y_sq"]),
               "L_x": float(p["L_x"]), "L_y": float(p["L_y"]), "L_xy": float(p["L_xy"]),
               "sigma_x_sq": float(p["sigma_x_sq"]), "sigma_y_sq": float(p["sigma_y_sq"]),
               "effective_rank_er": float(p.get("effective_rank_er", math.nan)),
               "effective_rank_er_se": float(p.get("effective_rank_er_se", math.nan)),
               "effective_rank_pos": float(p.get("effective_rank_pos", math.nan)),
               "measured_min": float(before["grad_sq"].min()) if len(before) else math.nan,
               "measured_adapter": float(before["grad_y_sq"].mean()) if len(before)
               else math.nan,
               "bound": math.nan, "bound_er": math.nan, "bound_mu0": math.nan,
               "bound_adapter": math.nan, "bound_adapter_er": math.nan}
        if e >= 1:
            at = {**values, "T": float(e)}
            row["bound"] = _claim(bound, at)
            row["bound_mu0"] = _claim(bound, {**at, "mu": 0.0})
            row["bound_adapter"] = _claim(bound, at, "adapter")
            if er_bound is not None:
                at_er = {**er_values, "T": float(e)}
                row["bound_er"] = _claim(er_bound, at_er)
                row["bound_adapter_er"] = _claim(er_bound, at_er, "adapter")
        rows.append(row)
    table = pd.DataFrame(rows)
    shares = term_shares(bound, values) if not violated else {}
    if violated:
        notes.append("the conditions fail under H1 at the rates used: the theorem claims "
                     "nothing there (its bounds are NaN; the largest admissible rates are "
                     "given)")
    violated_er = er_bound.violated(**er_values) if er_bound else []
    if violated_er:
        notes.append("the conditions fail under the effective rank at the rates used: no "
                     "claim there either")
    before_T = table.loc[measured_T, "grad_sq"]
    adapter_T = table.loc[measured_T, "grad_y_sq"]
    er_fixed = ({k: v for k, v in er_values.items() if k not in ("eta_x", "eta_y")}
                if er_values is not None else None)
    return RunCheck(
        run_dir=str(run_dir), values=values, violated=violated, admissible=admissible,
        points=table, shares=shares, dominant=max(shares, key=shares.get) if shares else "",
        bound_final=_claim(bound, values),
        measured_final=float(before_T.min()) if len(before_T) else math.nan,
        effective_rank=r,
        bound_final_er=_claim(er_bound, er_values) if er_bound else math.nan,
        violated_er=violated_er,
        measured_adapter=float(adapter_T.mean()) if len(adapter_T) else math.nan,
        bound_adapter=_claim(bound, values, "adapter"),
        bound_adapter_er=_claim(er_bound, er_values, "adapter") if er_bound else math.nan,
        predicted_ratio=predicted_ratio(bound, fixed),
        predicted_ratio_er=predicted_ratio(er_bound, er_fixed) if er_bound else math.nan,
        used_ratio=values["eta_y"] / values["eta_x"],
        bound_final_mu0=_claim(bound, {**values, "mu": 0.0}),
        shares_mu0=term_shares(bound, {**values, "mu": 0.0})
        if not bound.violated(**{**values, "mu": 0.0}) else {},
        shares_er=term_shares(er_bound, er_values) if er_bound and not violated_er else {},
        notes=notes)


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
        res = _read_object(path)
        r = res.get("resolved", {})
        if not isinstance(r, dict) or "lr_x" not in r or "lr_y" not in r:
            raise ValueError(f"{path}: not a hybrid run (needs lr_x and lr_y)")
        try:
            rows.append({"lr_x": float(r["lr_x"]), "lr_y": float(r["lr_y"]),
                         "seed": res["config"]["seed"],
                         "value": float(res[metric]) if res["status"] == "completed"
                         else math.nan, "status": res["status"]})
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path} is malformed: {type(e).__name__} {e}; rerun the "
                             "fine-tuning run that wrote it") from None
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
