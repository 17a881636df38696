"""log-density of a continuous-time flow by the instantaneous change of variables.

If dx/dt = v(x, t) carries p_0 to p_1, the continuity equation gives along a trajectory

    d/dt log p_t(x_t) = -div v(x_t, t),

so for a data point x = x_1, integrating (x, l) with dl/dt = div v backwards from t = 1
(l = 0) to t = 0 gives

    log p_1(x) = log p_0(x_0) + l(0),      l(0) = -int_0^1 div v(x_t, t) dt.

The augmented state (x, l) is one (B, D + 1) tensor, so every ODE solver of genlab applies
unchanged. The Hutchinson probes are drawn once and kept along the whole trajectory.

Training through the solve (a CNF) backpropagates through every step, whose graph grows with
the number of steps; with ``adjoint_params`` the gradient instead comes from the adjoint ODE
a(t) = dL/dz(t), da/dt = -a^T df/dz, dL/dtheta = -int a^T df/dtheta dt, solved backwards
(Chen et al. 2018), in memory that does not grow with the steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from genlab._validate import check_finite, check_tensor
from genlab.likelihood.divergence import divergence_exact, divergence_hutchinson, make_probes
from genlab.solvers import ODESolution, ODESolver, TimeGrid, integrate
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
    adjoint_params: Sequence[torch.Tensor] | None = None,
    **solver_options: Any,
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
        adjoint_params: train by the adjoint method (Chen et al. 2018): the parameters to
            differentiate (the velocity network's). The forward solve keeps no graph; the
            gradient solves the adjoint ODE backwards (``torchdiffeq.odeint_adjoint``), so
            the memory does not grow with the number of steps. Needs a uniform grid and a
            fixed-step solver named euler, midpoint or rk4 (torchdiffeq's rk4 is the 3/8 rule).
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
    probes = None
    if divergence == "hutchinson":  # drawn once: the same probes at every step of the solve
        probes = make_probes(shape, n_probes, probe, generator, x.dtype, x.device)

    lo, hi = float(grid.t1), float(grid.t0)

    def aug(t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        xs = z[:, :d].reshape(shape)
        # an adaptive solver (dopri5) evaluates stages past the last output time and
        # interpolates back: the field is asked only for times inside the integration interval
        tb = t.to(z.dtype).clamp(lo, hi).expand(b)

        def f(y: torch.Tensor) -> torch.Tensor:
            return velocity(y, tb)

        graph = create_graph or adjoint_params is not None  # the adjoint differentiates this field
        if probes is None:
            v, div = divergence_exact(f, xs, create_graph=graph)
        else:
            v, div = divergence_hutchinson(f, xs, probes, create_graph=graph)
        parts = [v.reshape(b, d), div[:, None]]
        if kinetic:  # integrated backwards like l, so d/dt = -|v|^2 accumulates +int_0^1 |v|^2
            parts.append(-(v.reshape(b, d) ** 2).sum(1, keepdim=True))
        return torch.cat(parts, 1)  # (B, D + 1 [+ 1])

    extra = 2 if kinetic else 1
    z1 = torch.cat([x.reshape(b, d), torch.zeros(b, extra, dtype=x.dtype, device=x.device)], 1)
    if adjoint_params is not None:
        sol = _integrate_adjoint(aug, z1, grid, solver, tuple(adjoint_params))
    else:
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


#: genlab's fixed-step solvers that torchdiffeq's adjoint integrates (by the same name)
ADJOINT_SOLVERS = ("euler", "midpoint", "rk4")


def _integrate_adjoint(
    f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    z1: torch.Tensor,
    grid: TimeGrid,
    solver: str | ODESolver,
    params: tuple[torch.Tensor, ...],
) -> ODESolution:
    """The end state of dz/dt = f(t, z) over a uniform grid by torchdiffeq's ``odeint_adjoint``."""
    if not isinstance(solver, str) or solver not in ADJOINT_SOLVERS:
        raise ValueError(f"the adjoint method takes solver {', '.join(ADJOINT_SOLVERS)}; got {solver!r}")
    times = grid.times.to(torch.float64)
    steps = times.diff()
    if not torch.allclose(steps, steps[0].expand_as(steps), rtol=1e-9, atol=1e-12):
        raise ValueError("the adjoint method needs a uniform time grid")
    from torchdiffeq import odeint_adjoint

    calls = [0]

    def counted(t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        return f(t, z)

    ends = times[[0, -1]].to(z1)
    options = {"step_size": float(steps[0].abs())}
    out = odeint_adjoint(counted, z1, ends, method=solver, options=options, adjoint_params=params)
    return ODESolution(x=out[-1], times=ends, trajectory=None, nfe=calls[0])


def bin_width(levels: int, data_range: float = 2.0) -> float:
    """Spacing w = data_range / (levels - 1) of ``levels`` values spread over the data range."""
    if not isinstance(levels, int) or levels < 2:
        raise ValueError(f"levels must be an integer >= 2, got {levels!r}")
    return data_range / (levels - 1)


def bits_per_dim(nll_nats: torch.Tensor, dim: int, levels: int, data_range: float = 2.0) -> torch.Tensor:
    """Bits per dimension of uniformly dequantised discrete data.

    The loaders put ``levels`` values on a grid of spacing w = data_range / (levels - 1)
    (x = -1 + w k for data in [-1, 1]); :func:`dequantize` spreads each value uniformly over
    its bin [x - w/2, x + w/2). The discrete probability of a value is at least the mass of
    its bin, and rescaling bins to unit width multiplies densities by w^D, so

        bpd = (nll_nats + D log(1 / w)) / (D log 2),   1 / w = (levels - 1) / data_range,

    is an upper bound on the discrete code length. With ``levels`` = 17 (sklearn's digits,
    values 0..16) or 256 (8-bit images). Uniform data on the levels gives exactly log2(levels).
    """
    if not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    w = bin_width(levels, data_range)
    return (nll_nats + dim * math.log(1.0 / w)) / (dim * math.log(2.0))


def dequantize(
    x: torch.Tensor, levels: int, generator: torch.Generator | None = None, data_range: float = 2.0
) -> torch.Tensor:
    """Uniform dequantisation: x + w (u - 1/2), u ~ U[0, 1)^D, w = data_range / (levels - 1).

    Each grid value is the centre of its bin, so training points and bins line up.
    """
    w = bin_width(levels, data_range)
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return x + w * (u - 0.5)
