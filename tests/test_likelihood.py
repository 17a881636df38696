"""Likelihoods: change of variables against closed forms, Hutchinson, RealNVP, CNF, bits/dim."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.data import GaussianMixture
from genlab.likelihood import (
    bits_per_dim,
    dequantize,
    divergence_exact,
    divergence_hutchinson,
    log_prob_ode,
    make_probes,
)
from genlab.models import CNF, FlowMatching, RealNVP
from genlab.networks import MLPConfig, TimeMLP
from genlab.paths import EmpiricalMarginal, GaussianMarginal, GaussianPath, GaussianSource

D64 = torch.float64
MEAN = torch.tensor([1.0, -0.5], dtype=D64)
STD = torch.tensor([0.5, 1.5], dtype=D64)


@pytest.mark.parametrize("schedule", ["linear", "ot", "cosine", "polynomial"])
def test_gaussian_flow_log_prob_is_exact(schedule: str) -> None:
    """The exact field of Gaussian data transports N(0, I) to N(m, s^2): the change of
    variables with the exact divergence reproduces log N(x; m, s^2) to 1e-4."""
    path = GaussianPath(schedule)
    gm = GaussianMarginal(path, MEAN, STD)
    x = gm.sample(64, 1.0, torch.Generator().manual_seed(0))
    res = log_prob_ode(gm.velocity, GaussianSource().log_prob, x, "rk4", 200)
    truth = gm.log_prob(x, torch.ones(64, dtype=D64))
    assert float((res.log_prob - truth).abs().max()) < 1e-4
    assert res.nfe == 800


class RandomField(torch.nn.Module):
    """A smooth non-linear field with a full, non-symmetric Jacobian."""

    def __init__(self, d: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.a = torch.randn(d, d, generator=g, dtype=D64)
        self.b = torch.randn(d, d, generator=g, dtype=D64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ self.a) @ self.b


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased(kind: str) -> None:
    """The mean of K = 2000 single-probe estimates equals the exact divergence within 4
    standard errors (the standard error estimated from the same probes)."""
    f = RandomField(5)
    x = torch.randn(3, 5, generator=torch.Generator().manual_seed(2), dtype=D64)
    _, exact = divergence_exact(f, x)
    probes = make_probes(x.shape, 2000, kind, torch.Generator().manual_seed(3), D64)
    singles = torch.stack([divergence_hutchinson(f, x, probes[k : k + 1])[1] for k in range(2000)])  # (K, B)
    se = singles.std(0) / math.sqrt(2000)
    assert bool(((singles.mean(0) - exact).abs() < 4 * se).all()), (singles.mean(0), exact, se)
    _, pooled = divergence_hutchinson(f, x, probes)
    torch.testing.assert_close(pooled, singles.mean(0))


def test_exact_divergence_matches_jacobian_trace_both_ways() -> None:
    """Vectorised jacrev path and the coordinate loop (forced by a tiny element budget) both
    equal the trace of torch.autograd.functional.jacobian."""
    f = RandomField(12)  # above LOOP_MAX_DIM, so the default is the jacrev path
    x = torch.randn(6, 12, generator=torch.Generator().manual_seed(4), dtype=D64)
    traces = torch.stack(
        [torch.autograd.functional.jacobian(lambda z: f(z[None])[0], xi).trace() for xi in x]
    )
    _, d1 = divergence_exact(f, x)
    _, d2 = divergence_exact(f, x, max_jacobian_elements=1)
    torch.testing.assert_close(d1, traces)
    torch.testing.assert_close(d2, traces)


def test_finite_data_field_log_prob_is_the_mixture_density() -> None:
    """On the OT path with sigma_min, the marginal at t = 1 of a finite set is exactly the
    mixture (1/N) sum_i N(x_i, sigma_min^2 I). The change of variables of the exact finite-data
    field must reproduce that mixture's log-density at points drawn from it."""
    sigma_min = 0.2
    data = torch.tensor([[0.0, 1.5], [1.5, -1.0], [-1.5, -0.5]], dtype=D64)
    path = GaussianPath("ot", sigma_min=sigma_min)
    field = EmpiricalMarginal(path, data)
    mixture = GaussianMixture(data, sigma_min)
    x = mixture.sample(40, torch.Generator().manual_seed(5), D64)
    res = log_prob_ode(field.velocity, GaussianSource().log_prob, x, "rk4", 400)
    truth = mixture.log_prob(x)
    assert float((res.log_prob - truth).abs().max()) < 2e-3, res.log_prob - truth


