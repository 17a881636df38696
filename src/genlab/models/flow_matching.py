"""Flow matching (Lipman et al. 2023; Tong et al. 2023) on a Gaussian conditional path.

Training minimises the conditional flow matching loss

    L(theta) = E_{t, (x_0, x_1) ~ q} || f_theta(x_t, t) - (alpha'_t x_1 + sigma'_t x_0) ||^2

with t ~ U[0, 1 - T_END_GAP] (the gap keeps singular schedules finite), whose gradient
equals that of the (intractable) marginal loss against u_t(x). The network may instead
predict x_0 or x_1 (``prediction``); the target changes accordingly and sampling converts
the output to a velocity through :meth:`GaussianPath.convert`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from genlab.models.base import Batch, GaussianPathModel, split_batch
from genlab.paths import T_END_GAP, Coupling, GaussianPath, IndependentCoupling, Prediction


class FlowMatching(GaussianPathModel):
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
        super().__init__(net, data_shape, path if path is not None else GaussianPath("linear"), prediction)
        self.coupling = coupling if coupling is not None else IndependentCoupling()
        if self.prediction == Prediction.SCORE:
            raise ValueError("prediction='score' is for diffusion models; use velocity, x0 or x1")
        alpha0 = float(self.path.schedule.values(torch.zeros((), dtype=torch.float64)).alpha)
        if self.prediction == Prediction.NOISE and alpha0 < 1e-3:
            raise ValueError(
                "prediction='x0' cannot give a velocity near t = 0 on the "
                f"{self.path.schedule.name} path (alpha_0 = {alpha0:.3g}: "
                "x_1 = (x - sigma x_0) / alpha); use velocity or x1"
            )

    def loss(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Conditional flow matching loss on one batch; returns {"loss": scalar}."""
        x1, y = split_batch(batch)
        self._check_data(x1)  # the one validation of this step; the calls below trust it
        pair = self.coupling.pair(x1, generator, y)
        t = (1.0 - T_END_GAP) * torch.rand(x1.shape[0], generator=generator, dtype=x1.dtype, device=x1.device)
        ps = self.path.interpolate(pair.x0, pair.x1, t)
        target = {
            Prediction.VELOCITY: ps.dxt,
            Prediction.NOISE: ps.x0,
            Prediction.DATA: ps.x1,
        }[self.prediction]
        pred = self._net(ps.xt, t, pair.y)  # (B, *D)
        loss = ((pred - target) ** 2).flatten(1).mean(1).mean()
        return {"loss": loss}
