"""Exact marginal paths, velocities and scores: the "perfect models" for tests and benchmarks.

Marginalising the Gaussian conditional path over the data gives

    p_t(x)  = int p_t(x | x_1) p_1(x_1) dx_1,
    u_t(x)  = int u_t(x | x_1) p_t(x | x_1) p_1(x_1) / p_t(x) dx_1
            = alpha'_t E[x_1 | x_t = x] + sigma'_t E[x_0 | x_t = x],

and likewise for the score. Both classes below are callables ``field(x, t) -> u_t(x)`` with
the same signature as a velocity network, so they can be sampled, integrated and scored
wherever a trained network can.

* :class:`GaussianMarginal`: data N(m, diag(s^2)). Then p_t = N(alpha_t m,
  diag(alpha_t^2 s^2 + sigma_t^2)) and
  u_t(x) = alpha'_t m + (alpha'_t alpha_t s^2 + sigma'_t sigma_t) / var_t * (x - alpha_t m).
* :class:`EmpiricalMarginal`: data = a finite set {x_1^i}. The posterior over i is a softmax
  of log N(x; alpha_t x_1^i, sigma_t^2 I) (computed in log space), and
  u_t(x) = sum_i w_i(x, t) u_t(x | x_1^i).
"""

from __future__ import annotations

import math

import torch

from genlab._validate import check_batch_time, check_finite, check_tensor
from genlab.paths.gaussian import T_END_GAP, GaussianPath, Prediction, _guard


