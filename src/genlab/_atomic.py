"""Crash-safe file writes: a temporary file in the same directory, fsynced, then
``os.replace`` (atomic on POSIX and Windows), so a reader sees the old file or the new one,
never half of one."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "atomic_write_json", "atomic_write_text", "fsync_dir"]


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry to disk so a rename survives a power cut (best effort)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a temporary file next to ``path``, fsync it, rename it over.

    The temporary file starts with a dot and ends in ``.tmp`` so no reader mistakes it
    for a finished file; it is removed if ``write`` fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically: readers see the old or the new file.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "note.txt"
    >>> atomic_write_text(p, "hello")
    >>> p.read_text()
    'hello'
    """
    data = text.encode("utf-8")
    atomic_write(Path(path), lambda tmp: tmp.write_bytes(data))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Serialise ``obj`` as indented JSON and write it atomically to ``path``.

    Serialisation happens before anything touches the disk, so an object that is not
    JSON-serialisable raises ``ValueError`` and leaves ``path`` untouched.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "cfg.json"
    >>> atomic_write_json(p, {"lr": 1e-3})
    >>> json.loads(p.read_text())
    {'lr': 0.001}
    """
    try:
        text = json.dumps(obj, indent=2, sort_keys=False) + "\n"
    except (TypeError, ValueError) as err:
        raise ValueError(f"cannot write {path}: object is not JSON-serialisable ({err})") from None
    atomic_write_text(path, text)
