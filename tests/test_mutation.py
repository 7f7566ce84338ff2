"""The mutation-testing harness (scripts/mutation_testing.py): its seeded sample of mutants and
the sample's interval (fast, without running mutmut), and one small module's mutants planted
and killed (slow: about a minute)."""

from __future__ import annotations

import csv
import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _harness():
    spec = importlib.util.spec_from_file_location("mutation_testing",
                                                  ROOT / "scripts" / "mutation_testing.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["mutation_testing"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_a_seed_names_the_same_mutants_whatever_their_order():
    h = _harness()
    names = [f"m.x_f__mutmut_{k}" for k in range(1, 500)]
    first = h.sample(names, 120, seed=0)
    assert first == h.sample(list(reversed(names)), 120, seed=0)
    assert len(first) == len(set(first)) == 120 and set(first) <= set(names)
    assert first == sorted(first)
    assert h.sample(names, 120, seed=1) != first
    assert h.sample(names, 10_000, seed=0) == sorted(names)  # more than there are: all


def test_the_sample_is_uniform():
    """Every name is drawn with probability n / N: over 400 seeds each of 20 names is drawn
    about 400 * 5 / 20 = 100 times (binomial sd 8.7; the bounds are 5.7 sd)."""
    h = _harness()
    names = [f"n{k:02d}" for k in range(20)]
    counts = dict.fromkeys(names, 0)
    for seed in range(400):
        for name in h.sample(names, 5, seed):
            counts[name] += 1
    assert 50 < min(counts.values()) and max(counts.values()) < 150, counts


@pytest.mark.parametrize("n, seed", [(0, 0), (-3, 0), (1.5, 0), (True, 0), (5, -1), (5, "a")])
def test_a_bad_sample_size_or_seed_is_refused(n, seed):
    h = _harness()
    with pytest.raises(ValueError, match="n \\(the sample size\\)|seed"):
        h.sample(["a", "b"], n, seed)


def test_the_interval_is_clopper_pearson():
    """The exact interval in closed form: the 2.5% quantile of Beta(k, n - k + 1) and the 97.5%
    quantile of Beta(k + 1, n - k) (Clopper and Pearson 1934)."""
    from scipy.stats import beta

    h = _harness()
    lo, hi = h.interval(108, 120)
    assert lo == pytest.approx(beta.ppf(0.025, 108, 13), rel=1e-9)
    assert hi == pytest.approx(beta.ppf(0.975, 109, 12), rel=1e-9)
    assert 0.831 < lo < 0.832 and 0.947 < hi < 0.948
    assert h.interval(120, 120)[1] == 1.0 and h.interval(0, 120)[0] == 0.0


def test_sampled_names_are_mutmuts_names():
    """The names come from mutmut's own mutation of the file, as ``mutmut run`` takes them."""
    pytest.importorskip("mutmut")
    h = _harness()
    names = h.mutant_names("hybridconv/sim/samplers.py")
    assert len(names) >= 30 and all(n.startswith("hybridconv.sim.samplers.x") for n in names)
    assert h.sample(names, 12, 0) == h.sample(h.mutant_names("hybridconv/sim/samplers.py"), 12, 0)


def test_a_cache_of_one_module_keeps_the_other_modules_rows(tmp_path):
    """Writing the CSV from a cache that tested cli.py only keeps what the CSV said of the
    other modules, and replaces cli.py's rows."""
    h = _harness()
    path = tmp_path / "m.csv"
    h.write_csv([{"module": "a.py", "mutant": "a.x_f__mutmut_1", "status": "killed"},
                 {"module": "cli.py", "mutant": "cli.x_g__mutmut_1", "status": "survived"}], path)
    fresh = [{"module": "a.py", "mutant": "a.x_f__mutmut_1", "status": "not checked"},
             {"module": "cli.py", "mutant": "cli.x_g__mutmut_1", "status": "killed"},
             {"module": "cli.py", "mutant": "cli.x_g__mutmut_2", "status": "not checked"}]
    rows = h.merged(fresh, path)
    assert sorted(map(tuple, (r.values() for r in rows))) == [
        ("a.py", "a.x_f__mutmut_1", "killed"), ("cli.py", "cli.x_g__mutmut_1", "killed"),
        ("cli.py", "cli.x_g__mutmut_2", "not checked")]
    assert h.merged(fresh, tmp_path / "none.csv") == fresh


def test_each_samples_table_counts_its_own_mutants():
    """Two samples tested in one cache: each seed's table counts its mutants alone, with the
    exact interval."""
    h = _harness()
    rows = [{"module": "cli.py", "mutant": f"m{k}", "status": "killed" if k % 4 else "survived"}
            for k in range(8)] + [{"module": "cli.py", "mutant": "m8", "status": "not checked"}]
    first = h.in_sample(rows, {"m0", "m1", "m2", "m3"})
    assert [r["mutant"] for r in first] == ["m0", "m1", "m2", "m3"]
    lo, hi = h.interval(3, 4)
    assert h.table(first, sampled=True).splitlines()[2] == (
        f"| cli.py | 4 | 3 | 1 | 0 | 75.0% | {lo:.1%} to {hi:.1%} (n = 4) |")
    assert h.table(first).splitlines()[2].endswith("| 75.0% | - |")  # every mutant: no interval


@pytest.mark.slow
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
