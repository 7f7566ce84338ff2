"""Writing results: atomically, with ordinary permissions (one place for the whole package)."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["write_text_atomic", "atomic_path", "jsonable", "dumps_json", "check_output",
           "OutputExists", "write_text_exclusive", "read_json_object", "cache_dir"]


def cache_dir() -> Path:
    """``$HYBRIDCONV_CACHE`` or ``~/.cache/hybridconv`` (downloads, extracted data, the
    theory's compiled expressions)."""
    return Path(os.environ.get("HYBRIDCONV_CACHE", Path.home() / ".cache" / "hybridconv"))


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


def read_json_object(path: str | os.PathLike, remedy: str, *,
                     what: str = "a JSON object") -> dict:
    """The JSON object in ``path``; a ``ValueError`` naming the file, what is wrong and
    ``remedy`` (what the user can do) when it cannot be read, is not JSON or is not an
    object. The one reader of the package's JSON files (run files, manifests, configs)."""
    path = Path(path)
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); {remedy}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} is malformed: expected {what}, got "
                         f"{type(value).__name__}; {remedy}")
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


class OutputExists(FileExistsError):
    """An output file that appeared while the command ran (another run wrote it): an exclusive
    write refused to replace it."""


def check_output(path: str | os.PathLike, label: str, *, kind: str = "file") -> Path:
    """Check, before any work, that ``path`` can be written: a ``file`` (its name is not a
    folder's, its folder can be created and written) or a ``dir`` (not a file). Creates
    nothing: a temporary file in the deepest folder that exists is made and removed.

    Raises:
        ValueError: starting with ``label`` (the option as typed, e.g. ``--out``), saying
            what is wrong with the path.
    """
    text = os.fspath(path)
    if not text.strip():
        raise ValueError(f"{label} is empty; give a {'file' if kind == 'file' else 'folder'} "
                         "name")
    if kind == "file" and text.endswith(("/", os.sep)):
        raise ValueError(f"{label} {text} names a directory; give a file name in it "
                         f"({text.rstrip('/' + os.sep)}/FILE)")
    p = Path(text)
    for part in p.parts:
        if len(os.fsencode(part)) > 255:
            raise ValueError(f"{label}: the name {part[:20]}... is {len(part)} characters "
                             "long; file systems allow 255")
    if len(os.fsencode(os.path.abspath(text))) >= 4096:
        raise ValueError(f"{label}: the path is {len(text)} characters long; the system "
                         "allows 4095")
    if kind == "file" and p.is_dir():
        raise ValueError(f"{label} {text} is a directory; give a file name")
    if kind == "dir" and p.exists() and not p.is_dir():
        raise ValueError(f"{label} {text} is a file, not a directory")
    probe = p.parent if kind == "file" else p
    probe = Path(os.path.abspath(probe))
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"{label} {text}: {probe} is a file, not a directory")
    try:
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=".hybridconv-probe.")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise ValueError(f"{label} {text}: cannot write in {probe} "
                         f"({e.strerror or e})") from None
    return p


def write_text_exclusive(path: str | Path, text: str) -> Path:
    """Like :func:`write_text_atomic`, but never replaces a file: the complete temporary
    file is hard-linked to ``path``, which fails if ``path`` exists. Two runs writing the same
    new file at once: one wins, the other gets :class:`OutputExists` (nothing is lost
    silently)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        Path(tmp).write_text(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        exists = OutputExists(f"{path} appeared while this command ran (another run wrote "
                              "it); nothing was replaced: pass --force to overwrite it")
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise exists from None
        except OSError as e:  # no hard links here (some network or FAT file systems):
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise  # claim the name exclusively, then rename the full file over it
            try:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            except FileExistsError:
                raise exists from None
            os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path