def test_model_log_prob_uses_the_flow() -> None:
    """FlowMatching.log_prob with the exact Gaussian field equals the closed form."""
    path = GaussianPath("linear")
    gm = GaussianMarginal(path, MEAN, STD)

    class Exact(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros((), dtype=D64))

        def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return gm.velocity(x, t)

    model = FlowMatching(Exact(), (2,), path=path)
    x = gm.sample(16, 1.0, torch.Generator().manual_seed(6))
    res = model.log_prob(x, steps=100)
    torch.testing.assert_close(res.log_prob, gm.log_prob(x, torch.ones(16, dtype=D64)), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="sample shape"):
        model.log_prob(torch.zeros(3, 5, dtype=D64))


def perturbed(flow: RealNVP) -> RealNVP:
    """Move every parameter off its identity initialisation (deterministically)."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in flow.parameters():
            p.zero_()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return flow.double()


@pytest.mark.parametrize("shape", [(4,), (2,), (1, 4, 4), (2, 4, 4)])
def test_realnvp_is_invertible_with_exact_log_det(shape: tuple[int, ...]) -> None:
    flow = perturbed(RealNVP(shape, n_layers=4, hidden=16, depth=1))
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(8), dtype=D64)
    z, logdet = flow(x)
    torch.testing.assert_close(flow.inverse(z), x, rtol=1e-10, atol=1e-10)
    d = math.prod(shape)
    for i in range(3):
        jac = torch.autograd.functional.jacobian(
            lambda v: flow(v.reshape(1, *shape))[0].reshape(d), x[i].reshape(d)
        )
        torch.testing.assert_close(logdet[i], torch.linalg.slogdet(jac).logabsdet, rtol=1e-9, atol=1e-9)
    assert not torch.allclose(logdet, torch.zeros_like(logdet))  # the test exercises a real map


def test_realnvp_log_prob_integrates_to_one() -> None:
    """exp(log p) of a perturbed 2D RealNVP integrates to 1 on a wide grid (Riemann sum)."""
    flow = perturbed(RealNVP((2,), n_layers=4, hidden=16, depth=1))
    g = torch.linspace(-30, 30, 1201, dtype=D64)
    xx, yy = torch.meshgrid(g, g, indexing="ij")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    with torch.no_grad():
        mass = float(flow.log_prob(pts).exp().sum()) * float(g[1] - g[0]) ** 2
    assert abs(mass - 1) < 1e-3


class Linear(torch.nn.Module):
    """v(x, t) = A x, a CNF with a known flow map x_1 = exp(A) x_0."""

    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.a = torch.nn.Parameter(a)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x @ self.a.T


def test_cnf_log_prob_of_a_linear_flow() -> None:
    """log p_1(x) = log N(exp(-A) x; 0, I) - tr(A) for the flow dx/dt = A x."""
    a = torch.tensor([[0.3, -0.8], [0.5, 0.1]], dtype=D64)
    cnf = CNF(Linear(a), (2,))
    x = torch.randn(10, 2, generator=torch.Generator().manual_seed(9), dtype=D64)
    res = cnf.log_prob(x, steps=100)
    x0 = x @ torch.linalg.matrix_exp(-a).T
    truth = GaussianSource().log_prob(x0) - torch.trace(a)
    torch.testing.assert_close(res.log_prob, truth, atol=1e-8, rtol=0)


def test_cnf_maximum_likelihood_training_lowers_nll() -> None:
    """Fitting dx/dt = A x by maximum likelihood to N(0, diag(4, 1/4)) data drives A towards
    diag(log 2, -log 2) (the exact fit) and lowers the NLL."""
    cnf = CNF(Linear(torch.zeros(2, 2, dtype=D64)), (2,), steps=4, divergence="exact")
    gen = torch.Generator().manual_seed(10)
    opt = torch.optim.Adam(cnf.parameters(), lr=0.05)
    scale = torch.tensor([2.0, 0.5], dtype=D64)
    first = None
    for _ in range(150):
        out = cnf.loss(scale * torch.randn(256, 2, generator=gen, dtype=D64), gen)
        first = first if first is not None else float(out["nll"])
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    diag = torch.diagonal(cnf.net.a.detach())
    assert float(out["nll"]) < first - 0.1
    torch.testing.assert_close(diag, torch.tensor([math.log(2), -math.log(2)], dtype=D64), atol=0.1, rtol=0)


def test_cnf_kinetic_term_is_the_path_energy() -> None:
    """For v = A x the kinetic energy int_0^1 |A exp(tA) x0|^2 dt is what the loss reports."""
    a = torch.tensor([[0.2, 0.0], [0.0, -0.3]], dtype=D64)
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(11), dtype=D64)
    res = log_prob_ode(Linear(a), GaussianSource().log_prob, x, "rk4", 200, kinetic=True)
    x0 = x * torch.exp(-torch.diagonal(a))
    # |A exp(tA) x0|^2 = sum_i a_i^2 x0_i^2 exp(2 a_i t) -> integral a_i^2 x0_i^2 (exp(2 a_i) - 1) / (2 a_i)
    d = torch.diagonal(a)
    truth = (d**2 * x0**2 * (torch.exp(2 * d) - 1) / (2 * d)).sum(1)
    assert res.kinetic is not None
    torch.testing.assert_close(res.kinetic, truth, atol=1e-8, rtol=0)


def test_bits_per_dim_of_uniform_data() -> None:
    """Uniform data on K levels (spacing w = 2 / (K - 1) in [-1, 1]) dequantised over their
    bins has density (K w)^-D: NLL = D log(K w) and bits/dim = log2 K exactly."""
    for levels, d in ((256, 3072), (17, 64), (2, 5)):
        w = 2 / (levels - 1)
        nll = torch.tensor(d * math.log(levels * w), dtype=D64)
        assert float(bits_per_dim(nll, d, levels)) == pytest.approx(math.log2(levels), rel=1e-12)


def test_dequantize_centres_bins_on_the_loaders_grid() -> None:
    """The digits loader maps pixel p in 0..16 to p / 8 - 1; dequantising spreads each value
    over [x - w/2, x + w/2) with w = 1/8, so rounding back recovers p and the mean is x."""
    from genlab.data import load_digits

    x = load_digits("test").images.to(D64)
    p = (x + 1) * 8
    assert torch.equal(p, p.round())  # the loader's grid
    u = dequantize(x, 17, torch.Generator().manual_seed(12))
    assert torch.equal(torch.round((u + 1) * 8), p)
    assert float((u - x).abs().max()) <= 1 / 16
    assert abs(float((u - x).mean())) < 0.002  # centred: E[u - x] = 0, se ~ 0.036 / sqrt(23k)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown divergence"):
        log_prob_ode(lambda x, t: x, GaussianSource().log_prob, torch.zeros(2, 2), divergence="trace")
    with pytest.raises(ValueError, match="non-finite"):
        log_prob_ode(lambda x, t: x, GaussianSource().log_prob, torch.tensor([[float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="valid probes are: gaussian, rademacher"):
        make_probes((2, 2), 1, "sphere")
    with pytest.raises(ValueError, match="the flow was built for"):
        RealNVP((2,)).log_prob(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="fixed-step solver"):
        CNF(Linear(torch.zeros(2, 2)), (2,), solver="dopri5")


def test_x1_prediction_stops_before_the_singular_end() -> None:
    """A flow-matching net predicting x1 on the linear path (sigma_1 = 0) samples and scores
    from t_end = 1 - SAMPLE_T_EPS, so RK4 never divides by sigma_1 = 0."""
    from genlab.networks import MLPConfig, TimeMLP

    torch.manual_seed(0)
    model = FlowMatching(
        TimeMLP(MLPConfig(dim=2, width=16, depth=1)), (2,), path=GaussianPath("linear"), prediction="data"
    )
    assert model.t_end() < 1.0
    sol = model.sample(64, "rk4", 10, torch.Generator().manual_seed(0))
    assert bool(torch.isfinite(sol.x).all()) and float(sol.x.abs().max()) < 100
    assert bool(torch.isfinite(model.log_prob(sol.x, steps=10).log_prob).all())


def test_ddpm_log_prob_refuses_a_visible_t0() -> None:
    """With T = 100 default betas alpha_0 = 0.6: p_0 is not N(0, I), log p is refused."""
    from genlab.models import DDPM
    from genlab.networks import MLPConfig, TimeMLP

    model = DDPM(TimeMLP(MLPConfig(dim=2, width=8, depth=1)), (2,), num_steps=100)
    with pytest.raises(ValueError, match="alpha_0 / sigma_0"):
        model.log_prob(torch.zeros(2, 2))
    assert model.t_end() == pytest.approx(0.99)
    from genlab.models import Diffusion
    from genlab.paths.sde import VESDE

    net = TimeMLP(MLPConfig(dim=2, width=8, depth=1))
    assert Diffusion(net, (2,), VESDE(0.01, 50.0)).log_prob(torch.zeros(2, 2), steps=2).log_prob.shape == (2,)
    with pytest.raises(ValueError, match="larger sigma_max"):  # 1 / 10 > 0.05
        Diffusion(net, (2,), VESDE(0.01, 10.0)).log_prob(torch.zeros(2, 2), steps=2)


def test_chunked_jacrev_matches_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bounding the vmapped backward to a few rows (MAX_VMAP_ROWS) does not change the result."""
    import genlab.likelihood.divergence as div

    a = torch.randn(12, 12, generator=torch.Generator().manual_seed(2), dtype=D64)

    def f(x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ a)

    x = torch.randn(5, 12, generator=torch.Generator().manual_seed(3), dtype=D64)
    full = div.divergence_exact(f, x)[1]
    monkeypatch.setattr(div, "MAX_VMAP_ROWS", 7)
    torch.testing.assert_close(div.divergence_exact(f, x)[1], full)
    torch.testing.assert_close(div.divergence_exact(f, x, max_jacobian_elements=1)[1], full)


