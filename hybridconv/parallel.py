"""Run independent jobs (simulations of a figure, searches of a report) serially or on workers.

The jobs of a figure (one simulation per step size, sampler, dimension, ...) are independent
and each carries its own seed, so the results do not depend on the number of workers or on the
order in which they finish: ``run_jobs(f, jobs, workers=4)`` equals ``[f(**j) for j in jobs]``
(tested). Workers are joblib's ``loky`` processes (no home-made pool); ``workers=1`` runs in
this process, which is what the tests and the notebooks use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

__all__ = ["run_jobs", "check_workers"]

R = TypeVar("R")


def check_workers(workers: object) -> int:
    """Validate a worker count: an integer >= 1."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    return workers


def run_jobs(fn: Callable[..., R], jobs: Sequence[Mapping[str, object]], *, workers: int = 1,
             progress: bool = False, desc: str = "") -> list[R]:
    """``[fn(**job) for job in jobs]``, on ``workers`` processes when ``workers > 1``.

    ``fn`` must be a module-level function (it is pickled for the workers). Results come back
    in the order of ``jobs``; a tqdm bar counts finished jobs when ``progress`` is set.
    """
    check_workers(workers)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc=desc, unit="run", leave=False)
    try:
        if workers == 1 or len(jobs) <= 1:
            out = []
            for job in jobs:
                out.append(fn(**job))
                if bar is not None:
                    bar.update(1)
            return out
        from joblib import Parallel, delayed

        gen = Parallel(n_jobs=min(workers, len(jobs)), backend="loky",
                       return_as="generator")(delayed(fn)(**job) for job in jobs)
        out = []
        for r in gen:
            out.append(r)
            if bar is not None:
                bar.update(1)
        return out
    finally:
        if bar is not None:
            bar.close()
