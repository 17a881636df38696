"""ODE solvers and time grids; they see only a callable f(t, x)."""

from genlab.solvers.grids import TimeGrid, as_grid
from genlab.solvers.ode import (
    EULER,
    HEUN,
    MIDPOINT,
    RK4,
    SOLVERS,
    ButcherTableau,
    Dopri5,
    ODESolution,
    ODESolver,
    RungeKutta,
    integrate,
    make_solver,
)

__all__ = [
    "EULER",
    "HEUN",
    "MIDPOINT",
    "RK4",
    "SOLVERS",
    "ButcherTableau",
    "Dopri5",
    "ODESolution",
    "ODESolver",
    "RungeKutta",
    "TimeGrid",
    "as_grid",
    "integrate",
    "make_solver",
]
