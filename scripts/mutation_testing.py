"""Mutation testing of the core modules with mutmut: do the tests bite?

    nice -n 10 python scripts/mutation_testing.py                      # every module, in turn
    nice -n 10 python scripts/mutation_testing.py --module hybridconv/sim/step.py
    python scripts/mutation_testing.py --report                        # tables from the cache
    nice -n 10 python scripts/mutation_testing.py --module hybridconv/cli.py --sample 120 --seed 0

mutmut (3.x, configured in pyproject.toml ``[tool.mutmut]``: the modules and their test files)
copies the package to ``mutants/``, plants one small change at a time (an operator, a constant,
a keyword argument, a returned value) and runs the tests that reach the changed function; a
mutant is *killed* when a test fails (or times out). Results are cached in ``mutants/``: a
rerun only tests mutants whose function changed, so an interrupted run resumes where it
stopped. Each module runs as its own ``mutmut run`` (one module's mutants at a time, at most
``--max-children`` test processes), as docs/testing.md asks of CPU-heavy jobs.

Writes ``docs/mutation-testing.csv`` (one row per mutant: module, name, status; the rows of a
module this cache did not test are kept from the CSV) and prints the kill rate per module as a
Markdown table (docs/testing.md quotes it; survivors are explained there). With ``--sample N
--seed S`` the table counts that sample's mutants only, so that two samples tested in one
cache (``--seed 0``, then ``--seed 1``) are reported each on its own:

    python scripts/mutation_testing.py --snapshot DIR --report --module hybridconv/cli.py \
        --sample 120 --seed 1

``--sample N --seed S`` tests a seeded uniform random sample of N of a module's mutants (for
modules with too many mutants to test them all: about 5 s each on two busy cores): the names
are those mutmut generates for the file (:func:`mutant_names`), sorted, and drawn without
replacement by ``random.Random(S).sample``, so a seed always names the same mutants of the same
source. The kill rate of a sample is reported with its exact binomial (Clopper-Pearson) 95%
interval, ``scipy.stats.binomtest(k, n).proportion_ci(0.95, "exact")``: the interval that holds
the module's rate over all its mutants with probability at least 95%.

The slow test ``tests/test_mutation.py`` runs this harness on one small module (its default
tests check the sampling alone).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
KILLED = {1: "killed", 3: "killed", 36: "timeout", 24: "timeout", -24: "timeout",
          152: "timeout", 255: "timeout", 37: "type check"}
"""mutmut's exit codes that mean a test noticed the mutant (``mutmut.stats``)."""
SURVIVED = {0: "survived", 5: "no tests", 33: "no tests"}


def modules(root: Path = ROOT) -> list[str]:
    """The modules of ``[tool.mutmut] only_mutate``."""
    conf = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["mutmut"]
    return list(conf["only_mutate"])


def dotted(module: str) -> str:
    return module.removesuffix(".py").replace("/", ".")


def mutant_names(module: str, root: Path = ROOT) -> list[str]:
    """The names of every mutant mutmut generates for ``module`` (as ``mutmut run`` names them),
    sorted; computed from the source with mutmut's own mutation code, without running it."""
    from mutmut.mutation.file_mutation import mutate_file_contents
    from mutmut.utils.format_utils import get_mutant_name

    mutated = mutate_file_contents(module, (root / module).read_text())
    return sorted(get_mutant_name(Path(module), n) for n in mutated.mutant_names)


def sample(names: list[str], n: int, seed: int) -> list[str]:
    """A uniform random sample of ``n`` of ``names`` without replacement (all of them if
    ``n >= len(names)``), drawn by ``random.Random(seed)`` from the sorted names: the same seed
    gives the same names whatever their order; returned sorted."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n (the sample size) must be an integer >= 1, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    pool = sorted(set(names))
    return sorted(random.Random(seed).sample(pool, min(n, len(pool))))


def interval(killed: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact binomial (Clopper-Pearson) interval of a kill rate ``killed / n``."""
    from scipy.stats import binomtest

    ci = binomtest(killed, n).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


