"""The figures' expensive runs, cached by the hash of their configuration and code.

A figure that fine-tunes (``realruns``; ``finetuning``'s quick sweep) hands its runs to
:func:`run_cached` instead of :func:`hybridconv.parallel.run_jobs`. Each run is keyed by the
SHA-256 of a canonical JSON of

* its job: the function's qualified name and its keyword arguments (every setting that
  reaches the trainer: model, task, method, seed, sizes, rates, ...), and
* the code it runs with: the SHA-256 of the function's module file and of the fine-tuning
  sources (:data:`hybridconv.provenance.FINETUNE_SOURCES`: ``finetune/*.py``,
  ``experiments/*.py``, ``spec.py``, ``sim/runner.py``), and the versions of python, numpy,
  torch, transformers and peft.

A run found in the cache (``<figures folder>/cache/runs/KEY.json``, written atomically after
the run succeeded) is read back instead of computed: a rerun of ``hybridconv figures`` with
unchanged settings and code reuses every run; a changed setting, source file or library
version recomputes exactly the runs it touches. The runs still to compute go to
``run_jobs`` (``workers`` processes side by side). :func:`build` records per figure which runs
were reused and which were computed (``MANIFEST.json``: ``runs``); ``--no-cache`` computes
everything and overwrites the entries.

Results must be JSON data (dicts, lists, strings, numbers; numpy scalars and arrays become
numbers and lists), as the runs' ``results.json`` already is; a computed result is returned
exactly as a later build will read it back. Outside a :func:`use` block (tests, notebooks,
``compute`` called directly) nothing is cached.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .._io import jsonable, write_text_atomic
from ..parallel import run_jobs
from ..provenance import finetune_sources, source_digest, versions

__all__ = ["use", "run_cached", "run_key", "code_fingerprint"]

_STATE: dict[str, Any] = {"dir": None, "read": True, "ledger": None}


@contextlib.contextmanager
def use(directory: str | Path | None, *, read: bool = True) -> Iterator[dict[str, list]]:
    """Within the block, :func:`run_cached` reads and writes ``directory`` (``None``: no
    cache; ``read=False``: compute every run and overwrite its entry). Yields the ledger
    ``{"reused": [...], "computed": [...]}`` of the runs seen in the block (each a dict with
    ``key``, ``job`` and, for reused runs, ``created_utc``)."""
    old = dict(_STATE)
    ledger: dict[str, list] = {"reused": [], "computed": []}
    _STATE.update(dir=None if directory is None else Path(directory), read=read, ledger=ledger)
    try:
        yield ledger
    finally:
        _STATE.clear()
        _STATE.update(old)


def code_fingerprint(fn: Callable[..., Any]) -> dict[str, Any]:
    """What a cached run's validity depends on besides its arguments: the source of ``fn``'s
    module, of the fine-tuning code (:data:`hybridconv.provenance.FINETUNE_SOURCES`) and the
    library versions."""
    module = Path(inspect.getsourcefile(fn) or "")
    return {"module": source_digest([module]) if module.is_file() else "unknown",
            "finetune": source_digest(finetune_sources()), "versions": versions()}


def run_key(fn: Callable[..., Any], job: Mapping[str, Any],
            fingerprint: Mapping[str, Any] | None = None) -> str:
    """The cache key of ``fn(**job)``: SHA-256 of the canonical JSON of the function's
    name, the job and the code fingerprint."""
    payload = {"fn": f"{fn.__module__}.{fn.__qualname__}", "job": jsonable(dict(job)),
               "code": dict(fingerprint or code_fingerprint(fn))}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _path(key: str) -> Path:
    return _STATE["dir"] / "runs" / f"{key}.json"


def run_cached(fn: Callable[..., Any], jobs: Sequence[Mapping[str, Any]], *, workers: int = 1,
               progress: bool = False, desc: str = "") -> list[Any]:
    """``[fn(**job) for job in jobs]``, reading cached results and computing the rest on
    ``workers`` processes (:func:`hybridconv.parallel.run_jobs`). Each computed result is
    stored as soon as it is in (a failed run stores nothing; the runs before it stay), and
    returned as it will be read back (JSON data; NaN kept)."""
    def run(todo: Sequence[Mapping[str, Any]], on_result=None) -> list[Any]:
        return run_jobs(fn, todo, workers=workers, progress=progress, desc=desc,
                        on_result=on_result)

    if _STATE["dir"] is None:
        return run(jobs)
    fingerprint = code_fingerprint(fn)
    keys = [run_key(fn, job, fingerprint) for job in jobs]
    results: list[Any] = [None] * len(jobs)
    todo: list[int] = []
    ledger = _STATE["ledger"]
    for i, (job, key) in enumerate(zip(jobs, keys, strict=True)):
        path = _path(key)
        entry = None
        if _STATE["read"] and path.exists():
            try:
                entry = json.loads(path.read_text())
            except (OSError, ValueError):  # unreadable: compute it again
                entry = None
        if entry is not None and entry.get("key") == key:
            results[i] = entry["result"]
            ledger["reused"].append({"key": key, "job": jsonable(dict(job)),
                                     "created_utc": entry.get("created_utc")})
        else:
            todo.append(i)
    if todo:
        def store(j: int, result: Any) -> None:
            i = todo[j]
            text = json.dumps({
                "key": keys[i], "fn": f"{fn.__module__}.{fn.__qualname__}",
                "job": jsonable(dict(jobs[i])), "code": fingerprint,
                "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "result": result}, default=_plain)
            write_text_atomic(_path(keys[i]), text + "\n")
            results[i] = json.loads(text)["result"]  # as a later run will read it back
            ledger["computed"].append({"key": keys[i], "job": jsonable(dict(jobs[i]))})

        run([jobs[i] for i in todo], on_result=store)
    return results


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as Python numbers and lists (NaN stays NaN)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"a cached run's result must be JSON data, got {type(value).__name__}")
