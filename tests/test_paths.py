"""Schedules and Gaussian conditional paths: endpoints, derivatives, targets, conversions."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.paths import (
    SCHEDULES,
    T_END_GAP,
    GaussianPath,
    Prediction,
    VPSchedule,
    make_schedule,
)

D64 = torch.float64


def test_every_registered_schedule_is_covered() -> None:
    from conftest import SCHEDULE_CASES

    assert set(SCHEDULES) == set(SCHEDULE_CASES)


def test_endpoints(path: GaussianPath) -> None:
    """alpha_0 = 0, sigma_0 = 1 (p_0 = N(0, I)) and alpha_1 = 1, sigma_1 = 0 (p_1 = delta),
    up to the documented exceptions of each schedule."""
    s = path.schedule
    v0 = s(torch.tensor(0.0, dtype=D64))
    v1 = s(torch.tensor(1.0, dtype=D64))
    name = s.name
    if name == "ve":  # x_t = x_1 + sigma(1 - t) x_0: alpha = 1, sigma from sigma_max to sigma_min
        assert float(v0.alpha) == 1.0 and float(v1.alpha) == 1.0
        assert math.isclose(float(v0.sigma), s.sigma_max, rel_tol=1e-12)
        assert math.isclose(float(v1.sigma), s.sigma_min, rel_tol=1e-12)
        assert math.isclose(s.source_std(), s.sigma_max, rel_tol=1e-12)
        return
    if name == "vp":
        # alpha_0 = exp(-(beta_min + beta_max) / 4) exactly (the integral of beta over [0, 1]).
        assert math.isclose(float(v0.alpha), math.exp(-(0.1 + 20.0) / 4), rel_tol=1e-12)
        assert math.isclose(float(v0.alpha**2 + v0.sigma**2), 1.0, rel_tol=1e-12)
        # evaluated at 1 - T_END_GAP: sigma = sqrt(1 - exp(-beta_min T_END_GAP)) ~ 1e-3
        assert float(v1.sigma) < 2e-3 and abs(float(v1.alpha) - 1) < 1e-6
        return
    if name == "ddpm":
        # alpha_0 = sqrt(alpha_bar_T) and the path is variance preserving at every t
        assert math.isclose(float(v0.alpha), float(s.alpha_bar(torch.tensor(1000)).sqrt()), rel_tol=1e-12)
        assert math.isclose(float(v0.alpha**2 + v0.sigma**2), 1.0, rel_tol=1e-12)
        assert float(v1.sigma) < 2e-3 and abs(float(v1.alpha) - 1) < 1e-6
        return
    assert float(v0.alpha) == 0.0 and float(v0.sigma) == 1.0
    assert float(v1.alpha) == 1.0
    expected_sigma1 = s.sigma_min if name == "ot" else 0.0
    assert abs(float(v1.sigma) - expected_sigma1) < 1e-15


def test_derivatives_match_autograd(path: GaussianPath) -> None:
    t = torch.linspace(0.01, 0.99, 41, dtype=D64, requires_grad=True)
    v = path.schedule(t)

    def grad(y: torch.Tensor) -> torch.Tensor:  # constant coefficients (VE's alpha) have none
        if not y.requires_grad:
            return torch.zeros_like(t)
        return torch.autograd.grad(y.sum(), t, retain_graph=True)[0]

    da, ds = grad(v.alpha), grad(v.sigma)
    # Both sides are exact formulas in float64; 1e-10 leaves room for round-off only.
    torch.testing.assert_close(v.d_alpha, da, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(v.d_sigma, ds, rtol=1e-10, atol=1e-10)


def test_vp_is_variance_preserving_and_matches_beta() -> None:
    """alpha^2 + sigma^2 = 1 and d/dt log alpha_t = beta(t) / 2 (beta linear in 1 - t)."""
    s = VPSchedule(0.1, 20.0)
    t = torch.linspace(0.0, 0.99, 50, dtype=D64)
    v = s(t)
    torch.testing.assert_close(v.alpha**2 + v.sigma**2, torch.ones_like(t), rtol=0, atol=1e-12)
    torch.testing.assert_close(v.d_alpha / v.alpha, 0.5 * (0.1 + (1 - t) * 19.9), rtol=1e-12, atol=0)


def _pair(gen: torch.Generator, shape: tuple[int, ...] = (64, 3)) -> tuple[torch.Tensor, torch.Tensor]:
    x0 = torch.randn(shape, generator=gen, dtype=D64)
    x1 = 2.0 + torch.randn(shape, generator=gen, dtype=D64)
    return x0, x1


def test_sample_is_the_interpolant(path: GaussianPath, gen: torch.Generator) -> None:
    x0, x1 = _pair(gen)
    t = torch.rand(64, generator=gen, dtype=D64)
    v = path.schedule(t)
    ps = path.sample(x0, x1, t)
    torch.testing.assert_close(ps.xt, v.alpha[:, None] * x1 + v.sigma[:, None] * x0)


def test_conditional_velocity_is_time_derivative(path: GaussianPath, gen: torch.Generator) -> None:
    """d/dt x_t along fixed (x_0, x_1) = alpha' x_1 + sigma' x_0 = the theorem's
    mu'_t + sigma'_t / sigma_t (x - mu_t) evaluated at x = x_t."""
    x0, x1 = _pair(gen, (16, 2))
    t = torch.rand(16, generator=gen, dtype=D64) * 0.98 + 0.01
    t.requires_grad_(True)
    xt = path.sample(x0, x1, t).xt
    # each row of xt depends only on its own t, so grad of the column sum is d x_t / dt
    ddt = torch.stack([torch.autograd.grad(xt[:, j].sum(), t, retain_graph=True)[0] for j in range(2)], 1)
    ps = path.sample(x0, x1, t.detach())
    torch.testing.assert_close(ps.dxt, ddt, rtol=1e-10, atol=1e-10)
    theorem = path.conditional_velocity(ps.xt, x1, t.detach())
    torch.testing.assert_close(theorem, ps.dxt, rtol=1e-9, atol=1e-9)


def test_conditional_score_is_gradient_of_log_density(path: GaussianPath, gen: torch.Generator) -> None:
    x1 = torch.randn(8, 3, generator=gen, dtype=D64)
    x = torch.randn(8, 3, generator=gen, dtype=D64, requires_grad=True)
    t = torch.full((8,), 0.4, dtype=D64)
    (grad,) = torch.autograd.grad(path.conditional_log_prob(x, x1, t).sum(), x)
    torch.testing.assert_close(path.conditional_score(x.detach(), x1, t), grad)
    # and log p normalises: it equals scipy-free closed form for one coordinate block
    v = path.schedule(t)
    expected = -0.5 * (((x - v.alpha[:, None] * x1) / v.sigma[:, None]) ** 2).sum(1) - 3 * (
        torch.log(v.sigma) + 0.5 * math.log(2 * math.pi)
    )
    torch.testing.assert_close(path.conditional_log_prob(x, x1, t), expected.detach())


PREDICTIONS = list(Prediction)


@pytest.mark.parametrize("src", PREDICTIONS, ids=[p.value for p in PREDICTIONS])
@pytest.mark.parametrize("dst", PREDICTIONS, ids=[p.value for p in PREDICTIONS])
def test_conversions_agree_with_truth_and_round_trip(
    path: GaussianPath, gen: torch.Generator, src: Prediction, dst: Prediction
) -> None:
    """For a known pair (x_0, x_1) all four parameterisations are determined; converting the
    true src value must give the true dst value, and converting back must be the identity."""
    x0, x1 = _pair(gen)
    t = torch.rand(64, generator=gen, dtype=D64) * 0.9 + 0.05  # away from singular ends
    ps = path.sample(x0, x1, t)
    sigma = path.schedule(t).sigma[:, None]
    truth = {
        Prediction.VELOCITY: ps.dxt,
        Prediction.NOISE: x0,
        Prediction.DATA: x1,
        Prediction.SCORE: -x0 / sigma,
    }
    out = path.convert(truth[src], ps.xt, t, src, dst)
    # Conversions divide by alpha_t (>= 0.05 here) or by det ~ 1: 1e-8 is round-off.
    torch.testing.assert_close(out, truth[dst], rtol=1e-8, atol=1e-8)
    back = path.convert(out, ps.xt, t, dst, src)
    torch.testing.assert_close(back, truth[src], rtol=1e-8, atol=1e-8)


def test_prediction_aliases() -> None:
    assert Prediction.parse("epsilon") is Prediction.NOISE
    assert Prediction.parse("data") is Prediction.DATA
    assert Prediction.parse("velocity") is Prediction.VELOCITY


def test_vp_conversions_finite_at_t_equal_one() -> None:
    """The named guard T_END_GAP keeps VP conversions finite at t = 1 exactly."""
    path = GaussianPath("vp")
    x = torch.randn(4, 2, dtype=D64)
    v = path.convert(torch.randn(4, 2, dtype=D64), x, torch.ones(4, dtype=D64), "data", "velocity")
    assert torch.isfinite(v).all()
    assert T_END_GAP > 0


def test_ddpm_schedule_matches_the_product_of_betas() -> None:
    """Iterating q(x_k | x_{k-1}) = N(sqrt(1 - beta_k) x_{k-1}, beta_k I) composes to the
    closed-form alpha_bar kernel; the continuous path passes through every step exactly."""
    from genlab.paths import DDPMSchedule

    s = DDPMSchedule(1000, 1e-4, 0.02)
    mean, var = torch.tensor(1.0, dtype=D64), torch.tensor(0.0, dtype=D64)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=D64)
    for k in range(1, 1001):
        mean = torch.sqrt(1 - betas[k - 1]) * mean  # E[x_k | x_0 = 1]
        var = (1 - betas[k - 1]) * var + betas[k - 1]  # Var[x_k | x_0]
        if k in (1, 10, 500, 1000):
            v = s(s.time_of_step(k))
            assert math.isclose(float(v.alpha), float(mean), rel_tol=1e-10)
            assert math.isclose(float(v.sigma**2), float(var), rel_tol=1e-10)


def test_make_schedule_round_trips_config() -> None:
    for name, cls in SCHEDULES.items():
        s = cls()
        assert make_schedule(name, **s.config()).config() == s.config()
