"""Samples against data: 2D scatter panels and image grids."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    pass
from genlab._validate import check_positive_int
from genlab.viz._style import (
    DATA_COLOR,
    DPI,
    PANEL_INCHES,
    SAMPLE_COLOR,
    PathLike,
    _apply_limits,
    _format_metrics,
    _images,
    _limits,
    _new_figure,
    _opaque_legend,
    _panel_inches,
    _points,
    _prepare_out,
    _save,
    _scatter_style,
    _style,
)

# ---------------------------------------------------------------------------------------
# 2-D samples
# ---------------------------------------------------------------------------------------


def plot_samples_vs_data(
    samples: torch.Tensor,
    data: torch.Tensor,
    out_path: PathLike,
    title: str | None = None,
    metrics: Mapping[str, float] | None = None,
    overlay: bool = False,
) -> Path:
    """Scatter model samples next to (or on top of) the data, with identical axis limits.

    Args:
        samples: (N, 2) model samples.
        data: (M, 2) data points.
        out_path: file to write (format from the suffix, e.g. ``.png``).
        title: figure title.
        metrics: e.g. ``{"W2": 0.12, "MMD": 3e-4}``, shown under the title.
        overlay: one panel with both clouds instead of two panels (data | samples).

    Returns:
        The path written.
    """
    s, d = _points(samples, "samples"), _points(data, "data")
    path = _prepare_out(out_path)
    bounds = _limits(s, d)
    heading = "\n".join(part for part in (title, _format_metrics(metrics) if metrics else None) if part)
    with _style():
        n_panels = 1 if overlay else 2
        w, h = _panel_inches(bounds, PANEL_INCHES * 1.2)
        n_lines = heading.count("\n") + 1 if heading else 0
        fig = _new_figure(w * n_panels + 0.5, h + 0.5 + 0.22 * n_lines)
        axes = fig.subplots(1, n_panels, squeeze=False)[0]
        if overlay:
            ax = axes[0]
            ax.scatter(
                d[:, 0],
                d[:, 1],
                color=DATA_COLOR,
                label=f"data ({len(d)})",
                **_scatter_style(len(d)),
            )
            ax.scatter(
                s[:, 0],
                s[:, 1],
                color=SAMPLE_COLOR,
                label=f"samples ({len(s)})",
                **_scatter_style(len(s)),
            )
            _opaque_legend(ax.legend(loc="best", markerscale=3.0))
            _apply_limits(ax, bounds)
        else:
            for ax, pts, color, name in (
                (axes[0], d, DATA_COLOR, "data"),
                (axes[1], s, SAMPLE_COLOR, "samples"),
            ):
                ax.scatter(pts[:, 0], pts[:, 1], color=color, **_scatter_style(len(pts)))
                ax.set_title(f"{name} (n = {len(pts)})")
                _apply_limits(ax, bounds)
        if heading:
            fig.suptitle(heading)
        return _save(fig, path)


# ---------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------

GRID_GAP_PX = 24  # gap between two image grids (figure pixels)
GRID_MARGIN_PX = 6  # outer margin
TEXT_ROW_PX = 22  # height of one line of title text
LABEL_CHAR_PX = 8  # width of one character of a row label


def _tile(images: np.ndarray, ncol: int | None, pad: int = 1) -> np.ndarray:
    """Tile (N, H, W, C) images in [0, 1] into one (rows*(H+pad)+pad, ..., C) array.

    ``ncol`` is the number of images per row (torchvision's ``nrow``); by default the grid
    is as square as possible. Gaps are white.
    """
    n, h, w, c = images.shape
    ncol = min(ncol if ncol is not None else math.ceil(math.sqrt(n)), n)
    nrows = math.ceil(n / ncol)
    grid = np.ones((nrows * (h + pad) + pad, ncol * (w + pad) + pad, c), dtype=np.float32)
    for k in range(n):
        r, q = divmod(k, ncol)
        top, left = pad + r * (h + pad), pad + q * (w + pad)
        grid[top : top + h, left : left + w] = images[k]
    return grid


def _write_grids(
    grids: Sequence[np.ndarray],
    titles: Sequence[str | None],
    heading: str | None,
    path: Path,
    row_labels: Sequence[tuple[float, str]] | None = None,
) -> Path:
    """Lay out image grids side by side at an integer zoom (crisp pixels) and save.

    Positions are computed in figure pixels rather than by a layout engine, so every image
    pixel becomes an exact k x k block: no blur, no uneven gaps between tiles.
    ``row_labels`` ((row centre in grid pixels, text) pairs) are written left of the first grid.
    """
    h = max(g.shape[0] for g in grids)
    long_side = max(max(g.shape[:2]) for g in grids)
    zoom = max(1, min(math.ceil(360 / long_side), 1400 // long_side))  # ~360..1400 px
    title_px = TEXT_ROW_PX if any(titles) else 0
    heading_px = TEXT_ROW_PX * (heading.count("\n") + 1) if heading else 0
    label_px = LABEL_CHAR_PX * max(len(text) for _, text in row_labels) + 6 if row_labels else 0
    width_px = 2 * GRID_MARGIN_PX + label_px + sum(g.shape[1] * zoom for g in grids)
    width_px += GRID_GAP_PX * (len(grids) - 1)
    height_px = 2 * GRID_MARGIN_PX + h * zoom + title_px + heading_px
    fig = _new_figure(width_px / DPI, height_px / DPI, constrained=False)
    left = GRID_MARGIN_PX + label_px
    for grid, title in zip(grids, titles, strict=True):
        gh, gw = grid.shape[0] * zoom, grid.shape[1] * zoom
        rect = (left / width_px, GRID_MARGIN_PX / height_px, gw / width_px, gh / height_px)
        ax = fig.add_axes(rect)
        if grid.shape[2] == 1:
            ax.imshow(grid[:, :, 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        else:
            ax.imshow(grid, interpolation="nearest")
        ax.set_axis_off()
        if title:
            ax.set_title(title, pad=4)
        if row_labels and left == GRID_MARGIN_PX + label_px:  # the first grid
            for centre, text in row_labels:
                ax.text(-0.5 - 3 / zoom, centre, text, ha="right", va="center", clip_on=False)
        left += gw + GRID_GAP_PX
    if heading:
        fig.suptitle(heading, y=1.0 - 4 / height_px, va="top")
    return _save(fig, path)


def plot_image_grid(
    images: torch.Tensor,
    out_path: PathLike,
    nrow: int | None = None,
    title: str | None = None,
    row_labels: Sequence[str] | None = None,
) -> Path:
    """Write a grid of images (N, C, H, W) with values in [-1, 1] (clipped) to a file.

    Args:
        images: (N, C, H, W), C = 1 (grey) or 3 (RGB), values in [-1, 1].
        out_path: file to write, e.g. ``samples.png``.
        nrow: images per row (torchvision's convention); default ceil(sqrt(N)).
        title: optional title above the grid.
        row_labels: one text per row of the grid, written left of it (e.g. the class).

    Returns:
        The path written.
    """
    imgs = _images(images, "images")
    if nrow is not None:
        check_positive_int(nrow, "nrow")
    path = _prepare_out(out_path)
    grid = _tile(imgs, nrow)
    labels = None
    if row_labels is not None:
        rows = math.ceil(
            len(imgs) / min(nrow if nrow is not None else math.ceil(math.sqrt(len(imgs))), len(imgs))
        )
        if len(row_labels) != rows:
            raise ValueError(f"row_labels must give one text per row ({rows}); got {len(row_labels)}")
        h, pad = imgs.shape[1], 1
        labels = [(pad + r * (h + pad) + (h - 1) / 2, str(text)) for r, text in enumerate(row_labels)]
    with _style():
        return _write_grids([grid], [None], title, path, labels)


def plot_samples_vs_data_images(
    samples: torch.Tensor,
    data: torch.Tensor,
    out_path: PathLike,
    n_show: int = 64,
    title: str | None = None,
    metrics: Mapping[str, float] | None = None,
) -> Path:
    """Two image grids side by side: data | samples (the first ``n_show`` of each).

    Args:
        samples: (N, C, H, W) model samples in [-1, 1].
        data: (M, C, H, W) data images in [-1, 1], same (C, H, W) as ``samples``.
        out_path: file to write.
        n_show: images shown per grid (the same number in both).
        title: figure title.
        metrics: shown under the title, e.g. ``{"FD": 12.3}``.

    Returns:
        The path written.
    """
    check_positive_int(n_show, "n_show")
    s, d = _images(samples, "samples"), _images(data, "data")
    if s.shape[1:] != d.shape[1:]:
        raise ValueError(
            "samples and data must have the same (C, H, W), got "
            f"{tuple(samples.shape[1:])} and {tuple(data.shape[1:])}"
        )
    path = _prepare_out(out_path)
    count = min(n_show, len(s), len(d))  # same number of images: grids of equal size
    ncol = math.ceil(math.sqrt(count))
    heading = "\n".join(part for part in (title, _format_metrics(metrics) if metrics else None) if part)
    with _style():
        grids = [_tile(d[:count], ncol), _tile(s[:count], ncol)]
        return _write_grids(grids, ["data", "samples"], heading or None, path)


# ---------------------------------------------------------------------------------------
# vectors of any dimension
# ---------------------------------------------------------------------------------------


def _table(x: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 1 or not np.isfinite(arr).all():
        raise ValueError(f"{name} must be a finite (N, D) array, got shape {arr.shape}")
    return arr


def plot_pairs(
    samples: torch.Tensor | np.ndarray,
    data: torch.Tensor | np.ndarray,
    out_path: PathLike,
    dims: int = 4,
    title: str | None = None,
) -> Path:
    """Samples against data for vectors of any dimension D: a pair-plot of the first
    ``min(D, dims)`` coordinates (scatter of each pair below the diagonal, the two clouds
    overlaid) with each coordinate's histogram (its marginal) on the diagonal.

    Args:
        samples: (N, D) model samples.
        data: (M, D) data points.
        out_path: file to write.
        dims: how many leading coordinates to show.
        title: figure title (default: "samples vs data, coordinates 1..k of D").
    """
    s, d = _table(samples, "samples"), _table(data, "data")
    if s.shape[1] != d.shape[1]:
        raise ValueError(f"samples have {s.shape[1]} coordinates, data {d.shape[1]}")
    k = min(s.shape[1], check_positive_int(dims, "dims"))
    path = _prepare_out(out_path)
    lo = np.minimum(np.quantile(d[:, :k], 0.005, axis=0), np.quantile(s[:, :k], 0.005, axis=0))
    hi = np.maximum(np.quantile(d[:, :k], 0.995, axis=0), np.quantile(s[:, :k], 0.995, axis=0))
    pad = 0.05 * np.maximum(hi - lo, 1e-9)
    lo, hi = lo - pad, hi + pad
    with _style():
        fig = _new_figure(1.9 * k + 0.6, 1.9 * k + 0.8)
        axes = fig.subplots(k, k, squeeze=False)
        for i in range(k):
            for j in range(k):
                ax = axes[i][j]
                if j > i:
                    ax.axis("off")
                    continue
                if i == j:
                    bins = np.linspace(lo[i], hi[i], 40)
                    ax.hist(d[:, i], bins=bins, color=DATA_COLOR, alpha=0.5, density=True, label="data")
                    ax.hist(s[:, i], bins=bins, color=SAMPLE_COLOR, alpha=0.5, density=True, label="samples")
                    ax.set_yticks([])
                else:
                    ax.scatter(d[:, j], d[:, i], color=DATA_COLOR, **_scatter_style(len(d)))
                    ax.scatter(s[:, j], s[:, i], color=SAMPLE_COLOR, **_scatter_style(len(s)))
                    ax.set_ylim(lo[i], hi[i])
                ax.set_xlim(lo[j], hi[j])
                if i == k - 1:
                    ax.set_xlabel(f"x{j + 1}")
                if j == 0 and i > 0:
                    ax.set_ylabel(f"x{i + 1}")
        _opaque_legend(axes[0][0].legend(loc="upper right", fontsize="small"))
        fig.suptitle(title or f"samples vs data, coordinates 1..{k} of {s.shape[1]}")
        return _save(fig, path)
