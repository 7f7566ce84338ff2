"""Writing results: atomically, with ordinary permissions (one place for the whole package)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["write_text_atomic", "atomic_path", "jsonable", "dumps_json"]


def jsonable(value: object) -> object:
    """``value`` as plain JSON data: dicts and sequences recursively, numpy scalars and
    arrays as Python numbers and lists, paths as strings, NaN and infinities as ``None``
    (strict JSON has no such numbers). The package's one NaN policy: every ``--json`` output
    and every JSON file goes through it."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist") and getattr(value, "ndim", 0) > 0:
        return jsonable(value.tolist())
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps_json(value: object) -> str:
    """Strict JSON text of ``value`` (:func:`jsonable`, indented): what every ``--json``
    prints."""
    return json.dumps(jsonable(value), indent=2, allow_nan=False)


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success give it 0666 less the umask
    and rename it over ``path``, on failure remove it (the old file stays intact)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to a temporary file in ``path``'s folder, then rename it over ``path``.

    A reader never sees a half-written file and a crash leaves the old file intact. The file
    gets 0666 less the umask (``mkstemp`` alone would give 0600). The caller decides whether
    overwriting is allowed.
    """
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
