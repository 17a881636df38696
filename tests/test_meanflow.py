"""MeanFlow (genlab.models.meanflow): the MeanFlow identity against the closed-form average
velocity of a Gaussian flow, one-step sampling with that field, the loss's weighting, the
two-time MLP, and a short training that samples in one step."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from genlab.app.runs import resolve_config
from genlab.data import make_toy
from genlab.metrics import wasserstein2
from genlab.models import FAMILIES, MeanFlow
from genlab.models.registry import DataInfo
from genlab.networks import MLPConfig, TimeMLP


class GaussianAverageVelocity(nn.Module):
    """The exact average velocity of the linear path from N(0, I) to N(m, sigma^2 I).

    The flow is x_t = t m + std_t x_0 with std_t = sqrt((1 - t)^2 + t^2 sigma^2), so from x at
    time t it reaches x_s = s m + (std_s / std_t)(x - t m) at time s, and
    u(x, t, s) = (x_s - x) / (s - t); at s = t it is the marginal velocity
    m + (std_t' / std_t)(x - t m)."""

    def __init__(self, m: torch.Tensor, sigma: float) -> None:
        super().__init__()
        self.m, self.sigma = m, sigma
        self.dummy = nn.Parameter(torch.zeros((), dtype=torch.float64))  # gives the model a dtype

    def std(self, t: torch.Tensor) -> torch.Tensor:
        return ((1 - t) ** 2 + t**2 * self.sigma**2).sqrt()

    def forward(self, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor | None = None) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=x.dtype).expand(x.shape[0])[:, None]
        centred = x - t * self.m
        if s is None:  # the marginal velocity: d/dt log std_t = (t (1 + sigma^2) - 1) / std_t^2
            rate = (t * (1 + self.sigma**2) - 1) / self.std(t) ** 2
            return self.m + rate * centred + 0 * self.dummy
        s = torch.as_tensor(s, dtype=x.dtype).expand(x.shape[0])[:, None]
        xs = s * self.m + self.std(s) / self.std(t) * centred
        gap = s - t
        safe = torch.where(gap.abs() > 0, gap, torch.ones_like(gap))
        average = torch.where(gap.abs() > 0, (xs - x) / safe, self.forward(x, t[:, 0]))
        return average + 0 * self.dummy


def exact_model(sigma: float = 0.5) -> tuple[MeanFlow, torch.Tensor]:
    m = torch.tensor([1.5, -0.5], dtype=torch.float64)
    return MeanFlow(GaussianAverageVelocity(m, sigma), (2,)), m


def test_meanflow_identity_target_equals_exact_average_velocity() -> None:
    """With the exact field and the marginal velocity, v + (s - t) d/dt u = u (the identity)."""
    model, _ = exact_model()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, generator=g, dtype=torch.float64) * 2
    t = torch.rand(64, generator=g, dtype=torch.float64) * 0.9
    s = t + (1 - t) * torch.rand(64, generator=g, dtype=torch.float64)
    v = model.net(x, t)  # the marginal velocity at (x, t)
    u, target = model.target(x, t, s, v)
    torch.testing.assert_close(target, u, rtol=1e-10, atol=1e-10)
    # the identity is not trivially true: the JVP term is large here
    assert float((target - v).abs().max()) > 0.1


def test_meanflow_target_at_equal_times_is_the_velocity() -> None:
    model, _ = exact_model()
    x = torch.randn(8, 2, dtype=torch.float64)
    t = torch.rand(8, dtype=torch.float64)
    v = torch.randn(8, 2, dtype=torch.float64)
    _, target = model.target(x, t, t.clone(), v)
    torch.testing.assert_close(target, v, rtol=0, atol=0)


