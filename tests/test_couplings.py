"""Couplings: minibatch OT (exact assignment = POT's plan), entropic plans, the Schrodinger
bridge path, label-aware pairing, non-Gaussian sources and the paths they need."""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import torch

from genlab.data import make_toy
from genlab.models import FlowMatching
from genlab.networks import MLPConfig, TimeMLP
from genlab.paths import (
    BridgePath,
    DataSource,
    GaussianPath,
    GaussianSource,
    IndependentCoupling,
    OTCoupling,
    SchrodingerBridgeCoupling,
    assignment,
    ot_plan,
)
from genlab.paths.ot import pairs_from_plan, squared_distances, transport_cost

D64 = torch.float64


@pytest.mark.parametrize("solver", ["simplex", "lsa"])
@pytest.mark.parametrize("n,d", [(5, 2), (32, 2), (100, 8), (64, 1)])
def test_assignment_equals_pots_exact_plan(n: int, d: int, solver: str) -> None:
    """For uniform batches of equal size the exact plan is a permutation: both assignment
    solvers (the network simplex and scipy's shortest augmenting path, two different
    algorithms) find the same plan and cost as POT's exact transport plan."""
    g = torch.Generator().manual_seed(n * 10 + d)
    x0, x1 = torch.randn(n, d, generator=g, dtype=D64), 2 * torch.rand(n, d, generator=g, dtype=D64)
    cost = squared_distances(x0, x1)
    perm = assignment(cost, solver)
    plan = ot.emd(np.full(n, 1 / n), np.full(n, 1 / n), cost)
    assert sorted(perm.tolist()) == list(range(n))  # a permutation
    assert cost[perm, np.arange(n)].mean() == pytest.approx((plan * cost).sum(), rel=1e-12, abs=1e-12)
    perm_matrix = np.zeros((n, n))
    perm_matrix[perm, np.arange(n)] = 1.0 / n
    np.testing.assert_allclose(plan, perm_matrix, atol=1e-12)  # continuous data: the plan is unique


def test_squared_distances_matches_cdist() -> None:
    g = torch.Generator().manual_seed(1)
    x0, x1 = torch.randn(7, 3, 2, generator=g, dtype=D64), torch.randn(9, 3, 2, generator=g, dtype=D64)
    ref = torch.cdist(x0.flatten(1), x1.flatten(1)) ** 2
    np.testing.assert_allclose(squared_distances(x0, x1), ref.numpy(), atol=1e-12)


@pytest.mark.parametrize("method", ["exact", "emd", "sinkhorn"])
def test_ot_pairs_are_closer_and_keep_the_data_marginal(method: str) -> None:
    """Re-pairing lowers the mean squared distance; x_1 (and y) come back untouched, and the
    exact coupling only permutes the fresh source draws (both marginals unchanged)."""
    x1 = make_toy("moons").sample(256, torch.Generator().manual_seed(0)).double()
    y = torch.arange(256) % 3
    coupling = OTCoupling(method=method, reg=0.05)
    pair = coupling(x1, torch.Generator().manual_seed(1), y)
    indep = IndependentCoupling()(x1, torch.Generator().manual_seed(1), y)
    assert torch.equal(pair.x1, x1) and torch.equal(pair.y, y)
    assert transport_cost(pair.x0, x1) < 0.5 * transport_cost(indep.x0, x1)
    if method == "exact":
        # same generator, same fresh draws: the coupled x0 are a permutation of them
        a = sorted(map(tuple, pair.x0.tolist()))
        b = sorted(map(tuple, indep.x0.tolist()))
        assert a == b


def test_exact_coupling_is_optimal_among_permutations() -> None:
    """No transposition of two pairs lowers the cost of the exact coupling (cyclical
    monotonicity of optimal plans, checked on every pair of pairs)."""
    x1 = torch.randn(40, 2, generator=torch.Generator().manual_seed(3), dtype=D64) + 1.0
    pair = OTCoupling()(x1, torch.Generator().manual_seed(4))
    c = ((pair.x0[:, None] - x1[None]) ** 2).sum(-1)  # c[i, j] = ||x0_i - x1_j||^2
    diag = c.diagonal()
    swapped = c + c.T  # cost of pairing i <-> j crosswise
    assert bool((diag[:, None] + diag[None, :] <= swapped + 1e-12).all())


