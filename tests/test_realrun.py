"""``hybridconv check-run``: the bound with constants measured along a run."""

from __future__ import annotations

import json
import math

import pytest

from hybridconv.cli import main
from hybridconv.theory.bound import hybrid_bound
from hybridconv.validate.realrun import check_run, sweep_summary


def point(epoch, step, **kw):
    base = {"epoch": epoch, "step": step, "L_x": 4.0, "L_y": 1.0, "L_xy": 2.0,
            "L_x_residual": 1e-3, "L_y_residual": 1e-3, "L_xy_residual": 1e-3, "L_x_hvps": 10,
            "L_y_hvps": 10, "L_xy_hvps": 20, "trace_xx": 40.0, "trace_xx_se": 5.0,
            "trace_probes": 8, "effective_rank": 10.0, "F": 0.69, "grad_x_sq": 0.1,
            "grad_y_sq": 0.02, "s_x_sq": 5.0, "s_y_sq": 1.0, "sigma_x_sq": 0.2,
            "sigma_y_sq": 0.05, "batch_size": 16, "examples": 32, "d_x": 1000, "d_y": 50,
            "hvps": 48, "seconds": 1.0, "trace_abs_xx": 50.0, "trace_abs_xx_se": 4.0,
            "trace_pos_xx": 45.0, "trace_pos_xx_se": 4.0, "nuclear_xy": 10.0,
            "nuclear_xy_se": 3.0, "effective_rank_er": 10.0, "effective_rank_er_se": 0.5,
            "effective_rank_pos": 11.25}
    base.update(kw)
    return base


def write_run(path, points, *, lr_x=1e-4, lr_y=5e-2, seed=0, epochs=4, test_loss=0.69,
              method="hybrid"):
    path.mkdir(parents=True)
    cfg = {"method": method, "batch_size": 16, "q": 1, "seed": seed, "directions": "gaussian",
           "difference": "central"}
    resolved = {"lr_x": lr_x, "lr_y": lr_y, "mu": 1e-3} if method == "hybrid" else {
        "lr_y": lr_y}
    (path / "config.json").write_text(json.dumps(cfg))
    (path / "results.json").write_text(json.dumps({
        "train_examples": 64, "epochs": epochs, "resolved": resolved, "config": cfg,
        "test_loss": test_loss, "accuracy": 1 - test_loss, "status": "completed"}))
    (path / "diagnostics.json").write_text(json.dumps({"points": points}))
    return path


def test_check_run_evaluates_the_bound_with_the_measured_constants(tmp_path):
    """lr_x = 1e-5 (admissible under H1 and ER): every bound is the theorem's value."""
    run = write_run(tmp_path / "r", [point(0, 0), point(2, 8, L_x=5.0, sigma_x_sq=0.3,
                                                        grad_x_sq=0.05),
                                     point(4, 16, grad_x_sq=0.01)], lr_x=1e-5, lr_y=2e-2)
    rc = check_run(run)
    v = rc.values
    assert v["L_x"] == 5.0 and v["sigma_x"] == pytest.approx(math.sqrt(0.3))
    assert v["n"] == 4 and v["T"] == 4 and v["Delta"] == 0.69 and v["d_x"] == 1000
    bound = hybrid_bound()
    assert rc.violated == [] == bound.violated(**v)
    assert rc.bound_final == pytest.approx(bound.evaluate(**v))
    pts = rc.points.set_index("epoch")
    assert math.isnan(pts.loc[0, "bound"])
    assert pts.loc[2, "bound"] == pytest.approx(bound.evaluate(**{**v, "T": 2}))
    assert pts.loc[4, "measured_min"] == pytest.approx(min(0.12, 0.07))
    assert rc.measured_final == pytest.approx(0.07)
    # effective rank: the largest estimate + 2 se over the points
    assert rc.effective_rank == pytest.approx(11.0)
    er = hybrid_bound(assumption="effective-rank")
    assert rc.violated_er == [] == er.violated(**v, r=11.0)
    assert rc.bound_final_er == pytest.approx(er.evaluate(**v, r=11.0))
    assert pts.loc[4, "bound_er"] == pytest.approx(rc.bound_final_er)
    # the adapter-only measure: the mean of ||grad_y F||^2 over the points before T
    assert rc.measured_adapter == pytest.approx(0.02)
    assert rc.bound_adapter == pytest.approx(bound.evaluate(measure="adapter", **v))
    assert rc.bound_adapter_er == pytest.approx(er.evaluate(measure="adapter", **v, r=11.0))
    assert rc.ratios["effective-rank adapter"] == pytest.approx(rc.bound_adapter_er / 0.02)
    assert rc.ratios["h1"] == pytest.approx(rc.bound_final / 0.07)
    assert sum(rc.shares.values()) == pytest.approx(1.0)
    assert rc.dominant in rc.shares and rc.used_ratio == pytest.approx(2000)
    assert rc.predicted_ratio > 0 and rc.predicted_ratio_er > 0
    json.dumps(rc.as_dict())  # valid JSON


