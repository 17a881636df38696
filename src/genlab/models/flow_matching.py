"""Flow matching (Lipman et al. 2023; Tong et al. 2023) on a Gaussian conditional path.

Training minimises the conditional flow matching loss

    L(theta) = E_{t, (x_0, x_1) ~ q} || f_theta(x_t, t) - (alpha'_t x_1 + sigma'_t x_0) ||^2,

with t ~ U[0, 1]

whose gradient equals that of the (intractable) marginal loss against u_t(x). The network
may instead predict x_0 or x_1 (``prediction``); the target changes accordingly and sampling
converts the output to a velocity through :meth:`GaussianPath.convert`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from genlab._validate import check_finite
from genlab.paths import (
    T_END_GAP,
    Coupling,
    GaussianPath,
    GaussianSource,
    IndependentCoupling,
    Prediction,
)
from genlab.samplers import sample_ode
from genlab.solvers import ODESolution, ODESolver, TimeGrid

Batch = torch.Tensor | tuple[torch.Tensor, torch.Tensor] | dict[str, torch.Tensor]


def split_batch(batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Accept x, (x, y) or {"x": x, "y": y}; return (x, y or None)."""
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, dict):
        if "x" not in batch:
            raise ValueError(f"a dict batch needs key 'x', got keys {sorted(batch)}")
        return batch["x"], batch.get("y")
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    raise ValueError("batch must be a tensor x, a pair (x, y) or a dict with keys 'x' and 'y'")


class FlowMatching(nn.Module):
    """A velocity (or x_0 / x_1) network trained by conditional flow matching.

    Args:
        net: module called as net(x, t) or net(x, t, y), x (B, *D), t (B,).
        data_shape: shape of one sample, e.g. (2,) or (1, 8, 8).
        path: Gaussian conditional path (default: linear).
        coupling: how x_0 is paired with x_1 (default: independent, x_0 ~ N(0, I)).
        prediction: what ``net`` outputs: "velocity", "x0" or "x1".
    """

    def __init__(
        self,
        net: nn.Module,
        data_shape: Sequence[int],
        path: GaussianPath | None = None,
        coupling: Coupling | None = None,
        prediction: str | Prediction = Prediction.VELOCITY,
    ) -> None:
        super().__init__()
        self.net = net
        self.data_shape = tuple(int(d) for d in data_shape)
        self.path = path if path is not None else GaussianPath("linear")
        self.coupling = coupling if coupling is not None else IndependentCoupling()
        # Sampling starts from p_0 = N(0, sigma_0^2 I): sigma_0 = 1 except for the VE path.
        self.source = GaussianSource(self.path.schedule.source_std())
        self.prediction = Prediction.parse(prediction)
        if self.prediction == Prediction.SCORE:
            raise ValueError("prediction='score' is for diffusion models; use velocity, x0 or x1")

    def _net(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.net(x, t) if y is None else self.net(x, t, y)

    def velocity(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The learned marginal velocity u_theta(x, t), shape like x."""
        out = self._net(x, t, y)
        return self.path.convert(out, x, t, self.prediction, Prediction.VELOCITY)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.velocity(x, t, y)

    def _check_data(self, x1: torch.Tensor) -> None:
        if tuple(x1.shape[1:]) != self.data_shape:
            raise ValueError(
                f"batch has sample shape {tuple(x1.shape[1:])} but the model was built for "
                f"{self.data_shape}"
            )
        check_finite(x1, "batch")

    def loss(
        self, batch: Batch, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Conditional flow matching loss on one batch; returns {"loss": scalar}."""
        x1, y = split_batch(batch)
        self._check_data(x1)
        pair = self.coupling(x1, generator, y)
        t = (1.0 - T_END_GAP) * torch.rand(
            x1.shape[0], generator=generator, dtype=x1.dtype, device=x1.device
        )  # (B,)
        ps = self.path.sample(pair.x0, pair.x1, t)
        target = {
            Prediction.VELOCITY: ps.dxt,
            Prediction.NOISE: ps.x0,
            Prediction.DATA: ps.x1,
        }[self.prediction]
        pred = self._net(ps.xt, t, pair.y)  # (B, *D)
        loss = ((pred - target) ** 2).flatten(1).mean(1).mean()
        return {"loss": loss}

    def sample(
        self,
        n: int,
        solver: str | ODESolver = "rk4",
        grid: TimeGrid | Sequence[float] | torch.Tensor | int = 100,
        generator: torch.Generator | None = None,
        y: torch.Tensor | None = None,
        return_trajectory: bool = False,
        x0: torch.Tensor | None = None,
        **solver_options: Any,
    ) -> ODESolution:
        """Draw n samples by integrating the learned velocity from t = 0 to t = 1.

        ``grid`` is a TimeGrid, a sequence of times or an int number of uniform steps.
        Returns the ODESolution (``.x`` holds the (n, *D) samples, ``.nfe`` the cost).
        """
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        param = next(self.parameters(), None)
        dtype = param.dtype if param is not None else torch.float32
        device = param.device if param is not None else None
        if x0 is None:
            x0 = self.source.sample((n, *self.data_shape), generator, dtype, device)
        was_training = self.training
        self.eval()
        try:
            return sample_ode(
                self.velocity, x0, solver, grid, y, return_trajectory, **solver_options
            )
        finally:
            self.train(was_training)
