"""Run independent jobs (simulations of a figure, searches of a report) serially or on workers.

The jobs of a figure (one simulation per step size, sampler, dimension, ...) are independent
and each carries its own seed, so the results do not depend on the number of workers, on the
engine, or on the order in which they finish: ``run_jobs(f, jobs, workers=4)`` equals
``[f(**j) for j in jobs]`` (tested). No home-made pool: every backend is joblib's ``Parallel``
on an existing engine.

Backends:

* ``local`` (default): joblib's ``loky`` processes on this machine; ``workers=1`` runs in this
  process (what the tests and the notebooks use).
* ``dask``: joblib's dask backend on a ``dask.distributed`` cluster: the scheduler at
  ``address`` (or ``$HYBRIDCONV_ADDRESS``), else a ``LocalCluster`` of ``workers`` processes
  started for the call (``pip install 'dask[distributed]'``).
* ``ray``: joblib's ray backend (``ray.util.joblib``) on the cluster at ``address`` (or
  ``$HYBRIDCONV_ADDRESS``; ``"auto"`` finds a running one), else a local ray with ``workers``
  CPUs (``pip install ray``).

The function must be importable by the workers (a module-level function of ``hybridconv``, or
of a module installed on the cluster's workers).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TypeVar

from . import spec

__all__ = ["BACKENDS", "run_jobs", "check_workers", "check_backend", "defaults", "cpus"]

R = TypeVar("R")

BACKENDS = spec.BACKENDS.values
"""A view of :data:`hybridconv.spec.BACKENDS`."""

_DEFAULTS: dict[str, str | None] = {"backend": "local", "address": None}


@contextlib.contextmanager
def defaults(*, backend: str = "local", address: str | None = None) -> Iterator[None]:
    """Within the block, ``run_jobs`` calls that name no backend use this one (how
    ``hybridconv figures --backend`` reaches every figure's jobs without new arguments)."""
    check_backend(backend)
    old = dict(_DEFAULTS)
    _DEFAULTS.update(backend=backend, address=address)
    try:
        yield
    finally:
        _DEFAULTS.update(old)


def cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_workers(workers: object) -> int:
    """Validate a worker count: an integer >= 1."""
    return spec.validate("workers", workers)


def check_backend(backend: object) -> str:
    """Validate a backend name: one of :data:`BACKENDS`."""
    return spec.validate("backend", backend)


@contextlib.contextmanager
def _engine(backend: str, workers: int, address: str | None) -> Iterator[None]:
    """Connect to (or start) the engine and make it joblib's backend for the block."""
    from joblib import parallel_config

    address = address or os.environ.get("HYBRIDCONV_ADDRESS") or None
    if backend == "dask":
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            raise ValueError("backend 'dask' needs dask.distributed: "
                             "pip install 'dask[distributed]'") from None
        cluster = None
        if address:
            client = Client(address)
        else:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            client = Client(cluster)
        try:
            with parallel_config(backend="dask"):
                yield
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    elif backend == "ray":
        try:
            import ray
            from ray.util.joblib import register_ray
        except ImportError:
            raise ValueError("backend 'ray' needs ray: pip install ray") from None
        register_ray()
        started = not ray.is_initialized()
        if started:
            if address:
                ray.init(address=address)
            else:
                ray.init(num_cpus=workers, include_dashboard=False)
        try:
            with parallel_config(backend="ray"):
                yield
        finally:
            if started:
                ray.shutdown()
    else:
        with parallel_config(backend="loky"):
            yield


def run_jobs(fn: Callable[..., R], jobs: Sequence[Mapping[str, object]], *, workers: int = 1,
             backend: str | None = None, address: str | None = None, progress: bool = False,
             desc: str = "", on_result: Callable[[int, R], None] | None = None) -> list[R]:
    """``[fn(**job) for job in jobs]``, on ``workers`` processes of ``backend``.

    ``workers=1`` with the local backend runs in this process; a cluster backend always ships
    the jobs to the engine (``workers`` then sizes a local cluster; on a remote one the
    cluster's own size applies). ``backend=None`` takes the one set by :func:`defaults`
    (``local`` otherwise). Results come back in the order of ``jobs``; a tqdm bar counts
    finished jobs when ``progress`` is set; ``on_result(i, result)`` is called in this
    process as each result arrives, in the order they finish (how the figures' run cache
    stores each run as soon as it is done).
    """
    check_workers(workers)
    if backend is None:
        backend, address = _DEFAULTS["backend"], address or _DEFAULTS["address"]
    check_backend(backend)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc=desc, unit="run", leave=False)
    try:
        if backend == "local" and (workers == 1 or len(jobs) <= 1):
            out = []
            for job in jobs:
                out.append(fn(**job))
                if on_result is not None:
                    on_result(len(out) - 1, out[-1])
                if bar is not None:
                    bar.update(1)
            return out
        from joblib import Parallel, delayed

        with _engine(backend, workers, address):
            n_jobs = min(workers, len(jobs)) if backend == "local" else -1
            gen = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
                delayed(_indexed)(fn, i, job) for i, job in enumerate(jobs))
            out: list = [None] * len(jobs)
            for i, r in gen:
                out[i] = r
                if on_result is not None:
                    on_result(i, r)
                if bar is not None:
                    bar.update(1)
        return out
    finally:
        if bar is not None:
            bar.close()



def _indexed(fn: Callable[..., R], i: int, job: Mapping[str, object]) -> tuple[int, R]:
    return i, fn(**job)
