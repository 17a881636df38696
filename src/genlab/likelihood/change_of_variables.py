"""log-density of a continuous-time flow by the instantaneous change of variables.

If dx/dt = v(x, t) carries p_0 to p_1, the continuity equation gives along a trajectory

    d/dt log p_t(x_t) = -div v(x_t, t),

so for a data point x = x_1, integrating (x, l) with dl/dt = div v backwards from t = 1
(l = 0) to t = 0 gives

    log p_1(x) = log p_0(x_0) + l(0),      l(0) = -int_0^1 div v(x_t, t) dt.

The augmented state (x, l) is one (B, D + 1) tensor, so every ODE solver of genlab applies
unchanged. The Hutchinson probes are drawn once and kept along the whole trajectory.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from genlab._validate import check_finite, check_tensor
from genlab.likelihood.divergence import divergence_exact, divergence_hutchinson, make_probes
from genlab.solvers import ODESolver, TimeGrid, integrate
from genlab.solvers.grids import as_grid

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x (B, *D), t (B,)) -> (B, *D)
SourceLogProb = Callable[[torch.Tensor], torch.Tensor]  # x (B, *D) -> (B,)

DIVERGENCES = ("exact", "hutchinson")


@dataclass
class LogProbResult:
    """Per-point log-density and what it cost."""

    log_prob: torch.Tensor  # (B,) log p_1(x) in nats
    x0: torch.Tensor  # (B, *D) the points mapped to t = 0
    delta: torch.Tensor  # (B,) l(0) = -int_0^1 div v dt
    nfe: int  # evaluations of the augmented field (each one divergence)
    kinetic: torch.Tensor | None = None  # (B,) int_0^1 |v|^2 dt, if requested


def log_prob_ode(
    velocity: VelocityFn,
    source_log_prob: SourceLogProb,
    x: torch.Tensor,
    solver: str | ODESolver = "rk4",
    grid: TimeGrid | int = 100,
    divergence: str = "exact",
    n_probes: int = 1,
    probe: str = "rademacher",
    generator: torch.Generator | None = None,
    t1: float = 1.0,
    create_graph: bool = False,
    kinetic: bool = False,
    **solver_options: float,
) -> LogProbResult:
    """log p_1(x) of the flow dx/dt = velocity(x, t) started from ``source_log_prob`` at t = 0.

    Args:
        velocity: the field, called with x (B, *D) and t (B,).
        source_log_prob: log p_0, e.g. a standard normal.
        x: data points (B, *D).
        solver, grid: ODE solver and time grid (an int: uniform steps from t1 down to 0).
        divergence: "exact" or "hutchinson" (``n_probes`` probes of kind ``probe``).
        t1: where the data sit on the path (1, or 1 - eps for diffusion PF-ODEs).
        create_graph: keep the graph (maximum-likelihood training through the solver).
        kinetic: also integrate the kinetic energy int_0^1 |v|^2 dt (a CNF regulariser).
    """
    check_tensor(x, "x")
    check_finite(x, "x")
    if divergence not in DIVERGENCES:
        raise ValueError(f"unknown divergence {divergence!r}; valid: {', '.join(DIVERGENCES)}")
    if isinstance(grid, int) and not isinstance(grid, bool):
        grid = TimeGrid.uniform(grid, t1, 0.0)
    grid = as_grid(grid)
    if grid.t0 <= grid.t1:
        raise ValueError("the log-prob grid must run backwards, from the data time down to t = 0")
    shape, b, d = x.shape, x.shape[0], x[0].numel()
    probes = make_probes(shape, n_probes, probe, generator, x.dtype) if divergence == "hutchinson" else None

    def aug(t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        xs = z[:, :d].reshape(shape)
        tb = t.to(z.dtype).expand(b)

        def f(y: torch.Tensor) -> torch.Tensor:
            return velocity(y, tb)

        if probes is None:
            v, div = divergence_exact(f, xs, create_graph=create_graph)
        else:
            v, div = divergence_hutchinson(f, xs, probes, create_graph=create_graph)
        parts = [v.reshape(b, d), div[:, None]]
        if kinetic:  # integrated backwards like l, so d/dt = -|v|^2 accumulates +int_0^1 |v|^2
            parts.append(-(v.reshape(b, d) ** 2).sum(1, keepdim=True))
        return torch.cat(parts, 1)  # (B, D + 1 [+ 1])

    extra = 2 if kinetic else 1
    z1 = torch.cat([x.reshape(b, d), torch.zeros(b, extra, dtype=x.dtype, device=x.device)], 1)
    sol = integrate(aug, z1, grid, solver, **solver_options)
    x0 = sol.x[:, :d].reshape(shape)
    delta = sol.x[:, d]
    return LogProbResult(
        log_prob=source_log_prob(x0) + delta,
        x0=x0,
        delta=delta,
        nfe=sol.nfe,
        kinetic=sol.x[:, d + 1] if kinetic else None,
    )


def bits_per_dim(nll_nats: torch.Tensor, dim: int, levels: int, data_range: float = 2.0) -> torch.Tensor:
    """Bits per dimension of uniformly dequantised discrete data.

    Discrete values on ``levels`` levels are mapped to [0, levels) by adding U[0, 1) noise and
    then scaled to an interval of width ``data_range`` (2 for data in [-1, 1]); a density on
    that interval relates to the density on [0, levels) by the Jacobian (data_range /
    levels)^D, so

        bpd = (nll_nats + D log(levels / data_range)) / (D log 2).

    With ``levels`` = 17 (sklearn's digits, values 0..16) or 256 (8-bit images).
    """
    if not isinstance(levels, int) or levels < 2:
        raise ValueError(f"levels must be an integer >= 2, got {levels!r}")
    if not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    return (nll_nats + dim * math.log(levels / data_range)) / (dim * math.log(2.0))


def dequantize(x: torch.Tensor, levels: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform dequantisation of data in [-1, 1] that takes ``levels`` values.

    x = -1 + 2 k / (levels - 1) for integer k; returns -1 + 2 (k + u) / levels, u ~ U[0, 1),
    which lies in [-1, 1) and has the density of the discrete data smeared over its bins.
    """
    k = torch.round((x + 1) * (levels - 1) / 2)
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return -1 + 2 * (k + u) / levels
