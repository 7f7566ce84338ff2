"""What a user of ``hybridconv`` sees, word for word: the process-level paths of ``main()``
(the command line read from ``sys.argv``, Ctrl-C and SIGTERM, a reader that goes away, numpy's
overflow warnings) run in-process, and the messages and printed lines that are the CLI's
public interface.

These paths were tested only in subprocesses before, which mutation testing cannot see (a
subprocess runs the package, not mutmut's trampolined copy; docs/testing.md, "Mutation
testing"): here each runs in the test's own process, with ``sys.argv``, ``sys.stdout`` or
``sys.stderr.isatty`` monkeypatched, or a verb replaced by one that raises.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import sys
import warnings
from pathlib import Path

import pytest

import hybridconv.cli as cli
from hybridconv.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def error_of(capsys, *argv: str) -> str:
    """The one line a refused command prints (exit status 2, nothing on stdout)."""
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, ""), (code, out, err)
    assert err.count("\n") == 1 and err.startswith("hybridconv: error: "), err
    return err.removeprefix("hybridconv: error: ").removesuffix("\n")


# --- process-level paths, in-process ------------------------------------------------------------

def test_main_reads_the_command_line_from_sys_argv(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["hybridconv", "theory", "bound", "--set", "L_x=-1"])
    assert main() == 2
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err == (
        "hybridconv: error: --set L_x must be a finite real number > 0, got -1.0\n")
    monkeypatch.setattr(sys, "argv", ["hybridconv"])
    assert main() == 0 and capsys.readouterr().out.startswith("usage: hybridconv ")


def _verb(monkeypatch, body):
    """Replace ``hybridconv theory`` by ``body`` (what a verb does, in miniature)."""
    monkeypatch.setattr(cli, "_theory", lambda args: body())


def test_numpy_overflow_warnings_inside_a_verb_print_nothing(monkeypatch, capsys):
    """Every result is checked for finiteness where it is used and reported in one line, so
    numpy's RuntimeWarnings (which print a source line) are silenced while a verb runs; other
    warnings still reach the user."""
    import numpy as np

    def overflow():
        print(f"value {np.float64(1e308) * np.float64(10)}")
        warnings.warn("a deprecated spelling", UserWarning, stacklevel=1)
        return 0

    _verb(monkeypatch, overflow)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")  # what a user's interpreter would show
        assert main(["theory"]) == 0
        after = np.float64(1e308) * np.float64(10)  # the filter ends with the command
    assert capsys.readouterr().out == "value inf\n" and after == np.inf
    assert [(w.category, str(w.message)) for w in seen] == [
        (UserWarning, "a deprecated spelling"),
        (RuntimeWarning, "overflow encountered in scalar multiply")]


def test_ctrl_c_is_exit_130_and_one_line_after_the_open_progress_bar(monkeypatch, capsys):
    from tqdm import tqdm

    bars = []

    def interrupted():
        print("partial output", end="")
        bars.append(tqdm(total=3, file=sys.stderr, desc="work"))
        bars[0].update(1)
        raise KeyboardInterrupt

    _verb(monkeypatch, interrupted)
    assert main(["theory"]) == cli.INTERRUPTED == 130
    cap = capsys.readouterr()
    assert cap.out == "partial output"  # flushed, not lost
    # the bar was closed before the line, which starts at the line's beginning ("\r": the
    # bar may have been cut mid-line) without a terminal's clear-line code on a file
    assert bars[0] not in getattr(tqdm, "_instances", ()) and bars[0].disable
    assert cap.err.startswith("\rwork:") and cap.err.endswith("\n\rhybridconv: interrupted\n")


@pytest.mark.parametrize("tty,prefix", [(True, "\r\x1b[K"), (False, "\r"), (None, "\r")],
                         ids=["terminal", "file", "closed"])
def test_the_interrupted_line_clears_the_terminal_line_only_on_a_terminal(tty, prefix,
                                                                          monkeypatch, capsys):
    """On a terminal the line is cleared first (a bar's remains would show after the text);
    in a file or a pipe it is not (no escape codes in a log); a stream that cannot say
    (``isatty`` raising ``ValueError``, as a closed one does) counts as no terminal."""
    import tqdm  # noqa: F401 - the bars' module is what _say writes through

    def isatty():
        if tty is None:
            raise ValueError("I/O operation on closed file")
        return tty

    monkeypatch.setattr(sys.stderr, "isatty", isatty)
    _verb(monkeypatch, lambda: (_ for _ in ()).throw(KeyboardInterrupt))
    assert main(["theory"]) == 130
    assert capsys.readouterr().err == prefix + "hybridconv: interrupted\n"


def test_without_tqdm_or_when_its_writer_fails_the_line_is_printed_plainly(monkeypatch,
                                                                           capsys):
    import tqdm

    _verb(monkeypatch, lambda: (_ for _ in ()).throw(KeyboardInterrupt))

    def broken_write(*a, **k):
        raise RuntimeError("tqdm cannot write")

    monkeypatch.setattr(tqdm.tqdm, "write", broken_write)
    assert main(["theory"]) == 130
    assert capsys.readouterr().err == "hybridconv: interrupted\n"
    monkeypatch.delitem(sys.modules, "tqdm")
    assert main(["theory"]) == 130
    assert capsys.readouterr().err == "hybridconv: interrupted\n"


def test_sigterm_while_a_verb_runs_is_an_interruption_and_the_handler_is_restored(monkeypatch,
                                                                                   capsys):
    """SIGTERM (``kill``, a scheduler's time limit) ends a command as Ctrl-C does. The handler
    is called as the signal would call it (sending a real SIGTERM would kill the test run if
    the handler were missing)."""
    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def terminated():
        handler = signal.getsignal(signal.SIGTERM)
        seen.append(handler)
        handler(signal.SIGTERM, None)
        return 0

    _verb(monkeypatch, terminated)
    assert main(["theory"]) == 130
    assert capsys.readouterr().err.endswith("hybridconv: interrupted\n")
    assert callable(seen[0]) and seen[0] is not before
    assert signal.getsignal(signal.SIGTERM) is before


class _GoneReader(io.StringIO):
    """A stdout whose reader has gone (``| head -1``): every write raises, as a pipe does."""

    def __init__(self, fd: int):
        super().__init__()
        self.fd = fd

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def fileno(self) -> int:
        return self.fd


def test_a_reader_that_goes_away_is_exit_141_silently(monkeypatch, capsys, tmp_path):
    """``hybridconv theory --latex | head -1``: no traceback, no message, exit status 141
    (128 + SIGPIPE); stdout then points at /dev/null, so that the interpreter's last flush
    does not raise again."""
    fd = os.open(tmp_path / "stdout", os.O_RDONLY | os.O_CREAT)
    try:
        monkeypatch.setattr(sys, "stdout", _GoneReader(fd))
        _verb(monkeypatch, lambda: print(r"\min_t E") or 0)
        assert main(["theory", "--latex"]) == 141
        null = os.stat(os.devnull)
        now = os.fstat(fd)
        assert (now.st_rdev, now.st_ino) == (null.st_rdev, null.st_ino)
        assert os.write(fd, b"the last flush") == len(b"the last flush")  # write-only now
    finally:
        os.close(fd)
    monkeypatch.setattr(sys, "stdout", _GoneReader(-1))  # not a real file: still quiet
    assert main(["theory", "--latex"]) == 141
    assert capsys.readouterr().err == ""


def test_an_unknown_command_is_refused(monkeypatch, capsys):
    """A verb added to the parser without a handler is an error, not a silent success."""
    monkeypatch.setattr(cli, "VERBS", {**cli.VERBS, "plot": ("a verb with no handler",
                                                            lambda p: None)})
    assert error_of(capsys, "plot") == "unknown command 'plot'"


def test_help_and_version_name_the_program(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out == f"hybridconv {cli.__version__}\n"
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: hybridconv [-h] [--version]")
    assert "Hybrid ZO/FO fine-tuning: theory, simulation and practice." in out
    flat = "".join(out.split())  # argparse wraps the verbs' help, breaking at hyphens too
    for verb, (text, _) in cli.VERBS.items():
        assert "".join(f"{verb} {text}".split()) in flat, verb
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: hybridconv check ")
    assert "\nproblem:\n" in out and "\ncheck:\n" in out



# --- refusals, word for word ----------------------------------------------------------------------

_MEMORY = r"about [\d.]+ [KMGTPE]?i?B of memory, more than the [\d.]+ [KMGTPE]?i?B available"
_NO_EFFECT_FIGURES = "has no effect with --replot (nothing is computed)"

REFUSALS = [
    # theory
    (["theory", "--latex", "bound"], "--latex has no effect with 'theory bound' (it prints the "
     "theorem; 'theory bound --json' prints JSON)"),
    (["theory", "--derivation", "complexity"], "--derivation has no effect with 'theory "
     "complexity' (it prints the theorem; 'theory complexity --json' prints JSON)"),
    (["theory", "bound", "--set", "=1"], "--set expects NAME=VALUE, got '=1'"),
    (["theory", "bound", "--set", "L_x"], "--set expects NAME=VALUE, got 'L_x'"),
    (["theory", "bound", "--set", "L_x=b=c"], "--set L_x: 'b=c' is not a number"),
    (["theory", "bound", "--set", "L_x=1", "--set", " L_x =2"],
     "--set L_x is given twice (1 and 2); give it once"),
    (["theory", "bound", "--set", "L_x=-1"],
     "--set L_x must be a finite real number > 0, got -1.0"),
    (["theory", "steps", "--set", "q=0.5"], "--set q must be an integer >= 1, got 0.5"),
    # check
    (["check", "--mutations", "--report"], "--mutations and --report are separate modes; give "
     "one"),
    (["check", "--falsify", "--mutations"], "--falsify and --mutations are separate modes; give "
     "one"),
    (["check", "--force"], "--force has no effect without --falsify, --mutations or --report"),
    (["check", "--falsify", "--force"], "--force has no effect without --history"),
    (["check", "--quick"], "--quick has no effect without --falsify, --mutations or --report"),
    (["check", "--mutations", "--quick"], "--quick has no effect with --mutations (it draws its "
     "own instance pool)"),
    (["check", "--report", "--trials", "4"], "--trials has no effect with --report (its "
     "searches have their own settings)"),
    (["check", "--falsify", "--eta-x", "1e-3"], "--eta-x has no effect with --falsify (the "
     "search draws the instances, step sizes, mu and q; --trials and --epochs are per "
     "instance)"),
    (["check", "--falsify", "--history", "{f}"], "--history {f} exists; pass --force to "
     "overwrite it"),
    (["check", "--report", "--out-dir", "{f}"], "--out-dir {f} is a file, not a directory"),
    (["check", "--report", "--address", "tcp://h:1", "--out-dir", "{d}"],
     "--address has no effect with the local backend; add --backend dask or --backend ray"),
    (["check", "--trials", "100000000"],
     "re:--trials 100000000: this check would need " + _MEMORY + "; lower --trials"),
    (["check", "--falsify", "--trials", "100000000"], "re:--trials 100000000: each instance "
     "of this search would need " + _MEMORY + "; lower --trials"),
    (["check", "--epochs", "100000000", "--q", "2"],
     "re:--epochs 100000000: this check would need " + _MEMORY + "; lower --epochs"),
    # simulate
    (["simulate"], "--out FILE.csv is required (or --json-constants)"),
    (["simulate", "--out", "{f}"], "--out {f} exists; pass --force to overwrite it"),
    (["simulate", "--out", "{d}"], "--out {d} is a directory; give a file name"),
    (["simulate", "--json-constants", "--epochs", "3"], "--epochs has no effect with "
     "--json-constants (it prints the problem's constants and stops)"),
    (["simulate", "--json-constants", "--out", "x.csv"], "--out has no effect with "
     "--json-constants (it prints the problem's constants and stops)"),
    (["simulate", "--q", "100000000", "--out", "{d}/s.csv"],
     "re:--q 100000000: this simulation would need " + _MEMORY + "; lower --q"),
    # figures
    (["figures", "--replot", "--workers", "2"], "--workers " + _NO_EFFECT_FIGURES),
    (["figures", "--replot", "--backend", "dask"], "--backend " + _NO_EFFECT_FIGURES),
    (["figures", "--replot", "--address", "tcp://h:1"], "--address " + _NO_EFFECT_FIGURES),
    (["figures", "--address", "tcp://h:1"], "--address has no effect with the local backend; "
     "add --backend dask or --backend ray"),
    (["figures", "--out", "{f}"], "--out {f} is a file, not a directory"),
    # experiment
    (["experiment", "a.toml", "--figure", "f.png"], "--figure has no effect without --report"),
    *[(["experiment", "a.toml", "--report", "r.md", *extra], f"{extra[0]} has no effect with "
       "--report (it runs nothing)")
      for extra in (["--workers", "2"], ["--backend", "dask"], ["--address", "tcp://h:1"],
                    ["--limit", "2"], ["--only", "seed=1"], ["--dry-run"], ["--no-progress"])],
    *[(["experiment", "a.toml", "--dry-run", *extra], f"{extra[0]} has no effect with "
       "--dry-run (it runs nothing)")
      for extra in (["--workers", "2"], ["--backend", "dask"], ["--address", "tcp://h:1"])],
    (["experiment", "a.toml", "--address", "tcp://h:1"], "--address has no effect with the "
     "local backend; add --backend dask or --backend ray"),
    (["experiment", "a.toml", "--report", "{f}/r.md"], "--report {f}/r.md: {f} is a file, not "
     "a directory"),
    (["experiment", "a.toml", "--report", "r.md", "--figure", "{f}/f.png"],
     "--figure {f}/f.png: {f} is a file, not a directory"),
    # check-run
    (["check-run", "{d}/none"], "RUN_DIR {d}/none is not a run folder"),
    (["check-run", ""], "RUN_DIR '' is not a run folder"),
    (["check-run", "{d}", "--sweep", "{d}/none"], "--sweep {d}/none is not a run folder"),
    (["check-run", "{d}", "--metric", "accuracy"], "--metric has no effect without --sweep (it "
     "picks the sweep's best ratio)"),
    (["check-run", "{d}", "--sweep", "x" * 300], "--sweep " + "x" * 40 + ": File name too "
     "long"),
]


def _ids(table: list) -> list[str]:
    """Plain test ids (verb and row number): mutmut passes ids back to pytest, which cannot
    always find one made of the row's text."""
    return [f"{argv[0].lstrip('-')}-{k}" for k, (argv, _) in enumerate(table)]


@pytest.mark.parametrize("argv,line", REFUSALS, ids=_ids(REFUSALS))
def test_each_refusal_is_its_one_line(argv, line, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f").write_text("a file")
    d, f = str(tmp_path), str(tmp_path / "f")
    argv = [a.replace("{d}", d).replace("{f}", f) for a in argv]
    line = line.replace("{d}", d).replace("{f}", f)
    got = error_of(capsys, *argv)
    if line.startswith("re:"):
        assert re.fullmatch(line[3:], got), got
    else:
        assert got == line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # nothing written


def test_unknown_set_symbols_list_the_known_ones(capsys):
    from hybridconv import spec

    assert error_of(capsys, "theory", "bound", "--set", "bogus=1") == (
        f"--set bogus: unknown symbol; known: {', '.join(spec.SYMBOLS)}")


# --- printed lines, word for word -----------------------------------------------------------------

def _fake_falsify(monkeypatch, seen: dict, *, verdict: str = "violated", outside=(),
                  diverged: int = 0):
    """``falsify`` replaced by one that records its arguments and returns a fixed result
    (the search itself: tests/test_validate.py)."""
    import pandas as pd

    import hybridconv.validate as validate
    from hybridconv.validate.check import Verdict
    from hybridconv.validate.falsify import FalsifyResult

    def fake(bound, family, **kw):
        seen.update(kw, family=family)
        if kw["progress"] is not None:
            kw["progress"](3, 0.5)
        v = Verdict(verdict, 2.5, 2.25, float("inf"), 2.0, 1.25, 1, kw["recheck_trials"],
                    kw["epochs"], kw["confidence"], outside=list(outside), diverged=diverged)
        return FalsifyResult(family, {"n": 2.0, "eta_x": 0.0123456}, 1.5, v, (1.125, 1.375),
                             kw["budget"], pd.DataFrame({"ratio": [1.5, 0.5]}))

    monkeypatch.setattr(validate, "falsify", fake)


def test_falsify_prints_the_recheck_and_the_worst_instance(monkeypatch, capsys, tmp_path):
    seen = {}
    _fake_falsify(monkeypatch, seen, outside=[r"C1: \eta_x n (L_x + L_{xy}) <= 1/2"],
                  diverged=2)
    code, out, err = run(capsys, "check", "--falsify", "--problem", "nonconvex", "--budget",
                         "12", "--seed", "3", "--trials", "5", "--epochs", "4", "--confidence",
                         "0.95")
    assert code == 0
    assert {k: seen[k] for k in ("family", "budget", "seed", "trials", "epochs", "confidence",
                                 "recheck_trials")} == {
        "family": "nonconvex", "budget": 12, "seed": 3, "trials": 5, "epochs": 4,
        "confidence": 0.95, "recheck_trials": 256}
    assert out.splitlines() == [
        "verdict: violated at confidence 0.95 (256 trials, 4 epochs, the re-check of the "
        "worst instance)",
        "empirical 2.5 (one-sided CI [2.25, inf]) vs bound 2: ratio 1.25",
        "outside the theorem's conditions: C1: eta_x n (L_x + L_xy) <= 1/2",
        "diverged trials: 2",
        "worst of 12 instances: ratio 1.5; n = 2, eta_x = 0.01235"]
    assert "falsify nonconvex" in err  # the progress bar names the search
    code, out, _ = run(capsys, "check", "--falsify", "--budget", "12", "--json",
                       "--no-progress", "--history", str(tmp_path / "h.csv"))
    d = json.loads(out)
    assert code == 0 and seen["progress"] is None
    assert (d["verdict"], d["ci_upper"], d["search_ratio"], d["ratio_ci"], d["worst"],
            d["evaluations"], d["family"]) == ("violated", None, 1.5, [1.125, 1.375],
                                               {"n": 2.0, "eta_x": 0.0123456}, 12, "quadratic")
    assert (tmp_path / "h.csv").read_text() == "ratio\n1.5\n0.5\n"
    code, _, _ = run(capsys, "check", "--falsify", "--budget", "12", "--no-progress",
                     "--history", str(tmp_path / "h.csv"), "--force")
    assert code == 0 and (tmp_path / "h.csv").read_text() == "ratio\n1.5\n0.5\n"


def test_a_verdict_that_holds_by_the_run_is_not_called_trivial(monkeypatch, capsys):
    _fake_falsify(monkeypatch, {}, verdict="holds")
    code, out, _ = run(capsys, "check", "--falsify", "--budget", "10", "--no-progress")
    assert code == 0 and out.splitlines()[0] == (
        "verdict: holds at confidence 0.99 (256 trials, 10 epochs, the re-check of the worst "
        "instance)")


@pytest.mark.parametrize("error,line", [
    (PermissionError(13, "Permission denied"), "cannot write {h}: Permission denied"),
    ("exists", "{h} appeared meanwhile; not replaced"),
], ids=["permission", "exists"])
def test_a_history_that_cannot_be_written_after_the_search_is_one_line(error, line,
                                                                        monkeypatch, capsys,
                                                                        tmp_path):
    from hybridconv._io import OutputExists

    _fake_falsify(monkeypatch, {})
    h = str(tmp_path / "h.csv")

    def refuse(path, text):
        raise OutputExists(f"{h} appeared meanwhile; not replaced") if error == "exists" \
            else error

    monkeypatch.setattr(cli, "write_text_exclusive", refuse)
    assert error_of(capsys, "check", "--falsify", "--budget", "12", "--no-progress",
                    "--history", h) == line.replace("{h}", h)


def test_a_check_outside_the_conditions_names_every_option_given(capsys):
    err = error_of(capsys, "check", "--eta-x", "1.5", "--eta-y", "1e-3", "--mu", "2e-3",
                   "--q", "2", "--n", "4", "--trials", "4", "--epochs", "2")
    assert err.startswith("with --eta-x 1.5, --eta-y 0.001, --mu 0.002, --q 2, --n 4: the "
                          "instance breaks the theorem's conditions: C1: eta_x*n*(L_x + L_xy) "
                          "<= 1/2 (got ")
    assert err.endswith(" (--allow-outside checks it anyway)") and "\\" not in err


def _run_check(run_dir: str, **changes):
    """A :class:`~hybridconv.validate.realrun.RunCheck` as ``check_run`` returns it, by hand
    (the real one: tests/test_realrun.py, and test_hostile's plain-text case)."""
    import dataclasses

    import pandas as pd

    from hybridconv.validate.realrun import RunCheck

    values = {"L_x": 3.0, "L_y": 2.0, "L_xy": 0.5, "sigma_x": 0.2, "sigma_y": 0.5477225575,
              "Theta_x": 0.0, "Theta_y": 0.0, "Delta": 0.7, "eta_x": 1.23456e-05,
              "eta_y": 0.05, "mu": 0.001, "q": 2.0, "n": 64.0, "T": 3.0, "d_x": 22713.0}
    rc = RunCheck(run_dir, values, [r"C1: \eta_x n (L_{x} + L_{xy}) <= 1/2"],
                  {"eta_x": 7.135721e-05, "eta_y": 0.1}, pd.DataFrame({"epoch": [0, 1]}),
                  {"Delta (initial gap)": 0.99881, "sigma_x^2": 0.00119}, "Delta (initial gap)",
                  4.9, 0.416, 12.3456, 2.5, [r"C3: \eta_x (L_x + L_{xy}) (r + 1)/q <= 1/4"],
                  0.45, 3.501, 1.75, 1513.8335, 91.25, 4050.0,
                  notes=["constants are local estimates"])
    return dataclasses.replace(rc, **changes)


def test_check_run_prints_its_result_in_words(capsys, tmp_path, monkeypatch):
    import math

    import hybridconv.validate.realrun as realrun

    run_dir = str(tmp_path)
    rc = _run_check(run_dir)
    monkeypatch.setattr(realrun, "check_run", lambda d: rc if d == run_dir else None)
    code, out, _ = run(capsys, "check-run", run_dir, "--json")
    assert code == 0 and json.loads(out) == json.loads(json.dumps(rc.as_dict()))
    code, text, _ = run(capsys, "check-run", run_dir)
    assert code == 0 and text.splitlines() == [
        f"run: {run_dir}",
        "constants (max over measured points): L_x = 3, L_y = 2, L_xy = 0.5, sigma_x = 0.2, "
        "sigma_y = 0.5477, Delta = 0.7",
        "hyper-parameters: eta_x = 1.235e-05, eta_y = 0.05, mu = 0.001, q = 2, n = 64, T = 3, "
        "d_x = 22713",
        "conditions at these rates: C1: eta_x n (L_x + L_xy) <= 1/2",
        "largest admissible rates: eta_x = 7.14e-05, eta_y = 0.1",
        "dominant term under H1: Delta (initial gap) (99.9%)",
        "conditions under the effective rank: C3: eta_x (L_x + L_xy) (r + 1)/q <= 1/4",
        "bound / measured at T = 3:",
        "  H1, min_t ||grad F||^2: 4.9 / 0.416 = 11.78",
        "  effective rank r = 12.35, min_t ||grad F||^2: 2.5 / 0.416 = 6.01",
        "  H1, adapter (1/T) sum_t ||grad_y F||^2: 3.501 / 0.45 = 7.78",
        "  effective rank, adapter: 1.75 / 0.45 = 3.889",
        "eta_y / eta_x: used 4050, theorem's best 1514 (effective rank: 91.25)",
        "note: constants are local estimates"]
    rc = _run_check(run_dir, violated=[], violated_er=[], dominant="", notes=[],
                    effective_rank=math.nan, predicted_ratio_er=math.nan)
    code, text, _ = run(capsys, "check-run", run_dir)
    lines = text.splitlines()
    assert "conditions at these rates: all hold" in lines
    assert not any(s.startswith(("dominant", "conditions under", "  effective rank", "note"))
                   for s in lines), lines
    assert lines[-1] == "eta_y / eta_x: used 4050, theorem's best 1514"


def test_check_run_with_a_sweep_names_the_best_ratio(capsys, tmp_path, monkeypatch):
    import pandas as pd

    import hybridconv.validate.realrun as realrun

    run_dir = str(tmp_path)
    monkeypatch.setattr(realrun, "check_run", lambda d: _run_check(d))
    seen = []
    table = pd.DataFrame({"ratio": [10.0, 1000.0], "mean": [0.5, 0.75], "best": [False, True]})
    monkeypatch.setattr(realrun, "sweep_summary",
                        lambda dirs, metric: seen.append((dirs, metric)) or table)
    code, text, _ = run(capsys, "check-run", run_dir, "--sweep", run_dir, "--metric",
                        "accuracy")
    assert code == 0 and seen == [([run_dir], "accuracy")]
    assert text.splitlines()[-2] == "sweep (accuracy, mean over seeds): best ratio 1000 (0.75)"
    code, out, _ = run(capsys, "check-run", run_dir, "--sweep", run_dir, "--json")
    assert json.loads(out)["sweep"] == table.to_dict("records") and seen[-1][1] == "test_loss"

    def bad(dirs, metric):
        raise ValueError("metric accuracy is missing from the sweep's results.json")

    monkeypatch.setattr(realrun, "sweep_summary", bad)
    assert error_of(capsys, "check-run", run_dir, "--sweep", run_dir) == (  # names the option
        "--metric accuracy is missing from the sweep's results.json")
    monkeypatch.setattr(realrun, "check_run", lambda d: 1 / 0)
    assert error_of(capsys, "check-run", run_dir) == (
        "the values given overflow float64 in this computation (ZeroDivisionError: division by "
        "zero); use values of more moderate size")


def _complexities():
    """A high-probability complexity and its in-expectation form, in the theorem's symbols
    (LaTeX names, as the real ones: ``\\varepsilon``, ``\\sigma_x``)."""
    import sympy as sp

    from hybridconv.theory import sym
    from hybridconv.theory.bound import Complexity

    eps, delta, sx, dx, n = (sym(k) for k in ("eps", "delta", "sigma_x", "d_x", "n"))
    regime = "dominated by noise linear in eta: T = Theta(eps^-4)"
    expected = Complexity(sp.Integer(-4), sx**2 * (dx + 1) / (eps**4 * n),
                          eps**2 / (sx**2 * (dx + 1)), sp.Integer(1), eps / sp.sqrt(dx),
                          regime, sx * sp.Float(0.123456789))
    return expected, Complexity(
        sp.Integer(-4), expected.epochs / delta**2, expected.eta * delta,
        sp.Integer(1), expected.mu_max * sp.sqrt(delta), regime + "; with probability >= 1 - "
        "delta", expected.eps_max / sp.sqrt(delta), probability=True)


def test_complexity_side_by_side_with_the_papers_claim(capsys, monkeypatch):
    """A high-probability theorem's complexity (l-smooth) is set beside its in-expectation
    form (``delta`` is not among the latter's values) and the paper's claim; the JSON has both,
    in the plain names the text prints (LaTeX only in ``epochs_latex``). The theorem is a
    stand-in here (the real computation takes seconds: tests/test_theorem.py)."""
    from types import SimpleNamespace

    import hybridconv.theory.bound as bound_mod

    expected, cx = _complexities()
    seen = []

    def complexity(**kw):
        seen.append(("complexity", kw))
        return cx

    def in_expectation(**kw):
        seen.append(("in expectation", kw))
        return expected

    stand_in = SimpleNamespace(complexity=complexity, _complexity=in_expectation)
    monkeypatch.setattr(bound_mod, "hybrid_bound", lambda **kw: seen.append(kw) or stand_in)
    args = ["theory", "--assumption", "l-smooth", "complexity", "--set", "delta=0.1", "--set",
            "n=8", "--ratio", "2"]
    code, out, _ = run(capsys, *args, "--json")
    assert seen == [{"assumption": "l-smooth", "directions": "gaussian",
                     "difference": "central", "version": "sharp"},
                    ("complexity", {"ratio": 2.0, "delta": 0.1, "n": 8.0}),
                    ("in expectation", {"ratio": 2.0, "n": 8.0})]
    d = json.loads(out)
    e = d["in_expectation"]
    assert code == 0 and d["paper_claim"] == cli.PAPER_CLAIM
    assert (d["epochs"], d["eta"], d["mu_max"], d["eps_max"]) == (
        "sigma_x**2*(d_x + 1)/(delta**2*eps**4*n)", "delta*eps**2/(sigma_x**2*(d_x + 1))",
        "sqrt(delta)*eps/sqrt(d_x)", "0.123457*sigma_x/sqrt(delta)")
    assert (e["epochs"], e["eta"], e["mu_max"], e["eps_max"]) == (
        "sigma_x**2*(d_x + 1)/(eps**4*n)", "eps**2/(sigma_x**2*(d_x + 1))", "eps/sqrt(d_x)",
        "0.123457*sigma_x")
    assert "\\varepsilon" in d["epochs_latex"] and "\\varepsilon" in e["epochs_latex"]
    code, text, _ = run(capsys, *args)
    assert text.splitlines() == [
        "epochs to reach min_t ||grad F(z_t)||^2 <= eps^2 with probability >= 1 - delta: T = "
        "Theta(eps^-4)",
        f"leading order: T = {d['epochs']}",
        f"step size: eta = {d['eta']}",
        f"smoothing radius: mu <= {d['mu_max']}",
        d["regime"],
        "side by side:",
        f"  this theorem, in expectation: T = {e['epochs']}",
        f"  this theorem, probability 1 - delta (Markov): T = {d['epochs']}",
        f"  the paper's claim: {cli.PAPER_CLAIM}",
        "  where each is better: the paper's delta enters only the eps^-2 term (1/delta against "
        "our 1/delta^2 on eps^-4), so for small delta it needs fewer epochs; ours has explicit "
        "constants and shows the d_x (or r) factor of the ZO noise that the O() hides, and in "
        "expectation no delta"]


def test_steps_text_names_every_active_condition_and_refuses_a_non_finite_rate(capsys,
                                                                            monkeypatch):
    """``theory steps`` prints the conditions active at the optimum, all of them; a rate that
    overflows is one line naming the largest value given. (A stand-in theorem: two active
    conditions need a search over the values.)"""
    import dataclasses
    from types import SimpleNamespace

    import hybridconv.theory.bound as bound_mod
    from hybridconv.theory.bound import StepSizes

    steps = [StepSizes(1e-3, 2.5e-2, 0.5, 2e-3, 1.25, 25.0, 2.5, ("C1", "C3"),
                       "min_t E||grad F||^2")]
    seen = []

    def optimal(weights, **values):
        seen.append((weights, values))
        return steps[0]

    stand_in = SimpleNamespace(optimal_step_sizes=optimal)
    monkeypatch.setattr(bound_mod, "hybrid_bound", lambda **kw: stand_in)
    code, out, _ = run(capsys, "theory", "steps", "--set", "n=16", "--set", "L_x=1e300")
    assert code == 0 and seen == [((1.0, 1.0), {"n": 16.0, "L_x": 1e300})]
    assert out.splitlines() == [
        "measure: min_t E||grad F||^2",
        "two rates:  eta_x = 0.001, eta_y = 0.025 (eta_y/eta_x = 25), bound = 0.5",
        "one rate:   eta = 0.002, bound = 1.25",
        "gain of two rates: 2.5x; active conditions: C1, C3"]
    fine = steps[0]
    for what in ("eta_x", "eta_y", "eta", "bound_two_rates", "bound_single_rate"):
        steps[0] = dataclasses.replace(fine, **{what: float("inf")})
        assert error_of(capsys, "theory", "steps", "--set", "n=16", "--set", "L_x=1e300") == (
            f"--set values: {what} is not finite at these values (float64 overflows); the "
            "largest is L_x=1e+300")


def test_steps_compare_builds_the_stated_problem_and_prints_the_comparison(monkeypatch,
                                                                          capsys):
    """``theory steps --compare``: the measured problem's size, mu and q come from --set
    (defaults n 8, d_x 16, d_y 4, mu 1e-3, q 1); the comparison itself is
    tests/test_predict.py's."""
    from types import SimpleNamespace

    import hybridconv.figures.measure as measure
    import hybridconv.validate.predict as predict
    from hybridconv.figures import regimes

    built, compared = [], []
    monkeypatch.setattr(measure, "build_problem", lambda *a: built.append(a) or "problem")

    def compare(problem, **kw):
        compared.append((problem, kw))
        return SimpleNamespace(as_dict=lambda: {"predicted_ratio": 27.5},
                               lines=lambda: ["predicted eta_y/eta_x 27.5", "measured 4.25"])

    monkeypatch.setattr(predict, "compare_steps", compare)
    code, out, _ = run(capsys, "theory", "steps", "--compare", "--json")
    assert code == 0 and json.loads(out) == {"predicted_ratio": 27.5, "problem": {
        "family": regimes.FAMILY, "n": 8, "d_x": 16, "d_y": 4, **regimes.PARAMS}}
    assert built[-1] == (regimes.FAMILY, 8, 16, 4, regimes.SEED, regimes.PARAMS)
    kw = compared[-1][1]
    assert compared[-1][0] == "problem" and {k: kw[k] for k in ("epochs", "trials", "grid",
                                                                 "mu", "q", "seed")} == {
        "epochs": 60, "trials": 8, "grid": 7, "mu": 1e-3, "q": 1, "seed": regimes.SEED}
    code, out, _ = run(capsys, "theory", "steps", "--compare", "--set", "n=6", "--set",
                       "d_x=10", "--set", "d_y=3", "--set", "mu=0.002", "--set", "q=2")
    assert built[-1][1:4] == (6, 10, 3) and (compared[-1][1]["mu"], compared[-1][1]["q"]) == (
        0.002, 2)
    assert out.splitlines() == [
        f"problem: {regimes.FAMILY} n = 6, d_x = 10, d_y = 3, {regimes.PARAMS}; mu = 0.002, "
        "q = 2, 60 epochs, 8 trials", "predicted eta_y/eta_x 27.5", "measured 4.25"]

    def refuse(problem, **kw):
        raise ValueError("grid must be >= 3")

    monkeypatch.setattr(predict, "compare_steps", refuse)
    assert error_of(capsys, "theory", "steps", "--compare") == "grid must be >= 3"


def test_check_mutations_hands_its_options_to_the_report_and_lists_the_files(monkeypatch,
                                                                              capsys, tmp_path):
    """``check --mutations`` (the report itself: tests/test_validate.py, slow): its seed,
    budget (a third for the falsifier), confidence and progress reach the report, and the
    summary names the files written; existing files are refused unless --force."""
    import pandas as pd

    import hybridconv.validate.mutate as mutate

    seen = {}

    def report(bound, **kw):
        seen.update(kw, bound=bound)
        return pd.DataFrame({"killed": [True, True, False, True]})

    def write(rep, out_dir, *, force=False):  # the writer itself: tests/test_validate.py
        seen.update(written=len(rep), force=force)
        docs = Path(out_dir) / "docs"
        docs.mkdir(exist_ok=True)
        for name in ("mutations.md", "mutations.csv"):
            (docs / name).write_text("killed\n")
        return docs / "mutations.md", docs / "mutations.csv"

    monkeypatch.setattr(mutate, "mutation_report", report)
    monkeypatch.setattr(mutate, "write_mutation_report", write)
    code, out, _ = run(capsys, "check", "--mutations", "--out-dir", str(tmp_path), "--seed",
                       "4", "--budget", "31", "--confidence", "0.9", "--no-progress")
    docs = tmp_path / "docs"
    assert code == 0 and {k: seen[k] for k in ("seed", "falsify_budget", "confidence",
                                               "progress")} == {
        "seed": 4, "falsify_budget": 10, "confidence": 0.9, "progress": False}
    assert seen["bound"].theorem is not None  # the family's bound, not a stand-in
    assert out == (f"kill_rate: 0.75\nkilled: 3\nmutations: 4\nfiles: ['{docs / 'mutations.md'}"
                   f"', '{docs / 'mutations.csv'}']\n")
    assert (seen["written"], seen["force"]) == (4, False)
    assert error_of(capsys, "check", "--mutations", "--out-dir", str(tmp_path)) == (
        f"{docs / 'mutations.md'} exists; pass --force to overwrite it")
    code, out, _ = run(capsys, "check", "--mutations", "--out-dir", str(tmp_path), "--force",
                       "--json")
    assert code == 0 and json.loads(out) == {
        "kill_rate": 0.75, "killed": 3, "mutations": 4,
        "files": [str(docs / "mutations.md"), str(docs / "mutations.csv")]}
    assert seen["progress"] is True and seen["seed"] == 0 and seen["force"] is True


@pytest.mark.parametrize("error,line", [
    (PermissionError(13, "Permission denied"), "cannot write under {d}: Permission denied"),
    (ValueError("budget must be >= 30 for --report"), "--budget must be >= 30 for --report"),
    (OverflowError("math range error"), "the values given overflow float64 in this "
     "computation (OverflowError: math range error); use values of more moderate size"),
], ids=["permission", "option", "overflow"])
def test_check_report_errors_are_one_line(error, line, monkeypatch, capsys, tmp_path):
    from hybridconv.validate import tightness

    def fail(out_dir, **kw):
        raise error

    monkeypatch.setattr(tightness, "tightness_report", fail)
    assert error_of(capsys, "check", "--report", "--out-dir", str(tmp_path)) == line.replace(
        "{d}", str(tmp_path))


def test_check_report_lists_the_files_it_wrote(monkeypatch, capsys, tmp_path):
    import pandas as pd

    from hybridconv.validate import tightness

    monkeypatch.setattr(tightness, "tightness_report",
                        lambda out_dir, **kw: pd.DataFrame({"max_ratio": [0.25, 0.5]}))
    code, out, _ = run(capsys, "check", "--report", "--out-dir", str(tmp_path), "--json")
    docs = tmp_path / "docs"
    assert code == 0 and json.loads(out) == {
        "rows": 2, "max_ratio": 0.5,
        "files": [str(docs / "tightness.md"), str(docs / "tightness.csv")]}
    docs.mkdir()
    for name in ("tightness.md", "tightness.csv"):  # each of the two is kept
        (docs / name).write_text("old")
        assert error_of(capsys, "check", "--report", "--out-dir", str(tmp_path)) == (
            f"{docs / name} exists; pass --force to overwrite it")
        (docs / name).unlink()


def test_simulate_says_what_it_wrote(capsys, tmp_path):
    import pandas as pd

    out = tmp_path / "s.csv"
    code, text, _ = run(capsys, "simulate", "--n", "4", "--d-x", "3", "--d-y", "2", "--epochs",
                        "3", "--trials", "3", "--out", str(out), "--no-progress")
    df = pd.read_csv(out)
    assert code == 0
    last = df[df["epoch"] == 3]
    assert len(df) == 12 and not df["diverged"].any()
    assert text == (f"wrote 12 rows to {out}: final mean ||grad F||^2 = "
                    f"{last['grad_sq'].mean():.4g} over 3 of 3 trials (0 diverged)\n")
    code, text, _ = run(capsys, "simulate", "--n", "4", "--d-x", "3", "--d-y", "2", "--epochs",
                        "3", "--trials", "2", "--eta-x", "10", "--eta-y", "10", "--out",
                        str(out), "--force", "--no-progress")
    assert code == 0 and text == (f"wrote 8 rows to {out}: final mean ||grad F||^2 = none "
                                  "(every trial diverged) over 0 of 2 trials (2 diverged)\n")
    assert len(pd.read_csv(out)) == 8  # --force replaced the file


@pytest.mark.parametrize("error,line", [
    (PermissionError(13, "Permission denied"), "cannot write {o}: Permission denied"),
    ("exists", "{o} appeared meanwhile; not replaced"),
], ids=["permission", "exists"])
def test_simulate_cannot_write_after_the_run_is_one_line(error, line, monkeypatch, capsys,
                                                         tmp_path):
    from hybridconv._io import OutputExists

    o = str(tmp_path / "s.csv")

    def refuse(path, text):
        raise OutputExists(f"{o} appeared meanwhile; not replaced") if error == "exists" \
            else error

    monkeypatch.setattr(cli, "write_text_exclusive", refuse)
    assert error_of(capsys, "simulate", "--n", "4", "--d-x", "3", "--d-y", "2", "--epochs",
                    "2", "--trials", "2", "--out", o, "--no-progress") == line.replace("{o}", o)


def test_simulate_names_the_option_of_a_config_error_as_typed(monkeypatch, capsys, tmp_path):
    import hybridconv.sim.runner as runner

    bars = []

    def refuse(problem, config, progress=True):
        bars.append(progress)
        raise ValueError("eta_x must be below 2 / L_x = 0.5 for this problem, got 0.7")

    monkeypatch.setattr(runner, "simulate", refuse)
    error_of(capsys, "simulate", "--out", str(tmp_path / "s.csv"), "--no-progress")
    error_of(capsys, "simulate", "--out", str(tmp_path / "s.csv"))
    assert bars == [False, True]  # the bar unless --no-progress
    assert error_of(capsys, "simulate", "--lr-x", "0.7", "--out", str(tmp_path / "s.csv")) == (
        "--lr-x must be below 2 / L_x = 0.5 for this problem, got 0.7")


# --- finetune, experiment, figures: the CLI's part ------------------------------------------------

RESULT = {"status": "completed", "accuracy": 0.8125, "epochs": 2, "steps": 6,
          "forward_passes": 18, "wall_s": 1.25, "peak_mem_bytes": 300 * 2**20, "curve": []}


@pytest.fixture
def fake_finetune(monkeypatch):
    """The trainer replaced by one that records its call and returns ``RESULT`` (updated by
    the test through the returned dict's ``"result"``)."""
    pytest.importorskip("torch")
    import hybridconv.finetune.trainer as trainer

    state = {"calls": [], "result": dict(RESULT), "error": None}

    def fake(cfg, out, *, resume=False, force=False, progress=True):
        state["calls"].append((cfg, out, resume))
        if state["error"] is not None:
            raise state["error"]
        return state["result"]

    monkeypatch.setattr(trainer, "finetune", fake)
    return state


def test_a_diverged_finetune_says_why_and_exits_1(fake_finetune, capsys, tmp_path):
    import time

    out = str(tmp_path / "run")
    fake_finetune["result"] = {**RESULT, "status": "diverged", "accuracy": 0.5,
                               "error": "non-finite loss at step 3"}
    started = time.perf_counter()
    code, text, _ = run(capsys, "finetune", "--out", out, "--no-progress")
    wall = time.perf_counter() - started
    m = re.fullmatch(r"diverged \(non-finite loss at step 3\): accuracy 0\.5000 after 2 epochs, "
                     r"6 steps, 18 forward passes, training 1\.2 s \((\d+\.\d) s in all, with "
                     r"loading, evaluation and diagnostics\), peak 300 MiB -> "
                     + re.escape(out) + r"/results\.json\n", text)
    assert code == 1 and m, text
    assert float(m.group(1)) <= wall + 0.05  # the command's own time, not a clock reading
    fake_finetune["result"] = {**RESULT, "status": "diverged"}
    code, text, _ = run(capsys, "finetune", "--out", out, "--no-progress")
    assert code == 1 and text.startswith("diverged: accuracy 0.8125 after 2 epochs")


def test_finetune_errors_name_the_option_as_typed(fake_finetune, capsys, tmp_path):
    out = str(tmp_path / "run")
    fake_finetune["error"] = ValueError("lr_x is above the stable rate 0.01 of this model")
    assert error_of(capsys, "finetune", "--out", out, "--lr-x", "0.5") == (
        "--lr-x is above the stable rate 0.01 of this model")
    assert error_of(capsys, "finetune", "--out", out, "--eta-x", "0.5") == (
        "--eta-x is above the stable rate 0.01 of this model")
    assert error_of(capsys, "finetune", "--out", out) == (
        "--eta-x is above the stable rate 0.01 of this model")  # not typed: its main spelling
    fake_finetune["error"] = PermissionError(13, "Permission denied")
    assert error_of(capsys, "finetune", "--out", out) == "[Errno 13] Permission denied"
    fake_finetune["error"] = ModuleNotFoundError("No module named 'peft'", name="peft")
    assert error_of(capsys, "finetune", "--out", out) == (
        "peft is not installed: pip install -e '.[llm]' and pip install --no-deps -r "
        "requirements-data.txt")


def test_finetune_names_its_default_folder_after_the_run(fake_finetune, capsys, tmp_path,
                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run(capsys, "finetune", "--model", "./models/my:net/", "--task", "boolq", "--method",
               "zo", "--seed", "7", "--no-progress")[0] == 0
    assert fake_finetune["calls"][-1][1] == str(Path("runs") / "models_my-net-boolq-zo-s7")


def _saved(out: Path, **changes) -> None:
    import dataclasses

    from hybridconv.finetune.trainer import FinetuneConfig

    out.mkdir()
    (out / "config.json").write_text(json.dumps({**dataclasses.asdict(FinetuneConfig()),
                                                 **changes}))


def test_resume_takes_the_saved_settings_and_refuses_contradictions(fake_finetune, capsys,
                                                                    tmp_path):
    out = tmp_path / "run"
    _saved(out, lr_y=0.03, seed=4)
    code, _, _ = run(capsys, "finetune", "--out", str(out), "--resume", "--epochs", "9",
                     "--no-progress")
    cfg = fake_finetune["calls"][-1][0]
    assert code == 0 and (cfg.lr_y, cfg.seed, cfg.epochs) == (0.03, 4, 9)
    assert fake_finetune["calls"][-1][2] is True
    assert error_of(capsys, "finetune", "--out", str(out), "--resume", "--lr-y", "0.1") == (
        f"--lr-y 0.1 contradicts the run in {out} (lr_y 0.03); drop it, or start a new run "
        "with --force")
    assert run(capsys, "finetune", "--out", str(out), "--resume", "--lr-y", "0.03",
               "--no-progress")[0] == 0  # the saved value itself is no contradiction


@pytest.mark.parametrize("text,line", [
    ('{"bogus": 1}', "{c} is malformed: unknown setting 'bogus'; restore it, or start the run "
     "again with --force"),
    ("[1, 2]", "re:{c} .*a JSON object of settings.*restore it, or start the run again with "
     "--force"),
], ids=["unknown-setting", "not-an-object"])
def test_resume_names_a_malformed_config(text, line, fake_finetune, capsys, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(text)
    got = error_of(capsys, "finetune", "--out", str(out), "--resume")
    line = line.replace("{c}", str(out / "config.json"))
    assert re.fullmatch(line[3:], got) if line.startswith("re:") else got == line, got
    assert fake_finetune["calls"] == []


FINETUNE_REFUSALS = [
    (["--fetch", "winogrande", "--epochs", "2"], "--epochs has no effect with --fetch (it only "
     "downloads)"),
    (["--resume", "--force", "--out", "x"], "--resume and --force contradict each other: "
     "--resume continues the run in --out, --force starts it again"),
    (["--resume", "--out", "{d}/r"], "--resume: {d}/r holds no run (no config.json); start it "
     "without --resume"),
    (["--out", "{f}"], "--out {f} is a file, not a directory"),
    (["--method", "fo", "--mu", "1e-3"], "--mu has no effect with --method fo (no ZO block)"),
    (["--method", "fo-peft", "--directions", "sphere"], "--directions has no effect with "
     "--method fo-peft (no ZO block)"),
    (["--method", "zo", "--lr-y", "0.1"], "--lr-y has no effect with --method zo (no FO "
     "block)"),
    (["--method", "zo-peft", "--fo-optimizer", "adam"], "--fo-optimizer has no effect with "
     "--method zo-peft (no FO block)"),
    (["--method", "fo", "--peft", "lora"], "--peft has no effect with --method fo (it trains "
     "every weight)"),
    (["--peft", "prompt", "--lora-r", "4"], "--lora-r has no effect without a LoRA module "
     "(--peft lora)"),
    (["--num-virtual-tokens", "4"], "--num-virtual-tokens has no effect without --peft prompt "
     "or prefix"),
    (["--method", "fo-lora", "--schedule", "gauss-seidel"], "--schedule has no effect with "
     "--method fo-peft (one oracle only)"),  # fo-lora is fo-peft with --peft lora
    (["--diagnostics-probes", "4"], "--diagnostics-probes has no effect without "
     "--diagnostics-every"),
]


@pytest.mark.parametrize("argv,line", FINETUNE_REFUSALS, ids=_ids(FINETUNE_REFUSALS))
def test_each_finetune_refusal_is_its_one_line(argv, line, fake_finetune, capsys, tmp_path,
                                                monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f").write_text("a file")
    d, f = str(tmp_path), str(tmp_path / "f")
    argv = [a.replace("{d}", d).replace("{f}", f) for a in argv]
    assert error_of(capsys, "finetune", *argv) == line.replace("{d}", d).replace("{f}", f)
    assert fake_finetune["calls"] == [] and sorted(p.name for p in tmp_path.iterdir()) == ["f"]


@pytest.fixture
def fake_sweeps(monkeypatch, tmp_path):
    """``experiment``'s spec loader and runner replaced (the sweeps themselves:
    tests/test_experiments.py): one sweep of three runs, r1 finished."""
    from types import SimpleNamespace

    import hybridconv.experiments.runner as runner
    import hybridconv.experiments.spec as spec_mod

    def run_(i):
        return SimpleNamespace(run_id=f"r{i}", label=lambda: "zo", settings={
            "model": "minilm", "task": "mr", "seed": i, "lr_x": 1e-4})

    state = {"subsets": [], "results": [{"run_id": "r0", "status": "completed"}]}

    def sweep(path):
        s = SimpleNamespace(name=path.removesuffix(".toml"), results=tmp_path / f"{path}.csv",
                            runs_dir=tmp_path / "runs", runs=[run_(0), run_(1), run_(2)],
                            describe=lambda: f"sweep {path}: 3 runs")
        s.subset = lambda only: state["subsets"].append(only) or s
        return s

    monkeypatch.setattr(spec_mod, "load_spec", sweep)
    monkeypatch.setattr(runner, "finished_runs", lambda path: {"r1"})
    monkeypatch.setattr(runner, "run_experiment", lambda s, **kw: state["results"])
    return state


def test_experiment_dry_run_lists_what_a_limited_run_would_run(fake_sweeps, capsys):
    code, text, _ = run(capsys, "experiment", "a.toml", "--dry-run", "--limit", "1", "--only",
                        "seed=0")
    assert code == 0 and fake_sweeps["subsets"] == [["seed=0"]]
    assert text.splitlines()[1:] == ["  r0 minilm mr zo seed 0 lr_x 0.0001 lr_y None"]


def test_experiment_reports_runs_that_did_not_complete(fake_sweeps, capsys, tmp_path):
    fake_sweeps["results"] = [{"run_id": "r0", "status": "completed"},
                              {"run_id": "r2", "status": "failed"}]
    code, text, _ = run(capsys, "experiment", "a.toml", "--no-progress")
    assert code == 1 and text.splitlines() == [
        f"sweep a.toml: 3 runs; 1 finished, 2 to run -> {tmp_path / 'a.toml.csv'}",
        "  r2: failed ", "a: ran 2 runs, 1 not completed"]


def test_experiment_names_runs_other_processes_hold(fake_sweeps, capsys, tmp_path):
    """A run claimed by a live process (its ``.lock`` note): counted on the header line, marked
    on its dry-run line; a run left to that process ("busy") is no failure (exit 0)."""
    import socket

    (tmp_path / "runs" / "r2").mkdir(parents=True)
    (tmp_path / "runs" / "r2" / ".lock").write_text(f"{socket.gethostname()} {os.getpid()}\n")
    code, text, _ = run(capsys, "experiment", "a.toml", "--dry-run")
    assert code == 0 and text.splitlines() == [
        f"sweep a.toml: 3 runs; 1 finished, 2 to run (1 running now in other processes) -> "
        f"{tmp_path / 'a.toml.csv'}",
        "  r0 minilm mr zo seed 0 lr_x 0.0001 lr_y None",
        f"  r2 minilm mr zo seed 2 lr_x 0.0001 lr_y None (running: pid {os.getpid()})"]
    fake_sweeps["results"] = [{"run_id": "r0", "status": "completed"},
                              {"run_id": "r2", "status": "busy"}]
    code, text, _ = run(capsys, "experiment", "a.toml", "--no-progress")
    assert code == 0 and text.splitlines()[1:] == [
        "a: ran 1 runs, 0 not completed; 1 left to the other process running them"]


def test_experiment_errors_name_the_spec_file_once(fake_sweeps, monkeypatch, capsys):
    import hybridconv.experiments.runner as runner
    import hybridconv.experiments.spec as spec_mod

    monkeypatch.setattr(spec_mod, "load_spec", lambda p: (_ for _ in ()).throw(
        ValueError(f"{p}: unknown key 'lr'")))
    assert error_of(capsys, "experiment", "a.toml") == "a.toml: unknown key 'lr'"
    monkeypatch.setattr(spec_mod, "load_spec", lambda p: (_ for _ in ()).throw(
        ModuleNotFoundError("No module named 'peft'", name="peft")))
    assert error_of(capsys, "experiment", "a.toml") == (
        "peft is not installed: pip install -e '.[llm]' and pip install --no-deps -r "
        "requirements-data.txt")
    monkeypatch.undo()
    monkeypatch.setattr(spec_mod, "load_spec", lambda p: _EmptySweep(p))
    monkeypatch.setattr(runner, "finished_runs", lambda path: set())

    def refuse(s, **kw):
        raise ValueError("workers must be an integer >= 1, got 0")

    monkeypatch.setattr(runner, "run_experiment", refuse)
    assert run(capsys, "experiment", "a.toml") == (  # the sweep's line, then the error
        2, "an empty sweep; 0 finished, 0 to run -> a.toml.csv\n",
        "hybridconv: error: --workers must be an integer >= 1, got 0\n")


class _EmptySweep:
    """A sweep with no runs."""

    def __init__(self, path: str):
        self.name, self.results, self.runs = path, path + ".csv", []

    def describe(self) -> str:
        return "an empty sweep"


def _fake_build(monkeypatch, seen: dict, error: BaseException | None = None):
    import hybridconv.figures.build as build

    def fake(names, **kw):
        seen.update(kw, names=names)
        if error is not None:
            raise error
        return {"rates": {"compute_seconds": 1.5, "replot_seconds": 0.25, "replaced": False}}

    monkeypatch.setattr(build, "build", fake)


def test_figures_quick_writes_under_its_own_folder_and_says_how_it_was_made(monkeypatch,
                                                                            capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    seen = {}
    _fake_build(monkeypatch, seen)
    code, text, _ = run(capsys, "figures", "--quick", "--workers", "2")
    assert code == 0 and seen["command"] == "hybridconv figures --quick --workers 2"
    assert text == ("rates: paper_figures/quick/rates.png in 1.5 s\n"
                    "manifest: paper_figures/quick/MANIFEST.json\n")


@pytest.mark.parametrize("error,line", [
    (PermissionError(13, "Permission denied"), "cannot write under paper_figures: Permission "
     "denied"),
    (ModuleNotFoundError("No module named 'transformers'", name="transformers"),
     "transformers is not installed: pip install -e '.[llm]'"),
], ids=["permission", "missing-package"])
def test_figures_errors_are_one_line(error, line, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    _fake_build(monkeypatch, {}, error)
    assert error_of(capsys, "figures") == line


def test_each_verbs_help_shows_its_option_groups(capsys):
    def help_of(*argv):
        with pytest.raises(SystemExit) as e:
            main([*argv, "--help"])
        assert e.value.code == 0
        return capsys.readouterr().out

    out = help_of("simulate")
    assert "\nproblem:\n" in out and "\nalgorithm (SimConfig):\n" in out
    assert "\noutput:\n" in out and "--eta-x" in out and "--out FILE.csv" in out
    out = help_of("theory")
    flat = " ".join(out.split())
    for text in ("--latex print the theorem as LaTeX", "--json print the theorem as JSON",
                 "--derivation print the whole derivation as Markdown with LaTeX",
                 "bound evaluate the bound at given values",
                 "steps step sizes that minimize the bound",
                 "complexity leading-order epochs to reach E||grad F||^2 <= eps^2"):
        assert text in flat, text
    out = help_of("theory", "steps")
    assert out.startswith("usage: hybridconv theory steps ")
    assert "\nstep sizes that minimize the bound\n" in out and "--weights" in out
    pytest.importorskip("torch")
    from hybridconv.finetune.models import MODELS

    out = help_of("finetune")
    assert "\nrun (FinetuneConfig):\n" in out and "\noutput:\n" in out
    assert f"{', '.join(MODELS)}, random:SHAPE (random weights of the shape of" in " ".join(
        out.split())
