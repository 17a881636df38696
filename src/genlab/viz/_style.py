"""Shared style, validation and layout helpers of genlab's figures.

The figure functions live in ``samples``, ``flow`` and ``loss``; what they share is here.

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

import math
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from genlab._validate import check_finite, check_tensor

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

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
SECOND_LOSS_RAW_COLOR = "#fdae6b"  # a second loss (a GAN's generator), un-smoothed
SECOND_LOSS_SMOOTH_COLOR = "#d94801"  # and smoothed
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


def _compact(value: float) -> str:
    """Short tick label: 0.5, 12, 3e4 (no '+' or leading zeros in exponents)."""
    text = f"{value:.2g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text
