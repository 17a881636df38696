"""The flow itself: particle trajectories, the animated probability path, the vector field
(t = 0 noise, t = 1 data)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from genlab._validate import check_callable, check_finite, check_positive_int, check_tensor

if TYPE_CHECKING:
    pass
from genlab.viz._style import (
    ARROW_FILL,
    END_COLOR,
    FIELD_BACKDROP_COLOR,
    FIELD_CMAP,
    GIF_DPI,
    LINE_COLOR,
    PANEL_INCHES,
    START_COLOR,
    Bounds,
    Field2D,
    PathLike,
    _apply_limits,
    _backdrop,
    _compact,
    _limits,
    _new_figure,
    _opaque_legend,
    _panel_inches,
    _points,
    _prepare_out,
    _save,
    _scatter_style,
    _style,
    _subset,
    _trajectory,
)

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
    check_positive_int(n_show, "n_show")
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
    check_positive_int(fps, "fps")
    check_positive_int(n_show, "n_show")
    check_positive_int(max_frames, "max_frames")
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
    check_positive_int(grid_size, "grid_size")
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
