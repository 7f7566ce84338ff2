"""Benchmark of the simulator: the batched engine against a per-trial Python loop.

Same problem and settings for both (issue 3): quadratic, d_x = 100, d_y = 20, n = 64,
K = 1000 trials, hybrid method, random reshuffling, q = 1, central differences. Two
baselines: the textbook per-trial loop (two function values per ZO estimate, one trial at a
time), which is the issue's baseline; and a stricter one that calls the engine's very step
function with a batch of one, so that ratio measures batching alone. Also: the engine's
achieved flop rate against this machine's measured matrix-multiply rate, and peak traced memory
for a short and a 4x longer run (memory must not grow with the number of epochs beyond the
per-epoch records).

    python benchmarks/sim_bench.py [--trials 1000] [--epochs 3] [--baseline-trials 20]
"""

from __future__ import annotations

import argparse
import platform
import time
import tracemalloc

import numpy as np

from hybridconv.problems import QuadraticProblem
from hybridconv.sim import Sampler, SimConfig, hybrid_step, simulate

D_X, D_Y, N = 100, 20, 64


def engine(problem, trials: int, epochs: int) -> float:
    cfg = SimConfig(method="hybrid", sampling="rr", eta_x=1e-4, eta_y=1e-3, mu=1e-4,
                    epochs=epochs, trials=trials, seed=0)
    t0 = time.perf_counter()
    simulate(problem, cfg)
    return time.perf_counter() - t0


def per_trial_loop(problem, trials: int, epochs: int) -> float:
    """The straightforward version: one trial at a time, one step at a time."""
    t0 = time.perf_counter()
    x0, y0 = problem.start()
    for k in range(trials):
        x, y = x0[None, :].copy(), y0[None, :].copy()
        sampler = Sampler("rr", n=N, trials=1, rng=np.random.default_rng([k, 0]))
        rng = np.random.default_rng([k, 1])
        for t in range(epochs):
            order = sampler.epoch(t)
            for i in range(N):
                x, y = hybrid_step(problem, x, y, order[:, i], eta_x=1e-4, eta_y=1e-3,
                                   oracles=("zo", "fo"), mu=1e-4, q=1, directions="gaussian",
                                   difference="central", rng=rng)
            problem.value(x, y)
            problem.grad(x, y)
    return time.perf_counter() - t0


def textbook_loop(problem, trials: int, epochs: int) -> float:
    """The textbook version: per trial, per step, the two-point estimate from two function
    values (through ``Problem.values``), the FO gradient of y, the update."""
    t0 = time.perf_counter()
    x0, y0 = problem.start()
    mu, ex, ey = 1e-4, 1e-4, 1e-3
    for k in range(trials):
        rng = np.random.default_rng([k, 1])
        x, y = x0.copy(), y0.copy()
        for _ in range(epochs):
            for j in rng.permutation(N):
                u = rng.standard_normal(D_X)
                i = np.array([j])
                fp = problem.values((x + mu * u)[None], y[None], i)[0]
                fm = problem.values((x - mu * u)[None], y[None], i)[0]
                gy = problem.grads(x[None], y[None], i)[1][0]
                x = x - ex * (fp - fm) / (2 * mu) * u
                y = y - ey * gy
            problem.value(x[None], y[None])
            problem.grad(x[None], y[None])
    return time.perf_counter() - t0


def matmul_rate(size: int = 1000, repeat: int = 5) -> float:
    a = np.random.default_rng(0).standard_normal((size, size))
    a @ a
    t0 = time.perf_counter()
    for _ in range(repeat):
        a @ a
    return repeat * 2 * size**3 / (time.perf_counter() - t0)


def peak_memory(problem, trials: int, epochs: int) -> float:
    tracemalloc.start()
    engine(problem, trials, epochs)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--baseline-trials", type=int, default=20)
    args = parser.parse_args()
    if min(args.trials, args.epochs, args.baseline_trials) < 1:
        parser.error("--trials, --epochs and --baseline-trials must be >= 1")
    problem = QuadraticProblem(N, D_X, D_Y, seed=0)
    d = D_X + D_Y
    # flops per trajectory-step actually executed: component gradient (x H_x. + y H_y.),
    # the directional differences, the estimate, the update
    flops_step = 2 * d * d + 2 * D_X + 2 * D_X + 2 * d
    engine(problem, min(args.trials, 50), 1)  # warm-up
    t_eng = min(engine(problem, args.trials, args.epochs) for _ in range(2))
    t_base = per_trial_loop(problem, args.baseline_trials, args.epochs)
    t_text = textbook_loop(problem, args.baseline_trials, args.epochs)
    steps_eng = args.trials * N * args.epochs / t_eng
    steps_base = args.baseline_trials * N * args.epochs / t_base
    steps_text = args.baseline_trials * N * args.epochs / t_text
    rate = matmul_rate()
    achieved = steps_eng * flops_step
    short = peak_memory(problem, args.trials, 2)
    long = peak_memory(problem, args.trials, 8)
    record_mb = args.trials * 6 * 8 * 8 / 2**20  # 6 float64 record arrays, 6 extra epochs
    print(f"machine: {platform.machine()}, python {platform.python_version()}, numpy "
          f"{np.__version__}; problem: quadratic d_x={D_X} d_y={D_Y} n={N}, K={args.trials}, "
          "hybrid, rr, q=1, central")
    rows = [
        ("engine: trajectory-steps per second", f"{steps_eng:,.0f}", ""),
        (f"per-trial loop ({args.baseline_trials} trials): trajectory-steps per second",
         f"{steps_base:,.0f}", ""),
        ("ratio engine / per-trial loop (same step code, batch of one)",
         f"{steps_eng / steps_base:.1f}x", ""),
        (f"textbook per-trial loop ({args.baseline_trials} trials, value-based estimate): "
         "steps/s", f"{steps_text:,.0f}", ""),
        ("ratio engine / textbook per-trial loop", f"{steps_eng / steps_text:.1f}x", ">= 50x"),
        ("matrix-multiply rate (1000x1000 float64)", f"{rate / 1e9:.1f} GFLOP/s", ""),
        ("engine's achieved flop rate", f"{achieved / 1e9:.2f} GFLOP/s", ""),
        ("engine / matrix-multiply rate", f"{100 * achieved / rate:.1f}%", ">= 30%"),
        ("peak traced memory, 2 epochs", f"{short:.1f} MiB", ""),
        ("peak traced memory, 8 epochs", f"{long:.1f} MiB", f"~ +{record_mb:.2f} MiB"),
    ]
    print(f"{'what':<84} {'value':>18} {'target':>14}")
    for what, value, target in rows:
        print(f"{what:<84} {value:>18} {target:>14}")


if __name__ == "__main__":
    main()
