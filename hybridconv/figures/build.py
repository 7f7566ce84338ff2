"""``hybridconv figures``: compute, cache, plot, and record every figure.

Layout under the output folder (``paper_figures/`` by default; ``paper_figures/quick/`` for
``--quick``, so that a preview never replaces the full figures):

    NAME.png, NAME.pdf       the figure
    data/NAME.csv            the tidy DataFrame it is drawn from (alone)
    MANIFEST.json            per figure: command, settings and seeds, git revision, runtime
                             (wall, and CPU time of the build and its workers), files, UTC
                             time, the cached runs it reused and the runs it computed;
                             figures not rebuilt keep their earlier entry
    cache/runs/KEY.json      the fine-tuning runs, keyed by the hash of their configuration
                             and code (:mod:`.runcache`; not committed)

Every file is written atomically (temporary file, then rename). Regenerating a figure replaces
its files: that is what the command is for, and it says so (``replaced`` in the summary and in
the manifest's ``replaced`` field). ``--replot`` redraws from the cached CSVs without computing.
A rerun with unchanged settings and code reuses the cached fine-tuning runs (``runs`` in the
manifest lists them); ``--no-cache`` (``cache=False``) computes them again.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from .._io import jsonable, read_json_object, write_text_atomic
from ..parallel import check_backend, check_workers, defaults
from . import FIGURES, figure_module, runcache

__all__ = ["build", "default_out", "git_revision", "cpu_seconds"]


def default_out(quick: bool) -> Path:
    """``paper_figures`` (full) or ``paper_figures/quick`` (preview)."""
    return Path("paper_figures") / "quick" if quick else Path("paper_figures")


def git_revision() -> str:
    """``git describe``-like revision of the package's checkout (``+dirty`` when the tree has
    uncommitted changes), or ``unknown`` outside a git checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10)
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=10)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_seconds(exclude: int | None = None) -> float | None:
    """CPU time (user + system) of this process and of every process it started, alive or
    reaped (psutil; ``None`` without it): a figure's work, which unlike its wall time does
    not grow when other jobs share the machine. ``exclude``: a live child whose tree is left
    out (the side process of :func:`build`, which reports its own time)."""
    try:
        import psutil
    except ImportError:
        return None
    me = psutil.Process()
    t = me.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    skip: set[int] = set()
    if exclude is not None:
        try:
            side = psutil.Process(exclude)
            skip = {exclude, *(c.pid for c in side.children(recursive=True))}
        except psutil.Error:
            pass
    for child in me.children(recursive=True):
        if child.pid in skip:
            continue
        try:
            c = child.cpu_times()
        except psutil.Error:  # it ended meanwhile: its time is in a parent's children_*
            continue
        total += c.user + c.system + c.children_user + c.children_system
    return total


SIDE: dict[str, tuple[str, int | None]] = {"quick": ("finetuning", 1), "full": ("realruns", None)}
"""Per mode, the figure that :func:`build` computes in a side process while it computes the
others (when it builds more than one figure with ``workers >= 2``), and the side's workers
(None: the build's). The side takes the mode's longest computation: in quick mode the
fine-tuning figure's runs (sequential, one thread each: they leave a core idle between runs,
which the simulator figures fill); in full mode the real-run figure's 13 runs (minutes; the
full fine-tuning figure only reads the experiment runner's CSVs), on the build's workers, one
thread each, so that its runs and the simulator figures share the cores instead of waiting
for each other (measured: docs/figures.md). Their data do not depend on it (seeded runs, one
thread each either way)."""


SIDE_EXIT_SECONDS = 30.0
"""How long the build waits for the side process to exit once its data came; then it ends
the side and its workers (:meth:`_Side.close`)."""


def _end_worker_pool() -> None:
    """Shut down this process's reusable loky pool (joblib's and the simulator's), killing its
    idle workers: a process that is not a daemon joins its children when it exits, and the
    pool's workers would otherwise wait out their idle timeout first."""
    try:  # a private name of joblib's vendored loky: if it moves, nothing is shut down here,
        # and the parent ends a side that outlives its data (_Side.result)
        from joblib.externals.loky import reusable_executor

        executor = getattr(reusable_executor, "_executor", None)
        if executor is not None:
            executor.shutdown(wait=True, kill_workers=True)
    except Exception:  # noqa: BLE001 - an optimisation of the exit, never a failure of the data
        pass


