"""Figures and animations of samples, paths and vector fields, written straight to files.

Every function takes tensors (or a callable field), validates their shapes, draws with one
shared style and writes one file, returning its :class:`~pathlib.Path`. The parent
directory is created if missing.

Design decisions:

- **No global state.** Figures are built as :class:`matplotlib.figure.Figure` with an Agg
  canvas, never through ``pyplot``, so nothing is registered with a GUI backend, no figure
  stays open and no backend is switched. Styling goes through ``matplotlib.rc_context``, so
  ``rcParams`` are left as they were found.
- **Lazy import.** matplotlib is imported inside the functions; ``import genlab.viz`` is free.
- **Shared limits.** Panels that are meant to be compared (data | samples, the frames of an
  animation, the times of a vector field) share one box, drawn at equal aspect, computed
  from robust quantiles of all the points involved, so a handful of outliers cannot squash
  the picture (trajectory plots use the full extent instead, so no path is cut off).
- **Deterministic.** Subsets of particles are chosen by evenly spaced indices, not by a
  random draw, so the same input gives the same picture.
- Time convention of the library: t = 0 noise, t = 1 data.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from genlab._validate import check_callable, check_finite, check_tensor

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "animate_path",
    "plot_image_grid",
    "plot_loss_curve",
    "plot_samples_vs_data",
    "plot_samples_vs_data_images",
    "plot_trajectories",
    "plot_vector_field",
]

PathLike = str | os.PathLike[str]
Field2D = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Bounds = tuple[float, float, float, float]  # (xmin, xmax, ymin, ymax)

# ---------------------------------------------------------------------------------------
# Style: one palette and one set of rcParams for every figure of the package.
# ---------------------------------------------------------------------------------------

DATA_COLOR = "#7f7f7f"  # data points (grey), the reference everything is compared with
SAMPLE_COLOR = "#1f77b4"  # model samples (blue)
START_COLOR = "#2b5fb3"  # particles at t = 0, noise (blue)
END_COLOR = "#d9480f"  # particles at t = 1, data (orange-red)
BACKDROP_COLOR = "#c4c4c4"  # light grey data drawn behind trajectories / animations
LINE_COLOR = "#4a4a4a"  # trajectories
LOSS_RAW_COLOR = "#9ecae1"  # un-smoothed loss
LOSS_SMOOTH_COLOR = "#08519c"  # smoothed loss
FIELD_CMAP = "viridis"  # colour of quiver arrows = speed
FIELD_BACKDROP_COLOR = "#f08a5d"  # particle cloud behind the arrows (light salmon)
ARROW_FILL = 0.75  # arrow length as a fraction of the grid spacing
DPI = 120  # resolution of the PNGs
GIF_DPI = 80  # resolution of the GIF frames (a 5-inch frame is 400 px)
PANEL_INCHES = 3.6  # side of one square 2-D panel
LIMIT_QUANTILE = 0.002  # limits ignore this fraction of the points on each side ...
LIMIT_PAD = 0.08  # ... and add this fraction of the span as a margin

_STYLE: dict[str, Any] = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "figure.titlesize": 11,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "savefig.facecolor": "white",
    "image.interpolation": "nearest",
}


@contextmanager
def _style() -> Iterator[None]:
    """Apply the package style for the duration of one figure; rcParams are restored."""
    import matplotlib

    with matplotlib.rc_context(_STYLE):  # type: ignore[arg-type]
        yield


def _new_figure(width: float, height: float, constrained: bool = True) -> Figure:
    """A pyplot-free figure with an Agg canvas attached (no GUI, nothing to close)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained" if constrained else None)
    FigureCanvasAgg(fig)
    return fig


