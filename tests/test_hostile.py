"""Hostile input (issue 15): tables of cases per verb and per public function, each refused
with one line naming the option (exit status 2) or a ``ValueError`` naming the argument; the
issue's eighteen defects one by one; the whole generated sweep under ``-m slow``.

The cases and their classification live in :mod:`hybridconv.testing.hostile` (also the
script ``python -m hybridconv.testing.hostile``); docs/testing.md has the sweep's summary.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from pathlib import Path

import pytest

from hybridconv.cli import main
from hybridconv.testing import hostile
from hybridconv.testing.hostile import Case, fake_run, run_case

SUBPROCESS = pytest.mark.skipif("MUTANT_UNDER_TEST" in os.environ, reason="under mutmut: a "
                                "subprocess cannot run its trampolined copy of the package")
"""The tests that run ``python -m hybridconv.cli`` in a subprocess."""


def _context(tmp: Path) -> dict[str, str]:
    """The sweep's fixtures, without the slow ones: refused values fail before a model or a
    figure is touched."""
    return {"run": str(fake_run(tmp / "fake_run")), "figure": "sampling",
            "figures": str(tmp / "figures"), "spec": str(tmp / "spec.toml"),
            "tiny": str(tmp / "tiny")}


def _table(cases: list[Case], key) -> dict[str, list[Case]]:
    out: dict[str, list[Case]] = defaultdict(list)
    for c in cases:
        out[key(c)].append(c)
    return dict(out)


def _check_all(cases: list[Case], tmp: Path) -> None:
    bad = []
    for k, case in enumerate(cases):
        res = run_case(case, tmp / f"c{k}", timeout=60)
        if not res.verdict.startswith("ok"):
            bad.append(f"{case.id}: {res.verdict}")
    assert not bad, "\n".join(bad)


_CLI = _table([c for c in hostile.cli_cases(_context(Path("/nonexistent/hostile")))
               if c.expect == "error"], lambda c: " ".join(c.argv[:2]) if c.argv[0] ==
              "theory" and not c.argv[1].startswith("-") else c.argv[0])


@pytest.mark.parametrize("verb", sorted(_CLI))
def test_every_refused_value_of_every_option_is_one_line_naming_it(verb, tmp_path):
    """NaN, infinities, non-numbers, empty strings and bad choices, for every option of the
    verb (generated from its parser): exit status 2, one line naming the option as typed,
    no file written."""
    assert len(_CLI[verb]) >= 2
    _check_all(_CLI[verb], tmp_path)


_API = _table(hostile.api_cases(), lambda c: c.id.split("(")[0].split("[")[0])


@pytest.mark.parametrize("function", sorted(_API))
def test_every_public_function_refuses_hostile_arguments_by_name(function, tmp_path):
    """Each argument of the public functions given NaN, infinities, negatives, zero, huge
    values, strings, None, booleans and lists: a ``ValueError`` naming the argument (for
    hypothesis strategies ``InvalidArgument``), or a correct result."""
    _check_all(_API[function], tmp_path)


def test_the_api_table_is_large():
    assert sum(map(len, _API.values())) >= 600
    assert {"make_problem", "SimConfig", "simulate", "check", "falsify", "Bound.evaluate",
            "HybridZOFO", "ReshufflingSampler", "FinetuneConfig", "problems", "configs",
            "check_run", "sweep_summary"} <= set(_API)


# --- the rows, one by one ---------------------------------------------------------------

def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def one_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()
             and not ln.startswith("hybridconv: warning:")]
    assert len(lines) == 1 and lines[0].startswith("hybridconv: error: "), err
    return lines[0]


def _fake_finished_run(out: Path, **config) -> dict[str, bytes]:
    """A finished run folder (a real checkpoint structure, tiny tensors)."""
    import dataclasses

    import torch

    from hybridconv.finetune.trainer import FinetuneConfig

    out.mkdir(parents=True)
    cfg = dataclasses.asdict(FinetuneConfig(**config))
    torch.save({"config": cfg, "model": {}, "optimizer": {}, "sampler": {},
                "curve": [{"epoch": 0, "step": 0}, {"epoch": 1, "step": 2}], "steps": [],
                "wall_s": 1.0}, out / "checkpoint.pt")
    (out / "results.json").write_text(json.dumps({"status": "completed", "epochs": 1}))
    (out / "config.json").write_text(json.dumps(cfg))
    (out / "steps.csv").write_text("step,epoch,loss\n1,1,0.7\n")
    (out / "diagnostics.json").write_text("{}")
    return {p.name: p.read_bytes() for p in out.iterdir()}


def test_1_force_with_a_bad_model_deletes_nothing(tmp_path, capsys):
    pytest.importorskip("transformers")
    out = tmp_path / "run"
    before = _fake_finished_run(out)
    code, _, err = run(capsys, "finetune", "--out", str(out), "--force", "--model", "typo",
                       "--no-progress")
    assert code == 2 and "typo" in one_error(err)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_2_a_blow_up_marks_the_trial_diverged(tmp_path, capsys):
    out = tmp_path / "s.csv"
    code, text, _ = run(capsys, "simulate", "--problem", "quadratic", "--method", "fo",
                        "--eta-x", "1e3", "--eta-y", "1e3", "--epochs", "3", "--out",
                        str(out), "--no-progress")
    assert code == 0 and "(100 diverged)" in text
    import pandas as pd

    df = pd.read_csv(out)
    assert df.loc[df["epoch"] >= 1, "diverged"].all()
    assert df.loc[df["epoch"] >= 1, "grad_sq"].isna().all()  # nothing like 7.5e96 recorded


def test_3_a_trivial_verdict_says_so(capsys):
    code, out, _ = run(capsys, "check", "--trials", "8", "--epochs", "3", "--no-progress")
    assert code == 0 and "verdict: holds (trivially)" in out and "epoch 0" in out


def test_4_replot_refuses_a_truncated_csv(tmp_path, capsys):
    import hashlib

    out = tmp_path / "fig"
    (out / "data").mkdir(parents=True)
    text = "a,b\n" + "".join(f"{i},{i}\n" for i in range(30))
    (out / "data" / "sampling.csv").write_text(text[:len(text) // 3])
    (out / "MANIFEST.json").write_text(json.dumps({"figures": {"sampling": {
        "mode": "quick", "rows": 30, "sha256": hashlib.sha256(text.encode()).hexdigest()}}}))
    code, _, err = run(capsys, "figures", "--quick", "--replot", "--only", "sampling",
                       "--out", str(out), "--no-progress")
    assert code == 2 and "sampling.csv" in one_error(err) and "checksum" in err
    assert not (out / "sampling.png").exists()


def test_5_an_output_that_appears_meanwhile_is_not_replaced(tmp_path):
    from hybridconv._io import OutputExists, write_text_exclusive

    p = tmp_path / "same.csv"
    write_text_exclusive(p, "first")
    with pytest.raises(OutputExists, match="same.csv"):
        write_text_exclusive(p, "second")
    assert p.read_text() == "first" and [x.name for x in tmp_path.iterdir()] == ["same.csv"]


def test_6_resume_refuses_contradicting_flags(tmp_path, capsys):
    pytest.importorskip("transformers")
    out = tmp_path / "run"
    before = _fake_finished_run(out, method="hybrid", lr_y=0.05)
    code, _, err = run(capsys, "finetune", "--out", str(out), "--resume", "--method",
                       "zo-lora", "--lr-y", "0.5", "--epochs", "3", "--no-progress")
    assert code == 2 and "contradicts" in one_error(err) and "--method" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize("argv,flag", [
    (["check", "--history", "h.csv"], "--history"),
    (["check", "--budget", "20"], "--budget"),
    (["check", "--workers", "2"], "--workers"),
    (["check", "--falsify", "--n", "4"], "--n"),
    (["check", "--falsify", "--eta-x", "1e-3"], "--eta-x"),
    (["check", "--report", "--trials", "4"], "--trials"),
    (["check", "--falsify", "--force"], "--force"),
    (["check", "--mutations", "--report"], "--mutations"),
    (["simulate", "--json-constants", "--trials", "4"], "--trials"),
    (["figures", "--replot", "--workers", "2"], "--workers"),
    (["figures", "--address", "tcp://x:1"], "--address"),
    (["check-run", ".", "--metric", "accuracy"], "--metric"),
    (["experiment", "x.toml", "--figure", "f.png"], "--figure"),
    (["experiment", "x.toml", "--dry-run", "--workers", "2"], "--workers"),
    (["experiment", "x.toml", "--dry-run", "--backend", "dask"], "--backend"),
    (["experiment", "x.toml", "--dry-run", "--address", "tcp://x:1"], "--address"),
    (["experiment", "x.toml", "--report", "r.md", "--dry-run"], "--dry-run"),
    (["check", "--force"], "--force"),
    (["theory", "--latex", "bound"], "--latex"),
    (["finetune", "--method", "fo", "--mu", "1e-3"], "--mu"),
    (["finetune", "--method", "zo", "--lr-y", "0.1"], "--lr-y"),
    (["finetune", "--peft", "prompt", "--lora-r", "4"], "--lora-r"),
    (["finetune", "--num-virtual-tokens", "4"], "--num-virtual-tokens"),
    (["finetune", "--method", "fo-lora", "--schedule", "gauss-seidel"], "--schedule"),
    (["finetune", "--diagnostics-probes", "4"], "--diagnostics-probes"),
    (["finetune", "--resume", "--force", "--out", "x"], "--resume"),
])
def test_7_an_option_without_effect_is_an_error(argv, flag, capsys, tmp_path, monkeypatch):
    if argv[0] == "finetune":
        pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *argv)
    assert code == 2 and flag in one_error(err)
    assert list(tmp_path.iterdir()) == []


def test_8_a_zo_radius_below_the_float_resolution_is_refused(tmp_path, capsys):
    code, _, err = run(capsys, "simulate", "--problem", "nonconvex", "--method", "zo",
                       "--mu", "1e-20", "--out", str(tmp_path / "s.csv"), "--no-progress")
    line = one_error(err)
    assert code == 2 and "--mu" in line and "never moves" in line and "[" in line
    torch = pytest.importorskip("torch")
    from hybridconv.finetune import HybridZOFO

    w = torch.nn.Parameter(torch.ones(3))
    for mu in (1e-30, 1e300):
        with pytest.raises(ValueError, match=r"^mu must be in \["):
            HybridZOFO([{"params": [w], "kind": "zo"}], mu=mu)


@pytest.mark.parametrize("flag", ["--n", "--d-x", "--d-y", "--q", "--epochs", "--trials"])
@pytest.mark.parametrize("verb", ["simulate", "check"])
def test_9_sizes_are_checked_up_front(verb, flag, capsys, tmp_path):
    argv = [verb, flag, "1000000000"] + (["--out", str(tmp_path / "s.csv")]
                                         if verb == "simulate" else [])
    code, _, err = run(capsys, *argv)
    line = one_error(err)
    assert code == 2 and flag in line and "memory" in line and "iB" in line
    code, _, err = run(capsys, "simulate", "--d-x", "1e23", "--out", str(tmp_path / "s.csv"))
    assert code == 2 and "--d-x" in one_error(err)


def test_10_overflow_is_one_line(capsys):
    sets = [t for v in hostile.SET_BASE + ["eta_x=1e-4", "eta_y=1e-3"]
            for t in ("--set", v.replace("L_x=1", "L_x=1e200"))]
    code, _, err = run(capsys, "theory", "bound", "--no-check", *sets)
    assert code == 2 and one_error(err) == (
        "hybridconv: error: --set values: the bound is not finite at these values (float64 "
        "overflows); the largest is L_x=1e+200")
    code, out, err = run(capsys, "check", "--mu", "1e308", "--trials", "4", "--epochs", "2",
                         "--no-progress")
    assert code in (0, 2) and "Traceback" not in err
    if code == 2:
        assert "--mu" in one_error(err)


def test_11_steps_with_no_noise_is_a_result(capsys):
    zero = {"sigma_x": "0", "sigma_y": "0", "mu": "0", "Delta": "0"}
    sets = [t for v in hostile.SET_BASE
            for t in ("--set", f"{v.split('=')[0]}={zero.get(v.split('=')[0], v.split('=')[1])}")]
    code, out, _ = run(capsys, "theory", "steps", *sets)
    assert code == 0 and re.fullmatch(
        r"measure: .+\nthe bound is 0 at every admissible step size \(Delta = 0 and every noise "
        r"term vanishes\): any eta_x <= [\d.e+-]+, eta_y <= [\d.e+-]+ will do\n", out), out


@pytest.mark.parametrize("argv,name", [
    (["check", "--falsify", "--history", "/proc/nope/h.csv"], "--history"),
    (["check", "--mutations", "--out-dir", "{f}"], "--out-dir"),
    (["figures", "--out", "{f}"], "--out"),
    (["simulate", "--out", "x" * 300], "--out"),
    (["simulate", "--out", "{f}/s.csv"], "--out"),
    (["simulate", "--out", "newdir/"], "--out"),
    (["finetune", "--out", "{f}"], "--out"),
])
def test_12_output_paths_are_checked_before_computing(argv, name, capsys, tmp_path,
                                                      monkeypatch):
    if argv[0] == "finetune":
        pytest.importorskip("transformers")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f").write_text("a file")
    argv = [a.replace("{f}", str(tmp_path / "f")) for a in argv]
    code, _, err = run(capsys, *argv, "--no-progress")
    assert code == 2 and name in one_error(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


@pytest.mark.parametrize("files", [
    dict(results=[]), dict(results="null"), dict(results={}), dict(diagnostics="{x"),
    dict(diagnostics={"points": None}), dict(config="]["),
])
def test_13_14_malformed_run_files_are_named(files, tmp_path, capsys):
    run_dir = fake_run(tmp_path / "run", **files)
    code, _, err = run(capsys, "check-run", str(run_dir))
    line = one_error(err)
    assert code == 2 and str(run_dir) in line and (".json is" in line or "holds no" in line)


def test_14_corrupt_sweep_and_manifest_files_are_named(tmp_path, capsys):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "results.json").write_text("{")
    code, _, err = run(capsys, "check-run", str(fake_run(tmp_path / "run")), "--sweep",
                       str(tmp_path / "s"))
    assert code == 2 and "results.json" in one_error(err)
    (tmp_path / "fig").mkdir()
    (tmp_path / "fig" / "MANIFEST.json").write_text("[]")
    code, _, err = run(capsys, "figures", "--replot", "--only", "sampling", "--out",
                       str(tmp_path / "fig"), "--no-progress")
    assert code == 2 and "MANIFEST.json" in one_error(err)


def test_15_messages_name_the_option_as_typed(tmp_path, capsys):
    run_dir = fake_run(tmp_path / "run")
    d = json.loads((run_dir / "diagnostics.json").read_text())
    d["points"][0]["sigma_x_sq"] = -1.0
    (run_dir / "diagnostics.json").write_text(json.dumps(d))
    code, _, err = run(capsys, "check-run", str(run_dir))
    assert code == 2 and "sigma_x_sq must be >= 0" in one_error(err)
    code, _, err = run(capsys, "check", "--epochs", "0")
    assert code == 2 and "--epochs" in one_error(err) and " T " not in err
    pytest.importorskip("torch")
    code, _, err = run(capsys, "finetune", "--seed", "1e23")
    assert code == 2 and "--seed" in one_error(err)


@pytest.mark.parametrize("how", ["truncated", "empty", "garbage"])
def test_16_a_corrupt_checkpoint_is_named(how, tmp_path, capsys):
    pytest.importorskip("transformers")
    out = tmp_path / "run"
    _fake_finished_run(out)
    ck = out / "checkpoint.pt"
    data = ck.read_bytes()
    ck.write_bytes({"truncated": data[:len(data) // 2], "empty": b"",
                    "garbage": b"garbage" * 9}[how])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, _, err = run(capsys, "finetune", "--out", str(out), "--resume", "--epochs", "3")
    line = one_error(err)
    assert code == 2 and "checkpoint.pt is corrupt" in line and "--force" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_17_unavailable_device_and_huge_rank(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        code, _, err = run(capsys, "finetune", "--device", "cuda", "--out",
                           str(tmp_path / "r"))
        assert code == 2 and "cuda" in one_error(err) and "--device" in err
    code, _, err = run(capsys, "finetune", "--lora-r", "1000000000", "--model", "random:minilm",
                       "--out", str(tmp_path / "r2"), "--no-progress", "--k-shot", "2",
                       "--test-size", "2")
    assert code == 2 and "--lora-r" in one_error(err)


def test_18_ctrl_c_in_a_finetune_run_leaves_it_resumable(tmp_path, capsys, monkeypatch):
    """Ctrl-C during the second epoch (in-process): exit 130, one line, results.json says
    "interrupted" with the first epoch's numbers, the checkpoint is the first epoch's, and
    --resume finishes the run."""
    pytest.importorskip("transformers")
    from hybridconv.finetune import trainer
    from hybridconv.finetune.tiny import save_tiny_model

    model = save_tiny_model(tmp_path / "tiny")
    capsys.readouterr()  # transformers' progress bar of the save
    out = tmp_path / "run"
    argv = ["finetune", "--model", model, "--epochs", "3", "--k-shot", "2", "--test-size",
            "2", "--batch-size", "2", "--max-length", "16", "--out", str(out),
            "--no-progress"]
    original = trainer._train_epoch

    def interrupted(run, epoch, forward, bar):
        if epoch == 1:
            original(run, epoch, forward, bar)  # a whole epoch's steps, then Ctrl-C
            raise KeyboardInterrupt
        return original(run, epoch, forward, bar)

    monkeypatch.setattr(trainer, "_train_epoch", interrupted)
    code, _, err = run(capsys, *argv)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 130 and len(lines) == 1 and "interrupted" in lines[0] and "--resume" in err
    res = json.loads((out / "results.json").read_text())
    assert res["status"] == "interrupted" and res["epochs"] == 1 and res["steps"] == 2
    assert len((out / "steps.csv").read_text().splitlines()) == 1 + 2
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    monkeypatch.setattr(trainer, "_train_epoch", original)
    code, text, _ = run(capsys, "finetune", "--out", str(out), "--resume", "--no-progress")
    assert code == 0 and text.startswith("completed")
    res = json.loads((out / "results.json").read_text())
    assert res["status"] == "completed" and res["epochs"] == 3 and res["steps"] == 6


@SUBPROCESS
@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_18_a_signal_during_simulate_exits_130_without_a_file(signame, tmp_path):
    """A real signal (subprocess): exit 130, one line, no output file, no temporary file."""
    import signal

    code, _, err = hostile.interrupt(["simulate", "--epochs", "100000", "--trials", "64",
                                      "--out", "s.csv"], tmp_path,
                                     sig=getattr(signal, signame), marker="simulate")
    assert hostile.check_interrupted(code, err) is None, err
    assert list(tmp_path.iterdir()) == []


# --- newcomer findings ----------------------------------------------------------------------------

def test_readme_lora_commands_run_on_the_defaults(capsys):
    code, out, _ = run(capsys, "simulate", "--problem", "lora", "--json-constants")
    assert code == 0 and json.loads(out)["d_y"] == 9
    code, out, _ = run(capsys, "check", "--problem", "lora", "--trials", "4", "--epochs", "2")
    assert code == 0 and out.startswith("verdict:")


def test_plain_text_has_no_latex_and_no_long_floats(capsys):
    for argv in (["theory"], ["theory", "complexity", "--set", "L_x=0.1"]):
        code, out, _ = run(capsys, *argv)
        assert code == 0 and "\\" not in out, argv
        assert not any(len(t) > 16 for t in out.replace("*", " ").replace("(", " ").split()
                       if t.replace(".", "").isdigit()), argv


@pytest.mark.parametrize("argv,flag", [
    (["--eta-x", "1.5"], "--eta-x"), (["--lr-y", "1e3"], "--lr-y"),
    (["--mu", "1e308"], "--mu"), (["--mu", "1e-320"], "--mu"),
])
def test_check_names_the_option_that_breaks_the_conditions(argv, flag, capsys):
    code, _, err = run(capsys, "check", *argv, "--trials", "4", "--epochs", "2")
    assert code == 2 and flag in one_error(err)


def test_duplicate_set_keys_are_an_error(capsys):
    code, _, err = run(capsys, "theory", "bound", "--set", "L_x=1", "--set", "L_x=2")
    assert code == 2 and "L_x is given twice" in one_error(err)


@SUBPROCESS
def test_a_broken_pipe_is_quiet():
    import subprocess
    import sys

    p = subprocess.run(f"{sys.executable} -m hybridconv.cli theory --latex | head -1",
                       shell=True, capture_output=True, text=True,
                       env={**__import__("os").environ,
                            "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert p.stdout.strip() and "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr


# --- the whole sweep ------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_whole_sweep_is_clean(tmp_path):
    """Every generated case (CLI, files, API, interruption, races; >= 600): no traceback, no
    silent or misleading result, no clobbered or partial file. Run as the script does, in a
    process of its own under an 8 GiB address-space limit (a missed size check raises
    MemoryError there instead of waking the OOM killer); about 20 minutes on 2 busy cores."""
    import csv
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    table = tmp_path / "sweep.csv"
    proc = subprocess.run([sys.executable, "-m", "hybridconv.testing.hostile", "--quiet",
                           "--memory-gb", "8", "--csv", str(table), "--root",
                           str(tmp_path / "root")], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(root)}, timeout=7200)
    rows = list(csv.DictReader(table.open()))
    assert len(rows) >= 600
    bad = [f"{r['case']}: {r['verdict']}" for r in rows if not r["verdict"].startswith("ok")]
    assert proc.returncode == 0 and not bad, "\n".join(bad[:50]) + proc.stderr[-2000:]


def test_the_conditions_a_run_breaks_are_plain_text(capsys, tmp_path):
    """``check --allow-outside`` and ``check-run`` name the broken conditions as the theory
    verbs do (eta_x, L_xy), not in sympy's LaTeX names (found by mutation testing)."""
    code, text, _ = run(capsys, "check", "--eta-x", "1e3", "--eta-y", "1e3", "--allow-outside",
                        "--trials", "4", "--epochs", "2", "--n", "4", "--d-x", "3", "--d-y", "2")
    line = next(s for s in text.splitlines() if s.startswith("outside the theorem's conditions"))
    assert code == 0 and "C1: eta_x*n*(L_x + L_xy) <= " in line and "\\" not in text
    code, text, _ = run(capsys, "check-run", str(fake_run(tmp_path / "r")))
    line = next(s for s in text.splitlines() if s.startswith("conditions at these rates"))
    assert code == 0 and "\\" not in line and "{" not in line and "\\" not in text
    assert "hyper-parameters: eta_x = 1e-05, eta_y = 0.05, mu = 0.001, q = 1" in text
