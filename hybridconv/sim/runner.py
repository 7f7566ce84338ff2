"""Run hybrid reshuffling SGD on a problem for many trials at once.

All K trials advance together as arrays with a leading trial axis; each step is
:func:`~.step.hybrid_step`. Records are taken at the start (epoch 0) and after every epoch:
F, ||grad_x F||^2, ||grad_y F||^2, ||grad F||^2 at the epoch's point, one row per trial and
epoch, with the configuration as columns (a tidy pandas DataFrame).

Randomness: the trials run in blocks of :data:`TRIAL_BLOCK`; block b's sampler and ZO
directions have their own generators, the b-th children of ``SeedSequence([seed,
SAMPLER_STREAM])`` and ``SeedSequence([seed, DIRECTION_STREAM])`` (:func:`block_rng`; keys
distinct from those the problems use to build instances and starts): the same seed gives the
same numbers whatever the number of threads, and changing the sampling scheme does not change
the direction stream. A one-trial run is block 0 (``hybridconv.finetune`` replays it).

Certified regions: ``left_region`` says whether a trial has left the region where a locally
smooth problem's constants hold (checked after every step, cumulative); ``max_grad_norm`` is
the running maximum of max_i ||grad f_i|| for problems that provide
``max_component_grad_norm`` (the H1-gen theorem needs it below its G): when the problem
certifies balls (``max_component_grad_norm(x, y, radius)``), over the ball around every iterate
that contains the step's segment and every ZO perturbation segment the estimator can draw
(radius mu sqrt(d) for sphere and Rademacher directions, infinite for Gaussian ones: then no
finite G holds); otherwise at every iterate. Both are reported, never silently ignored.

Divergence: a trial whose state is no longer finite is marked diverged at that epoch (found
after every step where a region or a gradient bound is tracked, else at the epoch's end: a
non-finite state stays non-finite), and so is, at each record, a trial whose ||grad F||^2
exceeds :data:`hybridconv.numerics.BLOWUP_FACTOR` (1e20) times max(its value at the start, 1);
its state is frozen (no further updates) and its later records are NaN with ``diverged = True``;
nothing is averaged over it silently. A ZO radius mu below the float64 resolution of the start
(``hybridconv.numerics.check_radius``) is refused before the run.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from .. import spec
from ..numerics import BLOWUP_FACTOR, check_radius
from ..problems.base import Problem
from .generators import direction_generator
from .samplers import Sampler
from .step import block_oracles, hybrid_step

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SimConfig", "simulate", "Schedule", "RECORD_COLUMNS", "TRIAL_BLOCK", "block_rng",
           "blocks", "default_threads", "perturbation_radius"]

Schedule = float | Callable[[int], float]
"""A learning rate: a constant, or a function of the epoch (0-based) returning one."""

SAMPLER_STREAM, DIRECTION_STREAM = 7001, 7002
"""Stream keys of the run's generators (problems use small keys 0..99 for their own draws)."""

TRIAL_BLOCK = 128
"""Trials per block. Each block of a run has its own generators and runs on one thread; a
constant, so that the numbers never depend on the thread count. 128 trials keep a block's
arrays in a core's L2 cache at the usual dimensions and its Python overhead per step small."""

RECORD_COLUMNS = ("trial", "epoch", "F", "grad_x_sq", "grad_y_sq", "grad_sq", "diverged",
                  "left_region")


def _rate(name: str, schedule: Schedule, epoch: int) -> float:
    value = schedule(epoch) if callable(schedule) else schedule
    label = f"{name} at epoch {epoch}" if callable(schedule) else name
    return spec.validate(name, value, label=label)


