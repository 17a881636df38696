"""Forward diffusion SDEs in the score-SDE convention, and their bridge to Gaussian paths.

This module is the one place where the score-SDE time tau (data at tau = 0, noise at
tau = 1) is used. An SDE

    dx = f(x, tau) dtau + g(tau) dw

with affine drift has a Gaussian perturbation kernel q(x(tau) | x(0)) = N(m(tau) x(0),
s(tau)^2 I). Everywhere else genlab uses flow-matching time t = 1 - tau, and
:func:`flip_time` is the single tested conversion; :class:`SDESchedule` re-expresses an SDE's
kernel as a :class:`~genlab.paths.schedules.Schedule` (alpha_t = m(1 - t), sigma_t =
s(1 - t)), so the Gaussian-path machinery (conversions, marginal fields, samplers) applies.

Given a score function s(x, tau) = grad log p_tau(x):

    reverse SDE:         dx = [f(x, tau) - g(tau)^2 s(x, tau)] dtau + g(tau) dw_bar,  dtau < 0
    probability flow:    dx/dtau = f(x, tau) - g(tau)^2 s(x, tau) / 2

References: Song et al. 2021, "Score-Based Generative Modeling through SDEs" (VE, VP and
sub-VP SDEs, Eqs. 9-11, 29-31 of their appendix B).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch

from genlab._validate import check_positive, choose
from genlab.paths.schedules import Schedule, ScheduleValues


def flip_time(s: torch.Tensor) -> torch.Tensor:
    """Convert between flow-matching time t and score-SDE time tau: tau = 1 - t (an involution).

    >>> flip_time(torch.tensor([0.0, 0.25, 1.0]))
    tensor([1.0000, 0.7500, 0.0000])
    """
    return 1.0 - s


@dataclass(frozen=True)
class Kernel:
    """q(x(tau) | x(0)) = N(mean_coef * x(0), std^2 I) and the tau-derivatives of both."""

    mean_coef: torch.Tensor  # m(tau)
    std: torch.Tensor  # s(tau)
    d_mean_coef: torch.Tensor  # dm / dtau
    d_std: torch.Tensor  # ds / dtau


class ForwardSDE(ABC):
    """A forward SDE with affine drift f(x, tau) = a(tau) x and scalar diffusion g(tau)."""

    name: str = ""
    #: whether alpha^2 + sigma^2 = 1 along the path (what DDPM / DDIM updates assume)
    variance_preserving: bool = False

    @abstractmethod
    def drift_coef(self, tau: torch.Tensor) -> torch.Tensor:
        """a(tau) in f(x, tau) = a(tau) x."""

    @abstractmethod
    def diffusion(self, tau: torch.Tensor) -> torch.Tensor:
        """g(tau)."""

    @abstractmethod
    def kernel(self, tau: torch.Tensor) -> Kernel:
        """Closed-form perturbation kernel at tau."""

    @abstractmethod
    def prior_std(self) -> float:
        """Standard deviation of the prior N(0, prior_std^2 I) that approximates q at tau = 1."""

    def drift(self, x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        """f(x, tau) for x (B, *D) and tau (B,) or scalar."""
        return _bcast(self.drift_coef(tau), x) * x

    def reverse_drift(self, x: torch.Tensor, tau: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
        """f - g^2 s: drift of the reverse SDE in tau (integrated with dtau < 0)."""
        return self.drift(x, tau) - _bcast(self.diffusion(tau) ** 2, x) * score

    def pf_ode_drift(self, x: torch.Tensor, tau: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
        """f - g^2 s / 2: the probability-flow ODE in tau, same marginals as the SDE."""
        return self.drift(x, tau) - 0.5 * _bcast(self.diffusion(tau) ** 2, x) * score

    def prior_sample(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Draw from the prior N(0, prior_std^2 I) on ``device`` (default: the generator's)."""
        if device is None and generator is not None:
            device = generator.device
        return self.prior_std() * torch.randn(shape, generator=generator, dtype=dtype, device=device)

    def prior_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log N(x; 0, prior_std^2 I) summed over non-batch dimensions -> (B,)."""
        var = self.prior_std() ** 2
        d = x[0].numel()
        return -0.5 * ((x**2).flatten(1).sum(1) / var + d * math.log(2 * math.pi * var))

    def config(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


def _bcast(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    v = torch.as_tensor(v, dtype=x.dtype, device=x.device)
    return v.reshape(v.shape + (1,) * (x.dim() - v.dim())) if v.dim() else v


class VESDE(ForwardSDE):
    """Variance exploding (NCSN): f = 0, g = sqrt(d sigma^2 / dtau), sigma geometric.

    sigma(tau) = sigma_min (sigma_max / sigma_min)^tau, so g(tau) = sigma(tau)
    sqrt(2 log(sigma_max / sigma_min)). The exact kernel from x(0) is N(x(0), (sigma(tau)^2 -
    sigma_min^2) I); the prior is N(0, sigma_max^2 I).
    """

    name = "ve"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0) -> None:
        check_positive(sigma_min, "sigma_min")
        check_positive(sigma_max, "sigma_max")
        if sigma_max <= sigma_min:
            raise ValueError(f"sigma_max ({sigma_max}) must exceed sigma_min ({sigma_min})")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.log_ratio = math.log(self.sigma_max / self.sigma_min)

    def sigma(self, tau: torch.Tensor) -> torch.Tensor:
        return self.sigma_min * torch.exp(tau * self.log_ratio)

    def drift_coef(self, tau: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(tau)

    def diffusion(self, tau: torch.Tensor) -> torch.Tensor:
        return self.sigma(tau) * math.sqrt(2 * self.log_ratio)

    def kernel(self, tau: torch.Tensor) -> Kernel:
        sig = self.sigma(tau)
        var = sig**2 - self.sigma_min**2
        std = torch.sqrt(var.clamp_min(0.0))
        d_var = 2 * self.log_ratio * sig**2
        d_std = d_var / (2 * std.clamp_min(1e-30))
        return Kernel(torch.ones_like(tau), std, torch.zeros_like(tau), d_std)

    def prior_std(self) -> float:
        return self.sigma_max

    def config(self) -> dict[str, Any]:
        return {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max}


class _BetaSDE(ForwardSDE):
    """Shared beta(tau) = beta_min + tau (beta_max - beta_min) and B(tau) = int_0^tau beta."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        check_positive(beta_min, "beta_min")
        check_positive(beta_max, "beta_max")
        if beta_max < beta_min:
            raise ValueError(f"beta_max ({beta_max}) must be >= beta_min ({beta_min})")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)

    def beta(self, tau: torch.Tensor) -> torch.Tensor:
        return self.beta_min + tau * (self.beta_max - self.beta_min)

    def beta_integral(self, tau: torch.Tensor) -> torch.Tensor:
        return self.beta_min * tau + 0.5 * (self.beta_max - self.beta_min) * tau**2

    def drift_coef(self, tau: torch.Tensor) -> torch.Tensor:
        return -0.5 * self.beta(tau)

    def prior_std(self) -> float:
        return 1.0

    def config(self) -> dict[str, Any]:
        return {"beta_min": self.beta_min, "beta_max": self.beta_max}


