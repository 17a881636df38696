"""Score-based diffusion through SDEs (Song et al. 2021) and discrete DDPM (Ho et al. 2020).

Continuous-time denoising score matching on the kernel of a forward SDE: with
x_t = alpha_t x_1 + sigma_t x_0 (the kernel q(x(tau) | x(0)) at tau = 1 - t) the Gaussian score
target is grad log q = -x_0 / sigma_t and

    L(theta) = E_t E_{x_1, x_0} lambda(t) || s_theta(x_t, t) + x_0 / sigma_t ||^2
             = E_t E (lambda(t) / sigma_t^2) || x0_hat_theta(x_t, t) - x_0 ||^2,

computed in the second (noise) form, which stays finite as sigma_t -> 0. Weightings:
``sigma2`` lambda = sigma_t^2 (the usual epsilon loss), ``likelihood`` lambda = g(tau)^2
(Song et al. 2021b, bounds the NLL), ``none`` lambda = 1. The network may output the noise,
the score, the data or the velocity; the path converts.

DDPM: T = 1000 linear betas, the epsilon loss at integer steps k ~ U{1..T}, network time
t_k = 1 - k / T (the same convention as every other model).

What the network predicts decides how its errors reach the samples. The probability-flow
ODE of a VP path written with a noise predictor eps_hat runs, in genlab's time t (tau = 1 - t),
as dx/dt = (beta(tau) / 2) (x - eps_hat / sigma); an error delta of eps_hat enters dx/dt as
(beta / 2) delta / sigma, ten times over at the noisy end (beta_max = 20, sigma ~ 1), and an
early network's typical error, an eps_hat = (1 - c) eps shrunk toward the mean by a few
percent, gives dx/dt ~ (beta / 2) c x there: a steady exponential growth of x. On the digits
U-Net after 320 steps (45 s) this took samples to +-54 for pixels in [-1, 1] (FD 8700; the
same for DDPM), while the network's noise error was already small (MSE 0.003 at the noisy
end). A velocity predictor outputs dx/dt itself: its error enters the ODE one to one. With
``prediction: velocity`` the same 320 steps give FD 25.9 (flow matching 16.3); the loss is
unchanged (the output is converted to epsilon). The packaged digits configs predict the
velocity; the families keep Ho et al.'s epsilon as their default.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from genlab._validate import ConfigError, check_choice, check_min
from genlab.models.base import (
    Batch,
    GaussianPathConfig,
    GaussianPathModel,
    SampleRequest,
    Solution,
    _pop,
    _wrap,
    split_batch,
)
from genlab.models.nets import build_time_network
from genlab.models.registry import DataInfo, Family, register
from genlab.paths import DDPMSchedule, GaussianPath, Prediction
from genlab.paths.sde import SDE_TAU_MIN, SDES, VESDE, ForwardSDE, SDESchedule, flip_time, make_sde
from genlab.samplers.ddim import ddpm_ancestral, ddpm_grid
from genlab.samplers.langevin import annealed_langevin
from genlab.samplers.sde import SAMPLE_T_EPS, sample_pc, sample_pf_ode, sample_reverse_sde
from genlab.solvers import TimeGrid

WEIGHTINGS = ("sigma2", "likelihood", "none")


class Diffusion(GaussianPathModel):
    """A score model trained by continuous-time denoising score matching on a forward SDE.

    Args:
        net: module called as net(x, t[, y]) with t = 1 - tau in [0, 1].
        data_shape: shape of one sample.
        sde: the forward SDE (VESDE, VPSDE, SubVPSDE).
        prediction: network output: x0 (noise, default), score, x1 (data) or velocity.
        weighting: lambda(t): sigma2, likelihood or none.
        label_dropout: probability of training with the "no label" token (guidance).
    """

    SAMPLERS: ClassVar[tuple[str, ...]] = ("ode", "em", "pc", "ald", "extension", "ddim", "dpm")

    def __init__(
        self,
        net: nn.Module,
        data_shape: Sequence[int],
        sde: ForwardSDE,
        *,
        prediction: str | Prediction = Prediction.NOISE,
        weighting: str = "sigma2",
        label_dropout: float = 0.0,
    ) -> None:
        if not isinstance(sde, ForwardSDE):
            raise ValueError(f"sde must be a ForwardSDE (make_sde('vp')), got {type(sde).__name__}")
        super().__init__(net, data_shape, GaussianPath(SDESchedule(sde)), prediction, label_dropout)
        if weighting not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {weighting!r}; valid: {', '.join(WEIGHTINGS)}")
        self.sde, self.weighting = sde, weighting

    def weight(self, t: torch.Tensor) -> torch.Tensor:
        """lambda(t) / sigma_t^2, the weight of the noise-space loss (B,)."""
        if self.weighting == "sigma2":
            return torch.ones_like(t)
        sigma = self.path.schedule.values(t).sigma
        if self.weighting == "likelihood":
            return self.sde.diffusion(flip_time(t)) ** 2 / sigma**2
        return 1.0 / sigma**2

    def loss(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Weighted denoising score matching on one batch; returns {"loss": scalar}."""
        x1, y = split_batch(batch)
        self._check_data(x1)
        x0 = torch.randn(x1.shape, generator=generator, dtype=x1.dtype, device=x1.device)
        # tau ~ U[SDE_TAU_MIN, 1]  <=>  t ~ U[0, 1 - SDE_TAU_MIN]
        t = (1.0 - SDE_TAU_MIN) * torch.rand(
            x1.shape[0], generator=generator, dtype=x1.dtype, device=x1.device
        )
        ps = self.path.interpolate(x0, x1, t)
        y = self._train_labels(y, generator)
        noise_hat = self.path.convert(self._net(ps.xt, t, y), ps.xt, t, self.prediction, Prediction.NOISE)
        per_sample = ((noise_hat - x0) ** 2).flatten(1).mean(1)  # (B,)
        return {"loss": (self.weight(t) * per_sample).mean()}

    def t_end(self) -> float:
        """Samplers stop (and log-probs start) at tau = SAMPLE_T_EPS, as in Song et al."""
        return 1.0 - SAMPLE_T_EPS

    def _dispatch(self, sampler: str, req: SampleRequest) -> Solution:
        x0, grid, generator, options = req.x0, req.grid, req.generator, req.options
        field = self.field(req.y, req.guidance)
        if sampler == "ode":  # the probability-flow ODE of the SDE
            keep = req.return_trajectory
            return sample_pf_ode(self.sde, field, x0, req.solver, grid, keep, **options)
        if sampler == "em":
            _pop(options)
            return sample_reverse_sde(self.sde, field, x0, grid, generator, req.return_trajectory)
        if sampler == "pc":
            snr = options.pop("snr", 0.16)
            n_corrector = _pop(options, "n_corrector", 1)
            return sample_pc(self.sde, field, x0, grid, snr, n_corrector, generator)
        if sampler == "ald":  # the grid's step count is the number of noise levels
            if not isinstance(self.sde, VESDE):
                raise ValueError(
                    f"sampler 'ald' (annealed Langevin, NCSN) needs a VE SDE, got {self.sde.name}"
                )
            n_each = options.pop("n_steps_each", 10)
            eps = _pop(options, "eps", 2e-5)
            x = annealed_langevin(self.sde, field, x0, grid.steps, n_each, eps, generator)
            return _wrap(x, grid, grid.steps * n_each)
        return super()._dispatch(sampler, req)


