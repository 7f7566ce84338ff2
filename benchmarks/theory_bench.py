"""Benchmark of the theory core: cold start and bound evaluation.

Prints a table. Targets (issue 2, on a 2-core machine): building the theorem and its
vectorized evaluator from a cold start < 5 s; evaluating the bound on 1e6 parameter points
< 0.5 s. Baselines in the same run: sympy's plain lambdify (no common-subexpression
elimination) and the validated scalar path ``Bound.evaluate`` (measured on a sample and
extrapolated to 1e6 points).

    python benchmarks/theory_bench.py [--points 1000000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

COLD = """
import time
t0 = time.perf_counter()
from hybridconv.theory import hybrid_bound
b = hybrid_bound()
f = b.vectorized()
f(L_x=1, L_y=1, L_xy=0, sigma_x=0.1, sigma_y=0.1, Theta_x=0, Theta_y=0, Delta=1, eta_x=1e-4,
  eta_y=1e-3, mu=0, q=1, n=10, T=100, d_x=10)
print(time.perf_counter() - t0)
"""


def cold_start(repeat: int) -> tuple[float, float]:
    inside, wall = [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as store:  # cold: no stored compiled source
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", COLD], capture_output=True, text=True,
                                 check=True, env={**os.environ, "HYBRIDCONV_CACHE": store})
            wall.append(time.perf_counter() - t0)
        inside.append(float(out.stdout.strip()))
    return statistics.median(inside), statistics.median(wall)


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if args.points < 1 or args.repeat < 1:
        parser.error("--points and --repeat must be >= 1")

    import numpy as np
    import sympy as sp

    from hybridconv.theory import hybrid_bound, sym
    from hybridconv.theory.bound import sample_admissible

    inside, wall = cold_start(args.repeat)
    b = hybrid_bound()
    pts = sample_admissible(b, args.points, seed=0)
    f = b.vectorized()
    t_vec = timed(lambda: f(**pts), args.repeat)
    plain = sp.lambdify([sym(s) for s in b.symbols], b.expr, modules="numpy")
    t_plain = timed(lambda: plain(*[pts[s] for s in b.symbols]), args.repeat)
    k = min(2000, args.points)
    sample = [{s: float(pts[s][i]) for s in b.symbols} for i in range(k)]
    t_scalar = timed(lambda: [b.evaluate(check=False, **v) for v in sample], 1) * args.points / k
    ok = b.conditions_vectorized()
    t_cond = timed(lambda: ok(**pts), args.repeat)
    ref = f(**pts)
    assert np.allclose(ref, plain(*[pts[s] for s in b.symbols]), rtol=1e-10)

    rows = [
        ("cold start: import + build theorem + vectorized evaluator (in process)", inside, 5.0),
        ("cold start: whole python process", wall, None),
        (f"bound on {args.points:.0e} points, vectorized (lambdify + cse)", t_vec, 0.5),
        (f"conditions on {args.points:.0e} points, vectorized", t_cond, None),
        (f"baseline: plain lambdify, {args.points:.0e} points", t_plain, None),
        (f"baseline: Bound.evaluate per point, {args.points:.0e} points (extrapolated "
         f"from {k})", t_scalar, None),
    ]
    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, python "
          f"{platform.python_version()}, numpy {np.__version__}, sympy {sp.__version__}")
    print(f"{'what':<86} {'seconds':>9} {'target':>8} {'ok':>4}")
    for what, t, target in rows:
        mark = "" if target is None else ("yes" if t < target else "NO")
        tgt = "" if target is None else f"< {target:g}"
        print(f"{what:<86} {t:>9.3f} {tgt:>8} {mark:>4}")
    print(f"speed-up of the vectorized path: {t_plain / t_vec:.2f}x over plain lambdify, "
          f"{t_scalar / t_vec:.0f}x over per-point evaluation")


if __name__ == "__main__":
    main()
