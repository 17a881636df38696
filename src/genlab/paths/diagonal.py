"""Gaussian conditional paths with a mean and a standard deviation per dimension.

The general form of the lectures (seed 000): conditioned on z (a data point, or a pair),

    p_t(x | z) = N(mu_t(z), diag sigma_t(z)^2),      x_t = mu_t(z) + sigma_t(z) * x_0,

with x_0 ~ N(0, I) and products taken coordinate by coordinate. The flow x_0 -> x_t has the
conditional vector field

    u_t(x | z) = mu'_t(z) + (sigma'_t(z) / sigma_t(z)) * (x - mu_t(z)),

which at x = x_t is mu'_t(z) + sigma'_t(z) * x_0, the CFM regression target. The scalar case
sigma_t(z) = sigma_t for every coordinate, mu_t(z) = alpha_t z, is
:class:`~genlab.paths.gaussian.GaussianPath`, which the models train on; this class serves
paths whose noise differs per coordinate, such as :meth:`DiagonalGaussianPath.ot` with one
sigma_min per dimension. Time derivatives come from forward-mode autodiff of mu and sigma in t.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from genlab._validate import check_callable, check_same_shape, check_tensor

__all__ = ["DiagonalGaussianPath"]

#: mu(z, t) or sigma(z, t): z (B, *D), t (B,) -> (B, *D), differentiable in t
Coefficient = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class DiagonalGaussianPath:
    """p_t(x | z) = N(mu(z, t), diag sigma(z, t)^2); see the module docstring.

    >>> path = DiagonalGaussianPath.ot(torch.tensor([0.1, 0.5]))
    >>> path.sample(torch.ones(1, 2), torch.zeros(1, 2), torch.tensor([1.0]))
    tensor([[0.1000, 0.5000]])
    """

    def __init__(self, mean: Coefficient, std: Coefficient) -> None:
        check_callable(mean, "mean")
        check_callable(std, "std")
        self.mean, self.std = mean, std

    @classmethod
    def ot(cls, sigma_min: torch.Tensor) -> DiagonalGaussianPath:
        """Lipman et al.'s OT path with one sigma_min per coordinate: mu_t(z) = t z,
        sigma_t = 1 - (1 - sigma_min) t; ``sigma_min`` has the data's shape, entries in [0, 1)."""
        check_tensor(sigma_min, "sigma_min")
        if not bool(((sigma_min >= 0) & (sigma_min < 1)).all()):
            raise ValueError("sigma_min must lie in [0, 1) in every coordinate")

        def mean(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return _col(t, z) * z

        def std(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return 1 - (1 - sigma_min.to(z)) * _col(t, z)

        return cls(mean, std)

    def coefficients(
        self, z: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mu, sigma, mu', sigma') at (z, t), each (B, *D); ' is d/dt."""
        check_tensor(z, "z")
        check_tensor(t, "t")
        if t.shape != (z.shape[0],):
            raise ValueError(f"t must have shape (B,) = ({z.shape[0]},), got {tuple(t.shape)}")
        one = torch.ones_like(t)
        mu, d_mu = torch.func.jvp(lambda s: self.mean(z, s), (t,), (one,))[:2]
        sigma, d_sigma = torch.func.jvp(lambda s: self.std(z, s), (t,), (one,))[:2]
        for value, name in ((mu, "mean"), (sigma, "std")):
            if value.shape != z.shape:
                raise ValueError(f"{name}(z, t) must return shape {tuple(z.shape)}, got {tuple(value.shape)}")
        return mu, sigma, d_mu, d_sigma

    def sample(self, x0: torch.Tensor, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t = mu_t(z) + sigma_t(z) * x_0. -> (B, *D)."""
        check_same_shape(x0, z, "x0", "z")
        mu, sigma, _, _ = self.coefficients(z, t)
        return mu + sigma * x0

    def target(self, x0: torch.Tensor, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """d x_t / dt = mu'_t(z) + sigma'_t(z) * x_0, the CFM target. -> (B, *D)."""
        check_same_shape(x0, z, "x0", "z")
        _, _, d_mu, d_sigma = self.coefficients(z, t)
        return d_mu + d_sigma * x0

    def conditional_velocity(self, x: torch.Tensor, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """u_t(x | z) = mu'_t + (sigma'_t / sigma_t) * (x - mu_t). -> (B, *D)."""
        check_same_shape(x, z, "x", "z")
        mu, sigma, d_mu, d_sigma = self.coefficients(z, t)
        return d_mu + d_sigma / sigma * (x - mu)

    def conditional_score(self, x: torch.Tensor, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """grad_x log p_t(x | z) = -(x - mu_t) / sigma_t^2. -> (B, *D)."""
        check_same_shape(x, z, "x", "z")
        mu, sigma, _, _ = self.coefficients(z, t)
        return -(x - mu) / sigma**2

    def conditional_log_prob(self, x: torch.Tensor, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """log N(x; mu_t, diag sigma_t^2), summed over coordinates. -> (B,)."""
        check_same_shape(x, z, "x", "z")
        mu, sigma, _, _ = self.coefficients(z, t)
        per = -0.5 * ((x - mu) / sigma) ** 2 - torch.log(sigma) - 0.5 * math.log(2 * math.pi)
        return per.flatten(1).sum(1)


def _col(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, *([1] * (like.dim() - 1)))