class DDPM(GaussianPathModel):
    """Discrete-time DDPM on T linear-beta steps: the epsilon loss of Ho et al., with the
    network predicting epsilon (their choice, the default) or another path quantity converted
    to epsilon (``prediction``; see :class:`Diffusion` for why velocity trains faster).

    Args:
        net: module called as net(x, t[, y]) with t = 1 - k / T.
        data_shape: shape of one sample.
        num_steps: T (default 1000); beta_start, beta_end: the linear beta range.
        label_dropout: probability of training with the "no label" token (guidance).
        prediction: what the network outputs: noise (epsilon), velocity or data.
    """

    SAMPLERS: ClassVar[tuple[str, ...]] = ("ddpm", "ddim", "dpm", "ode", "extension")

    def __init__(
        self,
        net: nn.Module,
        data_shape: Sequence[int],
        *,
        num_steps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        label_dropout: float = 0.0,
        prediction: str | Prediction = Prediction.NOISE,
    ) -> None:
        self.schedule = DDPMSchedule(num_steps, beta_start, beta_end)
        super().__init__(net, data_shape, GaussianPath(self.schedule), prediction, label_dropout)
        if self.prediction == Prediction.SCORE:
            raise ValueError("DDPM trains noise, velocity or data predictions, not the score")

    def loss(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """E_k E ||eps_theta(x_k, t_k) - eps||^2 with k ~ U{1..T} (Ho et al., Algorithm 1);
        eps_theta is the network's output converted to epsilon when it predicts another quantity."""
        x1, y = split_batch(batch)
        self._check_data(x1)
        T = self.schedule.num_steps
        k = torch.randint(1, T + 1, (x1.shape[0],), generator=generator, device=x1.device)
        eps = torch.randn(x1.shape, generator=generator, dtype=x1.dtype, device=x1.device)
        t = self.schedule.time_of_step(k).to(x1.dtype)
        xt = self.path.interpolate(eps, x1, t).xt  # sqrt(ab_k) x1 + sqrt(1 - ab_k) eps
        y = self._train_labels(y, generator)
        eps_hat = self.path.convert(self._net(xt, t, y), xt, t, self.prediction, Prediction.NOISE)
        loss = ((eps_hat - eps) ** 2).flatten(1).mean(1).mean()
        return {"loss": loss}

    def t_end(self) -> float:
        """The first step k = 1, the last time the network was trained at."""
        return float(self.schedule.time_of_step(1))

    def default_grid(self, steps: int) -> TimeGrid:
        """``steps`` evenly spaced integer steps from k = T to k = 0."""
        return ddpm_grid(self.schedule, steps)

    def _dispatch(self, sampler: str, req: SampleRequest) -> Solution:
        x0, generator, options = req.x0, req.generator, req.options
        if sampler == "ddpm":  # always all T steps of the discrete chain; the grid is unused
            _pop(options)
            full = ddpm_grid(self.schedule, self.schedule.num_steps)
            x = ddpm_ancestral(self.field(req.y, req.guidance), x0, generator)
            return _wrap(x, full, self.schedule.num_steps)
        return super()._dispatch(sampler, req)


@dataclass(kw_only=True)
class DiffusionConfig(GaussianPathConfig):
    """``model`` settings of score diffusion through an SDE (``model.family: diffusion``)."""

    family: str = "diffusion"
    sde: str = "vp"  # ve, vp, subvp
    sde_args: dict[str, float] = field(default_factory=dict)  # e.g. {sigma_max: 10.0}
    weighting: str = "sigma2"  # lambda(t): sigma2, likelihood, none

    def validate(self) -> None:
        super().validate()
        check_choice("model.sde", self.sde, SDES)
        check_choice("model.weighting", self.weighting, WEIGHTINGS)

    def build(self, data: DataInfo) -> nn.Module:
        try:
            sde = make_sde(self.sde, **self.sde_args)
        except ValueError as err:
            raise ConfigError(f"model.sde_args: {err}") from None
        net = build_time_network(self.family, self.net, data.shape, data.num_classes)
        return Diffusion(
            net,
            data.shape,
            sde,
            prediction=self.prediction or "noise",
            weighting=self.weighting,
            label_dropout=self.label_dropout,
        )


@dataclass(kw_only=True)
class DDPMConfig(GaussianPathConfig):
    """``model`` settings of discrete DDPM (``model.family: ddpm``)."""

    family: str = "ddpm"
    num_steps: int = 1000  # number of discrete steps T

    def validate(self) -> None:
        super().validate()
        check_min("model.num_steps", self.num_steps, 2)

    def build(self, data: DataInfo) -> nn.Module:
        net = build_time_network(self.family, self.net, data.shape, data.num_classes)
        return DDPM(
            net,
            data.shape,
            num_steps=self.num_steps,
            label_dropout=self.label_dropout,
            prediction=self.prediction or "noise",
        )


register(
    Family(
        "diffusion",
        Diffusion,
        DiffusionConfig,
        predictions=("velocity", "noise", "data", "score"),
        has_log_prob=True,
    )
)
register(Family("ddpm", DDPM, DDPMConfig, predictions=("noise", "velocity", "data"), has_log_prob=True))