def test_sinkhorn_plan_marginals_and_limits() -> None:
    """The entropic plan has the uniform marginals; its cost exceeds the exact one by at most
    reg (H(pi_reg) - H(pi*)) <= reg log n (H(pi*) = log n for a permutation, H <= 2 log n);
    a large reg gives the independent plan a b^T."""
    g = torch.Generator().manual_seed(5)
    x0, x1 = torch.randn(30, 2, generator=g, dtype=D64), torch.randn(30, 2, generator=g, dtype=D64) + 2.0
    cost = squared_distances(x0, x1)
    exact = cost[assignment(cost), np.arange(30)].mean()
    reg = 0.2
    sharp = ot_plan(cost, "sinkhorn", reg=reg)
    np.testing.assert_allclose(sharp.sum(0), np.full(30, 1 / 30), atol=1e-6)
    np.testing.assert_allclose(sharp.sum(1), np.full(30, 1 / 30), atol=1e-6)
    assert exact <= (sharp * cost).sum() <= exact + reg * math.log(30)
    flat = ot_plan(cost, "sinkhorn", reg=1e4)
    np.testing.assert_allclose(flat, np.full((30, 30), 1 / 900), rtol=1e-2)


def test_pairs_from_plan_follows_the_columns() -> None:
    """A permutation plan gives back its permutation; a general plan's columns are sampled
    with the conditional probabilities pi_ij / b_j."""
    perm = np.array([2, 0, 3, 1])
    plan = np.zeros((4, 4))
    plan[perm, np.arange(4)] = 0.25
    assert pairs_from_plan(plan, torch.Generator().manual_seed(0)).tolist() == perm.tolist()
    two = np.array([[0.3, 0.5], [0.7, 0.5]]) / 2
    draws = np.stack([pairs_from_plan(two, torch.Generator().manual_seed(s)) for s in range(4000)])
    freq = (draws == 0).mean(0)  # P(i = 0 | j) = 0.3 and 0.5
    se = np.sqrt(np.array([0.3 * 0.7, 0.25]) / 4000)
    assert np.all(np.abs(freq - np.array([0.3, 0.5])) < 5 * se)


class _Indexed:
    """A 'data set' whose sample(n) returns rows [0, 1, ..., n-1]: traces where x0 went."""

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.arange(n, dtype=D64)[:, None].repeat(1, 2)


def test_label_aware_pairs_stay_within_classes() -> None:
    """Label-aware OT permutes the source only within each class; its cost is the sum of the
    per-class optima, at least the unrestricted optimum."""
    g = torch.Generator().manual_seed(6)
    x1 = torch.randn(60, 2, generator=g, dtype=D64)
    y = torch.randint(3, (60,), generator=g)
    pair = OTCoupling(DataSource(_Indexed()), label_aware=True)(x1, g, y)
    idx = pair.x0[:, 0].long()
    assert sorted(idx.tolist()) == list(range(60))  # a permutation of the draws
    assert torch.equal(y[idx], y)  # each data point is paired with a source of its class
    # the cost equals the sum of independent per-class assignments
    src = _Indexed().sample(60).double()
    total = 0.0
    for c in range(3):
        m = torch.nonzero(y == c).squeeze(1)
        cost = squared_distances(src[m], x1[m])
        total += cost[assignment(cost), np.arange(len(m))].sum()
    assert transport_cost(pair.x0, x1) * 60 == pytest.approx(total, rel=1e-12)
    free = OTCoupling(DataSource(_Indexed()))(x1, g, y)
    assert transport_cost(free.x0, x1) <= transport_cost(pair.x0, x1) + 1e-12


def test_bridge_path_mean_and_variance() -> None:
    """x_t | (x_0, x_1) ~ N((1 - t) x_0 + t x_1, sigma^2 t (1 - t) I): Monte-Carlo moments
    match the formulas within 5 standard errors."""
    sigma, n = 0.7, 200_000
    path = BridgePath(sigma)
    x0 = torch.tensor([[-1.0, 2.0]], dtype=D64).expand(n, 2)
    x1 = torch.tensor([[3.0, 0.5]], dtype=D64).expand(n, 2)
    g = torch.Generator().manual_seed(7)
    for t in (0.1, 0.5, 0.8):
        ps = path.sample(x0, x1, torch.full((n,), t, dtype=D64), g)
        mean = (1 - t) * x0[0] + t * x1[0]
        var = sigma**2 * t * (1 - t)
        se_mean = math.sqrt(var / n)
        assert torch.allclose(ps.xt.mean(0), mean, atol=5 * se_mean)
        se_var = var * math.sqrt(2 / n)
        assert torch.allclose(ps.xt.var(0), torch.full((2,), var, dtype=D64), atol=5 * se_var)


