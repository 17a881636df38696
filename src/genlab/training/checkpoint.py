"""Checkpoints that never unpickle: one ``.safetensors`` file plus a JSON sidecar per step.

Layout of a run directory::

    RUN_DIR/checkpoints/step_00001000.safetensors   every tensor, keyed "{group}/{name}"
    RUN_DIR/checkpoints/step_00001000.json          meta + step, versions, timestamp
    RUN_DIR/checkpoints/latest.json                 {"step": 1000, ...}

Loading uses ``safetensors.torch.load_file`` and ``json`` only, so opening a checkpoint
from an untrusted source never executes code (unlike ``torch.load`` / ``pickle``).

Crash safety. Every file is written to a temporary file in the same directory, fsynced
and moved into place with ``os.replace`` (atomic on POSIX and Windows). The tensor file
is written first and the JSON sidecar last, and a checkpoint counts as *complete* only
when both exist; ``latest.json`` is updated after the pair. An interrupted save therefore
leaves at worst a stray temporary file or a ``.safetensors`` without its sidecar, both
of which :func:`list_checkpoints` and :func:`load_checkpoint` ignore. The sidecar also
records the byte size and the SHA-256 of the tensor file, so a truncated, damaged or edited
file is refused on load instead of handing NaN or altered weights to the model.

Atomic writes live in :mod:`genlab._atomic`; the optimizer state's split into
tensors and JSON in :mod:`genlab.training.optim_state`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from genlab._atomic import atomic_write, atomic_write_json, fsync_dir
from genlab._version import __version__

__all__ = [
    "CHECKPOINT_DIRNAME",
    "FORMAT_VERSION",
    "Checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "save_checkpoint",
]

FORMAT_VERSION = 1
"""Version of the on-disk layout; loading a file with a newer version is refused."""

CHECKPOINT_DIRNAME = "checkpoints"
"""Sub-directory of a run directory holding the checkpoints."""

_LATEST = "latest.json"
_STEP_RE = re.compile(r"^step_(\d+)\.safetensors$")
_SEP = "/"
# Keys the sidecar fills in itself; user ``meta`` may not use them.
_RESERVED = (
    "step",
    "format_version",
    "torch_version",
    "genlab_version",
    "created",
    "groups",
    "file_bytes",
    "sha256",
    "pinned",
)


# --------------------------------------------------------------------------- paths


def _stem(step: int) -> str:
    return f"step_{step:08d}"


def _checkpoint_dir(path: Path) -> Path:
    """Resolve a run directory or a ``checkpoints/`` directory to the checkpoint folder."""
    if path.name == CHECKPOINT_DIRNAME and not (path / CHECKPOINT_DIRNAME).is_dir():
        return path
    return path / CHECKPOINT_DIRNAME


def _complete_steps(ckpt_dir: Path) -> list[int]:
    if not ckpt_dir.is_dir():
        return []
    steps = []
    for entry in ckpt_dir.iterdir():
        match = _STEP_RE.match(entry.name)
        if match and entry.with_suffix(".json").is_file():
            steps.append(int(match.group(1)))
    return sorted(set(steps))


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[int]:
    """Steps of the complete checkpoints (tensor file *and* sidecar present), ascending.

    ``run_dir`` may be a run directory or its ``checkpoints/`` sub-directory; a missing
    directory has no checkpoints. Leftover temporary files and tensor files without a
    sidecar (interrupted saves) are ignored.
    """
    return _complete_steps(_checkpoint_dir(Path(run_dir)))


# --------------------------------------------------------------------------- save


def _check_step(step: int) -> int:
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ValueError(f"step must be a non-negative integer, got {step!r}")
    return step


def _flatten(tensors: Mapping[str, Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """``{group: {name: t}}`` -> ``{"group/name": contiguous CPU copy of t}``."""
    if not isinstance(tensors, Mapping):
        raise ValueError(f"tensors must be a dict of groups, got {type(tensors).__name__}")
    flat: dict[str, torch.Tensor] = {}
    for group, state in tensors.items():
        if not isinstance(group, str) or not group or _SEP in group:
            raise ValueError(f"group names must be non-empty strings without '/', got {group!r}")
        if not isinstance(state, Mapping):
            raise ValueError(f"tensors[{group!r}] must be a dict of tensors, got {type(state).__name__}")
        for name, value in state.items():
            if not isinstance(name, str):
                raise ValueError(f"tensor names must be strings, got {name!r} in {group!r}")
            if not isinstance(value, torch.Tensor):
                raise ValueError(
                    f"tensors[{group!r}][{name!r}] must be a torch.Tensor, got "
                    f"{type(value).__name__}; put non-tensor values in meta"
                )
            if value.layout != torch.strided:
                raise ValueError(
                    f"tensors[{group!r}][{name!r}] has layout {value.layout}; "
                    "convert it with .to_dense() first"
                )
            # A fresh contiguous copy: shared storage (tied weights, views) is fine.
            flat[f"{group}{_SEP}{name}"] = (
                value.detach().to("cpu").clone(memory_format=torch.contiguous_format)
            )
    return flat


def _prune(ckpt_dir: Path, keep: int, just_written: int) -> None:
    """Delete the oldest unpinned checkpoints beyond the newest ``keep``.

    The sidecar goes first, so a crash in between leaves an incomplete (ignored) pair.
    """
    unpinned = []
    for step in _complete_steps(ckpt_dir):
        if step == just_written:
            continue
        try:
            info = json.loads((ckpt_dir / f"{_stem(step)}.json").read_text("utf-8"))
        except (OSError, ValueError):
            continue  # unreadable sidecar: leave it for a human to inspect
        if not info.get("pinned", False):
            unpinned.append(step)
    newest = sorted([*unpinned, just_written], reverse=True)[:keep]
    for step in unpinned:
        if step not in newest:
            (ckpt_dir / f"{_stem(step)}.json").unlink(missing_ok=True)
            (ckpt_dir / f"{_stem(step)}.safetensors").unlink(missing_ok=True)
    fsync_dir(ckpt_dir)


def save_checkpoint(
    run_dir: str | os.PathLike[str],
    step: int,
    tensors: Mapping[str, Mapping[str, torch.Tensor]],
    meta: Mapping[str, Any] | None = None,
    *,
    keep: int | None = None,
    pin: bool = False,
) -> Path:
    """Write ``RUN_DIR/checkpoints/step_{step:08d}.{safetensors,json}`` and ``latest.json``.

    Args:
        run_dir: run directory (the ``checkpoints/`` folder is created inside it); a path
            whose name is ``checkpoints`` is used as the checkpoint folder itself.
        step: training step, a non-negative int.
        tensors: groups of flat state dicts, e.g. ``{"model": model.state_dict(),
            "ema": ema_state, "rng": {"data": gen.get_state()}}``; group names must not
            contain ``/``. Tensors are copied to contiguous CPU memory.
        meta: JSON-serialisable metadata (config, optimizer JSON part, metrics, ...). The
            keys ``step, format_version, torch_version, genlab_version, created, groups,
            file_bytes, sha256, pinned`` are filled in by this function and may not be used.
        keep: if given (>= 1), delete the oldest unpinned checkpoints so that at most
            ``keep`` remain; the checkpoint just written is never deleted.
        pin: mark this checkpoint as permanent (e.g. "best" or "final"): ``keep`` never
            deletes it.

    Returns:
        Path of the ``.safetensors`` file.

    Order of writes: tensors, sidecar, ``latest.json``, then pruning. Re-saving an
    existing step first removes its old sidecar so the pair is never mismatched.
    """
    _check_step(step)
    if keep is not None and (not isinstance(keep, int) or isinstance(keep, bool) or keep < 1):
        raise ValueError(f"keep must be None or a positive integer, got {keep!r}")
    meta = dict(meta or {})
    clash = sorted(k for k in meta if k in _RESERVED)
    if clash:
        raise ValueError(f"meta keys {clash} are reserved for the checkpoint sidecar; rename them")
    try:  # fail before touching the disk if meta cannot be stored
        json.dumps(meta)
    except (TypeError, ValueError) as err:
        raise ValueError(f"meta is not JSON-serialisable ({err}); convert it first") from None
    flat = _flatten(tensors)

    ckpt_dir = _checkpoint_dir(Path(run_dir))
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    st_path = ckpt_dir / f"{_stem(step)}.safetensors"
    json_path = ckpt_dir / f"{_stem(step)}.json"
    if json_path.exists():  # overwrite: invalidate the old pair before replacing it
        json_path.unlink()
        fsync_dir(ckpt_dir)

    st_meta = {"format": "pt", "genlab_step": str(step)}
    digest: list[str] = []

    def write_tensors(tmp: Path) -> None:
        save_file(flat, str(tmp), metadata=st_meta)
        digest.append(_sha256(tmp))

    atomic_write(st_path, write_tensors)

    sidecar = {
        **meta,
        "step": step,
        "format_version": FORMAT_VERSION,
        "torch_version": torch.__version__,
        "genlab_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "groups": list(tensors),
        "file_bytes": st_path.stat().st_size,
        "sha256": digest[0],
        "pinned": bool(pin),
    }
    atomic_write_json(json_path, sidecar)
    atomic_write_json(
        ckpt_dir / _LATEST,
        {"step": step, "file": st_path.name, "format_version": FORMAT_VERSION},
    )
    if keep is not None:
        _prune(ckpt_dir, keep, step)
    return st_path


# --------------------------------------------------------------------------- load


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        step: training step it was saved at.
        tensors: ``{group: {name: tensor}}`` on CPU, as passed to :func:`save_checkpoint`
            (groups that were empty come back empty).
        meta: the user ``meta`` given to :func:`save_checkpoint` (reserved keys removed,
            so it can be passed back to ``save_checkpoint`` unchanged).
        path: the ``.safetensors`` file.
        info: bookkeeping from the sidecar: ``format_version``, ``torch_version``,
            ``genlab_version``, ``created``, ``pinned``.
    """

    step: int
    tensors: dict[str, dict[str, torch.Tensor]]
    meta: dict[str, Any]
    path: Path
    info: dict[str, Any] = field(default_factory=dict)


