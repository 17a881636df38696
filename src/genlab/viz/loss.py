"""Training curves: the loss of ``metrics.jsonl`` against the step."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from genlab.viz._style import (
    LOSS_RAW_COLOR,
    LOSS_SMOOTH_COLOR,
    SECOND_LOSS_RAW_COLOR,
    SECOND_LOSS_SMOOTH_COLOR,
    PathLike,
    _new_figure,
    _prepare_out,
    _save,
    _style,
)

# ---------------------------------------------------------------------------------------
# Training curves
# ---------------------------------------------------------------------------------------


def _read_records(metrics: PathLike | Sequence[Mapping[str, Any]]) -> list[Any]:
    """The records of a JSONL file or a list of dicts."""
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
        return records
    if isinstance(metrics, Sequence):
        return list(metrics)
    raise ValueError(
        "metrics must be a JSONL path or a list of dicts with 'step' and 'loss', "
        f"got {type(metrics).__name__}"
    )


#: the losses of a two-player run, drawn instead of its ``loss`` (which is the generator's)
PLAYER_LOSSES = {"d_loss": "discriminator loss", "g_loss": "generator loss"}


def _loss_series(records: list[Any]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """label -> (steps, values): both players' losses for an adversarial run, else ``loss``;
    records without the key (e.g. evaluation lines) and non-finite values are skipped."""
    keys = {"loss": "loss"}
    if any(isinstance(r, Mapping) and "d_loss" in r and "g_loss" in r for r in records):
        keys = PLAYER_LOSSES
    series = {}
    for key, label in keys.items():
        pairs = [
            (float(r["step"]), float(r[key]))
            for r in records
            if isinstance(r, Mapping) and "step" in r and key in r
        ]
        pairs = sorted((s, v) for s, v in pairs if math.isfinite(s) and math.isfinite(v))
        if pairs:
            arr = np.asarray(pairs)
            series[label] = (arr[:, 0], arr[:, 1])
    if not series:
        raise ValueError("metrics contain no record with finite 'step' and 'loss'")
    return series


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
    """Plot training loss against step: raw values faint, a smoothed line on top; for an
    adversarial run (records with ``d_loss`` and ``g_loss``) both players' losses, labelled.

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
    series = _loss_series(_read_records(metrics))
    longest = max(len(v) for _, v in series.values())
    if smoothing is None:
        smoothing = 1.0 - 1.0 / max(1.0, longest / 30.0)
    elif not (isinstance(smoothing, (int, float)) and 0.0 <= smoothing < 1.0):
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
    path = _prepare_out(out_path)
    every = np.concatenate([v for _, v in series.values()])
    log_y = bool((every > 0).all())
    colours = [(LOSS_RAW_COLOR, LOSS_SMOOTH_COLOR), (SECOND_LOSS_RAW_COLOR, SECOND_LOSS_SMOOTH_COLOR)]
    last = {}
    with _style():
        fig = _new_figure(6.0, 3.6)
        ax = fig.add_subplot()
        for (label, (steps, losses)), (raw, smoothed) in zip(series.items(), colours, strict=False):
            smooth = _ema(losses, float(smoothing))
            last[label] = smooth[-1]
            ax.plot(steps, losses, color=raw, linewidth=0.8, label=label)
            ax.plot(
                steps, smooth, color=smoothed, linewidth=1.8, label=f"{label}, smoothed (EMA {smoothing:.2f})"
            )
        if log_y:
            from matplotlib.ticker import FuncFormatter, NullFormatter

            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))
            if math.log10(every.max() / every.min()) < 2.0:  # few decades: label 2, 3, 5
                ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: _log_minor_label(v)))
            else:
                ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("step")
        ax.set_ylabel("loss (log scale)" if log_y else "loss")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="upper right")
        summary = ", ".join(f"{k} {v:.4g}" for k, v in last.items())
        default = f"training loss (last smoothed: {summary})" if len(last) > 1 else None
        ax.set_title(title or default or f"training loss (last smoothed: {next(iter(last.values())):.4g})")
        return _save(fig, path)