def _end_with_parent() -> None:
    """In the side process: a daemon thread that waits for the parent's end (its sentinel) and
    then ends this process and the workers it started, so that a parent killed without
    cleaning up (SIGKILL; SIGTERM outside the CLI) leaves no orphan computing for minutes."""
    import multiprocessing
    import os
    import threading

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        for kid in multiprocessing.active_children():  # the loky workers among them
            kid.terminate()
        os._exit(1)

    threading.Thread(target=watch, name="side-watchdog", daemon=True).start()


def _side_compute(name: str, quick: bool, cache_dir: str, read: bool, backend: str,
                  address: str | None, workers: int, conn) -> None:
    """In a spawned process: one figure's data, computed with ``workers``, sent back with its
    ledger of cached runs, its wall time and its CPU time (this process and its children)."""
    import os
    import resource

    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"  # before torch loads
    _end_with_parent()
    t0 = time.perf_counter()
    try:
        with defaults(backend=backend, address=address), \
                runcache.use(Path(cache_dir), read=read) as ledger:
            df = figure_module(name).compute(quick=quick, workers=workers, progress=False)
        _end_worker_pool()  # else this process's exit waits out its idle workers (5 min)
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
        conn.send(("ok", df, dict(ledger), time.perf_counter() - t0, cpu))
    except BaseException as e:  # noqa: BLE001 - the parent re-raises it by type
        conn.send(("error", type(e).__name__, str(e), None, None))
    finally:
        conn.close()


class _Side:
    """The side process of :func:`build` (spawned: no thread state is inherited); ended with
    the build, whatever happens (Ctrl-C terminates it, so no orphan keeps computing)."""

    def __init__(self, name: str, quick: bool, cache_dir: Path, read: bool, backend: str,
                 address: str | None, workers: int = 1) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.name, self.workers = name, workers
        self._conn, child = ctx.Pipe(duplex=False)
        # not a daemon: a daemonic process may not start children, and joblib would then run
        # the side figure's runs one after the other (n_jobs=1) instead of on its workers;
        # close() ends it and its workers whatever happens
        self.proc = ctx.Process(target=_side_compute, daemon=False,
                                args=(name, quick, str(cache_dir), read, backend, address,
                                      workers, child))
        self.proc.start()
        child.close()
        self.cpu_offset = 0.0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc.is_alive() else None

    def result(self) -> tuple[pd.DataFrame, dict, float, float]:
        """Wait for the data; a failure in the side process is raised here as ValueError,
        or as what it was when the side was interrupted."""
        try:
            status, *rest = self._conn.recv()
        except EOFError:
            self.proc.join()
            raise RuntimeError(f"the {self.name} figure's side process ended without its "
                               f"data (exit status {self.proc.exitcode})") from None
        self.proc.join(SIDE_EXIT_SECONDS)
        if self.proc.is_alive():  # its exit waits for workers it failed to shut down
            self.close()
        if status == "error":
            kind, message = rest[0], rest[1]
            if kind == "KeyboardInterrupt":
                raise KeyboardInterrupt
            raise (ValueError if kind == "ValueError" else RuntimeError)(message)
        df, ledger, seconds, cpu = rest
        self.cpu_offset = cpu  # reaped: its time is now in this process's children_*
        return df, ledger, seconds, cpu

    def close(self) -> None:
        """End the side process and the workers it started (a no-op once it has finished)."""
        if self.proc.is_alive():
            kids = []
            try:
                import psutil

                kids = psutil.Process(self.proc.pid).children(recursive=True)
            except Exception:  # noqa: BLE001 - psutil missing, or the side just ended
                pass
            self.proc.terminate()
            self.proc.join(5)
            for kid in kids:
                try:
                    kid.terminate()
                except Exception:  # noqa: BLE001 - it ended with its parent
                    pass
        self._conn.close()


