"""What a measurement records about the machine and the code it ran: ``genlab compare`` and
every script in ``benchmarks/`` store :func:`machine` next to their numbers."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch


def package_versions(dists: Iterable[str]) -> dict[str, str]:
    """Installed version of each distribution, or "not installed"."""
    versions = {}
    for dist in dists:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return versions


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("" where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def git_state() -> dict[str, Any]:
    """Commit of the checkout and whether src/genlab differs from it (the code under test)."""
    here = Path(__file__).resolve()
    root = here.parents[3]  # src/genlab/app/machine.py -> the checkout
    if root / "src" / "genlab" / "app" / "machine.py" != here:  # installed, not run from a checkout
        return {"commit": None, "src_genlab_modified": None}
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src/genlab"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "src_genlab_modified": None}
    return {"commit": commit, "src_genlab_modified": bool(dirty)}


def machine(threads: int | None, dists: Iterable[str]) -> dict[str, Any]:
    """Hardware, threads, versions, commit and load: the context of every number."""
    from genlab._version import __version__

    return {
        "genlab": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "threads_requested": threads,
        "thread_env": {
            v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
        },
        "versions": package_versions(dists),
        "genlab_git": git_state(),
        "loadavg_start": list(os.getloadavg()),
    }
