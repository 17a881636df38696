"""Straightness, path energy and normalised path energy on paths with closed-form values."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.metrics.straightness import normalized_path_energy, path_energy, straightness
from genlab.solvers import integrate

DT = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _uniform(steps: int) -> torch.Tensor:
    return torch.linspace(0.0, 1.0, steps + 1, dtype=DT)


def _nonuniform(steps: int, seed: int = 0) -> torch.Tensor:
    """A random strictly increasing grid from 0 to 1."""
    w = torch.rand(steps, generator=_gen(seed), dtype=DT) + 0.1
    return torch.cat([torch.zeros(1, dtype=DT), torch.cumsum(w, 0) / w.sum()])


def _path(x0: torch.Tensor, x1: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """States x0 + s_k (x1 - x0) for a schedule s (S+1,) -> (S+1, B, *D)."""
    shape = (-1,) + (1,) * x0.dim()
    return x0[None] + s.reshape(shape) * (x1 - x0)[None]


# --------------------------------------------------------------------------------------
# straight paths
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("grid", ["uniform", "nonuniform"])
def test_straight_constant_speed_paths(grid: str) -> None:
    g = _gen(1)
    x0 = torch.randn(64, 3, generator=g, dtype=DT)
    x1 = 2.0 * torch.randn(64, 3, generator=g, dtype=DT) + 1.0
    t = _uniform(37) if grid == "uniform" else _nonuniform(37)
    traj = _path(x0, x1, t)
    assert abs(straightness(traj, t)) < 1e-12
    expected = float(((x1 - x0) ** 2).sum(1).mean())
    assert path_energy(traj, t) == pytest.approx(expected, rel=1e-12)


def test_states_are_flattened() -> None:
    """Image-shaped states (B, C, H, W) give the same numbers as their flattened vectors."""
    g = _gen(2)
    x0, x1 = torch.randn(8, 1, 2, 3, generator=g, dtype=DT), torch.randn(8, 1, 2, 3, generator=g, dtype=DT)
    t = _uniform(20)
    traj = _path(x0, x1, t**2)
    flat = traj.flatten(2)
    assert straightness(traj, t) == pytest.approx(straightness(flat, t), rel=1e-14)
    assert path_energy(traj, t) == pytest.approx(path_energy(flat, t), rel=1e-14)


def test_float32_trajectory_and_sequence_times() -> None:
    x0, x1 = torch.zeros(4, 2), torch.ones(4, 2)
    t = [0.0, 0.25, 0.5, 1.0]
    traj = _path(x0, x1, torch.tensor(t))
    assert abs(straightness(traj, t)) < 1e-12
    assert path_energy(traj, t) == pytest.approx(2.0, rel=1e-6)


def test_constant_field_from_solver_is_straight() -> None:
    """A constant velocity integrated by the repo's solver: straight, constant speed."""
    g = _gen(3)
    x0 = torch.randn(16, 2, generator=g, dtype=DT)
    c = torch.tensor([1.5, -0.5], dtype=DT)
    sol = integrate(lambda t, x: c.expand_as(x), x0, 10, "rk4", return_trajectory=True)
    assert sol.trajectory is not None
    assert abs(straightness(sol.trajectory, sol.times)) < 1e-12
    assert path_energy(sol.trajectory, sol.times) == pytest.approx(float((c**2).sum()), rel=1e-12)


def test_time_is_rescaled_to_unit_interval() -> None:
    """A grid on [0.2, 0.7] gives the same values as the same states on [0, 1]."""
    x0, x1 = torch.randn(5, 2, generator=_gen(4), dtype=DT), torch.zeros(5, 2, dtype=DT)
    s = _uniform(30)
    traj = _path(x0, x1, s**3)
    t = 0.2 + 0.5 * s
    assert straightness(traj, t) == pytest.approx(straightness(traj, s), rel=1e-12)
    assert path_energy(traj, t) == pytest.approx(path_energy(traj, s), rel=1e-12)


