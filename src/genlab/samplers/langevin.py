"""Langevin dynamics: plain (a known score) and annealed over noise levels (NCSN).

Unadjusted Langevin algorithm with step eta:

    x <- x + (eta / 2) grad log p(x) + sqrt(eta) z,   z ~ N(0, I),

whose stationary law tends to p as eta -> 0 (for a Gaussian target N(m, s^2) it is exactly
N(m, s^2 / (1 - eta / (4 s^2))), the bias tests check).

Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1): for noise levels
sigma_1 > ... > sigma_L, run T steps at each level with eta_i = eps sigma_i^2 / sigma_L^2,
using the score of the data perturbed at sigma_i.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from genlab._validate import check_positive
from genlab.paths.sde import VESDE, flip_time
from genlab.samplers.field import PredictionField

Score = Callable[[torch.Tensor], torch.Tensor]


def langevin(
    score: Score,
    x_init: torch.Tensor,
    step: float,
    n_steps: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Run ``n_steps`` of unadjusted Langevin dynamics from ``x_init`` for a known score."""
    check_positive(step, "step")
    if not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
    x = x_init
    sq = math.sqrt(step)
    with torch.no_grad():
        for _ in range(n_steps):
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            x = x + 0.5 * step * score(x) + sq * z
    return x


def noise_levels(sde: VESDE, n_levels: int) -> torch.Tensor:
    """Geometric sigma_1 = sigma_max > ... > sigma_L = sigma_min of a VE SDE (float64)."""
    return torch.logspace(math.log10(sde.sigma_max), math.log10(sde.sigma_min), n_levels, dtype=torch.float64)


def annealed_langevin(
    sde: VESDE,
    field: PredictionField,
    x_init: torch.Tensor,
    n_levels: int = 10,
    n_steps_each: int = 100,
    eps: float = 2e-5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """NCSN sampling: Langevin at each noise level of the VE SDE, from sigma_max down.

    The model's score at level sigma_i is evaluated where the SDE's kernel std equals
    sigma_i: sigma(tau)^2 - sigma_min^2 = sigma_i^2, i.e.
    tau = log(sqrt(sigma_i^2 + sigma_min^2) / sigma_min) / log(sigma_max / sigma_min), t = 1 - tau.
    """
    if not isinstance(sde, VESDE):
        raise ValueError(f"annealed Langevin dynamics needs a VE SDE (NCSN), got {sde.name}")
    check_positive(eps, "eps")
    sigmas = noise_levels(sde, n_levels)
    x = x_init
    with torch.no_grad():
        for sigma in sigmas:
            tau = torch.log(torch.sqrt(sigma**2 + sde.sigma_min**2) / sde.sigma_min) / sde.log_ratio
            t = flip_time(tau).to(x.dtype).clamp(0.0, 1.0).expand(x.shape[0])
            step = eps * float(sigma) ** 2 / sde.sigma_min**2

            def score(xx: torch.Tensor, t: torch.Tensor = t) -> torch.Tensor:
                return field.score(xx, t)

            x = langevin(score, x, step, n_steps_each, generator)
    return x
