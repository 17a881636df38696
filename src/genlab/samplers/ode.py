"""Glue between a velocity model and an ODE solver.

A model is called as ``model(x, t, y)`` with t of shape (B,); a solver calls ``f(t, x)``
with t a 0-dim tensor. :func:`velocity_field` adapts the first to the second.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from genlab._validate import check_callable
from genlab.samplers.field import batch_time
from genlab.solvers import ODESolution, ODESolver, TimeGrid, as_grid, integrate
from genlab.solvers.ode import VectorField

VelocityModel = Callable[..., torch.Tensor]


def velocity_field(model: VelocityModel, y: torch.Tensor | None = None) -> VectorField:
    """Wrap ``model(x, t_batch[, y])`` as a solver field ``f(t, x)``."""
    check_callable(model, "model")

    def f(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        tb = batch_time(t, x)  # clamped: adaptive solvers may overshoot t = 1 by round-off
        return model(x, tb) if y is None else model(x, tb, y)

    return f


def sample_ode(
    model: VelocityModel,
    x0: torch.Tensor,
    solver: str | ODESolver = "rk4",
    grid: TimeGrid | Sequence[float] | torch.Tensor | int = 100,
    y: torch.Tensor | None = None,
    return_trajectory: bool = False,
    **solver_options: Any,
) -> ODESolution:
    """Push source samples x0 (B, *D) through dx/dt = model(x, t) along ``grid``.

    ``grid`` defaults to 100 uniform steps from t = 0 (noise) to t = 1 (data); a reversed
    grid maps data back to noise. Runs without autograd.
    """
    grid = as_grid(grid)
    if min(grid.t0, grid.t1) < 0.0 or max(grid.t0, grid.t1) > 1.0:
        raise ValueError(f"grid must lie in [0, 1] (t = 0 noise, t = 1 data), got {grid}")
    with torch.no_grad():
        return integrate(velocity_field(model, y), x0, grid, solver, return_trajectory, **solver_options)