def snapshot(dest: Path, root: Path = ROOT) -> Path:
    """Copy the working tree's files (tracked, and untracked but not ignored) to ``dest``,
    keeping ``dest/mutants`` (mutmut's cache): the run then tests a frozen copy while the
    working tree may change."""
    import shutil

    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=root, check=True,
                            capture_output=True).stdout.decode().split("\0")
    keep = {f for f in listed if f and (root / f).is_file()}
    dest.mkdir(parents=True, exist_ok=True)
    for f in keep:
        src, dst = root / f, dest / f
        if not dst.exists() or dst.read_bytes() != src.read_bytes():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    for old in dest.rglob("*.py"):  # files deleted from the tree since the last snapshot
        rel = old.relative_to(dest).as_posix()
        if not rel.startswith("mutants/") and rel not in keep:
            old.unlink()
    return dest


def run_module(module: str, *, max_children: int, root: Path = ROOT,
               survivors_only: bool = False, names: list[str] | None = None) -> int:
    """``mutmut run`` on one module's mutants (``names``: only these, e.g. a :func:`sample`;
    ``survivors_only``: those that survived the cached run, after tests were added); returns
    mutmut's exit status."""
    if survivors_only:  # of the cache's survivors, those among ``names`` (if given)
        names = [r["mutant"] for r in results(root) if r["module"] == module
                 and r["status"] in ("survived", "no tests", "suspicious")
                 and (not names or r["mutant"] in names)]
        if not names:
            return 0
    names = list(names) if names else [f"{dotted(module)}.*"]
    cmd = [sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children), *names]
    print("$ " + " ".join(cmd), flush=True)
    # mutmut forks a child per mutant from a process that has run the tests: an OpenMP team
    # of torch's does not survive the fork, and a child that enters a parallel region waits
    # forever, so a mutant would count as killed by timeout. One thread per child.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.call(cmd, cwd=root, env=env)


def status_of(code: int | None) -> str:
    if code is None:
        return "not checked"
    return KILLED.get(code) or SURVIVED.get(code) or "suspicious"


def results(root: Path = ROOT) -> list[dict[str, str]]:
    """One row per mutant of the cached run: module, mutant, status."""
    rows = []
    for module in modules(root):
        meta = root / "mutants" / (module + ".meta")
        if not meta.exists():
            continue
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        for name, code in sorted(codes.items()):
            rows.append({"module": module, "mutant": name, "status": status_of(code)})
    return rows