def test_one_mean_step_of_the_exact_field_is_the_exact_transport() -> None:
    """x_1 = x_0 + u(x_0, 0, 1) = m + sigma x_0 for the Gaussian target, in one evaluation;
    and k steps give the same points (the average velocity composes exactly)."""
    model, m = exact_model(sigma=0.5)
    x0 = torch.randn(100, 2, dtype=torch.float64)
    for steps in (1, 3):
        sol = model.sample(100, x0=x0, grid=steps, sampler="mean")
        assert sol.nfe == steps
        torch.testing.assert_close(sol.x, m + 0.5 * x0, rtol=1e-10, atol=1e-10)
    traj = model.sample(100, x0=x0, grid=4, sampler="mean", return_trajectory=True).trajectory
    assert traj is not None and traj.shape == (5, 100, 2)
    torch.testing.assert_close(traj[2], 0.5 * m + model.net.std(torch.tensor(0.5)) * x0)


def test_ode_sampler_and_log_prob_use_the_instantaneous_velocity() -> None:
    model, m = exact_model(sigma=0.5)
    x0 = torch.randn(50, 2, dtype=torch.float64)
    sol = model.sample(50, x0=x0, solver="rk4", grid=40, sampler="ode")
    torch.testing.assert_close(sol.x, m + 0.5 * x0, rtol=1e-6, atol=1e-6)
    x = m + 0.5 * torch.randn(20, 2, dtype=torch.float64)
    exact = torch.distributions.Normal(m, 0.5).log_prob(x).sum(-1)
    lp = model.log_prob(x, solver="rk4", steps=40).log_prob
    torch.testing.assert_close(lp, exact, rtol=1e-5, atol=1e-5)


def test_weight_power_zero_gives_the_plain_squared_error_and_one_bounds_it() -> None:
    net = TimeMLP(MLPConfig(dim=2, width=16, depth=2, interval=True))
    x = torch.randn(32, 2)
    plain = MeanFlow(net, (2,), weight_power=0.0).loss(x, torch.Generator().manual_seed(1))
    torch.testing.assert_close(plain["loss"], plain["mse"] * 2)  # sum over 2 coordinates
    weighted = MeanFlow(net, (2,), weight_power=1.0).loss(x, torch.Generator().manual_seed(1))
    assert weighted["mse"] == plain["mse"]  # the same draws
    assert 0.0 < float(weighted["loss"]) < 1.0  # mean of err / (err + eps)


def test_training_times_are_ordered_and_the_fraction_holds() -> None:
    model = MeanFlow(TimeMLP(MLPConfig(dim=2, width=8, depth=1, interval=True)), (2,), interval_fraction=0.3)
    t, s = model.times(20000, torch.Generator().manual_seed(0), torch.zeros(1))
    assert bool((t <= s).all()) and float(t.min()) >= 0 and float(s.max()) <= 1
    assert abs(float((s > t).float().mean()) - 0.3) < 0.02
    # where s != t the pair is the sorted pair of two uniforms: E t = 1/3, E s = 2/3
    apart = s > t
    assert abs(float(t[apart].mean()) - 1 / 3) < 0.02 and abs(float(s[apart].mean()) - 2 / 3) < 0.02


def test_interval_mlp_second_time() -> None:
    torch.manual_seed(0)
    net = TimeMLP(MLPConfig(dim=2, width=16, depth=3, interval=True))
    x, t = torch.randn(6, 2), torch.rand(6)
    torch.testing.assert_close(net(x, t), net(x, t, s=t))  # s = t by default
    assert not torch.allclose(net(x, t, s=torch.ones(6)), net(x, t))
    # one time for the batch (the samplers' call) equals the per-sample path
    one = net(x, torch.tensor(0.25).expand(6), s=torch.tensor(0.75))
    torch.testing.assert_close(one, net(x, torch.full((6,), 0.25), s=torch.full((6,), 0.75)))
    with pytest.raises(ValueError, match="interval=True"):
        TimeMLP(MLPConfig(dim=2, width=8, depth=1))(x, t, s=t)


def test_meanflow_refuses_labels_and_bad_settings() -> None:
    model = MeanFlow(TimeMLP(MLPConfig(dim=2, width=8, depth=1, interval=True)), (2,))
    with pytest.raises(ValueError, match="unconditional"):
        model.loss((torch.randn(4, 2), torch.zeros(4, dtype=torch.long)))
    with pytest.raises(ValueError, match="interval_fraction"):
        MeanFlow(model.net, (2,), interval_fraction=1.5)
    cfg = FAMILIES["meanflow"].config(coupling="sb")
    with pytest.raises(Exception, match="model.coupling"):
        cfg.validate()


