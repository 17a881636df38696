"""What the training loop reads and writes besides checkpoints: the scalars of a loss dict,
``metrics.jsonl`` cut back to a checkpoint on resume, and the progress (a bar on a terminal,
plain periodic lines elsewhere)."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import torch

from genlab._atomic import atomic_write_text

__all__ = ["LineProgress", "progress_bar", "read_scalars_of", "truncate_metrics"]


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


_LINE_NAMES = {"it_s": "steps/s"}
#: seconds between the plain progress lines printed when the output is not a terminal
PROGRESS_LINE_SECONDS = 10.0


class LineProgress:
    """Progress for output that is not a terminal (a pipe, a log file, a CI job): one plain
    line every ``interval`` seconds, ``train: step 1200/6000 (20%), loss 0.4123, steps/s 350,
    eta 14 s``, and one at the end, instead of a bar redrawn with carriage returns (which a
    pipe receives as one very long line)."""

    def __init__(
        self,
        total: int,
        initial: int,
        stream: TextIO,
        interval: float = PROGRESS_LINE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total, self.n, self.start_n = total, initial, initial
        self.stream, self.interval, self.clock = stream, interval, clock
        self.started = self.last = clock()
        self.postfix: dict[str, Any] = {}
        self.printed_at: int | None = None

    def update(self, n: int) -> None:
        self.n += n
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            self._print(now)

    def set_postfix(self, **kw: Any) -> None:
        self.postfix = kw

    def close(self) -> None:
        if self.printed_at != self.n:
            self._print(self.clock())

    def _print(self, now: float) -> None:
        self.printed_at = self.n
        parts = [f"train: step {self.n}/{self.total} ({100 * self.n / max(self.total, 1):.0f}%)"]
        parts += [f"{_LINE_NAMES.get(k, k)} {v}" for k, v in self.postfix.items()]
        done = self.n - self.start_n
        if 0 < done and self.n < self.total:
            parts.append(f"eta {(now - self.started) / done * (self.total - self.n):.0f} s")
        print(", ".join(parts), file=self.stream, flush=True)


def progress_bar(total: int, initial: int, enabled: bool, stream: TextIO | None = None) -> Any:
    """A tqdm bar on a terminal, :class:`LineProgress` lines elsewhere, nothing if disabled."""
    if not enabled:
        return _NoBar()
    stream = stream if stream is not None else sys.stderr
    if not (hasattr(stream, "isatty") and stream.isatty()):
        return LineProgress(total, initial, stream)
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True, file=stream)