def test_no_claim_outside_the_conditions(tmp_path):
    """lr_x = 1e-4 breaks C3 under H1 (d_x = 1000) but not under the effective rank r = 11:
    H1's bounds are NaN (evaluated anyway they can be negative), ER's are the theorem's."""
    run = write_run(tmp_path / "r", [point(0, 0), point(4, 16)], lr_x=1e-4, lr_y=2e-2)
    rc = check_run(run)
    assert any(c.startswith("C3") for c in rc.violated)
    assert math.isnan(rc.bound_final) and math.isnan(rc.bound_adapter)
    assert rc.points["bound"].isna().all() and rc.dominant == ""
    assert any("claims nothing" in n for n in rc.notes)
    assert rc.violated_er == [] and rc.bound_final_er > 0 and rc.bound_adapter_er > 0


def test_without_a_spectrum_the_effective_rank_is_skipped_with_a_note(tmp_path):
    old = {k: v for k, v in point(0, 0).items() if "er" not in k.split("_")[-1]
           and not k.startswith(("trace_abs", "trace_pos", "nuclear", "effective_rank_"))}
    run = write_run(tmp_path / "r", [old, {**old, "epoch": 1, "step": 4}])
    rc = check_run(run)
    assert math.isnan(rc.effective_rank) and math.isnan(rc.bound_final_er)
    assert any("effective-rank bound is skipped" in n for n in rc.notes)
    assert rc.bound_adapter != 0  # NaN (C3 fails at lr_x = 1e-4) or a value


def test_check_run_errors(tmp_path):
    with pytest.raises(ValueError, match="config.json does not exist"):
        check_run(tmp_path)
    run = write_run(tmp_path / "r", [point(0, 0)])
    (run / "diagnostics.json").write_text(json.dumps({"points": []}))
    with pytest.raises(ValueError, match="holds no measured point"):
        check_run(run)
    other = write_run(tmp_path / "f", [point(0, 0)], method="fo-lora")
    with pytest.raises(ValueError, match="both blocks trained"):
        check_run(other)
    adam = write_run(tmp_path / "a", [point(0, 0)])
    cfg = json.loads((adam / "config.json").read_text())
    (adam / "config.json").write_text(json.dumps({**cfg, "fo_optimizer": "adam"}))
    with pytest.raises(ValueError, match="fo_optimizer = 'sgd'"):
        check_run(adam)
    stale = write_run(tmp_path / "s", [point(0, 0)])
    (stale / "diagnostics.json").write_text(json.dumps(
        {"config": {**cfg, "seed": 7}, "points": [point(0, 0)]}))
    with pytest.raises(ValueError, match="belongs to another run"):
        check_run(stale)
    assert main(["check-run", str(tmp_path / "nope")]) == 2


def test_failed_points_are_skipped(tmp_path):
    run = write_run(tmp_path / "r", [point(0, 0), {"epoch": 2, "step": 8, "error": "oom"},
                                     point(4, 16)])
    assert list(check_run(run).points["epoch"]) == [0, 4]


