"""Benchmark of the simulator: the engine against the machine's roofline and a per-trial loop.

Same problem and settings throughout (issues 3 and 18): quadratic, d_x = 100, d_y = 20,
n = 64, K = 1000 trials, hybrid method, random reshuffling, q = 1, central differences.

The roofline is what one trajectory-step cannot do without, measured in this run on arrays
of one trial block (``TRIAL_BLOCK`` trials): the d_x direction draws (Gaussian: numpy's
ziggurat; Rademacher: d_x random bits; the sphere: the Gaussian draws, its rescaling counts as
the engine's work) and the batched mat-vec of the component gradient (a (d_x + d_y)-square
matrix times a block of states, BLAS on one thread), timed on one thread and on ``--threads``
threads side by side. The engine (``simulate``) is timed on one thread and on ``--threads``
threads, interleaved with the roofline (best of ``--repeat``), so that every ratio compares
numbers taken under the same load; on one thread also in CPU time (``time.thread_time`` of
the roofline's thread, ``time.process_time`` of the engine's run), which a loaded machine's
other processes do not inflate. Also: the engine against the per-trial loop (the engine's
step function with a batch of one) and the textbook loop (two function values per estimate),
the torch primitives beside numpy's (why the engine stays numpy), that the records are bit for
bit the same for 1, 2 and 3 threads, and peak traced memory for a short and a 4x longer run.
Then the engine with ``generator="torch"`` (its directions drawn by torch's float32
``normal_``, about 3x cheaper than numpy's ziggurat), against a roofline with those draws, the
numpy-draw roofline and the same per-trial loop.

    python benchmarks/sim_bench.py [--trials 1000] [--epochs 3] [--threads 2] [--repeat 3]
    python benchmarks/sim_bench.py --breakdown   # where one block-step's CPU time goes
"""

from __future__ import annotations

import argparse
import os
import platform
import threading
import time
import tracemalloc

import numpy as np
from threadpoolctl import threadpool_limits

from hybridconv.problems import QuadraticProblem
from hybridconv.sim import Sampler, SimConfig, hybrid_step, simulate
from hybridconv.sim.runner import TRIAL_BLOCK

D_X, D_Y, N = 100, 20, 64
KINDS = ("gaussian", "rademacher", "sphere")


def config(trials: int, epochs: int, directions: str = "gaussian",
           generator: str = "numpy") -> SimConfig:
    return SimConfig(method="hybrid", sampling="rr", eta_x=1e-4, eta_y=1e-3, mu=1e-4,
                     epochs=epochs, trials=trials, seed=0, directions=directions,
                     generator=generator)


def engine(problem, trials: int, epochs: int, directions: str, threads: int,
           pool: str = "threads", generator: str = "numpy") -> tuple[float, float]:
    """Wall time and CPU time (of this process: every thread; a process pool's workers are
    not counted) of one run with its blocks on ``threads`` threads or processes."""
    t0, c0 = time.perf_counter(), time.process_time()
    simulate(problem, config(trials, epochs, directions, generator), threads=threads,
             pool=pool)
    return time.perf_counter() - t0, time.process_time() - c0


