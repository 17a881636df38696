"""One panel of samples per model next to the data: the figure of ``genlab compare``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from genlab.viz._style import (
    DATA_COLOR,
    PANEL_INCHES,
    SAMPLE_COLOR,
    PathLike,
    _apply_limits,
    _images,
    _limits,
    _new_figure,
    _panel_inches,
    _points,
    _prepare_out,
    _save,
    _scatter_style,
    _style,
)
from genlab.viz.samples import _tile, _write_grids

#: panels per row of the 2D figure
MAX_COLUMNS = 4


def plot_comparison(
    samples: Mapping[str, torch.Tensor],
    data: torch.Tensor,
    out_path: PathLike,
    captions: Mapping[str, str] | None = None,
    title: str | None = None,
    n_images: int = 36,
) -> Path:
    """The data, then one panel per model, on the same axes.

    Args:
        samples: model name -> its samples, (N, 2) points or (N, C, H, W) images in [-1, 1].
        data: held-out data of the same kind, drawn as the first panel.
        out_path: file to write, e.g. ``compare.png``.
        captions: model name -> a line under its name (e.g. ``"W2 0.18"``).
        title: heading of the figure.
        n_images: images shown per panel (image data).

    Returns:
        The path written.
    """
    if not samples:
        raise ValueError("plot_comparison needs at least one model's samples")
    captions = captions or {}
    path = _prepare_out(out_path)
    names = list(samples)
    if data.dim() == 4:
        grids = [_tile(_images(data[:n_images], "data"), None)]
        grids += [_tile(_images(samples[k][:n_images], f"samples of {k}"), None) for k in names]
        titles = ["data", *(_label(k, captions) for k in names)]
        with _style():
            return _write_grids(grids, titles, title, path)
    d = _points(data, "data")
    clouds = [_points(samples[k], f"samples of {k}") for k in names]
    bounds = _limits(d, *clouds)
    ncol = min(MAX_COLUMNS, len(names) + 1)
    nrow = math.ceil((len(names) + 1) / ncol)
    w, h = _panel_inches(bounds, PANEL_INCHES)
    with _style():
        fig = _new_figure(w * ncol, (h + 0.45) * nrow + (0.3 if title else 0.0))
        axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False)).ravel()
        panels = [
            ("data", d, DATA_COLOR),
            *((_label(k, captions), c, SAMPLE_COLOR) for k, c in zip(names, clouds, strict=True)),
        ]
        for ax, (label, pts, color) in zip(axes, panels, strict=False):
            if color == SAMPLE_COLOR:  # the data faintly behind every model's samples
                ax.scatter(d[:, 0], d[:, 1], color=DATA_COLOR, alpha=0.15, s=2, linewidths=0)
            ax.scatter(pts[:, 0], pts[:, 1], color=color, **_scatter_style(len(pts)))
            ax.set_title(label)
            _apply_limits(ax, bounds)
        for ax in axes[len(panels) :]:
            ax.set_axis_off()
        if title:
            fig.suptitle(title)
        return _save(fig, path)


def _label(name: str, captions: Mapping[str, str]) -> str:
    return f"{name}\n{captions[name]}" if captions.get(name) else name
