"""Time `hybridconv theory bound` side by side for several source trees (before / after).

    python benchmarks/theory_cli_bench.py [ROOT ...]   # default: this tree; e.g. /work/main .

For each root, in one run (so that machine load hits every row alike):

- ``fresh, empty store``: a new process runs the README's ``theory bound`` call with an empty
  ``$HYBRIDCONV_CACHE`` (what a first call after installing costs);
- ``fresh, warm store``: the same call again (the compiled functions' source is on disk);
- ``in process, 1st`` / ``2nd``: ``hybrid_bound()`` then ``evaluate`` twice in one process.

Each number is the median of ``--repeat`` runs, wall-clock seconds. Rows alternate between the
roots so that load changes hit them alike; on a loaded machine compare ratios only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

CALL = ["theory", "bound", "--set", "L_x=1", "--set", "L_y=2", "--set", "L_xy=0.5",
        "--set", "sigma_x=0.3", "--set", "sigma_y=0.2", "--set", "Theta_x=0.1",
        "--set", "Theta_y=0.1", "--set", "Delta=5", "--set", "mu=1e-4", "--set", "q=4",
        "--set", "n=16", "--set", "T=1000", "--set", "d_x=100", "--set", "eta_x=1e-5",
        "--set", "eta_y=1e-3"]

IN_PROCESS = """
import time
t0 = time.perf_counter()
from hybridconv.theory.bound import hybrid_bound
v = dict(L_x=1, L_y=2, L_xy=0.5, sigma_x=0.3, sigma_y=0.2, Theta_x=0.1, Theta_y=0.1, Delta=5,
         mu=1e-4, q=4, n=16, T=1000, d_x=100, eta_x=1e-5, eta_y=1e-3)
t1 = time.perf_counter(); hybrid_bound().evaluate(**v)
t2 = time.perf_counter(); hybrid_bound().evaluate(**v)
t3 = time.perf_counter()
print(t2 - t1, t3 - t2)
"""


def _env(root: str, cache: str) -> dict[str, str]:
    """Each process runs in ``root`` (the working directory comes first on ``sys.path``)."""
    return {**os.environ, "PYTHONPATH": os.path.abspath(root), "HYBRIDCONV_CACHE": cache}


def _cli(root: str, cache: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "hybridconv.cli", *CALL], env=_env(root, cache),
                   cwd=root, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("roots", nargs="*", default=["."])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rows: dict[str, dict[str, list[float]]] = {r: {} for r in args.roots}
    for _ in range(args.repeat):
        for root in args.roots:
            with tempfile.TemporaryDirectory() as cache:
                r = rows[root]
                r.setdefault("fresh, empty store", []).append(_cli(root, cache))
                r.setdefault("fresh, warm store", []).append(_cli(root, cache))
                out = subprocess.run([sys.executable, "-c", IN_PROCESS], env=_env(root, cache),
                                     cwd=root, check=True, capture_output=True,
                                     text=True).stdout.split()
                r.setdefault("in process, 1st", []).append(float(out[0]))
                r.setdefault("in process, 2nd", []).append(float(out[1]))
    print(f"median of {args.repeat}, seconds; load average {os.getloadavg()[0]:.2f}")
    print(f"{'root':<24}" + "".join(f"{k:>22}" for k in rows[args.roots[0]]))
    for root, r in rows.items():
        print(f"{root:<24}" + "".join(f"{statistics.median(v):>22.3f}" for v in r.values()))


if __name__ == "__main__":
    main()
