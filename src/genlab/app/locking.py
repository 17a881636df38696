"""One writer per run directory: an OS file lock that a second ``genlab train`` into the same
``--out`` meets, and is refused by in one line naming the holder's PID.

The lock is ``fcntl.flock`` on ``<run>/.genlab-lock``. The operating system drops it when the
holder exits or is killed (SIGKILL included), so a crashed training never leaves a stale lock.
The file stays (it holds the last holder's PID, and removing it would let two processes lock
two different files); clearing an old run for ``--overwrite`` keeps it. Where ``fcntl`` does
not exist (Windows) runs are not locked.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from genlab._validate import ConfigError

LOCK_FILE = ".genlab-lock"

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run directory's lock (creating the directory) for the body of the ``with``.

    If this call created the directory and the body fails before anything but the lock file
    was written, the directory is removed again: a refused run leaves nothing behind.

    Raises:
        ConfigError: another process holds the lock (the message names its PID).
    """
    created = not run_dir.exists()
    path = run_dir / LOCK_FILE
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644) if fcntl is not None else -1
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ConfigError(
            f"cannot write to the run directory {run_dir} ({reason}); use another --out"
        ) from None
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ConfigError(
            f"{run_dir} is being written by another genlab process (PID {holder}); "
            "wait for it to finish or choose another --out"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    try:
        yield
    except BaseException:
        if created and [p.name for p in run_dir.iterdir()] == [LOCK_FILE]:
            path.unlink()
            run_dir.rmdir()
        raise
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def clear_run(run_dir: Path) -> None:
    """Remove everything of an old run in ``run_dir`` except the lock this process holds."""
    import shutil

    for item in run_dir.iterdir():
        if item.name == LOCK_FILE:
            continue
        if item.is_dir() and not item.is_symlink():
            shutil.rmtree(item)
        else:
            item.unlink()
