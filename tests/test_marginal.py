"""Exact marginal fields: closed forms for Gaussian data, the finite-data mixture formula,
the continuity equation, Monte-Carlo marginalisation and transport by every solver."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.paths import EmpiricalMarginal, GaussianMarginal, GaussianPath
from genlab.samplers import sample_ode
from genlab.solvers import SOLVERS, TimeGrid

D64 = torch.float64
MEAN = torch.tensor([1.5, -0.5], dtype=D64)
STD = torch.tensor([0.5, 2.0], dtype=D64)


def continuity_residual(log_p, velocity, x: torch.Tensor, t: float) -> torch.Tensor:
    """d/dt log p_t + div u_t + u_t . grad log p_t, which is 0 for the true pair (p_t, u_t)."""
    x = x.clone().requires_grad_(True)
    tt = torch.full((x.shape[0],), t, dtype=D64, requires_grad=True)
    lp = log_p(x, tt)
    dlp_dt, grad_lp = torch.autograd.grad(lp.sum(), (tt, x))
    u = velocity(x, tt)
    div = sum(torch.autograd.grad(u[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(x.shape[1]))
    return dlp_dt + div + (u * grad_lp).sum(1)


@pytest.mark.parametrize("t", [0.1, 0.5, 0.9])
def test_gaussian_marginal_solves_continuity_equation(
    path: GaussianPath, t: float, gen: torch.Generator
) -> None:
    """The closed-form u_t and p_t for Gaussian data satisfy the continuity equation."""
    gm = GaussianMarginal(path, MEAN, STD)
    x = gm.sample(32, t, gen)
    res = continuity_residual(gm.log_prob, gm.velocity, x, t)
    assert float(res.detach().abs().max()) < 1e-8  # exact identity; float64 round-off only


def test_gaussian_marginal_score_is_gradient(path: GaussianPath, gen: torch.Generator) -> None:
    gm = GaussianMarginal(path, MEAN, STD)
    x = gm.sample(16, 0.3, gen).requires_grad_(True)
    t = torch.full((16,), 0.3, dtype=D64)
    (g,) = torch.autograd.grad(gm.log_prob(x, t).sum(), x)
    torch.testing.assert_close(gm.score(x.detach(), t), g)


def test_gaussian_marginal_is_monte_carlo_average_of_conditional_targets(
    path: GaussianPath, gen: torch.Generator
) -> None:
    """u_t(x) = E[u_t(x | x_1) p_t(x | x_1)] / E[p_t(x | x_1)], x_1 ~ N(m, s^2), estimated with
    M = 400k draws (self-normalised importance sampling)."""
    gm = GaussianMarginal(path, MEAN, STD)
    t = 0.6
    x = gm.sample(3, t, gen)
    M = 400_000
    x1 = MEAN + STD * torch.randn(M, 2, generator=gen, dtype=D64)
    tt = torch.full((M,), t, dtype=D64)
    for xi, ui in zip(x, gm.velocity(x, torch.full((3,), t, dtype=D64)), strict=True):
        xr = xi.expand(M, 2)
        logw = path.conditional_log_prob(xr, x1, tt)
        w = torch.softmax(logw, 0)[:, None]
        mc = (w * path.conditional_velocity(xr, x1, tt)).sum(0)
        ess = 1.0 / float((w**2).sum())
        # Std error of a self-normalised IS mean ~ spread / sqrt(ESS); spread of targets is O(5).
        tol = 6.0 * 5.0 / math.sqrt(ess)
        assert float((mc - ui).abs().max()) < tol, (mc, ui, ess)


@pytest.mark.parametrize("method", sorted(SOLVERS))
def test_solvers_transport_exact_marginals(path: GaussianPath, method: str, gen: torch.Generator) -> None:
    """Integrating the exact field from samples of p_0 lands on N(m, s^2).

    The field is affine in x, so the flow map is x_1 = m + (s / sd_0)(x_0 - alpha_0 m); we
    compare each transported point with it (solver error) and the batch moments with m and
    s^2 (sampling error, CLT: n = 4000 gives std error of the mean s / 63)."""
    if path.schedule.name == "ddpm":
        pytest.skip(
            "the DDPM path interpolates 1000 discrete steps piecewise-linearly (C0 in t), so "
            "fixed-step orders degrade; its samplers step on the discrete grid (test_diffusion)"
        )
    gm = GaussianMarginal(path, MEAN, STD)
    n = 4000
    x0 = gm.sample(n, 0.0, gen)
    steps = {"euler": 1000, "midpoint": 100, "heun": 100, "rk4": 50, "dopri5": 2}[method]
    opts = {"atol": 1e-8, "rtol": 1e-8} if method == "dopri5" else {}
    sol = sample_ode(gm, x0, method, TimeGrid.uniform(steps), **opts)
    mean0, var0 = gm.moments(torch.tensor(0.0, dtype=D64), x0[:1])
    mean1, var1 = gm.moments(torch.tensor(1.0, dtype=D64), x0[:1])
    exact = mean1 + (var1 / var0).sqrt() * (x0 - mean0)
    # Global error ~ C h^order. Measured worst case over the six schedules (VE: its geometric
    # sigma makes the uniform grid coarse near t = 0): euler 5.7e-2, midpoint 1.1e-2,
    # heun 5.6e-3, rk4 1.6e-5, dopri5 2e-6; tolerances give about 2x headroom.
    tol = {"euler": 0.12, "midpoint": 0.025, "heun": 0.012, "rk4": 4e-5, "dopri5": 1e-5}[method]
    assert float((sol.x - exact).abs().max()) < tol
    target_var = STD**2 + (var1[0] - STD**2)  # the t = 1 marginal (OT / VE keep sigma_min^2)
    se_mean = (target_var / n).sqrt()
    assert bool(((sol.x.mean(0) - MEAN).abs() < 4 * se_mean + tol).all())
    # std error of a sample variance: var * sqrt(2 / n)
    assert bool(((sol.x.var(0) - target_var).abs() < 4 * target_var * math.sqrt(2 / n) + 2 * tol).all())


DATA = torch.tensor([[0.0, 2.0], [2.0, 0.0], [-1.5, -1.5], [1.0, 1.0], [-2.0, 1.0]], dtype=D64)


def empirical_log_p(path: GaussianPath):
    def log_p(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        lp = torch.stack([path.conditional_log_prob(x, xi.expand_as(x), t) for xi in DATA], 1)
        return torch.logsumexp(lp, 1) - math.log(len(DATA))

    return log_p


@pytest.mark.parametrize("t", [0.2, 0.7])
def test_empirical_marginal_solves_continuity_equation(
    path: GaussianPath, t: float, gen: torch.Generator
) -> None:
    em = EmpiricalMarginal(path, DATA)
    x = torch.randn(16, 2, generator=gen, dtype=D64) * 2
    res = continuity_residual(empirical_log_p(path), em.velocity, x, t)
    assert float(res.detach().abs().max()) < 1e-7


def test_empirical_marginal_matches_monte_carlo(path: GaussianPath, gen: torch.Generator) -> None:
    """The mixture formula equals E[u_t(X | X_1) | X_t = x] estimated by simulation: draw
    (x_0, x_1) pairs, keep those whose x_t falls in a small ball around x, average targets."""
    em = EmpiricalMarginal(path, DATA)
    t = 0.5
    M = 2_000_000
    idx = torch.randint(len(DATA), (M,), generator=gen)
    x1 = DATA[idx]
    x0 = torch.randn(M, 2, generator=gen, dtype=D64)
    ps = path.sample(x0, x1, torch.full((M,), t, dtype=D64))
    x = ps.xt[:1]  # a typical point of p_t, so the ball below is well populated
    sd = float(path.schedule(torch.tensor(t)).sigma)
    radius = 0.05 * sd
    near = ((ps.xt - x) ** 2).sum(1) < radius**2
    assert int(near.sum()) > 200
    mc = ps.dxt[near].mean(0)
    exact = em.velocity(x, torch.tensor(t))[0]
    spread = float(ps.dxt[near].std(0).max())
    tol = 5 * spread / math.sqrt(int(near.sum())) + 0.1 * spread  # CLT + ball-size bias
    assert float((mc - exact).abs().max()) < tol, (mc, exact)


def test_empirical_field_reproduces_data_points(gen: torch.Generator) -> None:
    """Flowing noise through the exact field of a finite set lands on the set's points."""
    path = GaussianPath("linear")
    em = EmpiricalMarginal(path, DATA)
    x0 = torch.randn(200, 2, generator=gen, dtype=D64)
    out = sample_ode(em, x0, "euler", TimeGrid.uniform(200)).x
    nearest = torch.cdist(out, DATA).min(1).values
    assert float(nearest.max()) < 1e-6  # Euler's last step lands exactly on E[x_1 | x]
    hit = torch.cdist(out, DATA).argmin(1)
    assert len(set(hit.tolist())) == len(DATA)  # every point reached, none invented


def test_empirical_field_works_on_images(gen: torch.Generator) -> None:
    path = GaussianPath("linear")
    data = torch.randn(7, 1, 4, 4, generator=gen, dtype=D64)
    em = EmpiricalMarginal(path, data)
    x = torch.randn(3, 1, 4, 4, generator=gen, dtype=D64)
    v = em(x, torch.full((3,), 0.3, dtype=D64))
    assert v.shape == x.shape
    with pytest.raises(ValueError, match="x must have shape"):
        em(torch.randn(3, 16, dtype=D64), torch.tensor(0.3))