def test_meanflow_learns_moons_in_one_step() -> None:
    """A short training: one step of the learned average velocity lands closer to the
    data than one Euler step of the same network's instantaneous velocity (independent pairs,
    whose flow is curved; the packaged OT pairs straighten it, so one Euler step is good too)."""
    torch.manual_seed(0)
    small = ["model.net.width=64", "model.net.depth=3", "model.coupling=independent"]
    cfg = resolve_config("moons_meanflow", small)
    model = cfg.model.build(DataInfo((2,)))
    assert isinstance(model, MeanFlow)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    data, g = make_toy("moons"), torch.Generator().manual_seed(0)
    for _ in range(600):
        loss = model.loss(data.sample(256, g), g)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    ref = data.sample(1000, torch.Generator().manual_seed(1))
    x0 = torch.randn(1000, 2, generator=torch.Generator().manual_seed(2))
    one_mean = model.sample(1000, x0=x0, grid=1, sampler="mean").x
    one_euler = model.sample(1000, x0=x0, grid=1, sampler="ode", solver="euler").x
    w_mean, w_euler = wasserstein2(one_mean, ref), wasserstein2(one_euler, ref)
    # measured 0.80 against 1.20; without the JVP term u(x, 0, 1) would learn the instantaneous
    # velocity and the two would coincide
    assert w_mean < 0.8 * w_euler, (w_mean, w_euler)


def test_the_interval_mlp_jvp_matches_finite_differences() -> None:
    """The total derivative of u(x_t, t, s) along (v, 1) -- through x, through t, and through
    the gap s - t the network sees -- against central differences in float64."""
    torch.manual_seed(0)
    net = TimeMLP(MLPConfig(dim=2, width=32, depth=3, interval=True)).double()
    x, v = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    t = 0.5 * torch.rand(5, dtype=torch.float64)
    s = t + 0.3
    model = MeanFlow(net, (2,))
    u, target = model.target(x, t, s, v)
    h = 1e-6
    fd = (net(x + h * v, t + h, s=s) - net(x - h * v, t - h, s=s)) / (2 * h)
    torch.testing.assert_close(target, v + 0.3 * fd, rtol=1e-7, atol=1e-7)


def test_the_fused_jvp_of_the_mlp_equals_forward_mode_autodiff() -> None:
    """TimeMLP.forward_and_jvp: the same value, tangent and parameter gradients as
    torch.func.jvp; the tangent carries no graph; other activations fall back (None)."""
    torch.manual_seed(0)
    net = TimeMLP(MLPConfig(dim=3, width=32, depth=3, interval=True)).double()
    x, v = torch.randn(7, 3, dtype=torch.float64), torch.randn(7, 3, dtype=torch.float64)
    t = 0.5 * torch.rand(7, dtype=torch.float64)
    s, ones = t + 0.4 * torch.rand(7, dtype=torch.float64), torch.ones(7, dtype=torch.float64)
    ref_u, ref_d = torch.func.jvp(lambda a, b: net(a, b, s=s), (x, t), (v, ones))
    fused = net.forward_and_jvp(x, t, s, v, ones)
    assert fused is not None
    u, d = fused
    torch.testing.assert_close(u, ref_u, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(d, ref_d.detach(), rtol=1e-10, atol=1e-10)
    assert not d.requires_grad and u.requires_grad
    params = list(net.parameters())
    for got, want in zip(
        torch.autograd.grad(u.pow(2).sum(), params),
        torch.autograd.grad(ref_u.pow(2).sum(), params),
        strict=True,
    ):
        torch.testing.assert_close(got, want)
    tanh = TimeMLP(MLPConfig(dim=3, width=8, depth=2, interval=True, activation="tanh"))
    assert tanh.forward_and_jvp(x.float(), t.float(), s.float(), v.float(), ones.float()) is None