class GaussianMarginal:
    """Closed-form marginal path of Gaussian data N(mean, diag(std^2)) under ``path``.

    Args:
        path: the Gaussian conditional path.
        mean: (D,) data mean, or a float broadcast over ``dim``.
        std: (D,) data standard deviations, or a float broadcast over ``dim``.
        dim: data dimension when mean and std are floats.
    """

    def __init__(
        self,
        path: GaussianPath,
        mean: torch.Tensor | float,
        std: torch.Tensor | float,
        dim: int | None = None,
    ) -> None:
        mean_t = torch.as_tensor(mean, dtype=torch.float64)
        std_t = torch.as_tensor(std, dtype=torch.float64)
        if mean_t.dim() == 0 or std_t.dim() == 0:
            if dim is None and mean_t.dim() == 0 and std_t.dim() == 0:
                raise ValueError("give dim when mean and std are both scalars")
            d = dim if dim is not None else max(mean_t.numel(), std_t.numel())
            mean_t, std_t = mean_t.expand(d).clone(), std_t.expand(d).clone()
        if mean_t.shape != std_t.shape or mean_t.dim() != 1:
            raise ValueError(
                f"mean and std must both have shape (D,), got {tuple(mean_t.shape)} and {tuple(std_t.shape)}"
            )
        if not bool((std_t >= 0).all()):
            raise ValueError("std must be non-negative")
        self.path, self.mean, self.std = path, mean_t, std_t

    @property
    def dim(self) -> int:
        return self.mean.numel()

    def moments(self, t: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (B, D) and variance (B, D) of p_t at the batch's times."""
        c = self.path.coefficients(t, x)
        m, s2 = self.mean.to(x), (self.std**2).to(x)
        return c.alpha * m, c.alpha**2 * s2 + c.sigma**2

    def _check(self, x: torch.Tensor) -> None:
        check_tensor(x, "x")
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (B, {self.dim}), got {tuple(x.shape)}")

    def velocity(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """u_t(x), shape (B, D)."""
        self._check(x)
        c = self.path.coefficients(t, x)
        mean_t, var_t = self.moments(t, x)
        s2 = (self.std**2).to(x)
        gain = (c.d_alpha * c.alpha * s2 + c.d_sigma * c.sigma) / _guard(var_t)
        return c.d_alpha * self.mean.to(x) + gain * (x - mean_t)

    def score(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """grad_x log p_t(x) = -(x - alpha_t m) / var_t, shape (B, D)."""
        self._check(x)
        mean_t, var_t = self.moments(t, x)
        return -(x - mean_t) / _guard(var_t)

    def log_prob(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """log p_t(x), shape (B,)."""
        self._check(x)
        mean_t, var_t = self.moments(t, x)
        var_t = _guard(var_t)
        return -0.5 * (((x - mean_t) ** 2 / var_t) + torch.log(2 * math.pi * var_t)).sum(1)

    def sample(
        self,
        n: int,
        t: float,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> torch.Tensor:
        """n exact samples of p_t, shape (n, D)."""
        x = torch.zeros(n, self.dim, dtype=dtype)
        mean_t, var_t = self.moments(torch.tensor(float(t)), x)
        return mean_t + var_t.sqrt() * torch.randn(n, self.dim, generator=generator, dtype=dtype)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.velocity(x, t)


class EmpiricalMarginal:
    """Exact marginal velocity / score of the path when p_1 is uniform on a finite data set.

    Args:
        path: the Gaussian conditional path.
        data: (N, *D) data points.
        chunk: number of data points per block when forming the (B, N) posterior logits.

    Near t = 1 the field of a finite set is singular (sigma_t -> 0 with x not yet on a data
    point), so times are evaluated at most at 1 - T_END_GAP.
    """

    def __init__(self, path: GaussianPath, data: torch.Tensor, chunk: int = 4096) -> None:
        check_tensor(data, "data")
        check_finite(data, "data")
        if data.dim() < 2 or data.shape[0] < 1:
            raise ValueError(f"data must have shape (N, *D) with N >= 1, got {tuple(data.shape)}")
        self.path = path
        self.data = data
        self.flat = data.flatten(1)  # (N, F)
        self.sq_norms = (self.flat**2).sum(1)  # (N,)
        self.chunk = chunk

    def _clamped(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return check_batch_time(t, x).clamp(max=1.0 - T_END_GAP)

    def posterior_logits(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """log p_t(x | x_1^i) up to a constant in i, shape (B, N)."""
        if x.shape[1:] != self.data.shape[1:]:
            raise ValueError(
                f"x must have shape (B, {', '.join(map(str, self.data.shape[1:]))}), got {tuple(x.shape)}"
            )
        t = self._clamped(t, x)
        sv = self.path.schedule.values(t)
        alpha, var = sv.alpha[:, None], _guard(sv.sigma**2)[:, None]  # (B, 1)
        xf = x.flatten(1)  # (B, F)
        data, sq = self.flat.to(x), self.sq_norms.to(x)
        # -|x - a x1|^2 / (2 s^2) = (a <x, x1> - a^2 |x1|^2 / 2) / s^2 + (term free of i)
        return (alpha * (xf @ data.T) - 0.5 * alpha**2 * sq[None, :]) / var  # (B, N)

    def data_mean(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """E[x_1 | x_t = x] = sum_i w_i x_1^i, shape like x."""
        check_tensor(x, "x")
        out = torch.empty_like(x.flatten(1))
        for start in range(0, x.shape[0], self.chunk):
            sl = slice(start, start + self.chunk)
            tb = t[sl] if isinstance(t, torch.Tensor) and t.dim() == 1 else t
            w = torch.softmax(self.posterior_logits(x[sl], tb), dim=1)  # (b, N)
            out[sl] = w @ self.flat.to(x)
        return out.reshape(x.shape)

    def _convert(self, x: torch.Tensor, t: torch.Tensor, dst: Prediction) -> torch.Tensor:
        t = self._clamped(t, x)
        return self.path.convert(self.data_mean(x, t), x, t, Prediction.DATA, dst)

    def velocity(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """u_t(x) = sum_i w_i u_t(x | x_1^i), shape like x."""
        return self._convert(x, t, Prediction.VELOCITY)

    def score(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """grad_x log p_t(x), shape like x."""
        return self._convert(x, t, Prediction.SCORE)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.velocity(x, t)
