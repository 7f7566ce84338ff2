"""Cost per number of the random generators a ZO move could draw its Gaussians from.

A central q = 1 step of ``HybridZOFO`` regenerates its direction for each of its three moves
(docs/finetune.md, "Speed and memory"), so the generator sets the price of a move. This times,
on one thread and in CPU time (``time.thread_time``: other processes on a loaded machine do not
inflate it), the fastest of ``--repeat`` fills of a ``--numel`` buffer:

- torch's CPU generator (Mersenne Twister): ``normal_`` (what ``TorchDirections`` uses),
  ``uniform_``, ``random_`` on int32 (the raw 32-bit draws every number costs at least), and a
  Box-Muller transform of ``uniform_`` numbers;
- numpy's float32 Gaussians (ziggurat) from PCG64, Philox and SFC64, and SFC64's raw 64-bit
  draws (two 32-bit numbers each).

    python benchmarks/generator_bench.py [--numel 4194304] [--repeat 5]
"""

from __future__ import annotations

import argparse
import math
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--numel", type=int, default=1 << 22, help="numbers per fill (one piece)")
    ap.add_argument("--repeat", type=int, default=5, help="fastest of this many fills")
    args = ap.parse_args()
    if args.numel < 2 or args.repeat < 1:
        ap.error("--numel must be >= 2 and --repeat >= 1")
    import numpy as np
    import torch

    torch.set_num_threads(1)
    n, h = args.numel, args.numel // 2
    t = torch.empty(n)
    i32 = torch.empty(n, dtype=torch.int32)
    w1, w2 = torch.empty(h), torch.empty(h)
    g = torch.Generator().manual_seed(0)
    a32 = np.empty(n, dtype=np.float32)

    def box_muller() -> None:
        w1.uniform_(generator=g)
        w2.uniform_(generator=g)
        torch.log1p(w1.neg_(), out=w1)  # log(1 - u), u in [0, 1)
        w1.mul_(-2).sqrt_()
        w2.mul_(2 * math.pi)
        torch.cos(w2, out=t[:h]).mul_(w1)
        torch.sin(w2, out=t[h:2 * h]).mul_(w1)

    fills = {
        "torch normal_ (float32; TorchDirections)": lambda: t.normal_(generator=g),
        "torch uniform_ (float32)": lambda: t.uniform_(generator=g),
        "torch random_ (int32: raw Mersenne Twister draws)": lambda: i32.random_(generator=g),
        "torch Box-Muller from uniform_ (float32)": box_muller,
    }
    for bg in (np.random.PCG64, np.random.Philox, np.random.SFC64):
        rng = np.random.Generator(bg(0))
        fills[f"numpy {bg.__name__} standard_normal (float32)"] = (
            lambda rng=rng: rng.standard_normal(out=a32, dtype=np.float32))
    sfc = np.random.SFC64(0)
    fills["numpy SFC64 random_raw (per 32 bits)"] = lambda: sfc.random_raw(n // 2)

    best = {}
    for _ in range(args.repeat):  # interleaved, so that a change of load hits all alike
        for name, fill in fills.items():
            fill()
            t0 = time.thread_time()
            fill()
            best[name] = min(best.get(name, math.inf), time.thread_time() - t0)
    ref = best["torch normal_ (float32; TorchDirections)"]
    print(f"# generator_bench: {n} numbers per fill, 1 thread, CPU time, fastest of "
          f"{args.repeat}; torch {torch.__version__}, numpy {np.__version__}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (1 min)")
    print(f"{'generator':<56} {'ns/number':>10} {'x normal_':>10}")
    for name, sec in best.items():
        print(f"{name:<56} {1e9 * sec / n:>10.2f} {sec / ref:>10.2f}")


if __name__ == "__main__":
    main()