def _no_checkpoint(ckpt_dir: Path) -> ValueError:
    return ValueError(f"no checkpoint in {ckpt_dir}; train first with `genlab train ...`")


def _resolve(path: Path, step: int | None) -> Path:
    """Turn any accepted path (+ optional step) into the ``.safetensors`` file to load."""
    if path.is_file() or path.suffix in (".safetensors", ".json"):
        if path.name == _LATEST:
            return _resolve(path.parent, step)
        st_path = path.with_suffix(".safetensors")
        match = _STEP_RE.match(st_path.name)
        if not match:
            raise ValueError(
                f"{path} is not a checkpoint file; expected step_NNNNNNNN.safetensors or a run directory"
            )
        if step is not None and int(match.group(1)) != step:
            raise ValueError(
                f"{path} holds step {int(match.group(1))}, not the requested step {step}; "
                "pass the run directory to select a step"
            )
        if not st_path.is_file():
            raise ValueError(f"checkpoint file {st_path} does not exist")
        return st_path
    if not path.exists():
        raise ValueError(f"{path} does not exist; pass a run directory or a .safetensors file")

    ckpt_dir = _checkpoint_dir(path)
    steps = _complete_steps(ckpt_dir)
    if step is not None:
        _check_step(step)
        if step not in steps:
            if not steps:
                raise _no_checkpoint(ckpt_dir)
            raise ValueError(f"no complete checkpoint for step {step} in {ckpt_dir}; available: {steps}")
        return ckpt_dir / f"{_stem(step)}.safetensors"
    latest = ckpt_dir / _LATEST
    if latest.is_file():
        try:
            chosen = int(json.loads(latest.read_text("utf-8"))["step"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(
                f"{latest} is unreadable ({err}); delete it to use the newest complete checkpoint"
            ) from None
        if chosen not in steps:
            raise ValueError(
                f"{latest} points to step {chosen}, which is missing or incomplete in "
                f"{ckpt_dir}; delete latest.json to use the newest complete checkpoint"
            )
        return ckpt_dir / f"{_stem(chosen)}.safetensors"
    if not steps:
        raise _no_checkpoint(ckpt_dir)
    return ckpt_dir / f"{_stem(steps[-1])}.safetensors"


def _read_sidecar(st_path: Path) -> dict[str, Any]:
    json_path = st_path.with_suffix(".json")
    if not json_path.is_file():
        raise ValueError(
            f"checkpoint {st_path} has no JSON sidecar {json_path.name} (interrupted save?); "
            "load an earlier step (see list_checkpoints) or save it again"
        )
    try:
        sidecar = json.loads(json_path.read_text("utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"checkpoint sidecar {json_path} is unreadable ({err})") from None
    if not isinstance(sidecar, dict) or not isinstance(sidecar.get("format_version"), int):
        raise ValueError(f"{json_path} is not a genlab checkpoint sidecar (no format_version)")
    version = sidecar["format_version"]
    if version > FORMAT_VERSION:
        raise ValueError(
            f"checkpoint {st_path} has format_version {version} but genlab "
            f"{__version__} reads up to {FORMAT_VERSION}; upgrade genlab"
        )
    return sidecar


def load_checkpoint(path_or_run_dir: str | os.PathLike[str], step: int | None = None) -> Checkpoint:
    """Load a checkpoint without unpickling anything.

    Args:
        path_or_run_dir: a run directory (uses ``checkpoints/latest.json``, or the newest
            complete checkpoint if there is none), its ``checkpoints/`` directory, or a
            ``step_*.safetensors`` file (its ``.json`` sidecar is accepted too).
        step: load this step instead of the latest one.

    Returns:
        :class:`Checkpoint` with tensors on CPU; move them with ``load_state_dict``.

    Raises:
        ValueError: no checkpoint, missing sidecar, truncated or corrupt tensor file,
            or a format_version newer than this genlab understands.
    """
    st_path = _resolve(Path(path_or_run_dir), step)
    sidecar = _read_sidecar(st_path)
    expected = sidecar.get("file_bytes")
    actual = st_path.stat().st_size
    if isinstance(expected, int) and expected != actual:
        raise ValueError(
            f"checkpoint {st_path} is truncated or corrupt ({actual} bytes, sidecar says "
            f"{expected}); load an earlier step or save it again"
        )
    expected_digest = sidecar.get("sha256")
    if isinstance(expected_digest, str) and _sha256(st_path) != expected_digest:
        raise ValueError(
            f"checkpoint {st_path} does not match the SHA-256 its sidecar recorded (changed or damaged "
            "since it was written); load an earlier step"
        )
    try:
        flat = load_file(str(st_path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise ValueError(
            f"checkpoint {st_path} is corrupt or truncated ({err}); load an earlier step or save it again"
        ) from None

    groups: dict[str, dict[str, torch.Tensor]] = {g: {} for g in sidecar.get("groups", [])}
    for key in sorted(flat):
        group, sep, name = key.partition(_SEP)
        if not sep:
            raise ValueError(f"checkpoint {st_path} has key {key!r} without a group prefix")
        groups.setdefault(group, {})[name] = flat[key]
    step_in_name = _step_of(st_path)
    if sidecar.get("step", step_in_name) != step_in_name:
        raise ValueError(
            f"sidecar of {st_path} says step {sidecar.get('step')!r}; the files were renamed "
            "or mixed up, save the checkpoint again"
        )
    info = {k: sidecar[k] for k in _RESERVED if k in sidecar and k not in ("step", "groups")}
    meta = {k: v for k, v in sidecar.items() if k not in _RESERVED}
    return Checkpoint(
        step=step_in_name,
        tensors=groups,
        meta=meta,
        path=st_path,
        info=info,
    )


def _sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _step_of(st_path: Path) -> int:
    match = _STEP_RE.match(st_path.name)
    assert match is not None
    return int(match.group(1))