@dataclass(frozen=True)
class SimConfig:
    """Hyper-parameters of a simulation (names as in the theory's symbol table; domains,
    defaults and help texts from :mod:`hybridconv.spec`, which ``hybridconv simulate``'s
    options are generated from).

    Attributes:
        method: ``"hybrid"`` (ZO on x, FO on y), ``"zo"`` (both ZO), ``"fo"`` (both FO) or
            ``"reversed"`` (FO on x, ZO on y).
        sampling: ``"rr"``, ``"so"``, ``"ig"`` or ``"wr"`` (see :mod:`.samplers`).
        eta_x, eta_y: learning rates per block, constants or schedules epoch -> rate.
        mu: smoothing radius (> 0).
        q: directions per ZO step (>= 1).
        directions: ``"gaussian"``, ``"sphere"`` or ``"rademacher"``.
        difference: ``"central"`` or ``"forward"``.
        epochs: number of epochs T (>= 1).
        trials: number of independent trials K (>= 1).
        seed: seeds the sampler and the directions.
        generator: the directions' random-number generator, ``"numpy"`` or ``"torch"``
            (:mod:`.generators`: the same law, other numbers, draws about 3x faster).
    """

    method: str = spec.option(among=spec.SIM_METHODS)
    sampling: str = spec.option("sampling")
    eta_x: Schedule = spec.option("eta_x", schedule=True)
    eta_y: Schedule = spec.option("eta_y", schedule=True)
    mu: float = spec.option("mu", positive=True)
    q: int = spec.option("q")
    directions: str = spec.option("directions")
    difference: str = spec.option("difference")
    epochs: int = spec.option("epochs")
    trials: int = spec.option("trials")
    seed: int = spec.option("seed")
    generator: str = spec.option("generator")

    def __post_init__(self) -> None:
        spec.validate_fields(self)

    def hyperparameters(self, n: int) -> dict[str, float]:
        """The theory's hyper-parameter symbols (constant rates only)."""
        out = {"mu": float(self.mu), "q": float(self.q), "n": float(n), "T": float(self.epochs)}
        for name in ("eta_x", "eta_y"):
            sched = getattr(self, name)
            if callable(sched):
                raise ValueError(f"{name} is a schedule; the theorem needs a constant rate")
            out[name] = float(sched)
        return out

    def columns(self) -> dict[str, object]:
        """Configuration columns for the records (schedules named by their repr)."""
        d = asdict(self)
        for name in ("eta_x", "eta_y"):
            if callable(d[name]):
                d[name] = repr(d[name])
        d.pop("trials")
        d.pop("epochs")
        return d


def perturbation_radius(problem: Problem, config: SimConfig) -> float:
    """The largest ||mu u|| of the run's ZO perturbations: mu sqrt(d_b) for sphere and
    Rademacher directions (||u|| = sqrt(d_b) exactly) in each ZO block b, infinite for Gaussian
    directions, 0 without a ZO block."""
    dims = [d for oracle, d in zip(block_oracles(config.method), (problem.d_x, problem.d_y),
                                   strict=True) if oracle == "zo"]
    if not dims:
        return 0.0
    if config.directions == "gaussian":
        return math.inf
    return config.mu * math.sqrt(max(dims))


def _certifies_balls(bound: Callable[..., object]) -> bool:
    import inspect

    try:
        return "radius" in inspect.signature(bound).parameters
    except (TypeError, ValueError):
        return False


def _start(problem: Problem, x0: np.ndarray | None, y0: np.ndarray | None,
           trials: int) -> tuple[np.ndarray, np.ndarray]:
    sx, sy = problem.start()
    x0 = sx if x0 is None else np.asarray(x0, dtype=float)
    y0 = sy if y0 is None else np.asarray(y0, dtype=float)
    for name, v, d in (("x0", x0, problem.d_x), ("y0", y0, problem.d_y)):
        if v.shape not in ((d,), (trials, d)):
            raise ValueError(f"{name} must have shape ({d},) or ({trials}, {d}), "
                             f"got {v.shape}")
        if not np.isfinite(v).all():
            raise ValueError(f"{name} must be finite")
    return (np.broadcast_to(x0, (trials, problem.d_x)),
            np.broadcast_to(y0, (trials, problem.d_y)))


def block_seed(seed: int, stream: int, block: int = 0) -> np.random.SeedSequence:
    """The seed of trial block ``block`` for one stream of a run: the ``block``-th child of
    ``SeedSequence([seed, stream])`` (``SeedSequence.spawn``), made directly so that any
    block's seed is found without the others."""
    return np.random.SeedSequence([seed, stream], spawn_key=(block,))


