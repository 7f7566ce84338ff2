"""The mutation-testing harness (scripts/mutation_testing.py) on one small module: mutmut
plants its mutants, the module's tests kill at least 90% of them (slow: about a minute)."""

from __future__ import annotations

import csv
import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _harness():
    spec = importlib.util.spec_from_file_location("mutation_testing",
                                                  ROOT / "scripts" / "mutation_testing.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["mutation_testing"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_the_samplers_tests_kill_their_mutants(tmp_path):
    pytest.importorskip("mutmut")
    h = _harness()
    copy = h.snapshot(tmp_path / "tree")
    conf = copy / "pyproject.toml"  # only the samplers' own tests, to keep it short
    conf.write_text(re.sub(r"pytest_add_cli_args_test_selection = \[[^\]]*\]",
                           'pytest_add_cli_args_test_selection = ["tests/test_sim.py", '
                           '"tests/test_finetune_sampler.py"]', conf.read_text()))
    module = "hybridconv/sim/samplers.py"
    assert h.run_module(module, max_children=2, root=copy) in (0, 1)
    rows = [r for r in h.results(copy) if r["module"] == module]
    killed = sum(r["status"] in ("killed", "timeout") for r in rows)
    assert len(rows) >= 30 and killed / len(rows) >= 0.9, h.table(rows)
    out = tmp_path / "m.csv"
    h.write_csv(rows, out)
    with out.open() as f:
        assert len(list(csv.DictReader(f))) == len(rows)
