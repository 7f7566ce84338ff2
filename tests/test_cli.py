"""The ``hybridconv`` command: machine-readable output, one-line errors with exit code 2."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hybridconv import __version__
from hybridconv.cli import main

VALUES = ["L_x=1", "L_y=2", "L_xy=0.5", "sigma_x=0.3", "sigma_y=0.2", "Theta_x=0.1",
          "Theta_y=0.1", "Delta=5", "mu=1e-4", "q=4", "n=16", "T=1000", "d_x=100"]


def _sets(*items: str) -> list[str]:
    out: list[str] = []
    for item in items:
        out += ["--set", item]
    return out


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["theory", "--help"])
    assert "bound" in capsys.readouterr().out


def test_theory_text_latex_json(capsys):
    code, out, _ = run(capsys, "theory")
    assert code == 0 and "C3" in out and "min_t E||grad F(z_t)||^2" in out
    code, out, _ = run(capsys, "theory", "--latex")
    assert code == 0 and r"\le" in out
    code, out, _ = run(capsys, "theory", "--json")
    d = json.loads(out)
    assert code == 0 and [c["name"] for c in d["conditions"]] == [
        "C1", "C2", "C3", "C4x", "C4y", "C5x", "C5y"]


def test_theory_derivation(capsys):
    code, out, _ = run(capsys, "theory", "--derivation")
    assert code == 0 and out.startswith("# Derivation") and "## Proof, step by step" in out


def test_bound_json(capsys):
    code, out, _ = run(capsys, "theory", "bound", *_sets(*VALUES, "eta_x=1e-5", "eta_y=1e-3"),
                       "--json")
    d = json.loads(out)
    assert code == 0 and d["holds"] is True and d["violated"] == [] and d["value"] > 0


def test_bound_violated_is_exit_2_one_line(capsys):
    code, out, err = run(capsys, "theory", "bound", *_sets(*VALUES, "eta_x=1e-5", "eta_y=1"))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("hybridconv: error: --set values violate the conditions: C2: ")
    assert err.endswith(" (use --no-check to evaluate anyway)\n") and "\\" not in err
    code, out, _ = run(capsys, "theory", "bound", *_sets(*VALUES, "eta_x=1e-5", "eta_y=1"),
                       "--json", "--no-check")
    d = json.loads(out)
    assert code == 0 and d["holds"] is False and d["violated"][0].startswith("C2")


@pytest.mark.parametrize("argv", [
    ["theory", "bound", "--set", "L_x=-1"],
    ["theory", "bound", "--set", "L_x=nan"],
    ["theory", "bound", "--set", "L_x=inf"],
    ["theory", "bound", "--set", "L_x=0"],
    ["theory", "bound", "--set", "L_x"],
    ["theory", "bound", "--set", "L_x=abc"],
    ["theory", "bound", "--set", "bogus=1"],
    ["theory", "bound", "--set", "L_x=1"],  # missing the rest
    ["theory", "steps", "--set", "q=0.5"],
    ["theory", "complexity", "--set", "eps=0.1"],
    ["theory", "--nope"],
    ["nope"],
])
def test_bad_input_is_one_line_exit_2(capsys, argv):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("hybridconv: error:") and err.count("\n") == 1


def test_steps_json(capsys):
    code, out, _ = run(capsys, "theory", "steps", *_sets(*VALUES), "--json")
    d = json.loads(out)
    assert code == 0
    assert {"eta_x", "eta_y", "eta", "bound_two_rates", "bound_single_rate", "ratio"} <= set(d)
    code, out, _ = run(capsys, "theory", "steps", *_sets(*VALUES), "--weights", "natural",
                       "--json")
    assert json.loads(out)["ratio"] > 10


def test_complexity(capsys):
    code, out, _ = run(capsys, "theory", "complexity", "--json")
    assert code == 0 and json.loads(out)["eps_exponent"] == "-4"
    code, out, _ = run(capsys, "theory", "complexity", "--set", "sigma_x=0", "--set", "mu=0",
                       "--json")
    d = json.loads(out)
    assert d["eps_exponent"] == "-3" and d["mu_max"] is None and "in_expectation" not in d
    code, out, _ = run(capsys, "theory", "complexity", "--set", "sigma_x=0", "--set", "mu=0")
    # without ZO noise no smoothing radius is needed: no radius line
    assert out.splitlines() == [f"epochs to reach {d['measure']}: T = Theta(eps^-3)",
                                f"leading order: T = {d['epochs']}",
                                f"step size: eta = {d['eta']}", d["regime"]]


def test_complexity_shows_huge_set_values_as_floats(capsys):
    # --set substitutes exact rationals (1e300 becomes 10^300): shown as 6-digit floats, while
    # the derivation's small rationals stay exact
    code, out, _ = run(capsys, "theory", "complexity", "--set", "L_x=1e300")
    assert code == 0 and max(len(line) for line in out.splitlines()) < 200
    assert "(L_xy + 1.0e+300)" in out and "729*" in out and "6.25e-302" in out


def test_console_script_runs():
    """The installed entry point: what the README's first command calls."""
    res = subprocess.run([sys.executable, "-m", "hybridconv.cli", "theory", "bound", "--set",
                          "L_x=-1"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stderr.count("\n") == 1


def test_options_before_the_subcommand_are_kept(capsys):
    code, _, err = run(capsys, "theory", "--assumption", "h1-gen", "bound",
                       *_sets(*VALUES, "eta_x=1e-5", "eta_y=1e-3"))
    assert code == 2 and "G" in err and "L0_x" in err  # the generalized bound was used
    code, out, _ = run(capsys, "theory", "--json", "bound",
                       *_sets(*VALUES, "eta_x=1e-5", "eta_y=1e-3"))
    assert code == 0 and json.loads(out)["holds"] is True
    # (a long run, so that the descent part, where the directions matter, is the smaller)
    long = [v for v in VALUES if not v.startswith("T=")] + ["T=100000"]
    code, out, _ = run(capsys, "theory", "--directions", "sphere", "bound",
                       *_sets(*long, "eta_x=1e-5", "eta_y=1e-3"), "--json")
    sphere = json.loads(out)["value"]
    code, out, _ = run(capsys, "theory", "bound",
                       *_sets(*long, "eta_x=1e-5", "eta_y=1e-3"), "--json")
    assert sphere != json.loads(out)["value"]


def test_steps_scaled_with_missing_values_is_exit_2(capsys):
    code, out, err = run(capsys, "theory", "steps", "--weights", "natural", "--set", "L_y=1")
    assert code == 2 and err.count("\n") == 1


def test_steps_measure_full_scaled_is_a_deprecated_spelling_of_weights(capsys):
    code, out, err = run(capsys, "theory", "steps", *_sets(*VALUES), "--measure", "scaled",
                         "--json")
    assert code == 0 and "--measure is deprecated; use --weights" in err
    assert "'scaled' is deprecated; use 'natural'" in err
    code, new, _ = run(capsys, "theory", "steps", *_sets(*VALUES), "--weights", "natural",
                       "--json")
    assert json.loads(new) == json.loads(out)


# --- the verbs' wiring: every option reaches its config, every output line is the stated one

RESULT = {"status": "completed", "accuracy": 0.8125, "epochs": 2, "steps": 6,
          "forward_passes": 18, "wall_s": 1.25, "peak_mem_bytes": 300 * 2**20, "curve": []}


@pytest.fixture
def fake_finetune(monkeypatch):
    import hybridconv.finetune.trainer as trainer

    calls = []

    def fake(cfg, out, *, resume=False, force=False, progress=True):
        calls.append({"cfg": cfg, "out": out, "resume": resume, "force": force,
                      "progress": progress})
        return dict(RESULT)

    monkeypatch.setattr(trainer, "finetune", fake)
    return calls


def test_finetune_hands_every_option_to_the_config(fake_finetune, capsys, tmp_path):
    from hybridconv.finetune.trainer import FinetuneConfig

    out = str(tmp_path / "run")
    code, text, _ = run(capsys, "finetune", "--model", "random:minilm", "--task", "boolq",
                        "--method", "hybrid", "--epochs", "3", "--batch-size", "8",
                        "--eta-x", "0.002", "--lr-y", "0.03", "--mu", "0.005", "--q", "2",
                        "--seed", "4", "--k-shot", "0", "--test-size", "50", "--max-length",
                        "32", "--lora-r", "4", "--lora-alpha", "8", "--fo-optimizer", "adam",
                        "--directions", "sphere", "--difference", "forward", "--fo-gradient",
                        "shared", "--sampling", "so", "--eval-batch-size", "5", "--device",
                        "cpu", "--dtype", "bfloat16", "--diagnostics-every", "1",
                        "--diagnostics-examples", "6", "--diagnostics-probes", "3",
                        "--autocast", "bfloat16", "--out", out, "--force", "--no-progress")
    assert code == 0
    call = fake_finetune[-1]
    assert call["cfg"] == FinetuneConfig(
        model="random:minilm", task="boolq", method="hybrid", epochs=3, batch_size=8,
        lr_x=0.002, lr_y=0.03, mu=0.005, q=2, seed=4, k_shot=None, test_size=50,
        max_length=32, lora_r=4, lora_alpha=8, fo_optimizer="adam", directions="sphere",
        difference="forward", fo_gradient="shared", sampling="so", eval_batch_size=5,
        device="cpu", dtype="bfloat16", diagnostics_every=1, diagnostics_examples=6,
        diagnostics_probes=3, autocast="bfloat16")
    assert (call["out"], call["resume"], call["force"], call["progress"]) == (
        out, False, True, False)
    assert re.fullmatch(r"completed: accuracy 0\.8125 after 2 epochs, 6 steps, 18 forward "
                        r"passes, training 1\.2 s \(\d+\.\d s in all, with loading, evaluation "
                        r"and diagnostics\), peak 300 MiB -> " + re.escape(out)
                        + r"/results\.json\n", text), text
    code, _, _ = run(capsys, "finetune", "--out", out)
    call = fake_finetune[-1]
    assert call["cfg"] == FinetuneConfig() and (call["resume"], call["force"],
                                                 call["progress"]) == (False, False, True)


def test_finetune_json_status_and_errors(fake_finetune, monkeypatch, capsys, tmp_path):
    import hybridconv.finetune.trainer as trainer

    out = str(tmp_path / "run")
    code, text, _ = run(capsys, "finetune", "--out", out, "--json")
    assert code == 0 and json.loads(text) == RESULT
    monkeypatch.setattr(trainer, "finetune", lambda *a, **k: {**RESULT, "status": "diverged"})
    assert run(capsys, "finetune", "--out", out)[0] == 1
    monkeypatch.chdir(tmp_path)
    calls = []
    monkeypatch.setattr(trainer, "finetune", lambda cfg, out, **k: calls.append(out) or RESULT)
    assert run(capsys, "finetune", "--model", "random:minilm", "--seed", "3",
               "--method", "fo")[0] == 0
    assert calls == [str(Path("runs") / "random-minilm-mr-fo-s3")]

    def bad(*a, **k):
        raise ValueError("epochs must be >= 3 (the resumed run's), got 2\nmore")

    monkeypatch.setattr(trainer, "finetune", bad)
    assert run(capsys, "finetune", "--out", out, "--epochs", "2")[2] == (
        "hybridconv: error: --epochs must be >= 3 (the resumed run's), got 2\n")

    def missing(*a, **k):
        raise ModuleNotFoundError("no peft", name="peft")

    monkeypatch.setattr(trainer, "finetune", missing)
    err = run(capsys, "finetune", "--out", out)[2]
    assert err.startswith("hybridconv: error: peft is not installed: pip install -e '.[llm]'")
    import hybridconv.finetune.tasks as tasks

    monkeypatch.setattr(tasks, "fetch_winogrande", lambda: "/cache/winogrande.jsonl")
    assert run(capsys, "finetune", "--fetch", "winogrande") == (
        0, "/cache/winogrande.jsonl\n", "")


def test_figures_hands_its_options_to_build(monkeypatch, capsys, tmp_path):
    import hybridconv.figures.build as build

    seen = {}

    def fake(names, **kw):
        seen.update(kw, names=names)
        return {"rates": {"compute_seconds": 1.5, "replot_seconds": 0.25, "replaced": True,
                          "runs": {"reused": 2, "computed": 1}},
                "sampling": {"compute_seconds": 2.0, "replot_seconds": 0.5, "replaced": False}}

    monkeypatch.setattr(build, "build", fake)
    out = str(tmp_path / "figs")
    code, text, _ = run(capsys, "figures", "--quick", "--only", "rates", "--only", "sampling",
                        "--workers", "3", "--backend", "dask", "--address", "tcp://h:1",
                        "--out", out, "--no-progress", "--no-cache")
    assert code == 0
    assert seen == {"names": ["rates", "sampling"], "quick": True, "replot": False,
                    "workers": 3, "out": out, "progress": False, "backend": "dask",
                    "cache": False,
                    "address": "tcp://h:1", "command": f"hybridconv figures --quick --workers 3 "
                                                       f"--backend dask --out {out}"}
    assert text == (f"rates: {out}/rates.png in 1.5 s (replaced earlier files) (2 cached runs "
                    "reused, 1 computed)\n"
                    f"sampling: {out}/sampling.png in 2.0 s\nmanifest: {out}/MANIFEST.json\n")
    code, text, _ = run(capsys, "figures", "--replot")
    assert seen["names"] is None and seen["replot"] is True and seen["quick"] is False
    assert seen["command"] == "hybridconv figures" and seen["workers"] == 1
    assert seen["backend"] == "local" and seen["address"] is None and seen["progress"] is True
    assert seen["cache"] is True
    assert text.startswith("rates: paper_figures/rates.png in 0.2 s (replaced earlier files)\n")

    def refuse(names, **kw):
        raise ValueError("workers must be an integer >= 1, got 0")

    monkeypatch.setattr(build, "build", refuse)
    assert run(capsys, "figures")[2] == (
        "hybridconv: error: --workers must be an integer >= 1, got 0\n")


def test_check_prints_the_verdict_and_the_falsifier_its_worst(capsys, monkeypatch):
    code, text, _ = run(capsys, "check", "--n", "4", "--d-x", "3", "--d-y", "2", "--trials",
                        "8", "--epochs", "3", "--confidence", "0.9")
    lines = text.splitlines()
    assert code == 0 and len(lines) == 3  # the third says why the verdict is trivial
    assert lines[0].startswith("verdict: holds (trivially) at confidence 0.9 (8 trials, 3 "
                               "epochs)")
    assert lines[2].startswith("trivially: ||grad F||^2 at the start (epoch 0)")
    assert lines[1].startswith("empirical ") and " vs bound " in lines[1]
    code, text, _ = run(capsys, "check", "--n", "4", "--d-x", "3", "--d-y", "2", "--trials",
                        "8", "--epochs", "3", "--confidence", "0.9", "--json")
    d = json.loads(text)
    assert (d["trials"], d["epochs"], d["confidence"], d["family"]) == (8, 3, 0.9, "quadratic")
    assert d["eta_x"] > 0 and d["eta_y"] > 0  # the step sizes checked (admissible ones here)
    assert lines[1] == (f"empirical {d['empirical']:.6g} (one-sided CI [{d['ci_lower']:.6g}, "
                        f"{d['ci_upper']:.6g}]) vs bound {d['bound']:.6g}: ratio "
                        f"{d['ratio']:.4g}")


def test_check_report_hands_workers_and_backend_to_the_searches(tmp_path, capsys,
                                                                monkeypatch):
    """The CLI's part of check --report --workers --backend (the searches themselves:
    tests/test_parallel.py, slow)."""
    import pandas as pd

    import hybridconv.parallel as parallel
    from hybridconv.cli import main
    from hybridconv.validate import tightness

    seen = {}

    def fake(out_dir, **kw):
        seen.update(kw, out_dir=out_dir, backend=parallel._DEFAULTS["backend"])
        return pd.DataFrame({"max_ratio": [0.25, 0.5]})

    monkeypatch.setattr(tightness, "tightness_report", fake)
    assert main(["check", "--report", "--quick", "--workers", "3", "--out-dir",
                 str(tmp_path), "--budget", "7", "--seed", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert seen == {"out_dir": str(tmp_path), "budget": 7, "seed": 5, "quick": True,
                    "force": False, "workers": 3, "backend": "local", "progress": True}
    assert out["rows"] == 2 and out["max_ratio"] == 0.5
    assert main(["check", "--report", "--backend", "ray", "--address", "auto", "--out-dir",
                 str(tmp_path), "--force"]) == 0
    assert seen["backend"] == "ray" and seen["force"] is True and seen["workers"] == 1
    assert parallel._DEFAULTS == {"backend": "local", "address": None}  # restored
    assert "max_ratio: 0.5" in capsys.readouterr().out


def test_experiment_hands_its_options_to_the_runner(monkeypatch, capsys, tmp_path):
    """The CLI's part of hybridconv experiment (the sweeps themselves:
    tests/test_experiments.py)."""
    from types import SimpleNamespace

    import hybridconv.experiments.report as report
    import hybridconv.experiments.runner as runner
    import hybridconv.experiments.spec as spec_mod

    def run_(i, lr_x):
        return SimpleNamespace(run_id=f"r{i}", label=lambda: "hybrid-lora", settings={
            "model": "minilm", "task": "mr", "seed": i, "lr_x": lr_x, "lr_y": 0.05})

    sweep = SimpleNamespace(name="sw", results=tmp_path / "sw.csv", runs_dir=tmp_path / "runs",
                            runs=[run_(0, 1e-5), run_(1, 1e-4), run_(2, 1e-3)],
                            describe=lambda: "sweep sw: 3 runs")
    loaded, seen = [], {}
    monkeypatch.setattr(spec_mod, "load_spec", lambda p: loaded.append(p) or sweep)
    monkeypatch.setattr(runner, "finished_runs", lambda path: {"r1"})

    def fake_run(s, **kw):
        seen.update(kw)
        return [{"run_id": "r0", "status": "completed"},
                {"run_id": "r2", "status": "diverged", "error": "non-finite loss"}]

    monkeypatch.setattr(runner, "run_experiment", fake_run)
    code, text, _ = run(capsys, "experiment", "a.toml", "--dry-run")
    assert code == 0 and loaded == ["a.toml"] and seen == {}
    assert text == (f"sweep sw: 3 runs; 1 finished, 2 to run -> {tmp_path / 'sw.csv'}\n"
                    "  r0 minilm mr hybrid-lora seed 0 lr_x 1e-05 lr_y 0.05\n"
                    "  r2 minilm mr hybrid-lora seed 2 lr_x 0.001 lr_y 0.05\n")
    code, text, _ = run(capsys, "experiment", "a.toml", "b.toml", "--workers", "2",
                        "--backend", "dask", "--address", "tcp://h:1", "--limit", "5",
                        "--no-progress")
    assert code == 1 and loaded[-2:] == ["a.toml", "b.toml"]
    assert seen == {"workers": 2, "backend": "dask", "address": "tcp://h:1",
                    "progress": False, "limit": 5}
    assert text.splitlines()[1:3] == ["  r2: diverged non-finite loss",
                                      "sw: ran 2 runs, 1 not completed"]
    monkeypatch.setattr(runner, "run_experiment", lambda s, **kw: [{"status": "completed"}])
    code, _, _ = run(capsys, "experiment", "a.toml")
    assert code == 0
    monkeypatch.setattr(report, "write_report",
                        lambda specs, out, figure=None: seen.update(report=(specs, out, figure))
                        or Path(out))
    code, text, _ = run(capsys, "experiment", "a.toml", "--report", "r.md", "--figure", "f.png")
    assert (code, text) == (0, "wrote r.md\n") and seen["report"] == ([sweep], "r.md", "f.png")
    monkeypatch.setattr(spec_mod, "load_spec",
                        lambda p: (_ for _ in ()).throw(ValueError("limit must be >= 1")))
    # an error inside a spec file names the file (its keys are the spec's, not options)
    assert run(capsys, "experiment", "a.toml")[2] == ("hybridconv: error: a.toml: limit must "
                                                      "be >= 1\n")


def test_theory_text_outputs_are_the_json_ones(capsys):
    sets = _sets(*VALUES, "eta_x=1e-5", "eta_y=1e-3")
    _, out, _ = run(capsys, "theory", "bound", *sets, "--json")
    d = json.loads(out)
    assert d["values"]["eta_x"] == 1e-5 and d["measure"] == "min_t E||grad F(z_t)||^2"
    _, text, _ = run(capsys, "theory", "bound", *sets)
    assert text == (f"bound on min_t E||grad F(z_t)||^2: {d['value']:.6g}\n"
                    "conditions: all hold\n")
    _, out, _ = run(capsys, "theory", "steps", *_sets(*VALUES), "--json")
    s = json.loads(out)
    _, text, _ = run(capsys, "theory", "steps", *_sets(*VALUES))
    assert text.splitlines() == [
        f"measure: {s['measure']}",
        f"two rates:  eta_x = {s['eta_x']:.6g}, eta_y = {s['eta_y']:.6g} (eta_y/eta_x = "
        f"{s['ratio']:.4g}), bound = {s['bound_two_rates']:.6g}",
        f"one rate:   eta = {s['eta']:.6g}, bound = {s['bound_single_rate']:.6g}",
        f"gain of two rates: {s['gain']:.4g}x; active conditions: "
        f"{', '.join(s['active']) or 'none'}"]
    _, out, _ = run(capsys, "theory", "complexity", "--ratio", "3", "--json")
    c = json.loads(out)
    _, text, _ = run(capsys, "theory", "complexity", "--ratio", "3")
    lines = text.splitlines()
    assert lines[0] == ("epochs to reach min_t E||grad F(z_t)||^2 <= eps^2: "
                        f"T = Theta(eps^{c['eps_exponent']})")
    assert lines[1] == f"leading order: T = {c['epochs']}"
    assert lines[2] == f"step size: eta = {c['eta']}" and lines[-1] == c["regime"]
    _, one, _ = run(capsys, "theory", "complexity", "--json")
    assert json.loads(one) != c  # --ratio reaches the bound


SLOW_README = ("finetune", "figures", "experiment", "check-run", "--falsify", "--mutations",
               "--report", "torchrun")


def _readme_commands() -> list[list[str]]:
    import shlex

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    commands, current = [], ""
    for line in text.splitlines():
        line = line.strip()
        if current:
            current += " " + line
        elif line.startswith("$ hybridconv "):
            current = line[2:]
        if current and not current.endswith("\\"):
            commands.append(shlex.split(current.split(" # ")[0].split("   #")[0],
                                        comments=True))
            current = ""
        elif current:
            current = current[:-1]
    return [c for c in commands if c[0] == "hybridconv"]


def test_the_readmes_commands_run_as_printed(tmp_path, monkeypatch, capsys):
    """Every fast hybridconv command of the README (the long ones: their own tests)."""
    monkeypatch.chdir(tmp_path)
    ran = 0
    for argv in _readme_commands():
        if "..." in argv or any(word in argv for word in SLOW_README):
            continue
        if "--help" in argv:
            with pytest.raises(SystemExit) as e:
                main(argv[1:])
            assert e.value.code == 0
        else:
            assert main(argv[1:]) == 0, argv
        capsys.readouterr()
        ran += 1
    assert ran >= 8


def test_check_hands_its_step_options_to_the_simulation(monkeypatch, capsys):
    """check --q/--mu/--eta-x/--epochs/--trials/--seed reach the simulated config (found by
    mutation testing: --q could be dropped unnoticed)."""
    import hybridconv.validate as validate

    seen = {}
    real = validate.check

    def spy(bound, problem, config, **kw):
        seen["config"] = config
        return real(bound, problem, config, **kw)

    monkeypatch.setattr(validate, "check", spy)
    code, _, _ = run(capsys, "check", "--q", "3", "--mu", "2e-3", "--eta-x", "1e-4", "--epochs",
                     "2", "--trials", "4", "--seed", "5", "--n", "4", "--d-x", "3", "--d-y", "2")
    c = seen["config"]
    assert code == 0 and (c.q, c.mu, c.eta_x, c.epochs, c.trials, c.seed) == (
        3, 2e-3, 1e-4, 2, 4, 5)


def test_a_resumed_finetune_says_its_training_time_spans_every_sitting(fake_finetune, capsys,
                                                                       tmp_path):
    import dataclasses

    from hybridconv.finetune.trainer import FinetuneConfig

    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(json.dumps(dataclasses.asdict(FinetuneConfig())))
    code, text, _ = run(capsys, "finetune", "--out", str(out), "--resume", "--no-progress")
    assert code == 0 and fake_finetune[-1]["resume"] is True
    assert re.fullmatch(r"completed: accuracy 0\.8125 after 2 epochs, 6 steps, 18 forward "
                        r"passes, training 1\.2 s over all sittings \(\d+\.\d s in this call, "
                        r"with loading, evaluation and diagnostics\), peak 300 MiB -> "
                        + re.escape(str(out)) + r"/results\.json\n", text), text