def block_rng(seed: int, stream: int, block: int = 0) -> np.random.Generator:
    """The numpy generator of trial block ``block`` for one stream of a run
    (:func:`block_seed`)."""
    return np.random.default_rng(block_seed(seed, stream, block))


def blocks(trials: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of the trial blocks of a run of ``trials`` trials: :data:`TRIAL_BLOCK`
    trials each, the last one shorter."""
    return [(a, min(a + TRIAL_BLOCK, trials)) for a in range(0, trials, TRIAL_BLOCK)]


def default_threads(trials: int) -> int:
    """Threads a simulation uses by default: one per usable CPU (``OMP_NUM_THREADS`` caps it,
    as joblib's workers set it), at most one per trial block."""
    from ..parallel import cpus as usable

    cpus = usable()
    cap = os.environ.get("OMP_NUM_THREADS", "")
    if cap.isdigit() and int(cap) >= 1:
        cpus = min(cpus, int(cap))
    return max(1, min(cpus, len(blocks(trials))))


_CONTROLLER: list = []


def _blas():
    """threadpoolctl's controller of the BLAS libraries loaded (found once: the search
    costs milliseconds, a limit through it microseconds)."""
    if not _CONTROLLER:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER.append(ThreadpoolController().select(user_api="blas"))
    return _CONTROLLER[0]


class _Records:
    """The run's records, (T + 1, K) arrays; each block writes its own columns."""

    def __init__(self, T: int, K: int):
        self.F, self.gx2, self.gy2, self.gmax = (np.full((T + 1, K), np.nan) for _ in range(4))
        self.left = np.zeros((T + 1, K), dtype=bool)
        self.diverged_at = np.full(K, T + 1)  # epoch from which a trial's records are NaN

    def put(self, a: int, e: int, part: _Records) -> None:
        """Trials a..e from ``part``, the records of those trials alone (a worker's)."""
        for name in ("F", "gx2", "gy2", "gmax", "left"):
            getattr(self, name)[:, a:e] = getattr(part, name)
        self.diverged_at[a:e] = part.diverged_at


def _run_block(problem: Problem, config: SimConfig, b: int, a: int, e: int,
               x0: np.ndarray, y0: np.ndarray, rates: list[tuple[float, float]],
               rec: _Records, stop: threading.Event, tick: Callable[[], None],
               col0: int = 0) -> None:
    """Trials a..e (block ``b``) through every epoch; writes their columns of ``rec``.

    ``rec`` and the starts ``x0``, ``y0`` hold trial ``col0`` in their first column / row (0:
    the whole run's arrays; ``a``: a worker process's arrays of this block alone). The block's
    state, sampler and directions are its own (generators from ``b`` alone), so its numbers
    do not depend on which thread or process runs it or on the other blocks."""
    K, T, n = e - a, config.epochs, problem.n
    oracles = block_oracles(config.method)
    x, y = x0[a - col0:e - col0].copy(), y0[a - col0:e - col0].copy()
    sampler = Sampler(config.sampling, n=n, trials=K,
                      rng=block_rng(config.seed, SAMPLER_STREAM, b))
    drng = direction_generator(block_seed(config.seed, DIRECTION_STREAM, b), config.generator)
    grad_bound = getattr(problem, "max_component_grad_norm", None)
    balls = grad_bound is not None and _certifies_balls(grad_bound)
    zo_radius = perturbation_radius(problem, config)
    region = getattr(problem.in_region, "__func__", None) is not Problem.in_region
    running_max = np.zeros(K)
    diverged_at = np.full(K, T + 1)
    left = np.zeros(K, dtype=bool)
    cols = slice(a - col0, e - col0)

    def track_gradients(xp: np.ndarray | None = None, yp: np.ndarray | None = None) -> None:
        """At the current point, or (balls) over the ball around the previous point (xp, yp)
        that holds the step and the perturbations."""
        if grad_bound is None:
            return
        if balls and xp is not None:
            dist = np.sqrt(np.einsum("bi,bi->b", x - xp, x - xp)
                           + np.einsum("bi,bi->b", y - yp, y - yp))
            g = np.asarray(grad_bound(xp, yp, np.maximum(dist, zo_radius)), dtype=float)
        else:
            g = np.asarray(grad_bound(x, y), dtype=float)
        np.fmax(running_max, np.where(diverged_at > T, g, -np.inf), out=running_max)

    def record(t: int) -> None:
        F = problem.value(x, y)
        gx, gy = problem.grad(x, y)
        gx2, gy2 = np.einsum("bi,bi->b", gx, gx), np.einsum("bi,bi->b", gy, gy)
        # a finite state whose objective or gradient overflows has diverged too, and so has
        # one whose gradient has blown up (hybridconv.numerics.BLOWUP_FACTOR)
        bad = (diverged_at > t) & ~(np.isfinite(F) & np.isfinite(gx2) & np.isfinite(gy2)
                                    & (gx2 + gy2 <= limit))
        diverged_at[bad] = t
        alive = diverged_at > t
        rec.F[t, cols] = np.where(alive, F, np.nan)
        rec.gx2[t, cols] = np.where(alive, gx2, np.nan)
        rec.gy2[t, cols] = np.where(alive, gy2, np.nan)
        if grad_bound is not None:
            rec.gmax[t, cols] = np.where(alive, running_max, np.nan)
        rec.left[t, cols] = left

    limit = np.full(K, np.inf)
    track_gradients()
    record(0)
    limit = BLOWUP_FACTOR * np.fmax(rec.gx2[0, cols] + rec.gy2[0, cols], 1.0)
    alive = bool((diverged_at > T).all())  # no trial diverged yet: the fast path applies
    # Without a region or a gradient bound to track, nothing is observed between records, so
    # while every trial is alive the per-step finiteness sum (2% of a step) is skipped: a
    # non-finite state stays non-finite (inf - inf and 0 * inf are NaN), so a check of the
    # states at the epoch's end (1/n of the per-step cost; the record alone would miss a
    # problem whose F stays finite) marks the same epoch; its records are NaN as before.
    tracked = region or grad_bound is not None
    step = dict(oracles=oracles, mu=config.mu, q=config.q, directions=config.directions,
                difference=config.difference, rng=drng)
    for t in range(T):
        ex, ey = rates[t]
        order = sampler.epoch(t)
        for i in range(n):
            if stop.is_set():  # another block failed, or Ctrl-C: stop at once
                return
            xp, yp = (x.copy(), y.copy()) if balls else (None, None)
            nx, ny = hybrid_step(problem, x, y, order[:, i], eta_x=ex, eta_y=ey, **step)
            if alive and not tracked:
                x, y = nx, ny  # nothing tracked per step: finiteness is checked per epoch
                continue
            total = float(nx.sum()) + float(ny.sum())
            if alive and math.isfinite(total):
                x, y = nx, ny  # the common case: every trial alive and finite
            else:
                active = diverged_at > T
                ok = np.isfinite(nx).all(axis=1) & np.isfinite(ny).all(axis=1)
                diverged_at[active & ~ok] = t + 1
                alive = False
                upd = active & ok
                x[upd], y[upd] = nx[upd], ny[upd]
                if region:
                    left |= upd & ~problem.in_region(x, y)
                track_gradients(xp, yp)
                continue
            if region:
                left |= ~problem.in_region(x, y)
            track_gradients(xp, yp)
        if alive and not tracked:  # the per-step check skipped: one check per epoch instead
            ok = np.isfinite(x).all(axis=1) & np.isfinite(y).all(axis=1)
            diverged_at[~ok] = t + 1
        record(t + 1)
        alive = bool((diverged_at > T).all())
        tick()
        if (diverged_at <= T).all():  # every trial diverged: keep what we have
            for s in range(t + 2, T + 1):
                rec.left[s, cols] = left
            break
    rec.diverged_at[cols] = diverged_at


def _blocks_in_process(problem: Problem, config: SimConfig, group: list[tuple[int, int, int]],
                       starts: list[tuple[np.ndarray, np.ndarray]],
                       rates: list[tuple[float, float]]) -> list[_Records]:
    """Blocks ``(b, a, e)`` of ``group`` one after the other in a worker process (``starts``:
    each block's x0, y0 rows): the same :func:`_run_block`, BLAS held to one thread, each
    block's records returned. One job per worker, not per block, so the problem is sent to
    each worker once."""
    out = []
    with _blas().limit(limits=1, user_api="blas"), np.errstate(all="ignore"):
        for (b, a, e), (xs, ys) in zip(group, starts, strict=True):
            rec = _Records(config.epochs, e - a)
            _run_block(problem, config, b, a, e, xs, ys, rates, rec, threading.Event(),
                       lambda: None, col0=a)
            out.append(rec)
    return out


PROCESS_WORK = 2e8
"""With ``pool="auto"``, runs of at least this many units of work (trials x epochs x n x
(d_x + d_y): about a second of one core on the quadratic) use processes, shorter ones
threads: a cold process pool costs about a second to start (it stays warm for 5 minutes)."""


def _use_processes(pool: str, workers: int, problem: Problem, config: SimConfig) -> bool:
    if workers == 1 or len(blocks(config.trials)) == 1 or pool == "threads":
        return False
    if pool == "processes":
        return True
    work = float(config.trials) * config.epochs * problem.n * (problem.d_x + problem.d_y)
    return work >= PROCESS_WORK


def balanced_groups(parts: list[tuple[int, int]], workers: int
                    ) -> list[list[tuple[int, int, int]]]:
    """``(b, a, e)`` of the blocks ``parts`` in at most ``workers`` groups balanced by trials
    (the last block may be short): largest blocks first, each to the group with the fewest
    trials so far (LPT scheduling; blocks of equal size split as evenly as their count does).

    >>> [[b for b, _, _ in g] for g in balanced_groups(blocks(257), 2)]
    [[0, 2], [1]]
    """
    groups: list[list[tuple[int, int, int]]] = [[] for _ in range(workers)]
    load = [0] * workers
    for b in sorted(range(len(parts)), key=lambda b: parts[b][0] - parts[b][1]):
        k = load.index(min(load))
        groups[k].append((b, *parts[b]))
        load[k] += parts[b][1] - parts[b][0]
    return [sorted(g) for g in groups if g]


def _run_in_processes(problem: Problem, config: SimConfig, parts: list[tuple[int, int]],
                      x0: np.ndarray, y0: np.ndarray, rates: list[tuple[float, float]],
                      rec: _Records, workers: int, tick: Callable[[], None]) -> None:
    """The blocks in joblib's reusable loky pool of ``workers`` processes (no GIL between the
    blocks' Python), one group of blocks per worker, groups balanced by trials; a group's
    records are copied into ``rec`` (and the progress bar moved) as it finishes. On an error
    or Ctrl-C the pending groups are cancelled and the workers killed. The pool is the loky
    singleton joblib's ``Parallel`` also uses: a call with other settings restarts it (a
    cold start, 0.5-1 s), as does an idle spell of 5 minutes."""
    from concurrent.futures import as_completed

    from joblib.externals.loky import get_reusable_executor

    workers = min(workers, len(parts))
    groups = balanced_groups(parts, workers)
    # timeout: idle workers stay for 5 minutes (loky's default is 10 s)
    executor = get_reusable_executor(max_workers=workers, timeout=300)
    futures: dict = {}
    try:
        for g in groups:
            futures[executor.submit(_blocks_in_process, problem, config, g,
                                    [(x0[a:e], y0[a:e]) for _, a, e in g], rates)] = g
        for f in as_completed(futures):
            for (_, a, e), part in zip(futures[f], f.result(), strict=True):
                rec.put(a, e, part)
                for _ in range(config.epochs):
                    tick()
    except BaseException:
        for f in futures:
            f.cancel()
        executor.shutdown(wait=False, kill_workers=True)
        raise


def _check_fits(problem: Problem, config: SimConfig) -> None:
    """Refuse, before allocating, a run whose records and state cannot fit in memory."""
    from ..sizes import check_fits, simulation_bytes

    check_fits(lambda **v: simulation_bytes(family=problem.name, **v),
               dict(n=problem.n, d_x=problem.d_x, d_y=problem.d_y, trials=config.trials,
                    epochs=config.epochs, q=config.q),
               dict(trials=100, epochs=10, q=1), what="this simulation")


def simulate(problem: Problem, config: SimConfig, *, x0: np.ndarray | None = None,
             y0: np.ndarray | None = None, progress: bool = False,
             threads: int | None = None, pool: str = spec.POOLS.default) -> pd.DataFrame:
    """Run ``config.trials`` trials of ``config.epochs`` epochs; return the records.

    The trials run in blocks of :data:`TRIAL_BLOCK`, each with its own generators
    (:func:`block_rng`), on ``threads`` workers (default :func:`default_threads`): threads
    (numpy releases the GIL in the draws and the array arithmetic) or, with ``pool`` =
    ``"processes"`` or ``"auto"`` and a run of at least :data:`PROCESS_WORK`, processes of
    joblib's reusable loky pool (no GIL at all; docs/simulator.md, "Speed"). BLAS is held to
    one thread per block meanwhile. The records depend neither on ``threads`` nor on ``pool``
    (bit for bit).

    Returns:
        a DataFrame with columns :data:`RECORD_COLUMNS` plus ``problem``, ``d_x``, ``d_y``,
        ``n`` and the configuration's fields; ``(trials) x (epochs + 1)`` rows.
    """
    import pandas as pd

    if not isinstance(problem, Problem):
        raise ValueError(f"problem must be a hybridconv.problems.Problem, got {problem!r}")
    if not isinstance(config, SimConfig):
        raise ValueError(f"config must be a SimConfig, got {config!r}")
    K, T, n = config.trials, config.epochs, problem.n
    _check_fits(problem, config)  # before anything the size of the run is built
    threads = default_threads(K) if threads is None else spec.validate("threads", threads)
    pool = spec.validate("pool", pool)
    x0, y0 = _start(problem, x0, y0, K)
    if "zo" in block_oracles(config.method):  # mu u must survive the rounding of x + mu u
        check_radius(config.mu, float(max(np.abs(x0).max(), np.abs(y0).max())),
                     eps=float(np.finfo(float).eps), largest=float(np.finfo(float).max))
    rates = [(_rate("eta_x", config.eta_x, t), _rate("eta_y", config.eta_y, t))
             for t in range(T)]
    rec = _Records(T, K)
    parts = blocks(K)
    stop = threading.Event()
    bar, lock = None, threading.Lock()
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=T * len(parts), desc=f"simulate {problem.name}/{config.method}",
                   unit="block-epoch")

    def tick() -> None:
        if bar is not None:
            with lock:
                bar.update(1)

    def run(b: int) -> None:
        with np.errstate(all="ignore"):  # overflow is detected and recorded as divergence
            _run_block(problem, config, b, *parts[b], x0, y0, rates, rec, stop, tick)

    try:
        if _use_processes(pool, threads, problem, config):
            _run_in_processes(problem, config, parts, x0, y0, rates, rec, threads, tick)
        else:
            with _blas().limit(limits=1, user_api="blas"):
                if threads == 1 or len(parts) == 1:
                    for b in range(len(parts)):
                        run(b)
                else:
                    with ThreadPoolExecutor(min(threads, len(parts)),
                                            thread_name_prefix="hybridconv-sim") as executor:
                        futures = [executor.submit(run, b) for b in range(len(parts))]
                        try:
                            for f in futures:
                                f.result()
                        finally:  # an error or Ctrl-C: the other blocks stop at their next step
                            stop.set()
    finally:
        if bar is not None:
            bar.close()

    epochs_idx = np.repeat(np.arange(T + 1), K)
    trials_idx = np.tile(np.arange(K), T + 1)
    gx2, gy2 = rec.gx2.ravel(), rec.gy2.ravel()
    df = pd.DataFrame({
        "trial": trials_idx,
        "epoch": epochs_idx,
        "F": rec.F.ravel(),
        "grad_x_sq": gx2,
        "grad_y_sq": gy2,
        "grad_sq": gx2 + gy2,
        "diverged": (epochs_idx >= rec.diverged_at[trials_idx]),
        "left_region": rec.left.ravel(),
        "max_grad_norm": rec.gmax.ravel(),
    })
    df["problem"] = problem.name
    df["d_x"], df["d_y"], df["n"] = problem.d_x, problem.d_y, n
    for k, v in config.columns().items():
        df[k] = v
    return df
