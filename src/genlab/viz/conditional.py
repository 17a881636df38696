"""Conditional samples: corrupted inputs, the model's reconstructions and the clean truth.

One column per example; the rows are the inputs x_0, one row per sample drawn from each
input, and (optionally) the clean images x_1 the inputs were made from.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlab._validate import check_tensor
from genlab.viz._style import DPI, PathLike, _images, _new_figure, _prepare_out, _save, _style
from genlab.viz.samples import GRID_MARGIN_PX, TEXT_ROW_PX, _tile

__all__ = ["plot_conditional_samples"]

ROW_GAP_PX = 8  # vertical gap between two rows (figure pixels)
LABEL_PX = 72  # width of the left margin that holds the row labels


def _check_labels(labels: Any) -> tuple[str, str, str]:
    if (
        isinstance(labels, str)
        or not isinstance(labels, Sequence)
        or len(labels) != 3
        or not all(isinstance(s, str) for s in labels)
    ):
        raise ValueError(f"labels must be three strings (input, sample, truth), got {labels!r}")
    return labels[0], labels[1], labels[2]


def plot_conditional_samples(
    inputs: torch.Tensor,
    samples: torch.Tensor,
    truth: torch.Tensor | None,
    path: PathLike,
    title: str | None = None,
    labels: Sequence[str] = ("input", "sample", "truth"),
) -> Path:
    """Rows input | sample(s) | truth, one column per example, written to ``path``.

    Values in [-1, 1] are mapped to [0, 1] (and clipped, so inpainting noise saturates);
    single-channel images are drawn in grey. Meant for a handful of examples (N up to ~16).

    Args:
        inputs: (N, C, H, W) corrupted images x_0, C in {1, 3}.
        samples: (N, C, H, W), or (K, N, C, H, W) for K samples per input (one row each).
        truth: (N, C, H, W) clean images x_1, or None to leave out the last row.
        path: file to write, e.g. ``inpainting.png``.
        title: optional title above the rows.
        labels: the row labels for inputs, samples and truth; with K > 1 the sample rows
            are labelled "sample 1" .. "sample K".

    Returns:
        The path written, as a str.
    """
    x0 = _images(inputs, "inputs")
    check_tensor(samples, "samples")
    if samples.dim() == 4:
        samples = samples[None]
    if samples.dim() != 5 or samples.shape[0] < 1 or samples.shape[1:] != inputs.shape:
        raise ValueError(
            f"samples must have shape (N, C, H, W) or (K, N, C, H, W) with (N, C, H, W) = "
            f"{tuple(inputs.shape)} as inputs, got {tuple(samples.shape)}"
        )
    rows_x = [_images(s, "samples") for s in samples]
    if truth is not None:
        check_tensor(truth, "truth")
        if truth.shape != inputs.shape:
            raise ValueError(
                f"truth must have the shape of inputs {tuple(inputs.shape)}, got {tuple(truth.shape)}"
            )
    label_in, label_sample, label_truth = _check_labels(labels)
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path must be a str or a path, got {type(path).__name__}")
    out = _prepare_out(path)

    k, n = len(rows_x), len(x0)
    names = [label_in] + ([label_sample] if k == 1 else [f"{label_sample} {i + 1}" for i in range(k)])
    rows = [x0, *rows_x]
    if truth is not None:
        names.append(label_truth)
        rows.append(_images(truth, "truth"))
    tiles: list[np.ndarray] = [_tile(r, ncol=n) for r in rows]  # each (H + 2, n (W + 1) + 1, C)

    th, tw = tiles[0].shape[:2]
    long_side = max(tw, th * len(tiles))
    zoom = max(1, min(math.ceil(540 / long_side), 1400 // long_side))
    heading_px = TEXT_ROW_PX * (title.count("\n") + 1) if title else 0
    width_px = 2 * GRID_MARGIN_PX + LABEL_PX + tw * zoom
    height_px = 2 * GRID_MARGIN_PX + heading_px + len(tiles) * th * zoom + (len(tiles) - 1) * ROW_GAP_PX
    with _style():
        fig = _new_figure(width_px / DPI, height_px / DPI, constrained=False)
        top = height_px - GRID_MARGIN_PX - heading_px  # in pixels from the bottom
        for tile, name in zip(tiles, names, strict=True):
            bottom = top - th * zoom
            rect = (
                (GRID_MARGIN_PX + LABEL_PX) / width_px,
                bottom / height_px,
                tw * zoom / width_px,
                th * zoom / height_px,
            )
            ax = fig.add_axes(rect)
            if tile.shape[2] == 1:
                ax.imshow(tile[:, :, 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            else:
                ax.imshow(tile, interpolation="nearest")
            ax.set_axis_off()
            fig.text(
                (GRID_MARGIN_PX + LABEL_PX - 6) / width_px,
                (bottom + th * zoom / 2) / height_px,
                name,
                ha="right",
                va="center",
            )
            top = bottom - ROW_GAP_PX
        if title:
            fig.suptitle(title, y=1.0 - 4 / height_px, va="top")
        return Path(_save(fig, out))
