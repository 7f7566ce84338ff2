"""Run a sweep: resumable, in parallel processes, tidy rows appended atomically.

``run_experiment(spec)`` skips every run whose rows are already in the results CSV (a
finished run is never redone), resumes an interrupted run from its checkpoint
(``runs/<name>/<run_id>/checkpoint.pt``, written after every epoch), and starts the rest.
Runs go to :func:`hybridconv.parallel.run_jobs` (joblib processes here; dask or ray on a
cluster), one job per run; each job appends its rows itself when it finishes, under a file
lock and by atomic replace, so an interruption (Ctrl-C, a killed session) loses at most the
epochs since the last checkpoint and never leaves a partial CSV. A run being computed is
claimed by a lock on its folder, so two sweeps of one spec started side by side (two
terminals, two sittings' background jobs) share the runs out instead of both computing one.

Rows (:data:`COLUMNS`): one per run x evaluation point (epoch 0 = before training), with
steps, forward passes, wall time (training only), peak memory (the training's; see
``hybridconv.finetune.memory``), test and dev accuracy and loss, the mean training loss of the
epoch, the run's settings, and ``code``: the digest of the fine-tuning code and libraries that
computed the run (:func:`hybridconv.provenance.finetune_code`, from its ``results.json``;
empty for rows written before the column existed). A CSV from before a column was added is
rewritten under the new header at the next append, its old rows keeping their values.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._io import write_text_atomic
from ..parallel import run_jobs
from ..provenance import finetune_code
from .spec import ExperimentSpec, Run

__all__ = ["COLUMNS", "run_experiment", "run_one", "finished_runs", "append_rows",
           "claim_holder"]

COLUMNS = ("experiment", "run_id", "label", "model", "task", "method", "peft", "schedule",
           "seed", "k_shot", "epochs", "batch_size", "lr_x", "lr_y", "mu", "epoch", "step",
           "forward_passes", "wall_s", "train_loss", "test_accuracy", "test_loss",
           "dev_accuracy", "dev_loss", "status", "peak_mem_bytes", "trained_params",
           "zo_params", "train_examples", "test_examples", "finished_at", "code")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path.lock`` (processes of one machine)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def _claimed(run_dir: Path) -> Iterator[bool]:
    """Try to claim a run for this process: a non-blocking exclusive lock on
    ``run_dir/.lock``, held for the block. Yields whether it was claimed (``False``: another
    process is running it now). The lock dies with its process, so a killed sweep leaves no
    stale claim; two sweeps of one spec side by side share its runs out, never both running
    one (they would write its checkpoint in turn). While held, the file names the holder
    (``HOST PID``; emptied at release) for :func:`claim_holder`."""
    import fcntl

    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".lock", "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        fd = fh.fileno()  # unbuffered writes: a failed one leaves nothing for close to flush
        try:
            with contextlib.suppress(OSError):  # the note is advice: a full disk keeps the claim
                os.ftruncate(fd, 0)
                os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
            yield True
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fh, fcntl.LOCK_UN)


def claim_holder(run_dir: Path) -> str | None:
    """Who is running this run now: ``"pid N"`` (this machine) or ``"HOST pid N"``, from what
    :func:`_claimed` wrote, or ``None``. Reads only: probing the lock itself could make a sweep
    starting at that moment skip the run. A holder killed without its cleanup left a dead pid,
    which counts as no holder (a pid reused since would be misread; the report is advisory).
    A holder on another host is named unchecked. Content that is not ``HOST PID`` with a pid
    > 0 counts as no holder (``os.kill`` with pid 0 or -1 would probe a process group or
    every process, and an out-of-range pid raises ``OverflowError``)."""
    try:
        with open(run_dir / ".lock", "rb") as fh:  # a note is one short line: read no more
            host, pid = fh.read(512).decode().split()
        n = int(pid)
    except (OSError, ValueError):  # UnicodeDecodeError is a ValueError
        return None
    if n <= 0:
        return None
    if host != socket.gethostname():
        return f"{host} pid {n}"
    try:
        os.kill(n, 0)
    except (ProcessLookupError, OverflowError):
        return None
    except PermissionError:  # alive, another user's
        pass
    return f"pid {n}"


def finished_runs(results: Path) -> set[str]:
    """run_ids that have rows in the results CSV."""
    if not results.exists():
        return set()
    with open(results, newline="") as fh:
        return {row["run_id"] for row in csv.DictReader(fh)}


def append_rows(results: Path, rows: list[dict[str, Any]]) -> bool:
    """Append a run's rows (all or nothing): lock, re-read, skip if the run is there
    already, write the whole file to a temporary and rename it over the old one.
    Returns whether rows were added.

    A file whose header is not :data:`COLUMNS` (written before a column was added, or in
    another order) is rewritten under :data:`COLUMNS` followed by any columns it has that
    :data:`COLUMNS` lacks (a newer version's, or one since dropped), so every row has the same
    fields and no value is lost."""
    if not rows:
        return False
    with _locked(results):
        old = ""
        if results.exists():
            with open(results, newline="") as fh:  # quoted fields keep their own line ends
                old = fh.read()
        if old and rows[0]["run_id"] in finished_runs(results):
            return False
        header = next(csv.reader(io.StringIO(old)), [])
        fields = [*COLUMNS, *(c for c in header if c and c not in COLUMNS)]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
        if header != fields:
            w.writeheader()
            w.writerows(csv.DictReader(io.StringIO(old)))
            old = ""
        w.writerows(rows)
        write_text_atomic(results, old + buf.getvalue())
    return True


def _rows(experiment: str, run: Run, res: dict[str, Any]) -> list[dict[str, Any]]:
    s = run.settings
    common = {"experiment": experiment, "run_id": run.run_id, "label": run.label(),
              **{k: s.get(k) for k in ("model", "task", "method", "peft", "schedule", "seed",
                                       "k_shot", "epochs", "batch_size", "lr_x", "lr_y",
                                       "mu")},
              "status": res["status"], "peak_mem_bytes": res.get("peak_mem_bytes"),
              "trained_params": res.get("trained_params"), "zo_params": res.get("zo_params"),
              "train_examples": res.get("train_examples"),
              "test_examples": res["task"]["test"] if "task" in res else None,
              "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "code": res.get("code")}
    out = []
    for c in res["curve"]:
        if c.get("accuracy") is None:
            continue
        out.append({**common, "epoch": c["epoch"], "step": c["step"],
                    "forward_passes": c["forward_passes"], "wall_s": c["wall_s"],
                    "train_loss": c["train_loss"], "test_accuracy": c["accuracy"],
                    "test_loss": c["test_loss"], "dev_accuracy": c.get("dev_accuracy"),
                    "dev_loss": c.get("dev_loss")})
    return out


def _baseline(run: Run, out: Path) -> dict[str, Any]:
    """The probe or zero-shot row of a run folder (results.json, like a fine-tuning run)."""
    from ..finetune.memory import peak_memory
    from ..finetune.models import load_model
    from ..finetune.probe import linear_probe
    from ..finetune.tasks import load_task
    from ..finetune.trainer import FinetuneConfig, evaluate

    s = run.settings
    cfg = FinetuneConfig(**{k: v for k, v in s.items() if k != "method"}, method="fo")
    task = load_task(cfg.task, k_shot=cfg.k_shot, test_size=cfg.test_size, data_seed=cfg.seed)
    loaded = load_model(cfg.model, task, seed=cfg.seed, device=cfg.device)
    t0 = time.perf_counter()
    if run.method == "probe":
        p = linear_probe(loaded, task, max_length=cfg.max_length, device=cfg.device)
        point = {"accuracy": p["accuracy"], "test_loss": p["test_loss"],
                 "dev_accuracy": p["dev_accuracy"], "dev_loss": None, "l2": p["l2"]}
    else:
        if loaded.kind != "lm":
            raise ValueError(f"zero-shot needs a prompt-based LM; {cfg.model!r} is a "
                             f"classifier with a fresh head")
        test = evaluate(loaded, task, task.test, cfg)
        dev = evaluate(loaded, task, task.dev, cfg)
        point = {**test, "dev_accuracy": dev["accuracy"], "dev_loss": dev["test_loss"]}
    wall = time.perf_counter() - t0
    res = {"status": "completed", **peak_memory(cfg.device), "trained_params": 0,
           "zo_params": 0, "train_examples": len(task.train), "task": task.describe(),
           "settings": s, "code": finetune_code(), "accuracy": point["accuracy"],
           "curve": [{"epoch": 0, "step": 0, "train_loss": None, "forward_passes": 0,
                      "wall_s": wall, **point}]}
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "results.json", json.dumps(res, indent=2) + "\n")
    return res


def run_one(settings: dict[str, Any], run_dir: str, results: str, experiment: str,
            progress: bool = False) -> dict[str, Any]:
    """One run of a sweep (a job of :func:`run_experiment`): reuse, resume or start it,
    then append its rows. Returns ``{"run_id", "status", "accuracy", "resumed"}``; status
    ``"busy"`` when another process holds the run (:func:`_claimed`): it is left to that one."""
    run = Run(settings)
    out = Path(run_dir)
    with _claimed(out) as mine:
        if not mine:
            return {"run_id": run.run_id, "status": "busy", "accuracy": None,
                    "resumed": False}
        return _run_claimed(run, settings, out, results, experiment, progress)


def _run_claimed(run: Run, settings: dict[str, Any], out: Path, results: str,
                 experiment: str, progress: bool) -> dict[str, Any]:
    from ..finetune.trainer import FinetuneConfig, finetune

    res_path, ckpt = out / "results.json", out / "checkpoint.pt"
    resumed = False
    res = json.loads(res_path.read_text()) if res_path.exists() else None
    try:
        if res is None or res.get("status") not in ("completed", "diverged"):
            if run.baseline:
                res = _baseline(run, out)
            else:
                cfg = FinetuneConfig(**{k: v for k, v in settings.items() if v is not None})
                resumed = ckpt.exists()
                res = finetune(cfg, out, resume=resumed, force=not resumed, progress=progress)
    except Exception as e:  # noqa: BLE001 -- one failed run must not stop a long sweep: no
        msg = str(e).splitlines()[0][:300] if str(e) else repr(e)  # rows, retried next time
        return {"run_id": run.run_id, "status": "failed", "accuracy": None,
                "resumed": resumed, "error": f"{type(e).__name__}: {msg}"}
    append_rows(Path(results), _rows(experiment, run, res))
    return {"run_id": run.run_id, "status": res["status"], "accuracy": res["accuracy"],
            "resumed": resumed}


def run_experiment(spec: ExperimentSpec, *, workers: int = 1, backend: str | None = None,
                   address: str | None = None, progress: bool = True,
                   limit: int | None = None) -> list[dict[str, Any]]:
    """Run every run of ``spec`` not yet in its results CSV (at most ``limit`` of them)."""
    done = finished_runs(spec.results)
    todo = [r for r in spec.runs if r.run_id not in done]
    if limit is not None:
        todo = todo[:limit]
    spec.results.parent.mkdir(parents=True, exist_ok=True)
    jobs = [{"settings": r.settings, "run_dir": str(spec.runs_dir / r.run_id),
             "results": str(spec.results), "experiment": spec.name} for r in todo]
    return run_jobs(run_one, jobs, workers=workers, backend=backend, address=address,
                    progress=progress, desc=f"{spec.name} ({len(done)} done before)")
