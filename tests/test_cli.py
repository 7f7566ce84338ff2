"""The ``hybridconv`` command: machine-readable output, one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

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
    assert code == 2 and out == "" and err.count("\n") == 1 and "C2" in err
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
    assert json.loads(out)["eps_exponent"] == "-3"
    code, out, _ = run(capsys, "theory", "complexity", "--set", "sigma_x=0", "--set", "mu=0")
    assert "eps^-3" in out


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
    code, out, _ = run(capsys, "theory", "--directions", "sphere", "bound",
                       *_sets(*VALUES, "eta_x=1e-5", "eta_y=1e-3", "T=100000"), "--json")
    sphere = json.loads(out)["value"]
    code, out, _ = run(capsys, "theory", "bound",
                       *_sets(*VALUES, "eta_x=1e-5", "eta_y=1e-3", "T=100000"), "--json")
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
