"""A Gaussian mixture in any dimension with exact density, score, mean and covariance: the
reference distribution of the likelihood and sampler tests (and the ``gmm`` toy)."""

from __future__ import annotations

import math
from typing import Any

import torch

from genlab._validate import check_finite, check_tensor
from genlab.data._checks import (
    _check_float_dtype,
    _check_generator,
    _check_n,
    _device_of,
    _rand,
    _randn,
)

_LOG_2PI = math.log(2.0 * math.pi)


def _as_float64(value: Any, name: str) -> torch.Tensor:
    """Convert array-likes to a float64 CPU tensor, with a ValueError naming ``name``."""
    try:
        t = torch.as_tensor(value, dtype=torch.float64).detach().cpu()
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{name} must be numeric (a tensor, array or nested list): {err}") from err
    return check_finite(t, name)


class GaussianMixture:
    """Mixture of K axis-aligned Gaussians in R^D with exact density, score and moments.

    p(x) = sum_k w_k N(x; mu_k, diag(s_k^2)),   mu_k in R^D,  s_k in R^D_{>0},  sum_k w_k = 1.

    Args:
        means: (K, D) component means mu_k.
        stds: per-component standard deviations: a number (shared, isotropic), (K,)
            (isotropic per component) or (K, D) (diagonal).
        weights: (K,) non-negative mixture weights, normalised to sum to one;
            ``None`` means uniform.

    Parameters are kept in float64 on the CPU (``means``, ``stds`` expanded to (K, D),
    ``weights`` normalised); methods move them to the input's dtype and device.
    """

    name: str = "gmm"

    def __init__(
        self,
        means: Any,
        stds: Any,
        weights: Any | None = None,
    ) -> None:
        mu = _as_float64(means, "means")
        if mu.dim() != 2 or mu.shape[0] < 1 or mu.shape[1] < 1:
            raise ValueError(f"means must have shape (K, D) with K, D >= 1, got {tuple(mu.shape)}")
        k, d = mu.shape

        s = _as_float64(stds, "stds")
        if s.dim() == 0:
            s = s.expand(k, d)
        elif s.shape == (k,):
            s = s[:, None].expand(k, d)
        elif s.shape != (k, d):
            raise ValueError(
                f"stds must be a number, shape (K,) = ({k},) or (K, D) = ({k}, {d}); got {tuple(s.shape)}"
            )
        if bool((s <= 0).any()):
            raise ValueError(f"stds must be > 0, got minimum {float(s.min()):.4g}")

        if weights is None:
            w = torch.full((k,), 1.0 / k, dtype=torch.float64)
        else:
            w = _as_float64(weights, "weights")
            if w.shape != (k,):
                raise ValueError(
                    f"weights must have shape (K,) = ({k},) to match means, got {tuple(w.shape)}"
                )
            if bool((w < 0).any()) or not float(w.sum()) > 0:
                raise ValueError("weights must be >= 0 with a positive sum")
            w = w / w.sum()

        self.means = mu.contiguous()  # (K, D)
        self.stds = s.contiguous()  # (K, D)
        self.weights = w  # (K,), sums to 1
        self.dim = int(d)

    @property
    def num_components(self) -> int:
        """K, the number of components."""
        return int(self.means.shape[0])

    def __repr__(self) -> str:
        return f"GaussianMixture(K={self.num_components}, D={self.dim})"

    # -- sampling ---------------------------------------------------------------------

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Draw ``n`` points, (n, D): k ~ Categorical(w) by inverse CDF, x = mu_k + s_k * eps."""
        n = _check_n(n)
        generator = _check_generator(generator)
        dtype = _check_float_dtype(dtype)
        device = _device_of(generator)
        u = _rand(n, generator, device)  # (n,)
        cdf = torch.cumsum(self.weights, 0).to(device)  # (K,)
        k = torch.searchsorted(cdf, u, right=True).clamp_(max=self.num_components - 1)  # (n,)
        eps = _randn((n, self.dim), generator, device)  # (n, D)
        x = self.means.to(device)[k] + self.stds.to(device)[k] * eps
        return x.to(dtype)

    # -- density ----------------------------------------------------------------------

    def _check_x(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor(x, "x")
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (B, D) = (B, {self.dim}), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"x must be a floating-point tensor, got {x.dtype}")
        return x

    def _component_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, K): log w_k + log N(x; mu_k, diag(s_k^2))."""
        mu = self.means.to(x)  # (K, D)
        s = self.stds.to(x)  # (K, D)
        z = (x[:, None, :] - mu[None]) / s[None]  # (B, K, D)
        log_norm = -torch.log(s).sum(-1) - 0.5 * self.dim * _LOG_2PI  # (K,)
        return torch.log(self.weights.to(x))[None] + log_norm[None] - 0.5 * (z * z).sum(-1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log-density, (B, D) -> (B,), computed in x's dtype.

        log p(x) = logsumexp_k [ log w_k - 1/2 sum_d ((x_d - mu_kd) / s_kd)^2
                                 - sum_d log s_kd - (D/2) log(2 pi) ].
        """
        x = self._check_x(x)
        return torch.logsumexp(self._component_log_probs(x), dim=1)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Exact score grad_x log p(x), (B, D) -> (B, D).

        grad log p(x) = sum_k r_k(x) (mu_k - x) / s_k^2, r_k = softmax_k(log w_k N_k(x)).
        """
        x = self._check_x(x)
        r = torch.softmax(self._component_log_probs(x), dim=1)  # (B, K) responsibilities
        mu, var = self.means.to(x), self.stds.to(x) ** 2  # (K, D)
        return (r[:, :, None] * (mu[None] - x[:, None, :]) / var[None]).sum(1)

    # -- moments ----------------------------------------------------------------------

    def mean(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """E[x] = sum_k w_k mu_k, shape (D,)."""
        return (self.weights @ self.means).to(_check_float_dtype(dtype))

    def covariance(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Cov[x] = sum_k w_k (diag(s_k^2) + mu_k mu_k^T) - m m^T, m = E[x]; shape (D, D)."""
        w, mu = self.weights, self.means
        m = w @ mu  # (D,)
        second = torch.diag(w @ self.stds**2) + mu.T @ (w[:, None] * mu)  # (D, D)
        cov = second - torch.outer(m, m)
        return (0.5 * (cov + cov.T)).to(_check_float_dtype(dtype))