def test_bridge_velocity_is_time_derivative_and_conditional_field() -> None:
    """For fixed noise eps, d/dt [mu_t + s_t eps] (autograd) equals the target dxt, and dxt
    equals u_t(x_t | x_0, x_1) = (1 - 2t)/(2t(1 - t)) (x_t - mu_t) + x_1 - x_0."""
    path = BridgePath(0.5)
    g = torch.Generator().manual_seed(8)
    x0, x1 = torch.randn(16, 3, generator=g, dtype=D64), torch.randn(16, 3, generator=g, dtype=D64)
    t = torch.rand(16, generator=g, dtype=D64) * 0.9 + 0.05
    ps = path.sample(x0, x1, t, torch.Generator().manual_seed(9))
    eps = (ps.xt - path.mean(x0, x1, t)) / path.std(t)[:, None]
    tt = t.clone().requires_grad_(True)
    xt = path.mean(x0, x1, tt) + path.std(tt)[:, None] * eps
    d = torch.stack([torch.autograd.grad(xt[:, k].sum(), tt, retain_graph=True)[0] for k in range(3)], 1)
    assert torch.allclose(ps.dxt, d, atol=1e-10)
    assert torch.allclose(ps.dxt, path.conditional_velocity_bridge(ps.xt, x0, x1, t), atol=1e-10)


def test_schrodinger_bridge_coupling_uses_reg_two_sigma_squared() -> None:
    c = SchrodingerBridgeCoupling(sigma=0.3)
    assert c.method == "sinkhorn" and c.reg == pytest.approx(2 * 0.3**2)


def _mlp() -> TimeMLP:
    return TimeMLP(MLPConfig(dim=2, width=16, depth=2))


def test_data_source_flow_matching_trains_and_samples_from_the_source() -> None:
    """8gaussians -> moons: sampling starts from the source data set and integrates the ODE."""
    source = DataSource(make_toy("8gaussians"))
    model = FlowMatching(_mlp(), (2,), path=GaussianPath("linear"), coupling=IndependentCoupling(source))
    x1 = make_toy("moons").sample(64, torch.Generator().manual_seed(0))
    loss = model.loss(x1, torch.Generator().manual_seed(1))["loss"]
    assert torch.isfinite(loss)
    sol = model.sample(32, "euler", 4, torch.Generator().manual_seed(2), return_trajectory=True)
    start = sol.trajectory[0]
    # the start points are 8gaussians samples: close to radius 2 sqrt 2
    assert float((start.norm(dim=1) - 2 * math.sqrt(2)).abs().max()) < 1.0
    with pytest.raises(ValueError, match="Gaussian source"):
        model.log_prob(x1[:4])
    with pytest.raises(ValueError, match="sampler 'extension'"):
        model.sample(4, sampler="extension")


@pytest.mark.parametrize("name", ["vp", "ve", "ot"])
def test_paths_that_need_gaussian_noise_refuse_a_data_source(name: str) -> None:
    source = DataSource(make_toy("8gaussians"))
    with pytest.raises(ValueError, match="non-Gaussian x_0.*use path linear"):
        FlowMatching(_mlp(), (2,), path=GaussianPath(name), coupling=IndependentCoupling(source))


def test_data_source_shape_mismatch_is_named() -> None:
    source = DataSource(make_toy("moons"))
    with pytest.raises(ValueError, match="same space"):
        source.sample((4, 3))
    with pytest.raises(ValueError, match="sample"):
        DataSource(object())


def test_ot_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown OT method"):
        OTCoupling(method="hungarian")
    with pytest.raises(ValueError, match="reg"):
        OTCoupling(method="sinkhorn", reg=0.0)
    with pytest.raises(ValueError, match="needs labels"):
        OTCoupling(label_aware=True)(torch.randn(8, 2))
    with pytest.raises(ValueError, match="square"):
        assignment(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="unknown assignment solver"):
        assignment(np.zeros((3, 3)), "hungarian")
    with pytest.raises(ValueError, match="equal mass"):
        ot_plan(np.zeros((2, 2)), a=np.array([0.5, 0.5]), b=np.array([1.0, 0.5]))
    with pytest.raises(ValueError, match=r"y must have shape \(8,\)"):
        OTCoupling()(torch.randn(8, 2), None, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="x1"):
        OTCoupling()(torch.full((4, 2), float("nan")))
    with pytest.raises(ValueError, match="sigma"):
        BridgePath(-1.0)


