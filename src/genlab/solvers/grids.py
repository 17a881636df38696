"""Time grids: the times an ODE/SDE solver steps through, as explicit objects."""

from __future__ import annotations

from collections.abc import Sequence

import torch


class TimeGrid:
    """A strictly monotone sequence of at least two times (increasing or decreasing).

    Fixed-step solvers take one step per interval; adaptive solvers report the state at
    each grid time. Times are stored in float64 and cast to the state's dtype when used.

    >>> TimeGrid.uniform(4).times
    tensor([0.0000, 0.2500, 0.5000, 0.7500, 1.0000], dtype=torch.float64)
    >>> TimeGrid.uniform(2, t0=1.0, t1=0.0).steps
    2
    """

    def __init__(self, times: Sequence[float] | torch.Tensor) -> None:
        try:
            tt = torch.as_tensor(times, dtype=torch.float64).detach().cpu()
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"grid times must be a sequence of numbers: {err}") from None
        if tt.dim() != 1 or tt.numel() < 2:
            raise ValueError(f"grid times must be 1-D with at least 2 entries, got shape {tuple(tt.shape)}")
        if not bool(torch.isfinite(tt).all()):
            raise ValueError("grid times must be finite")
        diffs = tt[1:] - tt[:-1]
        if not (bool((diffs > 0).all()) or bool((diffs < 0).all())):
            raise ValueError("grid times must be strictly increasing or strictly decreasing")
        self.times = tt

    @classmethod
    def uniform(cls, steps: int, t0: float = 0.0, t1: float = 1.0) -> TimeGrid:
        """``steps`` equal intervals from t0 to t1 (t1 < t0 integrates backwards)."""
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        if t0 == t1:
            raise ValueError(f"t0 and t1 must differ, got {t0} and {t1}")
        return cls(torch.linspace(float(t0), float(t1), steps + 1, dtype=torch.float64))

    @property
    def steps(self) -> int:
        """Number of intervals."""
        return self.times.numel() - 1

    @property
    def t0(self) -> float:
        return float(self.times[0])

    @property
    def t1(self) -> float:
        return float(self.times[-1])

    def reversed(self) -> TimeGrid:
        """The same grid traversed the other way."""
        return TimeGrid(self.times.flip(0))

    def __repr__(self) -> str:
        return f"TimeGrid(steps={self.steps}, t0={self.t0:g}, t1={self.t1:g})"


def as_grid(grid: TimeGrid | Sequence[float] | torch.Tensor | int) -> TimeGrid:
    """Accept a TimeGrid, a sequence of times, or an int (uniform steps on [0, 1])."""
    if isinstance(grid, TimeGrid):
        return grid
    if isinstance(grid, bool):
        raise ValueError(f"grid must be a TimeGrid, a sequence of times or a number of steps, got {grid!r}")
    if isinstance(grid, int):
        return TimeGrid.uniform(grid)
    return TimeGrid(grid)
