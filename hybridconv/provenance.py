"""What a result was computed with: library versions and a digest of the code that ran.

A fine-tuning run's id (``experiments.spec.Run.run_id``) hashes its *settings*, not the code,
so a results CSV can hold rows written by different versions of the package (a sweep started
before a change, resumed after it). :func:`finetune_code` names the code: the first 12 hex
digits of the SHA-256 of every source file a fine-tuning run executes in this package
(:data:`FINETUNE_SOURCES`) and of the versions of python, numpy, torch, transformers and peft.
The trainer writes it into ``results.json`` (``code``) and the experiment runner into each CSV
row, so two rows with the same ``code`` were computed by the same code and libraries; two
different ``code`` values only say that something in those files changed (a comment is enough),
not that the numbers would differ. The figures' run cache (:mod:`hybridconv.figures.runcache`)
keys its entries by the same digest of the files (:func:`code_on_disk`, read at each key).

:func:`finetune_code` is read once per process, when the trainer is imported, and kept: a
sweep started before a change of the sources (a ``git merge`` during a long grid) goes on
running the code it loaded, and its rows must name that code, not the files now on disk. A run
resumed by a later process is named by the code of the process that finished it. The digest is
the same on every machine with the same files and library versions (paths enter relative to the
package); a CPU and a CUDA build of torch differ (``2.13.0+cpu``, ``2.13.0+cu126``), as do two
patch releases of python.
"""

from __future__ import annotations

import functools
import hashlib
import json
import platform
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

__all__ = ["FINETUNE_SOURCES", "versions", "source_digest", "finetune_sources",
           "code_on_disk", "finetune_code"]

PACKAGE = Path(__file__).resolve().parent

#: glob patterns, relative to the package, of the sources a fine-tuning run executes: the
#: fine-tuner, the experiment runner, the vocabulary and the simulator's seeding (the
#: sampler's orders come from ``sim.runner.block_rng``)
FINETUNE_SOURCES = ("finetune/*.py", "experiments/*.py", "spec.py", "sim/runner.py")


def versions() -> dict[str, str]:
    """Installed versions of python, numpy, torch, transformers and peft, from the packages'
    metadata (nothing is imported; ``"absent"`` for a missing one)."""
    out = {"python": platform.python_version()}
    for name in ("numpy", "torch", "transformers", "peft"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def source_digest(paths: Sequence[Path]) -> str:
    """SHA-256 (hex) of the files in sorted order, each as ``parent/name`` then its bytes."""
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(f"{p.parent.name}/{p.name}".encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def finetune_sources() -> list[Path]:
    """The files of :data:`FINETUNE_SOURCES` in this installed package."""
    return [p for pattern in FINETUNE_SOURCES for p in PACKAGE.glob(pattern)]


def code_on_disk() -> str:
    """12 hex digits naming the fine-tuning sources as they are on disk now and the installed
    libraries: ``sha256(source_digest(finetune_sources()) + canonical JSON of versions())``,
    its first 12 hex digits."""
    blob = source_digest(finetune_sources()) + json.dumps(versions(), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


@functools.cache
def finetune_code() -> str:
    """The code this process runs: :func:`code_on_disk` at the first call (the trainer makes it
    at import), the same value afterwards whatever happens to the files (see the module doc)."""
    return code_on_disk()