def table(rows: list[dict[str, str]], *, sampled: bool = False) -> str:
    """Markdown: per module, mutants, killed (incl. timeouts), survived (incl. untested),
    kill rate; for a sample (some mutants not checked, or ``sampled``: the rows are a sample's),
    its exact binomial interval."""
    lines = ["| module | mutants | killed | survived | not checked | kill rate | "
             "95% interval (sample) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    total = Counter()
    by_module: dict[str, Counter] = {}
    for r in rows:
        by_module.setdefault(r["module"], Counter())[r["status"]] += 1
    for module, c in by_module.items():
        killed = c["killed"] + c["timeout"] + c["type check"]
        survived = c["survived"] + c["no tests"] + c["suspicious"]
        checked = killed + survived
        total.update(killed=killed, survived=survived, unchecked=c["not checked"])
        rate = f"{killed / checked:.1%}" if checked else "-"
        ci = "-"
        if checked and (c["not checked"] or sampled):  # a sample: its exact interval
            lo, hi = interval(killed, checked)
            ci = f"{lo:.1%} to {hi:.1%} (n = {checked})"
        lines.append(f"| {module} | {sum(c.values())} | {killed} | {survived} | "
                     f"{c['not checked']} | {rate} | {ci} |")
    checked = total["killed"] + total["survived"]
    if checked:
        lines.append(f"| **all** | {checked + total['unchecked']} | {total['killed']} | "
                     f"{total['survived']} | {total['unchecked']} | "
                     f"**{total['killed'] / checked:.1%}** | |")
    return "\n".join(lines)


def merged(rows: list[dict[str, str]], path: Path) -> list[dict[str, str]]:
    """``rows`` with, for each module this cache did not test (every mutant "not checked", or
    none at all), the rows that the CSV at ``path`` already holds for it: a cache that ran one
    module does not erase what the table says of the others."""
    tested = {r["module"] for r in rows if r["status"] != "not checked"}
    kept: list[dict[str, str]] = []
    if path.exists():
        with path.open(newline="") as f:
            kept = [r for r in csv.DictReader(f) if r["module"] not in tested]
    by_module: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_module.setdefault(r["module"], []).append(r)
    for module in {r["module"] for r in kept}:  # the CSV's rows for it, in its place
        by_module[module] = [r for r in kept if r["module"] == module]
    return [r for rs in by_module.values() for r in rs]


def in_sample(rows: list[dict[str, str]], names: set[str]) -> list[dict[str, str]]:
    """The rows of the sampled mutants only (a cache may hold several samples' statuses)."""
    return [r for r in rows if r["mutant"] in names]


def write_csv(rows: list[dict[str, str]], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["module", "mutant", "status"])
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--module", action="append", help="a module of [tool.mutmut] only_mutate "
                    "(repeatable; default: all, one after the other)")
    ap.add_argument("--max-children", type=int, default=2, help="test processes (default 2)")
    ap.add_argument("--report", action="store_true", help="only the tables, from the cache")
    ap.add_argument("--csv", default=str(ROOT / "docs" / "mutation-testing.csv"),
                    help="where to write the per-mutant statuses")
    ap.add_argument("--survivors", action="store_true", help="retest only the survivors of "
                    "the cached run (mutmut keeps a survivor's verdict until asked; with "
                    "--sample, the sample's survivors)")
    ap.add_argument("--sample", type=int, metavar="N", help="test a seeded uniform random "
                    "sample of N mutants of each module (kill rate with a Clopper-Pearson 95%% "
                    "interval)")
    ap.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    ap.add_argument("--snapshot", metavar="DIR", help="run in a copy of the working tree in "
                    "DIR (kept between runs with its cache), so the tree may change meanwhile")
    args = ap.parse_args(argv)
    if args.sample is not None and args.sample < 1:
        ap.error(f"--sample must be an integer >= 1, got {args.sample}")
    if args.seed < 0:
        ap.error(f"--seed must be an integer >= 0, got {args.seed}")
    root = Path(args.snapshot).resolve() if args.snapshot else ROOT
    if args.snapshot and not args.report:
        snapshot(root)
    known = modules(ROOT)
    chosen = args.module or known
    unknown = [m for m in chosen if m not in known]
    if unknown:
        ap.error(f"--module must be one of {', '.join(known)}, got {', '.join(unknown)}")
    if not args.report:
        os.nice(10) if os.nice(0) < 10 else None
        for module in chosen:
            names = None
            if args.sample is not None:  # with --survivors: the sample's survivors
                names = sample(mutant_names(module, root), args.sample, args.seed)
                print(f"{module}: {len(names)} mutants sampled (seed {args.seed})", flush=True)
            code = run_module(module, max_children=args.max_children, root=root,
                              survivors_only=args.survivors, names=names)
            checked = [r for r in results(root) if r["module"] == module
                       and r["status"] != "not checked"]
            if code not in (0, 1) or not checked:  # mutmut returns 1 when mutants survive
                print(f"mutmut run failed on {module} (exit status {code}; a failing clean "
                      "test run stops it)", file=sys.stderr)
                return code or 1
    rows = results(root)
    if args.csv:
        rows = merged(rows, Path(args.csv))
        write_csv(rows, Path(args.csv))
    if args.sample is not None:  # the table of this seed's sample alone
        drawn = {n for module in chosen for n in sample(mutant_names(module, root),
                                                         args.sample, args.seed)}
        rows = in_sample(rows, drawn)
        print(f"the sample of {args.sample} per module, seed {args.seed}:")
    print(table(rows, sampled=args.sample is not None))
    survivors = [r for r in rows if r["status"] in ("survived", "no tests", "suspicious")]
    if survivors:
        print("\nsurvivors (mutmut show NAME prints the change):")
        for r in survivors:
            print(f"  {r['mutant']}: {r['status']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