def roofline(problem, steps: int, directions: str, threads: int,
             generator: str = "numpy") -> tuple[float, float]:
    """Wall time and CPU time (summed over the threads) of ``steps`` trajectory-steps of draws
    + mat-vec on ``threads`` threads. ``generator="torch"``: the Gaussian draws are torch's
    float32 ``normal_`` into one buffer, cast into a float64 one (what the engine's torch
    generator does, without its allocations)."""
    H = problem.H
    per_thread = steps // (TRIAL_BLOCK * threads)
    cpu: list[float] = []

    def work(seed: int) -> None:
        c0 = time.thread_time()
        rng = np.random.default_rng(seed)
        z = rng.standard_normal((TRIAL_BLOCK, D_X + D_Y))
        out = np.empty_like(z)
        u = np.empty((TRIAL_BLOCK, D_X))
        if generator == "torch":
            import torch

            gen = torch.Generator().manual_seed(seed)
            u32 = torch.empty(TRIAL_BLOCK, D_X)

            def draw() -> None:
                u32.normal_(generator=gen)
                np.copyto(u, u32.numpy())
        elif directions == "rademacher":
            def draw() -> None:
                rng.integers(0, 256, size=(TRIAL_BLOCK, (D_X + 7) // 8), dtype=np.uint8)
        else:
            def draw() -> None:
                rng.standard_normal(out=u)
        for _ in range(per_thread):
            draw()
            np.dot(z, H, out=out)
        cpu.append(time.thread_time() - c0)

    with threadpool_limits(limits=1, user_api="blas"):
        work(99)  # warm-up
        cpu.clear()
        pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        t0 = time.perf_counter()
        for th in pool:
            th.start()
        for th in pool:
            th.join()
        scale = steps / (per_thread * TRIAL_BLOCK * threads)
        return (time.perf_counter() - t0) * scale, sum(cpu) * scale


def torch_roofline(problem, steps: int) -> float | None:
    """The same roofline with torch's float64 primitives (normal_, mm) on one thread."""
    try:
        import torch
    except ImportError:
        return None
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g = torch.Generator().manual_seed(0)
        H = torch.from_numpy(problem.H)
        z = torch.randn(TRIAL_BLOCK, D_X + D_Y, generator=g, dtype=torch.float64)
        out, u = torch.empty_like(z), torch.empty(TRIAL_BLOCK, D_X, dtype=torch.float64)
        reps = steps // TRIAL_BLOCK
        u.normal_(generator=g)
        t0 = time.perf_counter()
        for _ in range(reps):
            u.normal_(generator=g)
            torch.mm(z, H, out=out)
        return (time.perf_counter() - t0) * steps / (reps * TRIAL_BLOCK)
    finally:
        torch.set_num_threads(old)


def breakdown(problem, repeat: int, steps: int = 2000) -> list[tuple[str, float]]:
    """CPU time (one thread, microseconds per block-step of ``TRIAL_BLOCK`` trials) of each
    array operation of a Gaussian hybrid step on the quadratic, as the engine does it
    (``hybrid_step``, ``QuadraticProblem.grads`` and ``zo_differences``), timed one by one;
    then the engine's whole step (``hybrid_step`` plus the runner's divergence sum), so that the
    difference is what the interpreter adds."""
    B, dx = TRIAL_BLOCK, D_X
    rng = np.random.default_rng(0)
    H, b = problem.H, problem.b
    x, y = rng.standard_normal((B, dx)), rng.standard_normal((B, D_Y))
    idx = rng.integers(0, N, B)
    u = np.empty((B, 1, dx))
    g = np.concatenate([x, y], axis=1) @ H
    gx, gy = g[:, :dx], g[:, dx:]
    delta = np.ones((B, 1))
    est = np.empty((B, dx))
    ops = [
        ("draws: standard_normal (roofline)", lambda: rng.standard_normal(out=u)),
        ("mat-vec: stacked state @ H (roofline)", lambda: g @ H),
        ("stack x and y (np.concatenate)", lambda: np.concatenate([x, y], axis=1)),
        ("gather and add b_i (g += b[idx])", lambda: np.add(g, b[idx], out=g)),
        ("differences <g_x, u> (einsum)", lambda: np.einsum("bd,bqd->bq", gx, u)),
        ("scale u by -eta delta (per-row broadcast)",
         lambda: np.multiply(est, delta * -1e-4, out=est)),
        ("add x", lambda: np.add(est, x, out=est)),
        ("y - eta g_y", lambda: y - 1e-3 * gy),
        ("divergence check (two sums)", lambda: float(est.sum()) + float(y.sum())),
    ]
    drng = np.random.default_rng(1)
    state = {"x": x, "y": y}

    def whole() -> None:
        nx, ny = hybrid_step(problem, state["x"], state["y"], idx, eta_x=1e-4, eta_y=1e-3,
                             oracles=("zo", "fo"), mu=1e-4, q=1, directions="gaussian",
                             difference="central", rng=drng)
        float(nx.sum()) + float(ny.sum())

    ops.append(("the engine's step (hybrid_step + divergence sum)", whole))
    best = {}
    with threadpool_limits(limits=1, user_api="blas"):
        for _ in range(repeat):  # interleaved, so that a change of load hits all alike
            for name, fn in ops:
                t0 = time.thread_time()
                for _ in range(steps):
                    fn()
                best[name] = min(best.get(name, float("inf")),
                                 (time.thread_time() - t0) / steps * 1e6)
    return list(best.items())


def draw_costs(repeat: int, steps: int = 2000) -> dict[str, float]:
    """CPU time (one thread, microseconds per trial's D_X numbers) of the directions' draws as
    the engine makes them (a new (TRIAL_BLOCK, 1, D_X) float64 array per block-step), from
    numpy's generator and from ``generator="torch"``'s (float32 ``normal_`` cast)."""
    from hybridconv.sim.generators import direction_generator

    shape = (TRIAL_BLOCK, 1, D_X)
    gens = {g: direction_generator(np.random.SeedSequence(0), g) for g in ("numpy", "torch")}
    best: dict[str, float] = {}
    with threadpool_limits(limits=1):
        for _ in range(repeat):  # interleaved
            for name, gen in gens.items():
                t0 = time.thread_time()
                for _ in range(steps):
                    gen.standard_normal(shape)
                us = (time.thread_time() - t0) / steps / TRIAL_BLOCK * 1e6
                best[name] = min(best.get(name, float("inf")), us)
    return best


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


def identical_across_threads(problem, trials: int) -> bool:
    """The records of 1, 2 and 3 threads and of 2 processes, bit for bit (every direction
    kind; Gaussian directions from either generator)."""
    for kind, gen in [(k, "numpy") for k in KINDS] + [("gaussian", "torch")]:
        cfg = config(trials, 2, kind, gen)
        frames = [simulate(problem, cfg, threads=t) for t in (1, 2, 3)]
        frames.append(simulate(problem, cfg, threads=2, pool="processes"))
        if not all(f.equals(frames[0]) for f in frames[1:]):
            return False
    return True


def peak_memory(problem, trials: int, epochs: int) -> tuple[float, float]:
    """Peak traced memory of a run and the size of the records it returns (MiB)."""
    tracemalloc.start()
    df = simulate(problem, config(trials, epochs), threads=1)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20, df.memory_usage(deep=True).sum() / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--baseline-trials", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2, help="threads of the parallel rows")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many timings")
    parser.add_argument("--breakdown", action="store_true",
                        help="only the CPU time of each array operation of one block-step")
    args = parser.parse_args()
    if min(args.trials, args.epochs, args.baseline_trials, args.threads, args.repeat) < 1:
        parser.error("--trials, --epochs, --baseline-trials, --threads and --repeat must be "
                     ">= 1")
    load0 = os.getloadavg()
    problem = QuadraticProblem(N, D_X, D_Y, seed=0)
    if args.breakdown:
        rows = breakdown(problem, args.repeat)
        print(f"CPU time of one thread per block-step ({TRIAL_BLOCK} trials; quadratic d_x={D_X}"
              f" d_y={D_Y}, Gaussian hybrid, central, q=1), best of {args.repeat}; load "
              f"average {load0[0]:.2f} (1 min)")
        for name, us in rows:
            print(f"{name:<60} {us:8.1f} us")
        parts = sum(us for name, us in rows[:-1])
        print(f"{'sum of the operations':<60} {parts:8.1f} us")
        roof = rows[0][1] + rows[1][1]
        print(f"{'roofline (draws + mat-vec) / engine step':<60} {100 * roof / rows[-1][1]:7.0f}%")
        draws = draw_costs(args.repeat)
        for name, us in draws.items():
            print(f"{f'draws of one trial ({D_X} numbers, {name} generator)':<60} {us:8.2f} us")
        print(f"{'numpy draws / torch draws':<60} {draws['numpy'] / draws['torch']:7.2f}x")
        return
    steps = args.trials * N * args.epochs
    P = args.threads
    engine(problem, min(args.trials, 2 * TRIAL_BLOCK), 1, "gaussian", P)  # warm-up
    if P > 1:  # starts the reusable process pool (once per session, not timed)
        engine(problem, min(args.trials, 2 * TRIAL_BLOCK), 1, "gaussian", P, "processes")
    engine(problem, min(args.trials, 2 * TRIAL_BLOCK), 1, "gaussian", P,
           "processes" if P > 1 else "threads", "torch")  # imports torch in the workers
    torch_runs = [("roof", 1), ("engine", 1)] + ([("roof", P), ("processes", P)]
                                                 if P > 1 else [])
    best: dict[tuple[str, str, int], float] = {}
    runs = [("roof", 1), ("engine", 1)] + ([("roof", P), ("engine", P), ("processes", P)]
                                           if P > 1 else [])
    # (direction kind, generator, key prefix, runs): every kind with numpy's draws, then the
    # Gaussian directions from the torch generator
    plans = [(kind, "numpy", "", runs) for kind in KINDS] + [
        ("gaussian", "torch", "torch-", torch_runs)]
    for _ in range(args.repeat):  # interleaved: roofline and engine under the same load
        for kind, gen, prefix, plan in plans:
            for what, t in plan:
                sec, cpu = (roofline(problem, steps, kind, t, gen) if what == "roof" else
                            engine(problem, args.trials, args.epochs, kind, t,
                                   "processes" if what == "processes" else "threads", gen))
                for key, v in (((f"{prefix}{what}", kind, t), sec),
                               ((f"{prefix}{what}-cpu", kind, t), cpu)):
                    best[key] = min(best.get(key, float("inf")), v)
        sec = torch_roofline(problem, steps)
        if sec is not None:
            best[("torch", "gaussian", 1)] = min(best.get(("torch", "gaussian", 1),
                                                          float("inf")), sec)
    t_base = min(per_trial_loop(problem, args.baseline_trials, args.epochs)
                 for _ in range(args.repeat))
    t_text = min(textbook_loop(problem, args.baseline_trials, args.epochs)
                 for _ in range(args.repeat))
    same = identical_across_threads(problem, 3 * TRIAL_BLOCK - 17)
    short = peak_memory(problem, args.trials, 2)
    long = peak_memory(problem, args.trials, 8)
    load1 = os.getloadavg()
    rate = {k: steps / v for k, v in best.items()}
    base = args.baseline_trials * N * args.epochs / t_base
    text = args.baseline_trials * N * args.epochs / t_text

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, python "
          f"{platform.python_version()}, numpy {np.__version__}; load average "
          f"{load0[0]:.2f} before, {load1[0]:.2f} after (1 min)")
    print(f"problem: quadratic d_x={D_X} d_y={D_Y} n={N}, K={args.trials} trials in blocks of "
          f"{TRIAL_BLOCK}, hybrid, rr, q=1, central; best of {args.repeat}, interleaved\n")
    rows = []
    for kind in KINDS:
        for t in (1, P) if P > 1 else (1,):
            roof = rate[("roof", kind, t)]
            tag = f"{kind}, {t} thread{'s' if t > 1 else ''}"
            rows.append((f"roofline ({tag}): trajectory-steps/s", f"{roof:,.0f}", ""))
            pools = [("engine", tag)] + ([("processes", f"{kind}, {t} processes")]
                                         if t > 1 else [])
            for what, label in pools:
                eng = rate[(what, kind, t)]
                rows.append((f"engine   ({label}): trajectory-steps/s", f"{eng:,.0f}", ""))
                rows.append((f"engine / roofline ({label})", f"{100 * eng / roof:.0f}%",
                             ">= 80%" if what == "processes" and kind == "gaussian" else ""))
            if t == 1:
                cpu = rate[("engine-cpu", kind, 1)] / rate[("roof-cpu", kind, 1)]
                rows.append((f"engine / roofline in CPU time ({tag}; other processes do not "
                             "inflate it)", f"{100 * cpu:.0f}%", ""))
        if P > 1:
            one = rate[("engine", kind, 1)]
            rows.append((f"engine {P} threads / 1 thread ({kind})",
                         f"{rate[('engine', kind, P)] / one:.2f}x", ""))
            rows.append((f"engine {P} processes / 1 thread ({kind})",
                         f"{rate[('processes', kind, P)] / one:.2f}x", ""))
    g1 = rate[("engine", "gaussian", 1)]
    gP = rate[("processes", "gaussian", P)] if P > 1 else g1
    par = f"{P} processes" if P > 1 else "1 thread"
    rows += [
        (f"per-trial loop ({args.baseline_trials} trials, same step code, batch of one): "
         "steps/s", f"{base:,.0f}", ""),
        (f"engine ({par}) / per-trial loop", f"{gP / base:.1f}x", ">= 15x"),
        ("engine (1 thread) / per-trial loop", f"{g1 / base:.1f}x", ""),
        ("textbook per-trial loop (value-based estimate): steps/s", f"{text:,.0f}", ""),
        (f"engine ({par}) / textbook loop", f"{gP / text:.1f}x", ""),
    ]
    tP = rate[("torch-processes", "gaussian", P)] if P > 1 else rate[
        ("torch-engine", "gaussian", 1)]
    t_roof = rate[("torch-roof", "gaussian", P)]
    rows += [
        ("generator='torch' (float32 normal_ cast to float64; other numbers, same law):", "",
         ""),
        (f"  roofline with torch draws (gaussian, {P} threads): trajectory-steps/s",
         f"{t_roof:,.0f}", ""),
        (f"  engine   (gaussian, torch, {par}): trajectory-steps/s", f"{tP:,.0f}", ""),
        (f"  engine / roofline with torch draws ({par})", f"{100 * tP / t_roof:.0f}%", ""),
        (f"  engine / the numpy-draw roofline above ({par})",
         f"{100 * tP / rate[('roof', 'gaussian', P)]:.0f}%", ""),
        ("  engine torch / engine numpy (1 thread, CPU time)",
         f"{rate[('torch-engine-cpu', 'gaussian', 1)] / rate[('engine-cpu', 'gaussian', 1)]:.2f}x",
         ""),
        (f"  engine ({par}) / per-trial loop (numpy, as above)", f"{tP / base:.1f}x", ">= 15x"),
    ]
    if ("torch", "gaussian", 1) in rate:
        rows.append(("roofline with torch float64 primitives (normal_, mm; 1 thread) / numpy's",
                     f"{rate[('torch', 'gaussian', 1)] / rate[('roof', 'gaussian', 1)]:.2f}x",
                     ""))
    rows += [
        ("records bit-identical for 1, 2 and 3 threads and 2 processes (all direction "
         "kinds)",
         "yes" if same else "NO", "yes"),
        ("peak traced memory, 2 epochs (records returned)",
         f"{short[0]:.1f} ({short[1]:.1f}) MiB", ""),
        ("peak traced memory, 8 epochs (records returned): grows with the records only",
         f"{long[0]:.1f} ({long[1]:.1f}) MiB", ""),
    ]
    print(f"{'what':<86} {'value':>14} {'target':>8}")
    for what, value, target in rows:
        print(f"{what:<86} {value:>14} {target:>8}")


if __name__ == "__main__":
    main()
