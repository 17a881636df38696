"""Continuous normalizing flow trained by maximum likelihood (FFJORD, Grathwohl et al. 2019).

dx/dt = v_theta(x, t) carries N(0, I) at t = 0 to the model density at t = 1. The loss is
the exact negative log-likelihood of the instantaneous change of variables,

    -log p(x) = -log N(x_0; 0, I) + int_0^1 div v_theta(x_t, t) dt,

integrated backwards from the data with a fixed-step solver and back-propagated through
the solver's steps, with Hutchinson's divergence estimate (one probe per point, fixed along
the trajectory) or the exact divergence, plus an optional kinetic-energy penalty
lambda int_0^1 |v|^2 dt (Finlay et al. 2020) that favours straight, cheap trajectories.
Every training step costs a full ODE solve: this is the expensive baseline that flow
matching's simulation-free regression replaces. With ``model.cnf_adjoint: true`` the gradient
comes from the adjoint ODE solved backwards (Chen et al. 2018) instead of backpropagation
through the steps: the same gradient up to the backward solve's discretisation, in memory that
does not grow with ``cnf_steps``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from genlab._validate import check_choice, check_finite, check_min
from genlab.likelihood import LogProbResult, log_prob_ode
from genlab.models.base import Batch, _steps_or_grid, split_batch
from genlab.models.nets import NetConfig, build_time_network
from genlab.models.registry import DataInfo, Family, FamilyConfig, register
from genlab.paths import GaussianSource
from genlab.samplers.ode import sample_ode
from genlab.solvers import ODESolver, TimeGrid


class CNF(nn.Module):
    """A CNF velocity network trained by maximum likelihood.

    Args:
        net: velocity network net(x, t) with t (B,) in [0, 1].
        data_shape: shape of one sample.
        steps: fixed solver steps per training likelihood (RK4 by default).
        solver: fixed-step solver used in training.
        divergence: "hutchinson" (default in training) or "exact".
        kinetic: weight of the kinetic-energy regulariser (0 disables it).
        adjoint: train by the adjoint method (memory constant in ``steps``; Chen et al. 2018)
            instead of backpropagating through the solver's steps.
    """

    SAMPLERS: ClassVar[tuple[str, ...]] = ("ode",)

    def __init__(
        self,
        net: nn.Module,
        data_shape: Sequence[int],
        *,
        steps: int = 8,
        solver: str = "rk4",
        divergence: str = "hutchinson",
        kinetic: float = 0.0,
        adjoint: bool = False,
    ) -> None:
        super().__init__()
        if solver == "dopri5":
            raise ValueError("CNF training needs a fixed-step solver (euler, midpoint, heun, rk4)")
        if kinetic < 0:
            raise ValueError(f"kinetic must be >= 0, got {kinetic}")
        self.net = net
        self.data_shape = tuple(int(d) for d in data_shape)
        self.steps, self.solver, self.divergence, self.kinetic = steps, solver, divergence, float(kinetic)
        self.adjoint = bool(adjoint)
        self.source = GaussianSource(1.0)

    def velocity(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x, t)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.velocity(x, t)

    def _check(self, x: torch.Tensor) -> None:
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(
                f"x has sample shape {tuple(x.shape[1:])}, the model was built for {self.data_shape}"
            )
        check_finite(x, "x")

    def loss(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """NLL per dimension (nats) through the solver, plus the kinetic penalty."""
        x, _ = split_batch(batch)
        self._check(x)
        res = log_prob_ode(
            self.velocity,
            self.source.log_prob,
            x,
            self.solver,
            TimeGrid.uniform(self.steps, 1.0, 0.0),
            self.divergence,
            1,
            generator=generator,
            create_graph=not self.adjoint,
            kinetic=self.kinetic > 0,
            adjoint_params=tuple(self.net.parameters()) if self.adjoint else None,
        )
        d = math.prod(self.data_shape)
        nll = -res.log_prob.mean() / d
        out = {"nll": nll.detach()}
        loss = nll
        if res.kinetic is not None:
            ke = res.kinetic.mean() / d
            loss = loss + self.kinetic * ke
            out["kinetic"] = ke.detach()
        out["loss"] = loss
        return out

    def log_prob(
        self,
        x: torch.Tensor,
        solver: str | ODESolver = "rk4",
        steps: int = 100,
        divergence: str = "exact",
        n_probes: int = 1,
        generator: torch.Generator | None = None,
        **solver_options: Any,
    ) -> LogProbResult:
        """log p(x) for evaluation (exact divergence and finer steps by default)."""
        self._check(x)
        return log_prob_ode(
            self.velocity,
            self.source.log_prob,
            x,
            solver,
            TimeGrid.uniform(steps, 1.0, 0.0),
            divergence,
            n_probes,
            generator=generator,
            **solver_options,
        )

    def sample(
        self,
        n: int,
        solver: str | ODESolver = "rk4",
        grid: TimeGrid | int | None = None,
        generator: torch.Generator | None = None,
        y: Any = None,
        return_trajectory: bool = False,
        x0: torch.Tensor | None = None,
        sampler: str = "ode",
        steps: int | None = None,
        **options: Any,
    ) -> Any:
        """Integrate the flow from N(0, I) at t = 0 to t = 1 (``steps`` uniform steps, or ``grid``)."""
        if sampler != "ode":
            raise ValueError(f"sampler {sampler!r} is not available for CNF; valid samplers: ode")
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        param = next(self.parameters())
        shape = (n, *self.data_shape)
        z = x0 if x0 is not None else self.source.sample(shape, generator, param.dtype, param.device)
        grid = _steps_or_grid(steps, grid)
        return sample_ode(self.velocity, z, solver, grid, None, return_trajectory, **options)


@dataclass(kw_only=True)
class CNFConfig(FamilyConfig):
    """``model`` settings of a CNF trained by maximum likelihood (``model.family: cnf``)."""

    family: str = "cnf"
    cnf_steps: int = 8  # RK4 steps per maximum-likelihood training solve
    divergence: str = "hutchinson"  # training: hutchinson or exact
    kinetic: float = 0.0  # weight of the kinetic-energy regulariser
    cnf_adjoint: bool = False  # gradients by the adjoint ODE: memory constant in cnf_steps
    net: NetConfig = field(default_factory=NetConfig)  # velocity network

    def validate(self) -> None:
        super().validate()
        check_min("model.cnf_steps", self.cnf_steps, 1)
        check_min("model.kinetic", self.kinetic, 0.0)
        check_choice("model.divergence", self.divergence, ["hutchinson", "exact"])

    def build(self, data: DataInfo) -> nn.Module:
        net = build_time_network(self.family, self.net, data.shape, data.num_classes)
        return CNF(
            net,
            data.shape,
            steps=self.cnf_steps,
            divergence=self.divergence,
            kinetic=self.kinetic,
            adjoint=self.cnf_adjoint,
        )


register(Family("cnf", CNF, CNFConfig, predictions=("velocity",), has_log_prob=True, likelihood_trained=True))