# --------------------------------------------------------------------------------------
# curved or unevenly traversed paths
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [10, 100, 2000])
def test_straight_path_at_non_constant_speed(steps: int) -> None:
    """x_t = x0 + t^2 (x1 - x0): S = ||x1 - x0||^2 int_0^1 (2t - 1)^2 dt = ||x1 - x0||^2 / 3.

    On a uniform grid of step h the finite-difference velocity on [t_k, t_k + h] is
    (t_k + t_{k+1}) (x1 - x0) = 2 m_k (x1 - x0), with m_k the midpoint, so the estimate is
    the midpoint rule for int (2t - 1)^2 dt, whose error for this quadratic is exactly
    -h^2 f'' / 24 = -h^2 / 3: S_h = ||x1 - x0||^2 (1 - h^2) / 3. Likewise
    PE_h = ||x1 - x0||^2 (4 - h^2) / 3 -> 4/3 ||x1 - x0||^2.
    """
    g = _gen(5)
    x0, x1 = torch.randn(32, 4, generator=g, dtype=DT), torch.randn(32, 4, generator=g, dtype=DT)
    t = _uniform(steps)
    traj = _path(x0, x1, t**2)
    d2 = float(((x1 - x0) ** 2).sum(1).mean())
    h = 1.0 / steps
    s_val, pe_val = straightness(traj, t), path_energy(traj, t)
    # convergence to the continuous value within the grid's O(h^2) error ...
    assert abs(s_val - d2 / 3) <= d2 * h**2 / 3 * (1 + 1e-6) + 1e-12
    assert abs(pe_val - 4 * d2 / 3) <= d2 * h**2 / 3 * (1 + 1e-6) + 1e-12
    # ... and the exact discrete values
    assert s_val == pytest.approx(d2 * (1 - h**2) / 3, rel=1e-9)
    assert pe_val == pytest.approx(d2 * (4 - h**2) / 3, rel=1e-9)
    if steps == 2000:
        assert s_val == pytest.approx(d2 / 3, rel=1e-6)


def _arc(center: torch.Tensor, r: torch.Tensor, theta0: torch.Tensor, phi: torch.Tensor, t: torch.Tensor):
    """Circular arcs x_t = c + r (cos(theta0 + phi t), sin(theta0 + phi t)) -> (S+1, B, 2)."""
    ang = theta0[None, :] + phi[None, :] * t[:, None]  # (S+1, B)
    return center[None] + r[None, :, None] * torch.stack([torch.cos(ang), torch.sin(ang)], -1)


@pytest.mark.parametrize("steps", [20, 2000])
def test_circular_arc(steps: int) -> None:
    """Arc of radius r through angle phi at constant angular speed, t in [0, 1].

    dx/dt = r phi (-sin(theta), cos(theta)) has constant norm r |phi|, and the chord is
    Delta = x_1 - x_0 with ||Delta||^2 = 2 r^2 (1 - cos phi) = 4 r^2 sin^2(phi / 2). Since
    int_0^1 dx/dt dt = Delta,

        S = int ||Delta - dx/dt||^2 dt = ||Delta||^2 - 2 Delta . Delta + int ||dx/dt||^2 dt
          = r^2 phi^2 - 4 r^2 sin^2(phi / 2),

    and PE = r^2 phi^2. On a uniform grid of step h each finite difference is a chord of
    angle phi h, of length 2 r |sin(phi h / 2)|; the 1/h intervals each add h (length / h)^2,
    so PE_h = 4 r^2 sin^2(phi h / 2) / h^2 and S_h = PE_h - ||Delta||^2 exactly (because
    sum_k h d_k = Delta). With u = phi h / 2, sin^2(u) / u^2 >= 1 - u^2 / 3 gives
    0 <= S - S_h = r^2 phi^2 (1 - sin^2(u) / u^2) <= r^2 phi^4 h^2 / 12.
    """
    g = _gen(6)
    b = 50
    center = torch.randn(b, 2, generator=g, dtype=DT)
    r = 0.5 + torch.rand(b, generator=g, dtype=DT)
    theta0 = 2 * math.pi * torch.rand(b, generator=g, dtype=DT)
    phi = (2 * torch.rand(b, generator=g, dtype=DT) - 1) * 3.0  # both directions, up to ~170 deg
    t = _uniform(steps)
    traj = _arc(center, r, theta0, phi, t)
    h = 1.0 / steps

    chord2 = 4 * r**2 * torch.sin(phi / 2) ** 2
    s_exact = float((r**2 * phi**2 - chord2).mean())
    pe_h = 4 * r**2 * torch.sin(phi * h / 2) ** 2 / h**2
    s_val = straightness(traj, t)
    assert s_val == pytest.approx(float((pe_h - chord2).mean()), rel=1e-9)
    assert path_energy(traj, t) == pytest.approx(float(pe_h.mean()), rel=1e-12)
    tol = float((r**2 * phi**4).mean()) * h**2 / 12
    assert abs(s_val - s_exact) <= tol * (1 + 1e-6) + 1e-12
    assert s_exact > 0.1  # the arcs are genuinely curved


