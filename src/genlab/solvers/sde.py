"""Euler-Maruyama for dx = b(t, x) dt + g(t, x) dW; it knows nothing of paths or networks.

One step from t to t + h (h may be negative; the noise scale uses |h|):

    x <- x + b(t, x) h + g(t, x) sqrt(|h|) z,    z ~ N(0, I).

Strong order 1/2, weak order 1 for additive noise. ``drift(t, x)`` returns a tensor shaped
like x; ``diffusion(t, x)`` returns a scalar, a (B,) tensor or a tensor shaped like x.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from genlab._validate import check_callable, check_tensor
from genlab.solvers.grids import TimeGrid, as_grid

Drift = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Diffusion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor | float]


@dataclass
class SDESolution:
    """Result of an SDE integration."""

    x: torch.Tensor  # (B, *D) state at the last grid time
    times: torch.Tensor  # (T,) grid times
    trajectory: torch.Tensor | None  # (T, B, *D) if requested
    nfe: int  # number of drift evaluations


def _scale(g: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    g = torch.as_tensor(g, dtype=x.dtype, device=x.device)
    if g.dim() == 1 and x.dim() > 1 and g.shape[0] == x.shape[0]:
        g = g.reshape(g.shape + (1,) * (x.dim() - 1))
    return g


def euler_maruyama(
    drift: Drift,
    diffusion: Diffusion,
    x0: torch.Tensor,
    grid: TimeGrid | Sequence[float] | torch.Tensor | int,
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
    noise_last_step: bool = True,
) -> SDESolution:
    """Integrate the SDE from x0 along ``grid`` with Euler-Maruyama.

    ``noise_last_step=False`` omits the noise of the final step (the usual "denoised" output
    of diffusion samplers, returning the mean of the last transition).

    >>> sol = euler_maruyama(lambda t, x: -x, lambda t, x: 0.0, torch.ones(1, 1), 10)
    >>> round(float(sol.x), 4)  # g = 0: plain Euler, (1 - 0.1)^10
    0.3487
    """
    check_callable(drift, "drift")
    check_callable(diffusion, "diffusion")
    check_tensor(x0, "x0")
    grid = as_grid(grid)
    times = grid.times.to(dtype=x0.dtype, device=x0.device)
    x = x0
    states = [x0] if return_trajectory else []
    nfe = 0
    for i in range(grid.steps):
        t, h = times[i], times[i + 1] - times[i]
        b = drift(t, x)
        nfe += 1
        if nfe == 1 and b.shape != x.shape:
            raise ValueError(f"drift must return shape {tuple(x.shape)}, got {tuple(b.shape)}")
        x_new = x + b * h
        if noise_last_step or i < grid.steps - 1:
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            x_new = x_new + _scale(diffusion(t, x), x) * h.abs().sqrt() * z
        x = x_new
        if return_trajectory:
            states.append(x)
    return SDESolution(
        x=x, times=times, trajectory=torch.stack(states) if return_trajectory else None, nfe=nfe
    )
