"""A Gaussian mixture over a VAE's latent space, fitted after training (the second stage).

A VAE trained against N(0, I) leaves "holes": regions the prior covers that no q(z | x)
reaches, whose decodings are blurred blends. The prior that maximises the ELBO for a fixed
encoder is the aggregate posterior q(z) = E_x q(z | x) (Hoffman & Johnson, 2016); a second
stage fits a density to it and samples from that (Dai & Wipf, 2019; Ghosh et al., 2020). Here
the density is a K-component Gaussian mixture with diagonal covariances,

    p(z) = sum_k pi_k N(z; m_k, diag v_k),

fitted by expectation-maximisation to draws z ~ q(z | x) of the training set. Each EM
iteration cannot lower the data's log-likelihood (Dempster et al., 1977); a floor on v_k keeps
a component from collapsing onto one point. The VAE then samples z from p(z) and uses log p(z)
in its ELBO and IWAE bounds, so the bound it reports is the bound of the model it samples from.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from genlab._validate import check_positive_int, check_tensor

__all__ = ["GaussianMixturePrior"]

#: floor on each component's variance, relative to the data's variance in that coordinate
VAR_FLOOR = 1e-3


class GaussianMixturePrior(nn.Module):
    """K diagonal Gaussians over R^L; its state (weights, means, variances) is buffers.

    >>> prior = GaussianMixturePrior(3, 2)
    >>> prior.log_prob(torch.zeros(4, 2)).shape  # N(0, I) per component before any fit
    torch.Size([4])
    """

    logits: torch.Tensor  # (K,) log pi_k
    means: torch.Tensor  # (K, L)
    log_vars: torch.Tensor  # (K, L)

    def __init__(self, components: int, dim: int) -> None:
        super().__init__()
        self.components = check_positive_int(components, "components")
        self.dim = check_positive_int(dim, "dim")
        self.register_buffer("logits", torch.full((components,), -math.log(components)))
        self.register_buffer("means", torch.zeros(components, dim))
        self.register_buffer("log_vars", torch.zeros(components, dim))

    def _check(self, z: torch.Tensor) -> torch.Tensor:
        check_tensor(z, "z")
        if z.dim() < 1 or z.shape[-1] != self.dim:
            raise ValueError(f"z must have shape (..., {self.dim}), got {tuple(z.shape)}")
        return z

    def component_log_probs(self, z: torch.Tensor) -> torch.Tensor:
        """log pi_k + log N(z; m_k, diag v_k). Shapes: z (..., L) -> (..., K)."""
        z = self._check(z)
        m, lv = self.means.to(z), self.log_vars.to(z)
        d = z.unsqueeze(-2) - m  # (..., K, L)
        quad = (d.pow(2) * torch.exp(-lv)).sum(-1)
        log_n = -0.5 * (quad + lv.sum(-1) + self.dim * math.log(2 * math.pi))
        return torch.log_softmax(self.logits.to(z), 0) + log_n

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z). Shapes: z (..., L) -> (...)."""
        return torch.logsumexp(self.component_log_probs(z), dim=-1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws: a component k ~ pi, then z ~ N(m_k, diag v_k). -> (n, L)."""
        n = check_positive_int(n, "n")
        probs = torch.softmax(self.logits, 0)
        k = torch.multinomial(probs, n, replacement=True, generator=generator)
        eps = torch.randn(
            (n, self.dim), generator=generator, dtype=self.means.dtype, device=self.means.device
        )
        return self.means[k] + torch.exp(0.5 * self.log_vars[k]) * eps

    @torch.no_grad()
    def fit(self, z: torch.Tensor, iters: int = 200, generator: torch.Generator | None = None) -> list[float]:
        """Fit by EM to points z (N, L), N >= K; means start at K distinct random points,
        variances at the data's. Returns the mean log-likelihood after each iteration."""
        z = self._check(z)
        check_positive_int(iters, "iters")
        if z.dim() != 2 or z.shape[0] < self.components:
            raise ValueError(
                f"fitting {self.components} components needs z of shape (N, {self.dim}) with "
                f"N >= {self.components}, got {tuple(z.shape)}"
            )
        z = z.to(self.means)
        floor = VAR_FLOOR * z.var(0).clamp_min(1e-12)
        start = torch.randperm(z.shape[0], generator=generator, device="cpu")[: self.components]
        self.means.copy_(z[start.to(z.device)])
        self.log_vars.copy_(torch.log(z.var(0).clamp_min(1e-12)).expand(self.components, -1))
        self.logits.fill_(-math.log(self.components))
        history: list[float] = []
        record = z.device.type != "meta"  # a meta tensor holds no value to report
        for _ in range(iters):
            joint = self.component_log_probs(z)  # (N, K)  E step
            if record:
                history.append(float(torch.logsumexp(joint, 1).mean()))
            r = torch.softmax(joint, 1)
            nk = r.sum(0).clamp_min(1e-10)  # M step
            means = (r.T @ z) / nk[:, None]
            var = (r.T @ z.pow(2)) / nk[:, None] - means.pow(2)
            self.means.copy_(means)
            self.log_vars.copy_(torch.log(torch.maximum(var, floor)))
            self.logits.copy_(torch.log(nk / z.shape[0]))
        if record:
            history.append(float(self.log_prob(z).mean()))
        return history[1:]