def _prepare_out(out_path: PathLike) -> Path:
    """Return ``out_path`` as a Path, creating its parent directory."""
    if not isinstance(out_path, (str, os.PathLike)):
        raise ValueError(f"out_path must be a str or a path, got {type(out_path).__name__}")
    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _save(fig: Figure, path: Path, dpi: int = DPI) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix, PNG if none) and free it."""
    fig.savefig(path, dpi=dpi)
    fig.clear()
    return path


# ---------------------------------------------------------------------------------------
# Validation and conversion
# ---------------------------------------------------------------------------------------


def _points(x: Any, name: str) -> np.ndarray:
    """Validate a (N, 2) point cloud and return it as a float64 numpy array."""
    check_tensor(x, name)
    if x.dim() != 2 or x.shape[1] != 2 or x.shape[0] < 1:
        raise ValueError(f"{name} must have shape (N, 2) with N >= 1, got {tuple(x.shape)}")
    check_finite(x, name)
    return x.detach().cpu().double().numpy()


def _trajectory(x: Any, name: str = "trajectory") -> np.ndarray:
    """Validate a (T, N, 2) trajectory with T >= 2 and return it as a numpy array."""
    check_tensor(x, name)
    if x.dim() != 3 or x.shape[2] != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(f"{name} must have shape (T, N, 2) with T >= 2 and N >= 1, got {tuple(x.shape)}")
    check_finite(x, name)
    return x.detach().cpu().double().numpy()


def _images(x: Any, name: str) -> np.ndarray:
    """Validate (N, C, H, W) images with C in {1, 3}; return (N, H, W, C) in [0, 1]."""
    check_tensor(x, name)
    if x.dim() != 4 or x.shape[1] not in (1, 3) or x.shape[0] < 1:
        raise ValueError(
            f"{name} must have shape (N, C, H, W) with C in {{1, 3}} and N >= 1, got {tuple(x.shape)}"
        )
    check_finite(x, name)
    x01 = ((x.detach().cpu().float() + 1.0) / 2.0).clamp(0.0, 1.0)  # [-1, 1] -> [0, 1]
    return x01.permute(0, 2, 3, 1).numpy()


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _subset(n: int, n_show: int) -> np.ndarray:
    """At most ``n_show`` evenly spaced indices into range(n) (deterministic)."""
    if n <= n_show:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, n_show).round().astype(np.int64))


def _limits(*clouds: np.ndarray, quantile: float = LIMIT_QUANTILE, square: bool = False) -> Bounds:
    """Shared axis limits for point clouds of shape (..., 2): quantiles plus a margin.

    ``quantile`` = 0 uses the full extent. With ``square`` the shorter side is widened so
    both axes span the same length (for animations, whose clouds change shape). Aspect
    ratios more extreme than 1:3 are widened to 1:3 so a nearly flat cloud stays visible.
    """
    pts = np.concatenate([c.reshape(-1, 2) for c in clouds], axis=0)
    lo = np.quantile(pts, quantile, axis=0)
    hi = np.quantile(pts, 1.0 - quantile, axis=0)
    span = np.maximum(hi - lo, 1e-6)
    span_min = span.max() if square else span.max() / 3.0
    if span.min() < span_min:
        centre, half = (lo + hi) / 2.0, np.maximum(span, span_min) / 2.0
        lo, hi, span = centre - half, centre + half, 2.0 * half
    lo, hi = lo - LIMIT_PAD * span, hi + LIMIT_PAD * span
    return float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])


def _apply_limits(ax: Axes, bounds: Bounds) -> None:
    ax.set_xlim(bounds[0], bounds[1])
    ax.set_ylim(bounds[2], bounds[3])
    ax.set_aspect("equal")


def _scatter_style(n: int) -> dict[str, Any]:
    """Marker size (points^2) and opacity that keep a cloud of n points readable."""
    size = float(np.clip(100.0 / math.sqrt(n), 2.0, 16.0))
    alpha = float(np.clip(15.0 / math.sqrt(n), 0.35, 0.9))
    return {"s": size, "alpha": alpha, "linewidths": 0.0}


def _backdrop(ax: Axes, points: np.ndarray, label: str | None = None) -> None:
    """Data drawn in light grey behind paths or particles."""
    style = _scatter_style(len(points))
    style["alpha"] = max(style["alpha"], 0.5)
    ax.scatter(points[:, 0], points[:, 1], color=BACKDROP_COLOR, label=label, zorder=0, **style)


def _panel_inches(bounds: Bounds, long_side: float = PANEL_INCHES) -> tuple[float, float]:
    """(width, height) of a panel showing ``bounds`` at equal aspect, long side fixed."""
    dx, dy = bounds[1] - bounds[0], bounds[3] - bounds[2]
    if dx >= dy:
        return long_side, long_side * dy / dx
    return long_side * dx / dy, long_side


def _opaque_legend(legend: Any) -> None:
    """Draw legend markers fully opaque even when the plotted points are faint."""
    for handle in legend.legend_handles:
        if handle is not None:
            handle.set_alpha(1.0)


def _format_metrics(metrics: Mapping[str, float]) -> str:
    if not isinstance(metrics, Mapping):
        raise ValueError(f"metrics must be a dict of name -> float, got {type(metrics).__name__}")
    return "   ".join(f"{k} = {float(v):.4g}" for k, v in metrics.items())


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
) -> Path:
    """Lay out image grids side by side at an integer zoom (crisp pixels) and save.

    Positions are computed in figure pixels rather than by a layout engine, so every image
    pixel becomes an exact k x k block: no blur, no uneven gaps between tiles.
    """
    h = max(g.shape[0] for g in grids)
    long_side = max(max(g.shape[:2]) for g in grids)
    zoom = max(1, min(math.ceil(360 / long_side), 1400 // long_side))  # ~360..1400 px
    title_px = TEXT_ROW_PX if any(titles) else 0
    heading_px = TEXT_ROW_PX * (heading.count("\n") + 1) if heading else 0
    width_px = 2 * GRID_MARGIN_PX + sum(g.shape[1] * zoom for g in grids)
    width_px += GRID_GAP_PX * (len(grids) - 1)
    height_px = 2 * GRID_MARGIN_PX + h * zoom + title_px + heading_px
    fig = _new_figure(width_px / DPI, height_px / DPI, constrained=False)
    left = GRID_MARGIN_PX
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
        left += gw + GRID_GAP_PX
    if heading:
        fig.suptitle(heading, y=1.0 - 4 / height_px, va="top")
    return _save(fig, path)


def plot_image_grid(
    images: torch.Tensor,
    out_path: PathLike,
    nrow: int | None = None,
    title: str | None = None,
) -> Path:
    """Write a grid of images (N, C, H, W) with values in [-1, 1] (clipped) to a file.

    Args:
        images: (N, C, H, W), C = 1 (grey) or 3 (RGB), values in [-1, 1].
        out_path: file to write, e.g. ``samples.png``.
        nrow: images per row (torchvision's convention); default ceil(sqrt(N)).
        title: optional title above the grid.

    Returns:
        The path written.
    """
    imgs = _images(images, "images")
    if nrow is not None:
        _positive_int(nrow, "nrow")
    path = _prepare_out(out_path)
    with _style():
        return _write_grids([_tile(imgs, nrow)], [None], title, path)


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
    _positive_int(n_show, "n_show")
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
# Trajectories and animation
# ---------------------------------------------------------------------------------------


def plot_trajectories(
    trajectory: torch.Tensor,
    out_path: PathLike,
    n_show: int = 300,
    data: torch.Tensor | None = None,
    title: str | None = None,
) -> Path:
    """Draw particle paths from t = 0 (noise) to t = 1 (data).

    Args:
        trajectory: (T, N, 2) states along the integration, ``trajectory[0]`` at t = 0.
        out_path: file to write.
        n_show: number of particles drawn (evenly spaced subset).
        data: optional (M, 2) data drawn in light grey behind the paths.
        title: figure title (default "trajectories").

    Returns:
        The path written.
    """
    traj = _trajectory(trajectory)
    _positive_int(n_show, "n_show")
    d = _points(data, "data") if data is not None else None
    path = _prepare_out(out_path)
    from matplotlib.collections import LineCollection

    shown = traj[:, _subset(traj.shape[1], n_show)]  # (T, n, 2)
    bounds = _limits(shown, *([d] if d is not None else []), quantile=0.0)  # no path cut off
    with _style():
        w, h = _panel_inches(bounds, PANEL_INCHES * 1.4)
        fig = _new_figure(w + 0.5, h + 0.9)
        ax = fig.add_subplot()
        if d is not None:
            _backdrop(ax, d, label="data")
        lines = LineCollection(list(shown.transpose(1, 0, 2)), colors=LINE_COLOR, linewidths=0.5, alpha=0.35)
        ax.add_collection(lines)
        marker: dict[str, Any] = {"s": 6.0, "linewidths": 0.0, "zorder": 3}
        ax.scatter(shown[0, :, 0], shown[0, :, 1], color=START_COLOR, label="t = 0 (noise)", **marker)
        ax.scatter(shown[-1, :, 0], shown[-1, :, 1], color=END_COLOR, label="t = 1 (end)", **marker)
        _apply_limits(ax, bounds)
        _opaque_legend(fig.legend(loc="outside lower center", markerscale=2.0, ncols=3))
        ax.set_title(title or f"trajectories ({shown.shape[1]} of {traj.shape[1]} particles)")
        return _save(fig, path)


def _frame_indices(n_times: int, max_frames: int) -> np.ndarray:
    """At most ``max_frames`` evenly spaced indices into range(n_times), first and last kept."""
    return np.unique(np.linspace(0, n_times - 1, min(n_times, max_frames)).round().astype(int))


def animate_path(
    trajectory: torch.Tensor,
    times: torch.Tensor,
    out_path: PathLike,
    fps: int = 20,
    n_show: int = 2000,
    data: torch.Tensor | None = None,
    max_frames: int = 60,
    hold_seconds: float = 0.75,
    title: str | None = None,
) -> Path:
    """Write an animated GIF of particles flowing from noise (t = 0) to data (t = 1).

    Particles are coloured by the angle of their starting point (a cyclic colour map), so the
    picture shows where each region of the noise ends up. Axis limits are fixed over the
    whole animation.

    Args:
        trajectory: (T, N, 2) states, ``trajectory[k]`` at ``times[k]``.
        times: (T,) the times of the states (shown as a label in each frame).
        out_path: the ``.gif`` file to write.
        fps: frames per second.
        n_show: number of particles drawn (evenly spaced subset).
        data: optional (M, 2) data drawn in light grey behind the particles.
        max_frames: the T states are subsampled to at most this many frames.
        hold_seconds: the last frame is held this long before the GIF loops.
        title: title above the axes.

    Returns:
        The path written.
    """
    traj = _trajectory(trajectory)
    check_tensor(times, "times")
    if times.dim() != 1 or times.shape[0] != traj.shape[0]:
        raise ValueError(f"times must have shape (T,) = ({traj.shape[0]},), got {tuple(times.shape)}")
    check_finite(times, "times")
    _positive_int(fps, "fps")
    _positive_int(n_show, "n_show")
    _positive_int(max_frames, "max_frames")
    if not (isinstance(hold_seconds, (int, float)) and hold_seconds >= 0):
        raise ValueError(f"hold_seconds must be a number >= 0, got {hold_seconds!r}")
    d = _points(data, "data") if data is not None else None
    path = _prepare_out(out_path)
    if path.suffix.lower() != ".gif":
        raise ValueError(f"out_path must end in .gif, got {str(path)!r}")
    from matplotlib.animation import PillowWriter

    t_np = times.detach().cpu().double().numpy()
    shown = traj[:, _subset(traj.shape[1], n_show)]  # (T, n, 2)
    frames = _frame_indices(traj.shape[0], max_frames)
    bounds = _limits(shown, *([d] if d is not None else []), square=True)
    angle = np.arctan2(shown[0, :, 1], shown[0, :, 0])  # (n,) colour key
    hold = round(hold_seconds * fps)
    with _style():
        fig = _new_figure(5.0, 5.0, constrained=False)  # fixed layout: no jitter
        ax = fig.add_axes((0.08, 0.06, 0.89, 0.86))
        if d is not None:
            _backdrop(ax, d)
        size = float(np.clip(150.0 / math.sqrt(shown.shape[1]), 2.0, 20.0))
        cloud = ax.scatter(
            shown[0, :, 0],
            shown[0, :, 1],
            c=angle,
            cmap="hsv",
            alpha=0.8,
            linewidths=0.0,
            vmin=-math.pi,
            vmax=math.pi,
            zorder=2,
            s=size,
        )
        label = ax.text(
            0.03,
            0.96,
            "",
            transform=ax.transAxes,
            va="top",
            ha="left",
            fontsize=11,
            family="monospace",
            zorder=4,
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"},
        )
        _apply_limits(ax, bounds)
        ax.set_title(title or "t = 0 noise  →  t = 1 data")
        writer = PillowWriter(fps=fps)
        with writer.saving(fig, str(path), dpi=GIF_DPI):
            for k in list(frames) + [frames[-1]] * hold:
                cloud.set_offsets(shown[k])
                label.set_text(f"t = {t_np[k]:.2f}")
                writer.grab_frame()
        fig.clear()
    return path


# ---------------------------------------------------------------------------------------
# Vector field
# ---------------------------------------------------------------------------------------


def _evaluate_field(field: Field2D, points: torch.Tensor, t: float) -> np.ndarray:
    """field(points (B, 2), t (B,)) in float32 without autograd -> (B, 2) numpy."""
    tb = torch.full((points.shape[0],), float(t), dtype=torch.float32)  # (B,), exactly t
    with torch.no_grad():
        v = field(points, tb)
    if not isinstance(v, torch.Tensor) or tuple(v.shape) != tuple(points.shape):
        got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
        raise ValueError(f"field(x, t) must return shape {tuple(points.shape)}, got {got}")
    out = v.detach().cpu().double().numpy()
    if not np.isfinite(out).all():
        raise ValueError(f"field returned non-finite velocities at t = {t}")
    return out


def plot_vector_field(
    field: Field2D,
    out_path: PathLike,
    times: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
    bounds: Bounds | None = None,
    grid_size: int = 20,
    samples_at_t: Sequence[torch.Tensor] | None = None,
    title: str | None = None,
) -> Path:
    """One panel per time: the direction of the velocity u_t(x) on a grid, coloured by speed.

    Arrows have unit length (direction only); their colour is the speed |u_t(x)| on a
    per-panel scale (speeds near t = 1 can be orders of magnitude larger than at t = 0), with
    one colour bar per panel. The field is called as ``field(x, t)`` with x (B, 2) and t (B,)
    in float32 under ``torch.no_grad()``, with t exactly as given (including 0 and 1).

    Args:
        field: velocity u_t, ``field(x (B, 2), t (B,)) -> (B, 2)``, e.g. a model's
            ``velocity`` or :class:`genlab.paths.EmpiricalMarginal`.
        out_path: file to write.
        times: the times of the panels, in [0, 1].
        bounds: (xmin, xmax, ymin, ymax) of the grid; default: the extent of
            ``samples_at_t`` if given, else (-4, 4, -4, 4).
        grid_size: arrows along the longer side of ``bounds`` (square cells).
        samples_at_t: optional list (one per time) of (N_i, 2) particle clouds at those
            times, drawn in light grey behind the arrows.
        title: figure title.

    Returns:
        The path written.
    """
    check_callable(field, "field")
    try:
        ts = [float(t) for t in times]
    except (TypeError, ValueError) as err:
        raise ValueError(f"times must be a sequence of floats in [0, 1], got {times!r}") from err
    if not ts or any(not 0.0 <= t <= 1.0 for t in ts):
        raise ValueError(f"times must be a non-empty sequence of floats in [0, 1], got {times!r}")
    _positive_int(grid_size, "grid_size")
    if grid_size < 2:
        raise ValueError(f"grid_size must be >= 2, got {grid_size}")
    clouds: list[np.ndarray] | None = None
    if samples_at_t is not None:
        if len(samples_at_t) != len(ts):
            raise ValueError(
                f"samples_at_t must hold one (N, 2) tensor per time ({len(ts)}), got {len(samples_at_t)}"
            )
        clouds = [_points(c, f"samples_at_t[{i}]") for i, c in enumerate(samples_at_t)]
    if bounds is None:
        bounds = _limits(*clouds) if clouds else (-4.0, 4.0, -4.0, 4.0)
    else:
        if len(bounds) != 4 or not (bounds[0] < bounds[1] and bounds[2] < bounds[3]):
            raise ValueError(f"bounds must be (xmin, xmax, ymin, ymax) with min < max, got {bounds}")
        bounds = tuple(float(b) for b in bounds)  # type: ignore[assignment]
    path = _prepare_out(out_path)
    from matplotlib.colors import Normalize
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    # square cells, grid_size of them along the longer side; arrows at the cell centres, so
    # none is cut in half by the frame
    cell = max(bounds[1] - bounds[0], bounds[3] - bounds[2]) / grid_size
    nx = max(1, round((bounds[1] - bounds[0]) / cell))
    ny = max(1, round((bounds[3] - bounds[2]) / cell))
    xs = (bounds[0] + bounds[1]) / 2 + cell * (np.arange(nx) - (nx - 1) / 2)  # (Gx,)
    ys = (bounds[2] + bounds[3]) / 2 + cell * (np.arange(ny) - (ny - 1) / 2)  # (Gy,)
    gx, gy = np.meshgrid(xs, ys)  # (Gy, Gx)
    points = torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], 1)).float()  # (G, 2)
    arrow_length = ARROW_FILL * cell
    with _style():
        n = len(ts)
        w, h = _panel_inches(bounds, PANEL_INCHES * 0.9)
        fig = _new_figure(w * n + 0.4, h + 1.0)
        axes = fig.subplots(1, n, squeeze=False)[0]
        for i, (ax, t) in enumerate(zip(axes, ts, strict=True)):
            v = _evaluate_field(field, points, t)  # (G, 2)
            speed = np.linalg.norm(v, axis=1)  # (G,)
            unit = v / np.maximum(speed, 1e-12)[:, None]  # (G, 2)
            if clouds is not None:
                c = clouds[i]
                style = _scatter_style(len(c))
                style["alpha"] = max(style["alpha"], 0.6)
                ax.scatter(c[:, 0], c[:, 1], color=FIELD_BACKDROP_COLOR, zorder=0, **style)
            norm = Normalize(vmin=float(speed.min()), vmax=float(max(speed.max(), 1e-12)))
            arrows = ax.quiver(
                gx.ravel(),
                gy.ravel(),
                unit[:, 0],
                unit[:, 1],
                speed,
                cmap=FIELD_CMAP,
                norm=norm,
                angles="xy",
                scale_units="xy",
                scale=1.0 / arrow_length,
                pivot="mid",
                width=0.005,
                headwidth=3.5,
                headlength=4.0,
                headaxislength=3.5,
                zorder=2,
            )
            _apply_limits(ax, bounds)
            ax.set_title(f"t = {t:g}")
            # identical decorations on every panel keep the constrained layout uniform
            bar = fig.colorbar(arrows, ax=ax, orientation="horizontal", fraction=0.05, pad=0.03, aspect=25)
            bar.ax.tick_params(labelsize=7)
            bar.locator = MaxNLocator(nbins=4)
            bar.formatter = FuncFormatter(lambda value, _pos: _compact(value))
            bar.update_ticks()
        fig.suptitle(title or "velocity field u_t(x): direction (arrows), speed |u_t(x)| (colour, per panel)")
        return _save(fig, path)


def _compact(value: float) -> str:
    """Short tick label: 0.5, 12, 3e4 (no '+' or leading zeros in exponents)."""
    text = f"{value:.2g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


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
