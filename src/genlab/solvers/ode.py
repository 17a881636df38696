"""ODE solvers for dx/dt = f(t, x); they know nothing of paths or networks.

Explicit Runge-Kutta methods are Butcher tableaux (a, b, c) with their order, stepped by
one loop (:class:`RungeKutta`); the adaptive Dormand-Prince 5(4) method is delegated to
torchdiffeq. ``f`` is called as ``f(t, x)`` with ``t`` a 0-dim tensor (x's dtype/device)
and ``x`` of shape (B, *D); it must return a tensor shaped like ``x``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from genlab._validate import check_callable, check_positive, check_tensor, choose
from genlab.solvers.grids import TimeGrid, as_grid

VectorField = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ButcherTableau:
    """An explicit Runge-Kutta method: stages k_i = f(t + c_i h, x + h sum_j a_ij k_j),
    update x + h sum_i b_i k_i; ``order`` is the global convergence order."""

    name: str
    order: int
    a: tuple[tuple[float, ...], ...]  # strictly lower-triangular rows, row i has i entries
    b: tuple[float, ...]  # weights, sum to 1
    c: tuple[float, ...]  # nodes, c_i = sum_j a_ij

    def __post_init__(self) -> None:
        s = len(self.b)
        if len(self.c) != s or len(self.a) != s:
            raise ValueError(f"tableau {self.name}: a, b, c must describe {s} stages")
        for i, row in enumerate(self.a):
            if len(row) != i:
                raise ValueError(f"tableau {self.name}: row {i} of a must have {i} entries")
            if abs(sum(row) - self.c[i]) > 1e-12:
                raise ValueError(f"tableau {self.name}: c[{i}] must equal the sum of a's row {i}")
        if abs(sum(self.b) - 1.0) > 1e-12:
            raise ValueError(f"tableau {self.name}: weights b must sum to 1")

    @property
    def stages(self) -> int:
        return len(self.b)


EULER = ButcherTableau("euler", 1, a=((),), b=(1.0,), c=(0.0,))
MIDPOINT = ButcherTableau("midpoint", 2, a=((), (0.5,)), b=(0.0, 1.0), c=(0.0, 0.5))
HEUN = ButcherTableau("heun", 2, a=((), (1.0,)), b=(0.5, 0.5), c=(0.0, 1.0))
RK4 = ButcherTableau(
    "rk4",
    4,
    a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
    b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
    c=(0.0, 0.5, 0.5, 1.0),
)


@dataclass
class ODESolution:
    """Result of an integration."""

    x: torch.Tensor  # (B, *D) state at the last grid time
    times: torch.Tensor  # (T,) times at which ``trajectory`` is recorded
    trajectory: torch.Tensor | None  # (T, B, *D) states at ``times``, if requested
    nfe: int  # number of evaluations of f


class _Counted:
    """Wrap f to count evaluations and check the shape of its output once."""

    def __init__(self, f: VectorField) -> None:
        self.f = f
        self.nfe = 0

    def __call__(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = self.f(t, x)
        if self.nfe == 0 and (not isinstance(out, torch.Tensor) or out.shape != x.shape):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"the vector field must return a tensor of shape {tuple(x.shape)}, got {got}")
        self.nfe += 1
        return out


class ODESolver(ABC):
    """Integrates dx/dt = f(t, x) over a :class:`TimeGrid` (forwards or backwards)."""

    name: str = ""
    order: int = 0

    def integrate(
        self,
        f: VectorField,
        x0: torch.Tensor,
        grid: TimeGrid | Sequence[float] | torch.Tensor | int,
        return_trajectory: bool = False,
    ) -> ODESolution:
        """Integrate from ``x0`` at ``grid.t0`` to ``grid.t1``.

        Args:
            f: the vector field, called as f(t, x) with t a 0-dim tensor.
            x0: initial state (B, *D).
            grid: time grid, a sequence of times, or an int number of uniform steps on [0, 1].
            return_trajectory: also return the states at every grid time.
        """
        check_callable(f, "f")
        check_tensor(x0, "x0")
        counted = _Counted(f)
        grid = as_grid(grid)
        x, traj = self._run(counted, x0, grid, return_trajectory)
        times = grid.times.to(dtype=x0.dtype, device=x0.device)
        return ODESolution(x=x, times=times, trajectory=traj, nfe=counted.nfe)

    @abstractmethod
    def _run(
        self, f: VectorField, x0: torch.Tensor, grid: TimeGrid, keep: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return the final state and, if ``keep``, the (T, B, *D) trajectory."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"


class RungeKutta(ODESolver):
    """Fixed-step explicit Runge-Kutta method defined by a Butcher tableau."""

    def __init__(self, tableau: ButcherTableau) -> None:
        self.tableau = tableau
        self.name = tableau.name
        self.order = tableau.order

    def step(self, f: VectorField, t: torch.Tensor, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One step of size h (negative h steps backwards)."""
        tab = self.tableau
        ks: list[torch.Tensor] = []
        for i in range(tab.stages):
            xi = x
            for a_ij, k in zip(tab.a[i], ks, strict=False):
                if a_ij != 0.0:
                    xi = xi + (h * a_ij) * k
            ks.append(f(t + tab.c[i] * h, xi))
        update = sum((b_i * k for b_i, k in zip(tab.b, ks, strict=True) if b_i != 0.0), torch.zeros_like(x))
        return x + h * update

    def _run(
        self, f: VectorField, x0: torch.Tensor, grid: TimeGrid, keep: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        times = grid.times.to(dtype=x0.dtype, device=x0.device)
        x = x0
        states = [x0] if keep else []
        for i in range(grid.steps):
            x = self.step(f, times[i], x, times[i + 1] - times[i])
            if keep:
                states.append(x)
        return x, (torch.stack(states) if keep else None)


class Dopri5(ODESolver):
    """Adaptive Dormand-Prince 5(4) through ``torchdiffeq.odeint``.

    The grid's times are the output times; the step size is chosen adaptively from the
    absolute and relative tolerances.
    """

    name = "dopri5"
    order = 5

    def __init__(self, atol: float = 1e-5, rtol: float = 1e-5, max_num_steps: int = 10_000) -> None:
        self.atol = check_positive(atol, "atol")
        self.rtol = check_positive(rtol, "rtol")
        if not isinstance(max_num_steps, int) or max_num_steps < 1:
            raise ValueError(f"max_num_steps must be a positive integer, got {max_num_steps!r}")
        self.max_num_steps = max_num_steps

    def _run(
        self, f: VectorField, x0: torch.Tensor, grid: TimeGrid, keep: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        from torchdiffeq import odeint

        times = grid.times if keep else grid.times[[0, -1]]
        times = times.to(dtype=x0.dtype, device=x0.device)
        traj = odeint(
            f,
            x0,
            times,
            method="dopri5",
            atol=self.atol,
            rtol=self.rtol,
            options={"max_num_steps": self.max_num_steps},
        )
        return traj[-1], (traj if keep else None)


def _fixed(tableau: ButcherTableau) -> Callable[[], RungeKutta]:
    def build() -> RungeKutta:
        return RungeKutta(tableau)

    build.__doc__ = f"{tableau.name} (order {tableau.order}, {tableau.stages} stage(s))"
    return build


SOLVERS: dict[str, Callable[..., ODESolver]] = {
    "euler": _fixed(EULER),
    "midpoint": _fixed(MIDPOINT),
    "heun": _fixed(HEUN),
    "rk4": _fixed(RK4),
    "dopri5": Dopri5,
}


def make_solver(name: str, **options: Any) -> ODESolver:
    """Build a solver by name: euler, midpoint, heun, rk4 (fixed step) or dopri5 (adaptive,
    options ``atol``, ``rtol``, ``max_num_steps``).

    >>> make_solver("heun").order
    2
    """
    build = choose("solver", name, SOLVERS)
    try:
        return build(**options)
    except TypeError:
        raise ValueError(
            f"solver {name!r} does not take options {sorted(options)}"
            + ("; dopri5 takes atol, rtol, max_num_steps" if name != "dopri5" else "")
        ) from None


def integrate(
    f: VectorField,
    x0: torch.Tensor,
    grid: TimeGrid | Sequence[float] | torch.Tensor | int,
    method: str | ODESolver = "rk4",
    return_trajectory: bool = False,
    **options: Any,
) -> ODESolution:
    """Integrate dx/dt = f(t, x) from x0 over ``grid`` with the named method.

    >>> sol = integrate(lambda t, x: -x, torch.ones(1, 1), TimeGrid.uniform(10), "rk4")
    >>> round(float(sol.x), 5), sol.nfe
    (0.36788, 40)
    """
    solver = method if isinstance(method, ODESolver) else make_solver(method, **options)
    return solver.integrate(f, x0, grid, return_trajectory)
