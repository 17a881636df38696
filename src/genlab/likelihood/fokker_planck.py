"""How the density of an Itô SDE evolves: the Fokker-Planck (Kolmogorov forward) equation.

For dx = f(x, t) dt + diag(g(x, t)) dW, with a diffusion that may depend on the state,

    d p / d t = -div(f p) + 1/2 sum_i d^2 / dx_i^2 (g_i^2 p)

(the lectures' "nabla^2 . [sigma^2 / 2 p]"). The diffusion sits *inside* the second
derivative: 1/2 g^2 Laplacian(p) is the right term only when g does not depend on x. With
g = 0 the equation is the continuity equation of the probability-flow ODE case
(:mod:`~genlab.likelihood.change_of_variables`).

:func:`fokker_planck_rhs` evaluates the right-hand side by autograd for a density given as a
log-density, so a test can set it against d p / d t. Time is the SDE's own time t; genlab's
forward diffusion SDEs (:mod:`~genlab.paths.sde`) have a state-independent g(tau).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from genlab._validate import check_tensor

__all__ = ["fokker_planck_rhs"]

LogDensity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
FieldXT = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _grad(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.autograd.grad(out.sum(), x, create_graph=True)[0]


def fokker_planck_rhs(
    log_p: LogDensity,
    drift: FieldXT,
    diffusion: FieldXT,
    x: torch.Tensor,
    t: torch.Tensor,
) -> torch.Tensor:
    """-div(f p) + 1/2 sum_i d_i^2 (g_i^2 p) at (x, t). -> (B,), detached.

    Shapes: x (B, D); t (B,); log_p(x, t) -> (B,); drift(x, t) -> (B, D); diffusion(x, t) ->
    (B, D) (a diagonal g) or (B,) (the same g for every coordinate). O(D) backward passes:
    meant for checks in low dimension, not for training.
    """
    check_tensor(x, "x")
    if x.dim() != 2:
        raise ValueError(f"x must have shape (B, D), got {tuple(x.shape)}")
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        p = log_p(x, t).exp()  # (B,)
        flux = drift(x, t) * p[:, None]  # (B, D)
        g = diffusion(x, t)
        g2p = (g**2 if g.dim() == 2 else (g**2)[:, None].expand_as(x)) * p[:, None]  # (B, D)
        rhs = torch.zeros_like(p)
        for i in range(x.shape[1]):
            rhs = rhs - _grad(flux[:, i], x)[:, i]
            d_i = _grad(g2p[:, i], x)[:, i]
            rhs = rhs + 0.5 * _grad(d_i, x)[:, i]
    return rhs.detach()
