"""Gaussian paths with a per-dimension sigma_t(z): the conditional field solves the continuity
equation with the conditional density, is d x_t / dt, and reduces to GaussianPath."""

from __future__ import annotations

import pytest
import torch

from genlab.paths import GaussianPath
from genlab.paths.diagonal import DiagonalGaussianPath

D64 = torch.float64


def _curved() -> DiagonalGaussianPath:
    """A path whose mean and std both depend on z and t, differently per coordinate."""
    w = torch.tensor([0.5, 2.0, 1.0], dtype=D64)

    def mean(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return t[:, None] ** 2 * z + 0.3 * torch.sin(3 * t)[:, None] * w

    def std(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(-t[:, None] * w * (1 + 0.2 * z**2)) + 0.05

    return DiagonalGaussianPath(mean, std)


def _inputs(n: int = 32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(n, 3, generator=g, dtype=D64)
    x0 = torch.randn(n, 3, generator=g, dtype=D64)
    t = torch.rand(n, generator=g, dtype=D64)
    x = torch.randn(n, 3, generator=g, dtype=D64)
    return z, x0, t, x


def test_per_dimension_conditional_field_solves_the_continuity_equation() -> None:
    """d/dt log p_t(x | z) + div u_t(x | z) + u_t . grad log p_t(x | z) = 0 at arbitrary x,
    by autograd (residual below 1e-10); a field with sigma'/sigma averaged over coordinates fails."""
    path = _curved()
    z, _, t, x = _inputs()
    tt = t.clone().requires_grad_(True)
    d_logp = torch.autograd.grad(path.conditional_log_prob(x, z, tt).sum(), tt)[0]
    xr = x.clone().requires_grad_(True)
    u = path.conditional_velocity(xr, z, t)
    div = sum(torch.autograd.grad(u[:, i].sum(), xr, retain_graph=True)[0][:, i] for i in range(3))
    score = path.conditional_score(x, z, t)
    residual = (d_logp + div + (u * score).sum(1)).detach()
    assert float(residual.abs().max()) < 1e-10
    # the same field with one (averaged) rate for every coordinate does not transport p_t(x | z)
    mu, sigma, d_mu, d_sigma = path.coefficients(z, t)
    rate = (d_sigma / sigma).mean(1, keepdim=True)
    u_avg = d_mu + rate * (x - mu)
    wrong = (d_logp + 3 * rate[:, 0] + (u_avg * score).sum(1)).detach()
    assert float(wrong.abs().max()) > 0.1


def test_per_dimension_target_is_the_time_derivative_of_x_t() -> None:
    """mu' + sigma' * x_0 = d x_t / dt for fixed (x_0, z), and u_t(x_t | z) equals it."""
    path = _curved()
    z, x0, t, _ = _inputs()
    _, dxt = torch.func.jvp(lambda s: path.sample(x0, z, s), (t,), (torch.ones_like(t),))
    target = path.target(x0, z, t)
    assert torch.allclose(target, dxt, atol=1e-12)
    assert torch.allclose(path.conditional_velocity(path.sample(x0, z, t), z, t), target, atol=1e-12)


def test_ot_path_with_one_sigma_min_for_all_coordinates_is_the_gaussian_ot_path() -> None:
    z, x0, t, x = _inputs()
    s = 0.2
    diag = DiagonalGaussianPath.ot(torch.full((3,), s, dtype=D64))
    ref = GaussianPath("ot", sigma_min=s)
    assert torch.allclose(diag.sample(x0, z, t), ref.sample(x0, z, t).xt, atol=1e-12)
    assert torch.allclose(diag.target(x0, z, t), ref.sample(x0, z, t).dxt, atol=1e-12)
    assert torch.allclose(diag.conditional_velocity(x, z, t), ref.conditional_velocity(x, z, t), atol=1e-12)
    assert torch.allclose(diag.conditional_score(x, z, t), ref.conditional_score(x, z, t), atol=1e-10)
    assert torch.allclose(diag.conditional_log_prob(x, z, t), ref.conditional_log_prob(x, z, t), atol=1e-10)


def test_ot_path_ends_with_each_coordinates_own_sigma_min() -> None:
    """At t = 1 the samples around z spread by sigma_min per coordinate."""
    sigma_min = torch.tensor([0.05, 0.3, 0.6], dtype=D64)
    g = torch.Generator().manual_seed(1)
    n = 100_000
    x0 = torch.randn(n, 3, generator=g, dtype=D64)
    z = torch.ones(n, 3, dtype=D64)
    xt = DiagonalGaussianPath.ot(sigma_min).sample(x0, z, torch.ones(n, dtype=D64))
    assert torch.allclose(xt.std(0), sigma_min, rtol=0.01)
    assert torch.allclose(xt.mean(0), torch.ones(3, dtype=D64), atol=0.01)


def test_diagonal_path_errors() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        DiagonalGaussianPath.ot(torch.tensor([0.1, 1.0]))
    path = DiagonalGaussianPath(lambda z, t: z[:, :1], lambda z, t: torch.ones_like(z))
    with pytest.raises(ValueError, match="mean"):
        path.coefficients(torch.ones(2, 3), torch.ones(2))
    with pytest.raises(ValueError, match=r"t must have shape"):
        DiagonalGaussianPath.ot(torch.zeros(3)).coefficients(torch.ones(2, 3), torch.ones(3))
