"""ODE solvers: convergence orders, backward integration, NFE, grids, tableaux."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genlab.solvers import (
    EULER,
    HEUN,
    MIDPOINT,
    RK4,
    SOLVERS,
    ButcherTableau,
    Dopri5,
    TimeGrid,
    integrate,
    make_solver,
)

D64 = torch.float64


def f_known(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """dx/dt = cos(t) x + t, non-autonomous; exact solution computed below."""
    return torch.cos(t) * x + t


def exact_known(x0: torch.Tensor, t1: float) -> torch.Tensor:
    # x(t) = e^{sin t} (x0 + int_0^t s e^{-sin s} ds); the integral by Gauss-Legendre (200 nodes)
    nodes, weights = np.polynomial.legendre.leggauss(200)
    s = 0.5 * t1 * (nodes + 1)
    integral = 0.5 * t1 * float(np.sum(weights * s * np.exp(-np.sin(s))))
    return math.exp(math.sin(t1)) * (x0 + integral)


def fitted_order(method: str, steps: list[int]) -> float:
    x0 = torch.tensor([[0.7]], dtype=D64)
    truth = exact_known(x0, 1.0)
    errs = [float((integrate(f_known, x0, TimeGrid.uniform(n), method).x - truth).abs()) for n in steps]
    slope = np.polyfit(np.log([1.0 / n for n in steps]), np.log(errs), 1)[0]
    return float(slope)


@pytest.mark.parametrize("tableau", [EULER, MIDPOINT, HEUN, RK4], ids=lambda t: t.name)
def test_convergence_order(tableau: ButcherTableau) -> None:
    """Slope of log(global error) vs log(h) equals the declared order (+-0.3).
    Steps 8..64 keep RK4's error (~1e-9 at 64 steps) far above float64 round-off."""
    slope = fitted_order(tableau.name, [8, 16, 32, 64])
    assert abs(slope - tableau.order) < 0.3, f"{tableau.name}: fitted order {slope:.3f}"


def test_dopri5_meets_tolerance() -> None:
    x0 = torch.tensor([[0.7]], dtype=D64)
    sol = integrate(f_known, x0, [0.0, 1.0], "dopri5", atol=1e-10, rtol=1e-10)
    assert abs(float(sol.x) - exact_known(x0, 1.0)) < 1e-8
    loose = integrate(f_known, x0, [0.0, 1.0], "dopri5", atol=1e-3, rtol=1e-3)
    assert loose.nfe < sol.nfe  # looser tolerance, fewer evaluations


@pytest.mark.parametrize("method", sorted(SOLVERS))
def test_backward_inverts_forward(method: str) -> None:
    """Integrating 1 -> 0 after 0 -> 1 recovers the start (error = solver error, small here)."""
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(5, 3, generator=gen, dtype=D64)

    def f(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(3 * t) * x - 0.5 * x**3 / (1 + x**2)

    opts = {"atol": 1e-10, "rtol": 1e-10} if method == "dopri5" else {}
    grid = TimeGrid.uniform(400)
    fwd = integrate(f, x0, grid, method, **opts)
    back = integrate(f, fwd.x, grid.reversed(), method, **opts)
    tol = {"euler": 5e-3, "midpoint": 1e-5, "heun": 1e-5, "rk4": 1e-10, "dopri5": 1e-7}[method]
    assert float((back.x - x0).abs().max()) < tol


@pytest.mark.parametrize("tableau", [EULER, MIDPOINT, HEUN, RK4], ids=lambda t: t.name)
def test_nfe_and_trajectory(tableau: ButcherTableau) -> None:
    grid = TimeGrid([0.0, 0.1, 0.5, 1.0])  # a user-given, non-uniform grid
    x0 = torch.ones(2, 1, dtype=D64)
    sol = integrate(lambda t, x: -x, x0, grid, tableau.name, return_trajectory=True)
    assert sol.nfe == tableau.stages * grid.steps
    assert sol.trajectory is not None and sol.trajectory.shape == (4, 2, 1)
    torch.testing.assert_close(sol.trajectory[0], x0)
    torch.testing.assert_close(sol.trajectory[-1], sol.x)
    torch.testing.assert_close(sol.times, grid.times)


def test_dopri5_trajectory_at_grid_times() -> None:
    x0 = torch.ones(1, 1, dtype=D64)
    grid = TimeGrid.uniform(4)
    sol = integrate(lambda t, x: -x, x0, grid, "dopri5", return_trajectory=True, atol=1e-10, rtol=1e-10)
    assert sol.trajectory is not None
    torch.testing.assert_close(sol.trajectory[:, 0, 0], torch.exp(-grid.times), atol=1e-8, rtol=0)


def test_tableau_consistency_is_checked() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        ButcherTableau("bad", 1, a=((),), b=(0.5,), c=(0.0,))
    with pytest.raises(ValueError, match="c\\[1\\]"):
        ButcherTableau("bad", 2, a=((), (0.5,)), b=(0.0, 1.0), c=(0.0, 1.0))


def test_grid_validation_and_defaults() -> None:
    assert TimeGrid.uniform(4).steps == 4
    assert TimeGrid.uniform(3, 1.0, 0.0).t1 == 0.0
    for bad in ([0.0], [0.0, 0.5, 0.4], [0.0, float("nan")], [[0.0, 1.0]]):
        with pytest.raises(ValueError, match="grid times"):
            TimeGrid(bad)
    with pytest.raises(ValueError, match="steps"):
        TimeGrid.uniform(0)


def test_make_solver_errors() -> None:
    with pytest.raises(ValueError, match="valid solvers are: dopri5, euler, heun, midpoint, rk4"):
        make_solver("rk5")
    with pytest.raises(ValueError, match="does not take options"):
        make_solver("euler", atol=1e-3)
    with pytest.raises(ValueError, match="atol"):
        Dopri5(atol=-1.0)


def test_bad_field() -> None:
    x0 = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="f must be callable"):
        integrate(42, x0, 4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape \\(2, 2\\)"):
        integrate(lambda t, x: x[:, :1], x0, 4, "euler")
