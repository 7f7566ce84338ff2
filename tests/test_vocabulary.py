"""One vocabulary (hybridconv.spec): every engine, config and option derives from it; the CLI is
generated from the configs, so options, keyword arguments and defaults agree."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from hybridconv import spec
from hybridconv.cli import VERBS, build_parser, main
from hybridconv.cliargs import describe
from hybridconv.configs import CheckConfig, ProblemConfig
from hybridconv.sim import SimConfig

ROOT = Path(__file__).resolve().parents[1]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


# --- the vocabulary ---------------------------------------------------------------------------

@pytest.mark.parametrize("choice", [*spec.CHOICES.values(), spec.SIM_METHODS, spec.METHODS])
def test_each_choice_list_is_written_once(choice):
    """grep finds every choice list's literal once in the package: in spec.py."""
    literal = re.compile(r"\(\s*" + r",\s*".join(re.escape(repr(v)).replace("'", "[\"']")
                                               for v in choice.values) + r"\s*\)")
    hits = [p.relative_to(ROOT) for p in (ROOT / "hybridconv").rglob("*.py")
            if literal.search(p.read_text())]
    assert hits == [Path("hybridconv/spec.py")], hits


def test_registries_cover_their_choice_lists():
    """Every backend implements every vocabulary row (and nothing else)."""
    from hybridconv.finetune.directions import SAMPLERS as TORCH
    from hybridconv.problems import FAMILIES
    from hybridconv.sim.estimators import SAMPLERS as NUMPY
    from hybridconv.sim.step import METHODS

    assert set(NUMPY) == set(TORCH) == set(spec.DIRECTIONS.values)
    assert set(spec.DIRECTIONS.properties) == set(spec.DIRECTIONS.values)
    assert set(FAMILIES) == set(spec.FAMILIES.values)
    assert set(METHODS) == set(spec.SIM_METHODS.values)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("eta_x", -1.0, "eta_x must be a finite real number > 0, got -1.0"),
    ("eta_x", float("nan"), "eta_x must be a finite real number > 0"),
    ("q", 1.5, "q must be an integer >= 1, got 1.5"),
    ("q", True, "q must be an integer >= 1, got True"),
    ("confidence", 1.0, "confidence must be a finite real number > 0 and < 1, got 1.0"),
    ("directions", "normal", "directions must be one of gaussian, sphere, rademacher"),
    ("seed", 2**63, "seed must be an integer >= 0 and <= 9.22337e+18"),
    ("bogus", 1, "unknown argument 'bogus'"),
])
def test_validate_names_the_argument_and_the_range(name, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        spec.validate(name, value)


def test_mu_one_rule_each_for_the_theory_and_a_run():
    assert spec.validate("mu", 0.0) == 0.0  # the theory's exact-gradient limit
    with pytest.raises(ValueError, match="mu must be a finite real number > 0"):
        spec.validate("mu", 0.0, positive=True)
    for make in (lambda: SimConfig(mu=0.0), lambda: CheckConfig(mu=0.0)):
        with pytest.raises(ValueError, match="mu must be a finite real number > 0"):
            make()


def test_aliases_and_normalization():
    assert spec.canonical("lr_x") == "eta_x" and spec.canonical("dx") == "d_x"
    assert spec.validate("dx", 3) == 3
    assert spec.validate("q", 2.0) == 2 and isinstance(spec.validate("q", 2.0), int)
    assert spec.validate("method", "fo-lora", among=spec.METHODS) == "fo-peft"
    with pytest.warns(DeprecationWarning, match="'full' is deprecated; use 'unit'"):
        assert spec.validate("weights", "full") == "unit"


def test_theory_symbols_are_the_vocabularys():
    from hybridconv.theory.symbols import TABLE, sym, validate_value

    assert list(TABLE) == list(spec.SYMBOLS)
    for name, row in spec.SYMBOLS.items():
        assert TABLE[name].description == row.description
        assert TABLE[name].strict == row.strict and TABLE[name].integer == row.integer
    assert sym("mu").is_nonnegative and sym("eta_x").is_positive and sym("q").is_integer
    assert validate_value("q", 2) == 2.0
    with pytest.raises(ValueError, match="unknown symbol 'epochs'"):
        validate_value("epochs", 3)  # an option, not a symbol of the theorem


def test_option_defaults_come_from_the_vocabulary_or_carry_a_reason():
    with pytest.raises(ValueError, match="differs from the vocabulary"):
        spec.option("epochs", default=50)
    assert SimConfig().epochs == spec.QUANTITIES["epochs"].default
    assert ProblemConfig().d_x == spec.QUANTITIES["d_x"].default
    assert CheckConfig().mu == SimConfig().mu == spec.QUANTITIES["mu"].default
    for cls in (SimConfig, ProblemConfig, CheckConfig):
        for f in dataclasses.fields(cls):
            row = f.metadata.get("row")
            if row in spec.QUANTITIES and f.default != spec.QUANTITIES[row].default:
                assert f.metadata["reason"], (cls.__name__, f.name)


def test_adding_a_direction_is_one_row_and_one_sampler_per_backend(monkeypatch):
    """docs/vocabulary.md's worked example, run: "cube" directions, uniform on the cube
    [-1, 1]^d pushed to the sphere of radius sqrt(d) (fixed norm, E u u^T = I by symmetry)."""
    import numpy as np
    import torch

    from hybridconv.finetune import HybridZOFO
    from hybridconv.finetune import directions as torch_dirs
    from hybridconv.problems import make_problem
    from hybridconv.sim import estimators, simulate
    from hybridconv.theory.bound import hybrid_bound

    # 1. the spec row: the name and the moments the theory's constants come from
    row = dataclasses.replace(
        spec.DIRECTIONS, values=(*spec.DIRECTIONS.values, "cube"),
        properties={**spec.DIRECTIONS.properties, "cube": spec.DIRECTIONS.properties["sphere"]})
    monkeypatch.setattr(spec, "DIRECTIONS", row)
    monkeypatch.setitem(spec.CHOICES, "directions", row)

    # 2. the numpy sampler (simulator)
    def cube(rng, shape):
        v = rng.uniform(-1.0, 1.0, shape)
        return v * np.sqrt(shape[-1]) / np.linalg.norm(v, axis=-1, keepdims=True)

    monkeypatch.setitem(estimators.SAMPLERS, "cube", cube)
    # 3. the torch sampler (fine-tuner): fill a piece, then rescale the whole direction
    monkeypatch.setitem(torch_dirs.SAMPLERS, "cube", torch_dirs.TorchSampler(
        lambda out, g: out.uniform_(-1.0, 1.0, generator=g), normalize=True))

    u = estimators.sample_directions(np.random.default_rng(0), (20000, 3), "cube")
    assert np.allclose(np.linalg.norm(u, axis=1), np.sqrt(3))
    assert np.allclose(u.T @ u / len(u), np.eye(3), atol=0.05)
    problem = make_problem("quadratic", 4, 3, 2, seed=0)
    cfg = SimConfig(directions="cube", epochs=2, trials=2)
    assert simulate(problem, cfg)["grad_sq"].notna().all()
    assert hybrid_bound(directions="cube").evaluate(
        **problem.constants(), **cfg.hyperparameters(4)) == pytest.approx(
        hybrid_bound(directions="sphere").evaluate(**problem.constants(),
                                                   **cfg.hyperparameters(4)))
    w = torch.nn.Parameter(torch.ones(5, dtype=torch.float64))
    opt = HybridZOFO([{"params": [w], "kind": "zo"}], directions="cube", lr_x=0.1)
    opt.step(lambda: (w ** 2).sum())
    assert not torch.equal(w.detach(), torch.ones(5, dtype=torch.float64))
    d = next(torch_dirs.TorchDirections("cube").generate(0, 0, [w.detach()]))
    assert float(d.norm()) == pytest.approx(5 ** 0.5) and float(d.abs().max()) <= 5 ** 0.5


# --- the generated command line ---------------------------------------------------------------

def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _all_parsers():
    top = build_parser()
    for name, p in _subparsers(top).items():
        yield name, p
        for sub, q in _subparsers(p).items():
            yield f"{name} {sub}", q


def test_every_verb_is_generated_and_shows_its_defaults():
    seen = []
    for name, p in _all_parsers():
        seen.append(name)
        for action in p._actions:
            if action.help in (None, argparse.SUPPRESS) or not action.option_strings:
                continue
            if isinstance(action, argparse._StoreTrueAction | argparse._HelpAction):
                continue
            if action.dest in ("latex", "json", "derivation"):
                continue
            assert "(default:" in action.help or "(required" in action.help, (name, action.dest)
    assert {"theory", "theory bound", "theory steps", "theory complexity", "simulate",
            "check", "finetune", "figures", "check-run"} <= set(seen)
    assert set(VERBS) <= set(seen)


def test_simulate_defaults_are_simconfigs():
    args = build_parser(["simulate"]).parse_args(["simulate"])
    for f in dataclasses.fields(SimConfig):
        assert getattr(args, f.name) == f.default, f.name
    assert args.d_x == ProblemConfig().d_x


def test_finetune_options_are_finetuneconfigs_fields():
    from hybridconv.finetune.trainer import FinetuneConfig

    args = build_parser(["finetune"]).parse_args(["finetune"])
    for f in dataclasses.fields(FinetuneConfig):
        assert getattr(args, f.name) == f.default, f.name
    args = build_parser(["finetune"]).parse_args(
        ["finetune", "--eta-x", "1e-4", "--lr-y", "0.05", "--k-shot", "0"])
    assert (args.lr_x, args.lr_y, args.k_shot) == (1e-4, 0.05, None)


def test_simulate_keeps_eta_x_and_eta_y_apart(tmp_path, capsys):
    """Planted survivor of issue 13: a CLI that swaps --eta-x and --eta-y in simulate."""
    out = tmp_path / "run.csv"
    code, _, _ = run(capsys, "simulate", "--n", "3", "--d-x", "2", "--d-y", "2", "--epochs",
                     "1", "--trials", "2", "--eta-x", "0.003", "--eta-y", "0.02", "--out",
                     str(out), "--no-progress")
    df = pd.read_csv(out)
    assert code == 0 and set(df["eta_x"]) == {0.003} and set(df["eta_y"]) == {0.02}
    # and the rates act on their blocks: FO on both blocks, eta_x = 0 is not allowed but a
    # tiny eta_x leaves x almost where it started while eta_y moves y
    code, _, _ = run(capsys, "simulate", "--n", "3", "--d-x", "2", "--d-y", "2", "--epochs",
                     "3", "--trials", "2", "--method", "fo", "--eta-x", "1e-12", "--eta-y",
                     "0.5", "--out", str(out), "--force", "--no-progress")
    df = pd.read_csv(out).groupby("epoch")[["grad_x_sq", "grad_y_sq"]].mean()
    assert df["grad_y_sq"].iloc[-1] < 0.5 * df["grad_y_sq"].iloc[0]
    assert df["grad_x_sq"].iloc[-1] == pytest.approx(df["grad_x_sq"].iloc[0], rel=0.5)


@pytest.mark.parametrize(("argv", "message"), [
    (["simulate", "--eta-x", "-1"], "--eta-x must be a finite real number > 0, got -1"),
    (["simulate", "--lr-x", "0"], "--lr-x must be a finite real number > 0, got 0"),
    (["simulate", "--q", "1.5"], "--q must be an integer >= 1, got 1.5"),
    (["simulate", "--q", "two"], "--q must be an integer >= 1, got 'two'"),
    (["simulate", "--d-x", "0"], "--d-x must be an integer > 0, got 0"),
    (["simulate", "--mu", "0"], "--mu must be a finite real number > 0, got 0"),
    (["simulate", "--method", "adam"], "--method must be one of hybrid, zo, fo, reversed"),
    (["check", "--confidence", "1"], "--confidence must be a finite real number > 0 and < 1"),
    (["check", "--fraction-x", "2"], "--fraction-x must be a finite real number > 0 and <= 1"),
    (["check", "--workers", "0"], "--workers must be an integer >= 1, got 0"),
    (["check", "--measure", "max"], "--measure must be one of min, weighted"),
    (["figures", "--only", "nope"], "--only must be one of"),
    (["figures", "--workers", "0"], "--workers must be an integer >= 1, got 0"),
    (["check-run", "x", "--metric", "loss"], "--metric must be one of test_loss, accuracy"),
    (["theory", "--directions", "normal"], "--directions must be one of gaussian"),
    (["theory", "complexity", "--ratio", "-1"], "--ratio must be a finite real number > 0"),
    (["finetune", "--out", "x", "--lr-x", "-1"], "--lr-x must be a finite real number > 0"),
    (["finetune", "--out", "x", "--method", "sgd"], "--method must be one of fo, fo-"),
])
def test_errors_name_the_option_as_typed(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("hybridconv: error: " + message), err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_deprecated_spellings_still_work_and_warn(tmp_path, capsys):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    base = ["simulate", "--n", "3", "--epochs", "1", "--trials", "2", "--no-progress"]
    code, _, err = run(capsys, *base, "--dx", "4", "--dy", "2", "--out", str(a))
    assert code == 0 and "--dx is deprecated; use --d-x" in err
    code, _, err = run(capsys, *base, "--d-x", "4", "--d-y", "2", "--out", str(b))
    assert code == 0 and "deprecated" not in err
    assert a.read_text() == b.read_text()


def test_check_json_is_strict_with_nan_as_null(capsys):
    """One JSON writer: a diverged check reports its infinite measurements as null."""
    code, out, _ = run(capsys, "check", "--n", "4", "--d-x", "3", "--d-y", "2", "--trials", "4",
                       "--epochs", "40", "--eta-x", "50", "--eta-y", "50", "--allow-outside",
                       "--json")
    d = json.loads(out)
    assert code == 0 and d["verdict"] == "violated"
    assert d["empirical"] is None and d["ci_upper"] is None
    assert "NaN" not in out and "Infinity" not in out and '"inf"' not in out


def test_help_of_every_verb_runs_and_theory_stays_light():
    """``hybridconv theory`` builds only its own options: torch is not imported."""
    code = ("import sys; from hybridconv.cli import main; main(['theory', 'bound', '--set', "
            "'L_x=-1']); print('torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert res.stdout.strip() == "False", res.stderr
    for verb in VERBS:
        with pytest.raises(SystemExit) as e:
            main([verb, "--help"])
        assert e.value.code == 0


def test_describe_gives_one_flag_per_quantity():
    opt = describe(SimConfig, "eta_x")
    assert opt.flags == ("--eta-x", "--lr-x") and opt.deprecated == ()
    opt = describe(ProblemConfig, "d_x")
    assert opt.flags == ("--d-x",) and opt.deprecated == ("--dx",)


def test_figures_reach_models_only_through_finetune():
    """DESIGN.md's boundary: no figure module imports torch, transformers or peft itself."""
    pattern = re.compile(r"^\s*(from|import)\s+(torch|transformers|peft)\b", re.M)
    offenders = [p.name for p in (ROOT / "hybridconv" / "figures").glob("*.py")
                 if pattern.search(p.read_text())]
    assert offenders == []