def test_sweep_summary_finds_the_best_ratio(tmp_path):
    dirs = []
    for lr_x, losses in ((1e-3, (0.70, 0.71)), (1e-4, (0.60, 0.62)), (1e-5, (0.65, 0.66))):
        for seed, loss in enumerate(losses):
            dirs.append(write_run(tmp_path / f"r{lr_x}-{seed}", [point(0, 0)], lr_x=lr_x,
                                  seed=seed, test_loss=loss))
    s = sweep_summary(dirs)
    best = s[s["best"]].iloc[0]
    assert best["ratio"] == pytest.approx(5e-2 / 1e-4) and best["seeds"] == 2
    acc = sweep_summary(dirs, metric="accuracy")
    assert acc[acc["best"]].iloc[0]["ratio"] == pytest.approx(500)
    with pytest.raises(ValueError, match="metric must be"):
        sweep_summary(dirs, metric="f1")
    # a diverged run is left out of the mean and counted
    res = json.loads((dirs[0] / "results.json").read_text())
    (dirs[0] / "results.json").write_text(json.dumps({**res, "status": "diverged",
                                                      "test_loss": 0.1}))
    s = sweep_summary(dirs).set_index("lr_x")
    assert s.loc[1e-3, "failed"] == 1 and s.loc[1e-3, "seeds"] == 1
    assert s.loc[1e-3, "mean"] == pytest.approx(0.71)


def test_cli_check_run(tmp_path, capsys):
    run = write_run(tmp_path / "r", [point(0, 0), point(4, 16)], lr_x=1e-5, lr_y=2e-2)
    sweep = [write_run(tmp_path / f"s{i}", [point(0, 0)], lr_x=lr, test_loss=loss)
             for i, (lr, loss) in enumerate(((1e-3, 0.7), (1e-4, 0.6)))]
    assert main(["check-run", str(run), "--sweep", *map(str, sweep)]) == 0
    out = capsys.readouterr().out
    assert "conditions at these rates: all hold" in out and "best ratio 500" in out
    assert "bound / measured" in out and "effective rank r = 11" in out and "adapter" in out
    assert main(["check-run", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["values"]["L_x"] == 4.0


@pytest.mark.slow
def test_check_run_on_a_real_run_of_a_tiny_model(tmp_path):
    """End to end: hybridconv finetune --diagnostics-every on a tiny random causal LM (local
    directory), then check-run on its folder. Slow (about 2 minutes from a fresh checkout);
    the default suite covers check-run on written run folders (above) and the diagnostics on
    exact Hessians (tests/test_diagnostics.py)."""
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from hybridconv.finetune.tiny import save_tiny_model as tiny_model

    tiny_model(tmp_path / "lm")  # a one-layer random causal LM with MiniLM's tokenizer
    out = tmp_path / "run"
    assert main(["finetune", "--model", str(tmp_path / "lm"), "--method", "hybrid",
                 "--epochs", "2", "--batch-size", "4", "--k-shot", "4", "--test-size", "8",
                 "--max-length", "16", "--diagnostics-every", "1", "--diagnostics-examples",
                 "8", "--diagnostics-probes", "4", "--eta-x", "1e-10", "--eta-y", "1e-4",
                 "--out", str(out), "--no-progress"]) == 0  # rates inside the conditions
    diag = json.loads((out / "diagnostics.json").read_text())
    assert [p["epoch"] for p in diag["points"]] == [0, 1, 2]
    rc = check_run(out)
    assert rc.values["L_x"] > 0 and rc.values["L_y"] > 0 and rc.values["n"] == 2
    assert math.isfinite(rc.bound_final) and rc.bound_final > 0
    assert 1 <= rc.effective_rank and math.isfinite(rc.bound_final_er)
    assert math.isfinite(rc.measured_adapter) and rc.bound_adapter_er > 0
    res = json.loads((out / "results.json").read_text())
    assert res["status"] == "completed"


@pytest.mark.parametrize("undefined", [None, float("nan")])
def test_an_undefined_effective_rank_at_a_zero_head_is_accepted(tmp_path, undefined):
    """At the start of a run with a zero-initialised head the loss does not depend on the base
    weights: H_xx = 0, L_x = 0, and tr(H_xx) / L_x is undefined (the realruns figure failed
    on it). The point loads; the rank comes from the other points."""
    start = point(0, 0, L_x=0.0, trace_xx=0.0, effective_rank=undefined,
                  effective_rank_er=float("nan"), effective_rank_pos=float("nan"))
    text = json.dumps({"points": [start, point(2, 8), point(4, 16)]})
    run = write_run(tmp_path / "r", [], lr_x=1e-5, lr_y=2e-2)
    (run / "diagnostics.json").write_text(text)
    rc = check_run(run)
    assert rc.effective_rank == pytest.approx(11.0)
    bad = json.loads(text)
    bad["points"][1]["L_y"] = None
    (run / "diagnostics.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="a point's 'L_y' must be a finite number"):
        check_run(run)
