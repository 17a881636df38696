"""Training curves: the loss of ``metrics.jsonl`` against the step."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    pass
from genlab.viz._style import (
    LOSS_RAW_COLOR,
    LOSS_SMOOTH_COLOR,
    PathLike,
    _new_figure,
    _prepare_out,
    _save,
    _style,
)

# ---------------------------------------------------------------------------------------
# Training curves
# ---------------------------------------------------------------------------------------


def _read_loss_records(
    metrics: PathLike | Sequence[Mapping[str, Any]],
) -> tuple[np.ndarray, np.ndarray]:
    """(steps, losses) from a JSONL file or a list of dicts; records without both keys are
    skipped (e.g. evaluation lines), as are non-finite losses."""
    if isinstance(metrics, (str, os.PathLike)):
        file = Path(metrics)
        if not file.is_file():
            raise ValueError(f"metrics file {str(file)!r} does not exist")
        records: list[Any] = []
        with file.open() as fh:
            for lineno, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError as err:
                        raise ValueError(f"{file}:{lineno} is not valid JSON: {err}") from err
    elif isinstance(metrics, Sequence):
        records = list(metrics)
    else:
        raise ValueError(
            "metrics must be a JSONL path or a list of dicts with 'step' and 'loss', "
            f"got {type(metrics).__name__}"
        )
    pairs = [
        (float(r["step"]), float(r["loss"]))
        for r in records
        if isinstance(r, Mapping) and "step" in r and "loss" in r
    ]
    pairs = [(s, v) for s, v in pairs if math.isfinite(s) and math.isfinite(v)]
    if not pairs:
        raise ValueError("metrics contain no record with finite 'step' and 'loss'")
    pairs.sort()
    arr = np.asarray(pairs)
    return arr[:, 0], arr[:, 1]


def _ema(values: np.ndarray, smoothing: float) -> np.ndarray:
    """Bias-corrected exponential moving average (TensorBoard's smoothing)."""
    out = np.empty_like(values)
    acc, weight = 0.0, 0.0
    for i, v in enumerate(values):
        acc = smoothing * acc + (1.0 - smoothing) * v
        weight = smoothing * weight + (1.0 - smoothing)
        out[i] = acc / weight
    return out


def _log_minor_label(value: float) -> str:
    """Label a minor tick of a log axis only at 2, 3 and 5 times a power of ten."""
    if value <= 0:
        return ""
    mantissa = value / 10.0 ** math.floor(math.log10(value))
    return f"{value:g}" if any(abs(mantissa - m) < 1e-6 for m in (2.0, 3.0, 5.0)) else ""


def plot_loss_curve(
    metrics: PathLike | Sequence[Mapping[str, Any]],
    out_path: PathLike,
    smoothing: float | None = None,
    title: str | None = None,
) -> Path:
    """Plot training loss against step: raw values faint, a smoothed line on top.

    The y axis is logarithmic when every loss is positive (linear otherwise, e.g. for GAN
    losses or negative log-likelihoods that go below zero).

    Args:
        metrics: a JSONL file (one JSON object per line) or a list of dicts; records with
            both ``"step"`` and ``"loss"`` are used, others (e.g. evaluation lines) skipped.
        out_path: file to write.
        smoothing: EMA coefficient in [0, 1); default chosen from the number of points
            (about a 1/30 of the run as the averaging window).
        title: figure title (default "training loss").

    Returns:
        The path written.
    """
    steps, losses = _read_loss_records(metrics)
    if smoothing is None:
        smoothing = 1.0 - 1.0 / max(1.0, len(losses) / 30.0)
    elif not (isinstance(smoothing, (int, float)) and 0.0 <= smoothing < 1.0):
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
    path = _prepare_out(out_path)
    smooth = _ema(losses, float(smoothing))
    log_y = bool((losses > 0).all())
    with _style():
        fig = _new_figure(6.0, 3.6)
        ax = fig.add_subplot()
        ax.plot(steps, losses, color=LOSS_RAW_COLOR, linewidth=0.8, label="loss")
        ax.plot(
            steps,
            smooth,
            color=LOSS_SMOOTH_COLOR,
            linewidth=1.8,
            label=f"smoothed (EMA {smoothing:.2f})",
        )
        if log_y:
            from matplotlib.ticker import FuncFormatter, NullFormatter

            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))
            if math.log10(losses.max() / losses.min()) < 2.0:  # few decades: label 2, 3, 5
                ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: _log_minor_label(v)))
            else:
                ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("step")
        ax.set_ylabel("loss (log scale)" if log_y else "loss")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="upper right")
        ax.set_title(title or f"training loss (last smoothed: {smooth[-1]:.4g})")
        return _save(fig, path)