def read_manifest(path: Path) -> dict:
    """``MANIFEST.json`` (``{"figures": {}}`` when absent); ``ValueError`` naming the file
    when it is not a JSON object with a ``figures`` object."""
    if not path.exists():
        return {"figures": {}}
    manifest = read_json_object(path, "restore it, or delete it and rebuild the figures "
                                "without --replot", what="an object with a 'figures' object")
    if not isinstance(manifest.setdefault("figures", {}), dict):
        raise ValueError(f"{path} is malformed: expected an object with a 'figures' object; "
                         "restore it, or delete it and rebuild the figures without --replot")
    if not all(isinstance(v, dict) for v in manifest["figures"].values()):
        raise ValueError(f"{path} is malformed: every figure's entry must be an object; "
                         "restore it, or delete it and rebuild the figures without --replot")
    return manifest


def _verified_csv(path: Path, entry: dict) -> pd.DataFrame:
    """A figure's cached data, checked against its manifest entry (SHA-256 of the file, and
    its row count): a truncated or edited CSV is refused, not replotted."""
    what = "restore it, or rebuild the figure without --replot"
    digest = entry.get("sha256")
    if digest is not None and hashlib.sha256(path.read_bytes()).hexdigest() != digest:
        raise ValueError(f"{path} does not match its checksum in MANIFEST.json (truncated or "
                         f"changed since it was computed); {what}")
    try:
        df = pd.read_csv(path)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise ValueError(f"{path} is not a readable CSV ({str(e).splitlines()[0]}); "
                         f"{what}") from None
    rows = entry.get("rows")
    if rows is not None and len(df) != rows:
        raise ValueError(f"{path} has {len(df)} rows, MANIFEST.json recorded {rows} "
                         f"(truncated or changed since it was computed); {what}")
    if df.empty:
        raise ValueError(f"{path} holds no data; {what}")
    return df


def build(names: Sequence[str] | None = None, *, quick: bool = False, replot: bool = False,
          workers: int = 1, out: str | Path | None = None, progress: bool = True,
          command: str | None = None, backend: str = "local",
          address: str | None = None, cache: bool = True) -> dict[str, dict]:
    """Compute (or with ``replot`` read back) and draw the figures ``names`` (default: all).

    ``backend`` and ``address`` choose the engine of the figures' independent runs
    (``hybridconv.parallel``: local joblib processes, or a dask or ray cluster); the data do
    not depend on it. ``cache``: reuse the fine-tuning runs cached in ``OUT/cache`` by the
    hash of their configuration and code (:mod:`.runcache`); ``False`` computes them again
    and replaces their entries. Returns the manifest entries of the figures built. Raises
    ``ValueError`` for an unknown name, a bad worker count or backend, or ``replot`` without a
    cached CSV (checked before any work).
    """
    names = list(FIGURES) if not names else list(names)
    for n in names:
        figure_module(n)
    check_workers(workers)
    check_backend(backend)
    out = default_out(quick) if out is None else Path(out)
    data = out / "data"
    manifest_path = out / "MANIFEST.json"
    manifest = read_manifest(manifest_path)
    if replot:
        missing = [str(data / f"{n}.csv") for n in names if not (data / f"{n}.csv").exists()]
        if missing:
            raise ValueError(f"--replot needs the cached data, missing: {', '.join(missing)}"
                             " (run without --replot first)")
        cached = {n: _verified_csv(data / f"{n}.csv", manifest["figures"].get(n, {}))
                  for n in names}
        mode = "quick" if quick else "full"
        other = [n for n in names if manifest["figures"].get(n, {}).get("mode", mode) != mode]
        if other:
            raise ValueError(f"the cached data of {', '.join(other)} in {out} was computed in "
                             f"the other mode; replot it with{'out' if quick else ''} --quick")
    command = command or "hybridconv figures" + (" --quick" if quick else "")
    revision = git_revision()
    built: dict[str, dict] = {}
    side = None
    if not replot and workers >= 2 and len(names) > 1:
        name, side_workers = SIDE["quick" if quick else "full"]
        if name in names:
            side = _Side(name, quick, out / "cache", cache, backend, address,
                         side_workers or workers)
    try:
        _build_each(names, quick=quick, replot=replot, workers=workers, out=out,
                    progress=progress, command=command, backend=backend, address=address,
                    cache=cache, manifest=manifest, cached=cached if replot else {},
                    revision=revision, built=built, side=side)
    finally:
        if side is not None:
            side.close()
    return built