class VPSDE(_BetaSDE):
    """Variance preserving (DDPM): f = -beta x / 2, g = sqrt(beta).

    Kernel: m = exp(-B / 2), s = sqrt(1 - exp(-B)), B(tau) = int_0^tau beta; prior N(0, I).
    """

    name = "vp"
    variance_preserving = True

    def diffusion(self, tau: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(self.beta(tau))

    def kernel(self, tau: torch.Tensor) -> Kernel:
        b_int, beta = self.beta_integral(tau), self.beta(tau)
        m = torch.exp(-0.5 * b_int)
        var = -torch.expm1(-b_int)
        std = torch.sqrt(var)
        d_m = -0.5 * beta * m
        d_std = beta * torch.exp(-b_int) / (2 * std.clamp_min(1e-30))
        return Kernel(m, std, d_m, d_std)


class SubVPSDE(_BetaSDE):
    """sub-VP: f = -beta x / 2, g = sqrt(beta (1 - exp(-2 B))).

    Kernel: m = exp(-B / 2), s = 1 - exp(-B) (a variance below the VP one at every tau).
    """

    name = "subvp"

    def diffusion(self, tau: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(self.beta(tau) * -torch.expm1(-2 * self.beta_integral(tau)))

    def kernel(self, tau: torch.Tensor) -> Kernel:
        b_int, beta = self.beta_integral(tau), self.beta(tau)
        m = torch.exp(-0.5 * b_int)
        std = -torch.expm1(-b_int)
        return Kernel(m, std, -0.5 * beta * m, beta * torch.exp(-b_int))


SDES: dict[str, type[ForwardSDE]] = {cls.name: cls for cls in (VESDE, VPSDE, SubVPSDE)}


def make_sde(name: str, **kwargs: Any) -> ForwardSDE:
    """Build a forward SDE by name: ve, vp or subvp.

    >>> make_sde("vp").config()
    {'beta_min': 0.1, 'beta_max': 20.0}
    """
    cls = choose("sde", name, SDES)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"bad arguments {sorted(kwargs)} for sde {name!r}: {err}") from None


#: smallest tau at which an SDE's kernel is evaluated through SDESchedule: at tau = 0 the
#: kernel std is 0 and its tau-derivative infinite (VE, VP), like the VP schedule at t = 1.
SDE_TAU_MIN = 1e-5


class SDESchedule(Schedule):
    """The Gaussian path of a forward SDE in flow-matching time: alpha_t = m(1 - t),
    sigma_t = s(1 - t), d/dt = -d/dtau. Evaluated at tau >= SDE_TAU_MIN."""

    def __init__(self, sde: ForwardSDE) -> None:
        self.sde = sde
        self.name = f"sde-{sde.name}"

    def values(self, t: torch.Tensor) -> ScheduleValues:
        tau = flip_time(t).clamp(min=SDE_TAU_MIN)
        k = self.sde.kernel(tau)
        return ScheduleValues(alpha=k.mean_coef, sigma=k.std, d_alpha=-k.d_mean_coef, d_sigma=-k.d_std)

    def source_std(self) -> float:
        return self.sde.prior_std()

    def config(self) -> dict[str, Any]:
        return {"sde": self.sde.name, **self.sde.config()}