def test_likelihood_families_train_on_dequantised_images() -> None:
    """RealNVP on digits sees batches off the 17-level grid, within half a bin of it;
    flow matching sees the grid itself."""
    from genlab.app.builders import build_dataset, training_sampler
    from genlab.app.config import build_config

    for family, off_grid in (("realnvp", True), ("flow_matching", False)):
        cfg = build_config(
            {}, ["data.name=digits", f"model.family={family}", "model.net.kind=unet"], shared=True
        )
        x = training_sampler(cfg, build_dataset(cfg.data))(256, torch.Generator().manual_seed(0))
        p = (x + 1) * 8  # the loader's grid: integers 0..16
        assert bool(((p - p.round()).abs() <= 0.5 + 1e-6).all())
        assert bool((p != p.round()).any()) == off_grid


@pytest.mark.parametrize("n_probes", [1, 4])
def test_hutchinson_inside_log_prob_ode_is_the_probes_quadratic_form(n_probes: int) -> None:
    """For the linear field v = A x the divergence is tr A at every x, and log p_1(x) =
    log p_0(x_0) - int_0^1 div v dt. With divergence="hutchinson" log_prob_ode integrates, per
    point, (1/K) sum_k z_k^T A z_k with probes z_k drawn once from the generator (Rademacher,
    the CNF's default) and held along the path: delta is exactly minus that quadratic form
    (not -tr A), and its mean over points is -tr A within Monte Carlo error."""
    torch.manual_seed(0)
    a = torch.randn(3, 3, dtype=torch.float64)
    x = torch.randn(4000, 3, dtype=torch.float64)

    def velocity(y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return y @ a.T

    def source(z: torch.Tensor) -> torch.Tensor:
        return torch.zeros(z.shape[0], dtype=z.dtype)

    res = log_prob_ode(
        velocity, source, x, "rk4", 4, "hutchinson", n_probes, generator=torch.Generator().manual_seed(5)
    )
    probes = make_probes(x.shape, n_probes, "rademacher", torch.Generator().manual_seed(5), torch.float64)
    quad = torch.einsum("kbi,ij,kbj->b", probes, a, probes) / n_probes  # (B,)
    torch.testing.assert_close(res.delta, -quad, rtol=1e-10, atol=1e-10)
    # unbiased: E z^T A z = tr A; Var z^T A z = sum_{i != j} (a_ij + a_ji)^2 / 2 for Rademacher z
    var = float(((a + a.T) ** 2).sum() - 4 * (a.diagonal() ** 2).sum()) / 2 / n_probes
    assert abs(float(res.delta.mean()) + float(a.trace())) < 5 * math.sqrt(var / x.shape[0])


@pytest.mark.parametrize("schedule", ["linear", "vp", "cosine"])
def test_empirical_marginal_score_is_the_gradient_of_its_log_density(schedule: str) -> None:
    """p_t(x) = (1/N) sum_i N(x; alpha_t x_i, sigma_t^2 I) for uniform p_1 on N points: the
    posterior-weighted score the samplers use as an oracle equals autograd's gradient of
    log p_t (a logsumexp of the kernels, in float64) at every t."""
    from genlab.paths import make_schedule

    torch.manual_seed(0)
    path = GaussianPath(make_schedule(schedule))
    data = torch.randn(7, 2, dtype=torch.float64) * 2
    marginal = EmpiricalMarginal(path, data)
    for t in (0.1, 0.5, 0.9):
        x = torch.randn(16, 2, dtype=torch.float64, requires_grad=True)
        v = path.schedule.values(torch.tensor(t, dtype=torch.float64))
        d2 = ((x[:, None, :] - v.alpha * data[None]) ** 2).sum(-1)  # (16, 7)
        log_p = torch.logsumexp(-d2 / (2 * v.sigma**2), 1) - math.log(7) - math.log(2 * math.pi * v.sigma**2)
        (grad,) = torch.autograd.grad(log_p.sum(), x)
        got = marginal.score(x.detach(), torch.full((16,), t, dtype=torch.float64))
        torch.testing.assert_close(got, grad, rtol=1e-9, atol=1e-9)


def _cnf_nll(model: CNF, x: torch.Tensor) -> torch.Tensor:
    return model.loss(x, torch.Generator().manual_seed(0))["loss"]


@pytest.mark.parametrize("divergence", ["exact", "hutchinson"])
def test_adjoint_gradients_equal_direct_backpropagation(divergence: str) -> None:
    """The CNF's loss gradient by the adjoint ODE (Chen et al. 2018) equals backpropagation
    through the same solve (torchdiffeq's rk4 with the same steps; float64) to 1e-5 in norm,
    relative, with and without the kinetic term; the value is the same solve's."""
    from torchdiffeq import odeint

    torch.manual_seed(0)
    net = TimeMLP(MLPConfig(dim=2, width=16, depth=2)).double()
    x = torch.randn(32, 2, dtype=torch.float64)
    for kinetic in (0.0, 0.1):
        adj = CNF(net, (2,), steps=20, divergence=divergence, kinetic=kinetic, adjoint=True)
        loss_adj = _cnf_nll(adj, x)
        g_adj = torch.autograd.grad(loss_adj, list(net.parameters()))
        # direct: the same augmented field through torchdiffeq's odeint, graph kept
        import genlab.likelihood.change_of_variables as cov

        original = cov._integrate_adjoint

        def direct(f, z1, grid, solver, params):
            ends = grid.times.to(z1)[[0, -1]]
            step = float((grid.times[1] - grid.times[0]).abs())
            out = odeint(f, z1, ends, method=solver, options={"step_size": step})
            return cov.ODESolution(x=out[-1], times=ends, trajectory=None, nfe=0)

        cov._integrate_adjoint = direct
        try:
            loss_direct = _cnf_nll(adj, x)
            g_direct = torch.autograd.grad(loss_direct, list(net.parameters()))
        finally:
            cov._integrate_adjoint = original
        torch.testing.assert_close(loss_adj, loss_direct, rtol=1e-12, atol=1e-12)
        flat_adj, flat_direct = (
            torch.cat([g.flatten() for g in g_adj]),
            torch.cat([g.flatten() for g in g_direct]),
        )
        rel = float((flat_adj - flat_direct).norm() / flat_direct.norm())
        assert rel < 1e-5, rel  # the backward solve's own discretisation error (rk4, 20 steps)


def test_adjoint_graph_does_not_grow_with_the_steps() -> None:
    """The autograd graph a CNF loss leaves for its backward pass (nodes reachable from the
    loss): backpropagation through the solver keeps every step's nodes (about twice as many at
    8 steps as at 4); the adjoint keeps one node for the whole solve, whatever the steps (its
    backward pass solves the adjoint ODE instead). The memory this saves is measured by
    benchmarks/adjoint.py."""
    torch.manual_seed(0)
    net = TimeMLP(MLPConfig(dim=2, width=16, depth=2))
    x = torch.randn(64, 2)

    def nodes(adjoint: bool, steps: int) -> int:
        loss = _cnf_nll(CNF(net, (2,), steps=steps, adjoint=adjoint), x)
        seen, todo = set(), [loss.grad_fn]
        while todo:
            fn = todo.pop()
            if fn is None or fn in seen:
                continue
            seen.add(fn)
            todo.extend(f for f, _ in fn.next_functions)
        return len(seen)

    direct = [nodes(False, s) for s in (4, 8)]
    adjoint = [nodes(True, s) for s in (4, 8)]
    assert direct[1] > 1.8 * direct[0], direct
    assert adjoint[1] == adjoint[0] and adjoint[0] < direct[0] / 10, (adjoint, direct)
