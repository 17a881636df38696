"""What the training loop reads and writes besides checkpoints: the scalars of a loss dict,
``metrics.jsonl`` cut back to a checkpoint on resume, and the progress bar."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from genlab._atomic import atomic_write_text

__all__ = ["progress_bar", "read_scalars_of", "truncate_metrics"]


def read_scalars_of(out: dict[str, torch.Tensor]) -> dict[str, float]:
    """The scalar entries of a loss dict as floats (the loss and its diagnostics), read from
    the device in one transfer."""
    by_dtype: dict[torch.dtype, list[str]] = {}
    for k, v in out.items():
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            by_dtype.setdefault(v.dtype, []).append(k)
    values: dict[str, float] = {}
    for keys in by_dtype.values():  # one transfer per dtype, each value exactly as computed
        read = torch.stack([out[k].detach().reshape(()) for k in keys]).tolist()
        values.update({k: float(v) for k, v in zip(keys, read, strict=True)})
    return {k: values[k] for k in out if k in values}


def truncate_metrics(path: Path, step: int) -> None:
    """On resume drop the records written after the checkpoint at ``step`` (they will be
    redone), and lines cut short by a crash or a full disk."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a line cut short by a crash or a full disk
            continue
        if isinstance(record, dict) and record.get("step", math.inf) <= step:
            keep.append(line)
    atomic_write_text(path, "".join(line + "\n" for line in keep))


class _NoBar:
    def update(self, n: int) -> None: ...
    def set_postfix(self, **kw: Any) -> None: ...
    def close(self) -> None: ...


def progress_bar(total: int, initial: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True)