def test_bridge_path_model_trains_with_velocity_only() -> None:
    path = BridgePath(0.2)
    model = FlowMatching(_mlp(), (2,), path=path, coupling=SchrodingerBridgeCoupling(0.2))
    x1 = make_toy("moons").sample(64, torch.Generator().manual_seed(0))
    assert torch.isfinite(model.loss(x1, torch.Generator().manual_seed(1))["loss"])
    with pytest.raises(ValueError, match="velocity"):
        FlowMatching(_mlp(), (2,), path=path, prediction="data")
    with pytest.raises(ValueError, match="sampler 'ddim'"):
        model.sample(4, sampler="ddim")


def test_gaussian_source_is_flagged() -> None:
    assert OTCoupling().gaussian_source
    assert not IndependentCoupling(DataSource(make_toy("moons"))).gaussian_source
    assert GaussianSource().gaussian


def test_sinkhorn_scalings_agree_with_pots_log_domain() -> None:
    """The fast scaling iterations and POT's log-domain solver give the same entropic plan;
    a kernel that underflows falls back to the log domain (still a valid plan)."""
    g = torch.Generator().manual_seed(11)
    x0, x1 = torch.randn(50, 2, generator=g, dtype=D64), torch.randn(50, 2, generator=g, dtype=D64) + 1.0
    cost = squared_distances(x0, x1)
    a = np.full(50, 1 / 50)
    ours = ot_plan(cost, "sinkhorn", reg=0.3)
    ref = ot.sinkhorn(a, a, cost, 0.3, method="sinkhorn_log", numItermax=10000, stopThr=1e-12)
    np.testing.assert_allclose(ours, ref, atol=1e-8)
    far = cost.copy()
    far[0] += 1e5  # row 0's kernel exp(-C / reg) is all zero
    plan = ot_plan(far, "sinkhorn", reg=0.3)
    assert np.isfinite(plan).all()
    np.testing.assert_allclose(plan.sum(0), a, atol=1e-6)


def test_block_ot_solves_each_block_exactly() -> None:
    """block = b pairs within consecutive blocks of b points, each block's plan optimal: the
    cost is the sum of the per-block optima, at least the whole-batch optimum, and a block as
    large as the batch is the whole-batch coupling."""
    g = torch.Generator().manual_seed(12)
    x1 = torch.randn(50, 2, generator=g, dtype=D64) + 1.0
    pair = OTCoupling(DataSource(_Indexed()), block=16)(x1, g)
    idx = pair.x0[:, 0].long()
    assert torch.equal(idx // 16, torch.arange(50) // 16)  # sources stay in their block
    src = _Indexed().sample(50)
    total = 0.0
    for start in range(0, 50, 16):
        cost = squared_distances(src[start : start + 16], x1[start : start + 16])
        total += cost[assignment(cost), np.arange(cost.shape[0])].sum()
    assert transport_cost(pair.x0, x1) * 50 == pytest.approx(total, rel=1e-12)
    whole = OTCoupling(DataSource(_Indexed()))(x1, g)
    assert transport_cost(whole.x0, x1) <= transport_cost(pair.x0, x1)
    same = OTCoupling(DataSource(_Indexed()), block=64)(x1, g)
    assert torch.equal(same.x0, whole.x0)
    with pytest.raises(ValueError, match="block"):
        OTCoupling(block=1)


def test_data_coupling_model_has_no_log_prob() -> None:
    """Corrupted inputs are not a Gaussian source: log p is refused, not silently computed."""
    from genlab.networks import UNet, UNetConfig
    from genlab.paths import DataCoupling, Inpaint

    net = UNet(UNetConfig(in_channels=1, image_size=8, base_channels=8, time_dim=16))
    model = FlowMatching(net, (1, 8, 8), path=GaussianPath("linear"), coupling=DataCoupling(Inpaint()))
    with pytest.raises(ValueError, match="Gaussian source.*DataCoupling"):
        model.log_prob(torch.zeros(2, 1, 8, 8))