# --------------------------------------------------------------------------------------
# normalised path energy
# --------------------------------------------------------------------------------------


def _one_d_samples(n: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    g = _gen(7)
    x0 = torch.randn(n, 1, generator=g, dtype=DT)
    x1 = 2.0 * torch.randn(n, 1, generator=g, dtype=DT) + 3.0
    return x0, x1


def test_npe_zero_for_the_ot_map() -> None:
    """In 1-D the OT map between two samples is the sorted (monotone) matching."""
    x0, x1 = _one_d_samples()
    x0s, x1s = x0.sort(0).values, x1.sort(0).values
    t = _uniform(10)
    traj = _path(x0s, x1s, t)
    assert normalized_path_energy(traj, t) < 1e-10


def test_npe_positive_for_crossing_or_uneven_paths() -> None:
    x0, x1 = _one_d_samples()
    x0s, x1s = x0.sort(0).values, x1.sort(0).values
    t = _uniform(10)
    anti = normalized_path_energy(_path(x0s, x1s.flip(0), t), t)  # anti-sorted: paths cross
    assert anti > 0.1
    shuffled = normalized_path_energy(_path(x0, x1, t), t)  # an arbitrary matching
    assert 0.0 < shuffled < anti
    # the OT matching traversed at non-constant speed wastes energy: PE = 4/3 W2^2 in the limit
    fine = _uniform(1000)
    uneven = normalized_path_energy(_path(x0s, x1s, fine**2), fine)
    assert uneven == pytest.approx(1 / 3, abs=1e-5)


def test_npe_equals_relative_excess_energy() -> None:
    x0, x1 = torch.randn(30, 2, generator=_gen(8), dtype=DT), torch.randn(30, 2, generator=_gen(9), dtype=DT)
    t = _nonuniform(15)
    traj = _path(x0, x1 + 4.0, t)
    from genlab.metrics import wasserstein2

    w2_sq = wasserstein2(x0, x1 + 4.0) ** 2
    expected = (path_energy(traj, t) - w2_sq) / w2_sq
    assert normalized_path_energy(traj, t) == pytest.approx(expected, rel=1e-10)


def test_npe_undefined_when_nothing_moves() -> None:
    x0 = torch.randn(10, 2, generator=_gen(10), dtype=DT)
    t = _uniform(4)
    traj = _path(x0, x0, t)
    with pytest.raises(ValueError, match="W2 = 0"):
        normalized_path_energy(traj, t)


# --------------------------------------------------------------------------------------
# bad inputs
# --------------------------------------------------------------------------------------

_T = _uniform(4)
_TRAJ = torch.zeros(5, 3, 2, dtype=DT)


@pytest.mark.parametrize("fn", [straightness, path_energy, normalized_path_energy])
@pytest.mark.parametrize(
    ("trajectory", "times", "match"),
    [
        ([[0.0]], _T, "trajectory must be a torch.Tensor"),
        (torch.zeros(5, 3, dtype=DT), _T, "trajectory must have shape"),
        (torch.zeros(1, 3, 2, dtype=DT), _T[:1], "at least 2 states"),
        (torch.zeros(5, 0, 2, dtype=DT), _T, "trajectory must hold B >= 1"),
        (torch.zeros(5, 3, 2, dtype=torch.int64), _T, "trajectory must be a floating"),
        (_TRAJ, _T[:4], r"times must have shape \(S\+1,\) = \(5,\)"),
        (_TRAJ, _T[None], "times must have shape"),
        (_TRAJ, "abc", "times must"),
        (_TRAJ, torch.tensor([0.0, 0.5, 0.5, 0.75, 1.0], dtype=DT), "times must be strictly increasing"),
        (_TRAJ, _T.flip(0), "times must be strictly increasing"),
        (_TRAJ, torch.tensor([0.0, float("nan"), 0.5, 0.75, 1.0], dtype=DT), "times contains non-finite"),
        (_TRAJ.clone().index_fill_(0, torch.tensor([2]), float("inf")), _T, "trajectory contains"),
    ],
)
def test_bad_inputs_raise(fn, trajectory, times, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fn(trajectory, times)