def _build_each(names: list[str], *, quick: bool, replot: bool, workers: int, out: Path,
                progress: bool, command: str, backend: str, address: str | None, cache: bool,
                manifest: dict, cached: dict, revision: str, built: dict,
                side: _Side | None) -> None:
    """The loop of :func:`build` (its arguments, and what it prepared): each figure computed
    (or its side-process data collected), plotted, written, and recorded in the manifest."""
    from .style import save, style

    data, manifest_path = out / "data", out / "MANIFEST.json"

    def cpu() -> float | None:
        c = cpu_seconds(exclude=None if side is None else side.pid)
        return None if c is None else c - (0.0 if side is None else side.cpu_offset)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(names, desc="figures", unit="figure")
    # the side process's figure is collected last, so the others do not wait for it
    order = [n for n in names if side is None or n != side.name] + (
        [side.name] if side is not None else [])
    for name in order:
        if bar is not None:
            bar.set_postfix_str(name)
        mod = figure_module(name)
        t0, c0 = time.perf_counter(), cpu()
        csv = data / f"{name}.csv"
        runs = None
        side_times = None
        if replot:
            df = cached[name]
            previous = manifest["figures"].get(name, {})
        else:
            if side is not None and name == side.name:
                df, ledger, *side_times = side.result()
                t0, c0 = time.perf_counter(), cpu()  # its own times come with its data
            else:
                with defaults(backend=backend, address=address), \
                        runcache.use(out / "cache", read=cache) as ledger:
                    df = mod.compute(quick=quick, workers=workers, progress=progress)
            previous = {}
            if ledger["reused"] or ledger["computed"]:
                runs = {"reused": len(ledger["reused"]), "computed": len(ledger["computed"]),
                        "reused_runs": ledger["reused"]}
        replaced = [str(p) for p in (csv, out / f"{name}.png", out / f"{name}.pdf")
                    if p.exists()]
        with style():
            fig = mod.plot(df)
            if quick:
                fig.text(0.5, -0.01, "quick preview (hybridconv figures --quick): small "
                         "settings, see MANIFEST.json", ha="center", va="top", fontsize=7,
                         color="#555555")
            files = save(fig, out / name)
            import matplotlib.pyplot as plt

            plt.close(fig)
        if not replot:  # after a successful plot: data, figure and manifest stay together
            text = df.to_csv(index=False, float_format="%.10g")
            write_text_atomic(csv, text)
            digest = hashlib.sha256(text.encode()).hexdigest()
        else:
            digest = previous.get("sha256")
        seconds = time.perf_counter() - t0
        c1 = cpu()
        used = round(c1 - c0, 1) if c0 is not None and c1 is not None else None
        if side_times is not None:  # computed beside the others: its own wall and CPU time
            seconds += side_times[0]
            used = round(side_times[1] + (used or 0.0), 1)
        entry = {
            "title": mod.TITLE,
            "command": f"{command} --only {name}" if not replot else previous.get(
                "command", f"{command} --only {name}"),
            "mode": "quick" if quick else "full",
            "settings": previous.get("settings") if replot and previous else
            jsonable(mod.settings(quick)),
            "git_revision": previous.get("git_revision", revision) if replot else revision,
            "compute_seconds": previous.get("compute_seconds") if replot else round(seconds, 2),
            "cpu_seconds": previous.get("cpu_seconds") if replot else used,
            "replot_seconds": round(seconds, 2) if replot else None,
            "workers": (side.workers if side_times is not None else workers) if not replot
            else previous.get("workers"),
            "backend": backend if not replot else previous.get("backend", "local"),
            "files": [str(p) for p in files] + [str(csv)],
            "rows": int(len(df)),
            "sha256": digest,
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "replaced": replaced,
            "python": sys.version.split()[0],
        }
        if runs is not None or (replot and "runs" in previous):
            entry["runs"] = runs if runs is not None else previous["runs"]
        manifest["figures"][name] = entry
        built[name] = entry
        manifest["figures"] = {k: manifest["figures"][k] for k in FIGURES
                               if k in manifest["figures"]} | {
            k: v for k, v in manifest["figures"].items() if k not in FIGURES}
        write_text_atomic(manifest_path, json.dumps(manifest, indent=2) + "\n")
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
