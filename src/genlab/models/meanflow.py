"""MeanFlow (Geng et al. 2025, "Mean Flows for One-step Generative Modeling"): a network of two
times that learns the *average* velocity of the flow, so one step of it is a whole ODE solve.

On the linear path x_t = t x_1 + (1 - t) x_0 (x_0 ~ N(0, I) at t = 0, the data at t = 1) with
marginal velocity v(x, t), the average velocity from time t to time s along the ODE is

    u(x_t, t, s) = 1 / (s - t) int_t^s v(x_tau, tau) d tau,     u(x, t, t) = v(x, t),

so x_s = x_t + (s - t) u(x_t, t, s) exactly, and x_1 = x_0 + u(x_0, 0, 1) draws a sample in
one network evaluation. Differentiating (s - t) u(x_t, t, s) = int_t^s v d tau in t, with s
fixed and x_t moving along the flow, gives the MeanFlow identity

    u(x_t, t, s) = v(x_t, t) + (s - t) d/dt u(x_t, t, s),
    d/dt u = v . grad_x u + partial_t u,

the total derivative being one Jacobian-vector product of the network with tangent (v, 1) in
(x, t). Training regresses u_theta on the right-hand side with the conditional velocity
v = x_1 - x_0 in place of v (as in conditional flow matching) and the target's network
terms held fixed (stop-gradient):

    L = E w || u_theta(x_t, t, s) - sg(v + (s - t) (v . grad_x u_theta + partial_t u_theta)) ||^2,

with the adaptive weight w = sg(1 / (||.||^2 + c)^p) of the paper (p = 0, genlab's default,
is the plain squared error). The target is linear in the conditional velocity, so under the
squared error its conditional mean gives the marginal identity; a weight that depends on the
error (p > 0) gives up that property. The paper's images have errors of nearly equal size,
where the weight is nearly constant; on 2D data the errors vary widely and p = 0.5 pulls the
samples toward the modes (on moons W2 fell below the data-vs-data floor, a sign of too little
spread, not of a better fit). (t, s) are two uniform times sorted so that t <= s; a fraction
``1 - interval_fraction`` of them has s = t, where the loss is exactly conditional flow
matching. Geng et al. write the flow from data (time 0) to noise (time 1) and step backwards;
genlab's orientation runs forwards from noise, hence the sign of the (s - t) term.

For genlab's SiLU ``TimeMLP`` the JVP is pushed through the layers by hand beside the forward
pass (``TimeMLP.forward_and_jvp``: half the cost of ``torch.func.jvp`` here); any other
network goes through ``torch.func.jvp``.

Samplers: ``mean`` steps x <- x + (s - t) u(x, t, s) over the grid (``steps=1`` is one-step
generation, one network evaluation per step); ``ode`` integrates the instantaneous velocity
u(x, t, t) with any ODE solver, which also gives ``log_prob``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from genlab._validate import ConfigError, check_choice
from genlab.models.base import Batch, GaussianPathModel, SampleRequest, Solution, _pop, split_batch
from genlab.models.flow_matching import FlowMatchingConfig
from genlab.models.nets import NetConfig, build_time_network
from genlab.models.registry import DataInfo, Family, FamilyConfig, register
from genlab.paths import Coupling, GaussianPath, IndependentCoupling, Prediction
from genlab.solvers import ODESolution

__all__ = ["MeanFlow", "MeanFlowConfig"]

#: couplings MeanFlow trains with (both keep x_0 ~ N(0, I), so log p stays defined)
MEANFLOW_COUPLINGS = ("independent", "ot")


class MeanFlow(GaussianPathModel):
    """An average-velocity network u(x, t, s) trained by the MeanFlow identity.

    Args:
        net: a network of two times, called as net(x, t, s=s) with x (B, *D) and t, s (B,);
            net(x, t) must be u(x, t, t), the instantaneous velocity (a TimeMLP built with
            ``interval=True``).
        data_shape: shape of one sample.
        coupling: how x_0 is paired with x_1 (independent noise, or minibatch OT).
        interval_fraction: the fraction of training pairs (t, s) with s != t.
        weight_power: p of the adaptive weight 1 / (||error||^2 + weight_eps)^p (0: plain
            squared error).
        weight_eps: c of the adaptive weight.
    """

    SAMPLERS: ClassVar[tuple[str, ...]] = ("mean", "ode")

    def __init__(
        self,
        net: nn.Module,
        data_shape: Sequence[int],
        *,
        coupling: Coupling | None = None,
        interval_fraction: float = 0.75,
        weight_power: float = 0.0,
        weight_eps: float = 1e-3,
    ) -> None:
        super().__init__(net, data_shape, GaussianPath("linear"), Prediction.VELOCITY)
        self.coupling = coupling if coupling is not None else IndependentCoupling()
        if not isinstance(self.coupling, Coupling) or not self.coupling.gaussian_source:
            raise ValueError("coupling must be a Coupling with Gaussian noise at t = 0 (independent or OT)")
        if not 0.0 <= interval_fraction <= 1.0:
            raise ValueError(f"interval_fraction must lie in [0, 1], got {interval_fraction!r}")
        if not weight_power >= 0.0:
            raise ValueError(f"weight_power must be >= 0, got {weight_power!r}")
        if not weight_eps > 0.0:
            raise ValueError(f"weight_eps must be > 0, got {weight_eps!r}")
        self.interval_fraction = float(interval_fraction)
        self.weight_power = float(weight_power)
        self.weight_eps = float(weight_eps)

    def average_velocity(self, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """u(x, t, s): the network's average velocity from time t to time s, shape like x."""
        return self.net(x, t, s=s)

    def times(
        self, n: int, generator: torch.Generator | None, like: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """n training pairs (t, s), t <= s, each (n,): two sorted uniform times, and s = t
        with probability 1 - interval_fraction."""
        u = torch.rand(2, n, generator=generator, dtype=like.dtype, device=like.device)  # (2, n)
        keep = torch.rand(n, generator=generator, dtype=like.dtype, device=like.device)  # (n,)
        t, s = u.min(0).values, u.max(0).values
        s = torch.where(keep < self.interval_fraction, s, t)
        return t, s

    def target(
        self, xt: torch.Tensor, t: torch.Tensor, s: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(u_theta(x_t, t, s), its regression target v + (s - t) d/dt u_theta), the target
        detached; d/dt u_theta is the JVP of the network with tangent (v, 1) in (x, t)."""

        ones = torch.ones_like(t)
        fused = getattr(self.net, "forward_and_jvp", None)
        out = fused(xt, t, s, v, ones) if fused is not None else None
        if out is None:  # any other network: forward-mode AD

            def u_of(x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
                return self.average_velocity(x, time, s)

            out = torch.func.jvp(u_of, (xt, t), (v, ones))
        u, dudt = out[0], out[1]  # the value and its derivative along (v, 1)
        gap = (s - t).reshape(-1, *([1] * (xt.dim() - 1)))  # (B, 1, ..)
        return u, (v + gap * dudt).detach()

    def loss(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The adaptively weighted MeanFlow loss on one batch; also the plain per-coordinate
        squared error as ``mse``."""
        x1, y = split_batch(batch)
        self._check_data(x1)
        if y is not None:
            raise ValueError("MeanFlow is unconditional; train it on unlabelled data")
        pair = self.coupling.pair(x1, generator, None)
        t, s = self.times(x1.shape[0], generator, x1)
        tb = t.reshape(-1, *([1] * (x1.dim() - 1)))
        xt = tb * pair.x1 + (1 - tb) * pair.x0  # the linear path
        v = pair.x1 - pair.x0  # its conditional velocity
        u, target = self.target(xt, t, s, v)
        err = ((u - target) ** 2).flatten(1).sum(1)  # (B,)
        weight = (err.detach() + self.weight_eps) ** -self.weight_power  # (B,)
        return {"loss": (weight * err).mean(), "mse": err.detach().mean() / x1[0].numel()}

    def _dispatch(self, sampler: str, req: SampleRequest) -> Solution:
        if req.guidance is not None or req.y is not None:
            raise ValueError("MeanFlow is unconditional: sample it without labels or guidance")
        if sampler != "mean":
            return super()._dispatch(sampler, req)
        _pop(req.options)
        times = req.grid.times.to(req.x0)  # (K + 1,)
        x, n = req.x0, req.x0.shape[0]
        states = [x] if req.return_trajectory else []
        for k in range(times.shape[0] - 1):
            t, s = times[k], times[k + 1]
            x = x + (s - t) * self.average_velocity(x, t.expand(n), s)
            if req.return_trajectory:
                states.append(x)
        trajectory = torch.stack(states) if req.return_trajectory else None
        return ODESolution(x=x, times=times, trajectory=trajectory, nfe=times.shape[0] - 1)


@dataclass(kw_only=True)
class MeanFlowConfig(FamilyConfig):
    """``model`` settings of MeanFlow (``model.family: meanflow``)."""

    family: str = "meanflow"
    coupling: str = "independent"  # independent or ot (minibatch OT pairs of noise and data)
    coupling_args: dict[str, Any] = field(default_factory=dict)  # ot: {method: exact|emd|sinkhorn}
    interval_fraction: float = 0.75  # training pairs with s != t; the rest is plain flow matching
    weight_power: float = 0.0  # p of the adaptive loss weight 1 / (err + eps)^p; 0: squared error
    weight_eps: float = 1.0e-3  # eps of the adaptive weight
    net: NetConfig = field(default_factory=NetConfig)  # the network u(x, t, s), an MLP

    def validate(self) -> None:
        super().validate()
        check_choice("model.coupling", self.coupling, MEANFLOW_COUPLINGS)
        if not 0.0 <= self.interval_fraction <= 1.0:
            raise ConfigError(f"model.interval_fraction must lie in [0, 1], got {self.interval_fraction}")
        if not self.weight_power >= 0.0:
            raise ConfigError(f"model.weight_power must be >= 0, got {self.weight_power}")
        if not self.weight_eps > 0.0:
            raise ConfigError(f"model.weight_eps must be > 0, got {self.weight_eps}")

    def build(self, data: DataInfo) -> nn.Module:
        paired = FlowMatchingConfig(coupling=self.coupling, coupling_args=dict(self.coupling_args))
        net = build_time_network(self.family, self.net, data.shape, None, interval=True)
        return MeanFlow(
            net,
            data.shape,
            coupling=paired.build_coupling(data.shape),
            interval_fraction=self.interval_fraction,
            weight_power=self.weight_power,
            weight_eps=self.weight_eps,
        )


register(Family("meanflow", MeanFlow, MeanFlowConfig, predictions=("velocity",), has_log_prob=True))
