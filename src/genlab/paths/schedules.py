"""Noise schedules for Gaussian probability paths.

A schedule gives the coefficients of the conditional path

    x_t = alpha_t x_1 + sigma_t x_0,     x_0 ~ N(0, I),  t in [0, 1],

with t = 0 the source (noise) and t = 1 the data, together with their time derivatives
d alpha_t / dt and d sigma_t / dt. Every schedule returns them as one
:class:`ScheduleValues`, shaped like the input ``t``.

References: Lipman et al. 2023 (Flow Matching, the sigma_min OT path and the VP/VE paths
written in flow-matching time); Song et al. 2021 (score SDEs); Nichol & Dhariwal 2021
(cosine schedule).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch

from genlab._validate import check_positive, check_time, choose

#: Gap kept below t = 1 where a schedule is singular: trainers draw t from
#: [0, 1 - T_END_GAP], and the VP schedule is evaluated at min(t, 1 - T_END_GAP) because
#: its sigma'_t = -alpha_t alpha'_t / sigma_t diverges at t = 1 (sigma_1 = 0).
T_END_GAP = 1e-5


@dataclass(frozen=True)
class ScheduleValues:
    """alpha_t, sigma_t and their derivatives, each shaped like ``t``."""

    alpha: torch.Tensor  # coefficient of the data x_1
    sigma: torch.Tensor  # coefficient of the noise x_0
    d_alpha: torch.Tensor  # d alpha_t / dt
    d_sigma: torch.Tensor  # d sigma_t / dt


class Schedule(ABC):
    """Base class: subclasses implement :meth:`values` for a tensor of times."""

    #: registry name, set on each subclass
    name: str = ""

    def __call__(self, t: torch.Tensor) -> ScheduleValues:
        """Return the schedule at times ``t`` (any shape, values in [0, 1])."""
        check_time(t, "t")
        return self.values(t)

    @abstractmethod
    def values(self, t: torch.Tensor) -> ScheduleValues:
        """Compute alpha, sigma and derivatives without validation (internal fast path)."""

    def source_std(self) -> float:
        """Standard deviation of the source N(0, sigma_0^2 I) the sampler starts from.

        sigma_0 = 1 for all flow-matching schedules; sigma_max for the VE path.
        """
        return float(self.values(torch.zeros((), dtype=torch.float64)).sigma)

    def config(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this schedule with :func:`make_schedule`."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class LinearSchedule(Schedule):
    """Linear ("conical", rectified-flow) path: alpha_t = t, sigma_t = 1 - t."""

    name = "linear"

    def values(self, t: torch.Tensor) -> ScheduleValues:
        one = torch.ones_like(t)
        return ScheduleValues(alpha=t, sigma=1 - t, d_alpha=one, d_sigma=-one)


class OTSchedule(Schedule):
    """Lipman et al.'s OT path: alpha_t = t, sigma_t = 1 - (1 - sigma_min) t.

    At t = 1 the conditional path is N(x_1, sigma_min^2 I) rather than a point mass.
    """

    name = "ot"

    def __init__(self, sigma_min: float = 1e-4) -> None:
        if not isinstance(sigma_min, (int, float)) or not 0.0 <= sigma_min < 1.0:
            raise ValueError(f"sigma_min must be in [0, 1), got {sigma_min!r}")
        self.sigma_min = float(sigma_min)

    def values(self, t: torch.Tensor) -> ScheduleValues:
        k = 1.0 - self.sigma_min
        one = torch.ones_like(t)
        return ScheduleValues(alpha=t, sigma=1 - k * t, d_alpha=one, d_sigma=-k * one)

    def config(self) -> dict[str, Any]:
        return {"sigma_min": self.sigma_min}


class VPSchedule(Schedule):
    """Variance-preserving (DDPM) path in flow-matching time.

    With beta linear in the score-SDE time s = 1 - t, i.e. in our time
    beta(t) = beta_min + (1 - t)(beta_max - beta_min), and
    T(t) = int_t^1 beta(r) dr = beta_min (1 - t) + (beta_max - beta_min)(1 - t)^2 / 2:

        alpha_t = exp(-T(t) / 2),          sigma_t = sqrt(1 - alpha_t^2),
        d alpha_t / dt = alpha_t beta(t) / 2,
        d sigma_t / dt = -alpha_t (d alpha_t / dt) / sigma_t.

    alpha_0 = exp(-(beta_min + beta_max) / 4) is small but not zero (6.6e-3 with the
    defaults), so p_0 is N(0, I) only approximately; sigma_1 = 0 makes d sigma / dt
    singular at t = 1; the schedule is therefore evaluated at min(t, 1 - T_END_GAP), where
    sigma = sqrt(1 - exp(-beta_min T_END_GAP)) ~ 1e-3: all four values stay finite and
    consistent with one another (they are the exact values at the clamped time).
    """

    name = "vp"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        check_positive(beta_min, "beta_min")
        check_positive(beta_max, "beta_max")
        if beta_max < beta_min:
            raise ValueError(f"beta_max ({beta_max}) must be >= beta_min ({beta_min})")
        self.beta_min = float(beta_min)
        self.beta_max = float(beta_max)

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        """beta(t) = beta_min + (1 - t)(beta_max - beta_min), in flow-matching time."""
        return self.beta_min + (1 - t) * (self.beta_max - self.beta_min)

    def values(self, t: torch.Tensor) -> ScheduleValues:
        t = t.clamp(max=1.0 - T_END_GAP)
        s = 1 - t
        integral = self.beta_min * s + 0.5 * (self.beta_max - self.beta_min) * s**2
        alpha = torch.exp(-0.5 * integral)
        # 1 - alpha^2 = -expm1(-integral): exact near t = 1 where alpha -> 1.
        sigma = torch.sqrt(-torch.expm1(-integral))
        d_alpha = 0.5 * self.beta(t) * alpha
        d_sigma = -alpha * d_alpha / sigma
        return ScheduleValues(alpha=alpha, sigma=sigma, d_alpha=d_alpha, d_sigma=d_sigma)

    def config(self) -> dict[str, Any]:
        return {"beta_min": self.beta_min, "beta_max": self.beta_max}


class VESchedule(Schedule):
    """Variance-exploding (NCSN) path: x_t = x_1 + sigma(1 - t) x_0.

    sigma(s) = sigma_min (sigma_max / sigma_min)^s is geometric in the score-SDE time
    s = 1 - t, so alpha_t = 1 and sigma_t = sigma_min (sigma_max / sigma_min)^(1 - t),
    d sigma_t / dt = -sigma_t log(sigma_max / sigma_min). The source is N(0, sigma_max^2 I)
    (the data mean is negligible against sigma_max), the end point N(x_1, sigma_min^2 I).
    """

    name = "ve"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0) -> None:
        check_positive(sigma_min, "sigma_min")
        check_positive(sigma_max, "sigma_max")
        if sigma_max <= sigma_min:
            raise ValueError(f"sigma_max ({sigma_max}) must exceed sigma_min ({sigma_min})")
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)

    def values(self, t: torch.Tensor) -> ScheduleValues:
        log_ratio = math.log(self.sigma_max / self.sigma_min)
        sigma = self.sigma_min * torch.exp((1 - t) * log_ratio)
        return ScheduleValues(
            alpha=torch.ones_like(t),
            sigma=sigma,
            d_alpha=torch.zeros_like(t),
            d_sigma=-log_ratio * sigma,
        )

    def config(self) -> dict[str, Any]:
        return {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max}


class CosineSchedule(Schedule):
    """Cosine path: alpha_t = sin(pi t / 2), sigma_t = cos(pi t / 2) (alpha^2 + sigma^2 = 1)."""

    name = "cosine"

    def values(self, t: torch.Tensor) -> ScheduleValues:
        half_pi = 0.5 * math.pi
        # cos(pi / 2) is -4.4e-8 in float32: clamp so sigma_1 is exactly 0, never negative
        sin, cos = torch.sin(half_pi * t), torch.cos(half_pi * t).clamp_min(0.0)
        return ScheduleValues(alpha=sin, sigma=cos, d_alpha=half_pi * cos, d_sigma=-half_pi * sin)


class PolynomialSchedule(Schedule):
    """Polynomial path: alpha_t = t^n, sigma_t = 1 - t^n (n = 1 is the linear path)."""

    name = "polynomial"

    def __init__(self, n: float = 2.0) -> None:
        if not isinstance(n, (int, float)) or not n >= 1.0:
            raise ValueError(f"n must be a number >= 1 (n < 1 has infinite alpha' at t = 0), got {n!r}")
        self.n = float(n)

    def values(self, t: torch.Tensor) -> ScheduleValues:
        alpha = t**self.n
        d_alpha = self.n * t ** (self.n - 1)
        return ScheduleValues(alpha=alpha, sigma=1 - alpha, d_alpha=d_alpha, d_sigma=-d_alpha)

    def config(self) -> dict[str, Any]:
        return {"n": self.n}


class DDPMSchedule(Schedule):
    """The discrete DDPM schedule (Ho et al. 2020) as a path in continuous time.

    Betas linear from beta_start to beta_end over T steps; alpha_bar_k = prod_{i <= k}
    (1 - beta_i), alpha_bar_0 = 1, q(x_k | x_0) = N(sqrt(alpha_bar_k) x_0, (1 - alpha_bar_k) I).
    Step k is flow-matching time t_k = 1 - k / T (k = T noise, k = 0 data). Between steps
    log alpha_bar is linear in k, so the schedule is exact at every integer step and
    continuous in between (DDIM / DPM-Solver can use any sub-grid). Like VP it is evaluated at
    min(t, 1 - T_END_GAP).
    """

    name = "ddpm"

    def __init__(self, num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> None:
        if not isinstance(num_steps, int) or num_steps < 2:
            raise ValueError(f"num_steps must be an integer >= 2, got {num_steps!r}")
        check_positive(beta_start, "beta_start")
        check_positive(beta_end, "beta_end")
        if not beta_start <= beta_end < 1.0:
            raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start} and {beta_end}")
        self.num_steps, self.beta_start, self.beta_end = (
            num_steps,
            float(beta_start),
            float(beta_end),
        )
        # index k = 0..T; betas[0] is a placeholder so betas[k] is beta_k
        betas = torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)
        self.betas = torch.cat([torch.zeros(1, dtype=torch.float64), betas])  # (T + 1,)
        self.log_alpha_bar = torch.cumsum(torch.log1p(-self.betas), 0)  # (T + 1,), [0] = 0

    def alpha_bar(self, k: torch.Tensor) -> torch.Tensor:
        """alpha_bar at integer steps k (long tensor)."""
        return torch.exp(self.log_alpha_bar[k])

    def time_of_step(self, k: torch.Tensor | int) -> torch.Tensor:
        """t_k = 1 - k / T."""
        return 1.0 - torch.as_tensor(k, dtype=torch.float64) / self.num_steps

    def values(self, t: torch.Tensor) -> ScheduleValues:
        t = t.clamp(max=1.0 - T_END_GAP)  # alpha_bar_0 = 1 makes sigma' singular at t = 1
        T = self.num_steps
        k = (1 - t) * T
        k0 = k.detach().floor().clamp(0, T - 1).long()
        table = self.log_alpha_bar.to(t)
        slope = table[k0 + 1] - table[k0]  # d log alpha_bar / dk on [k0, k0 + 1]
        log_ab = table[k0] + slope * (k - k0.to(t))
        alpha = torch.exp(0.5 * log_ab)
        sigma = torch.sqrt(-torch.expm1(log_ab))
        dlog_ab_dt = -T * slope
        d_alpha = 0.5 * dlog_ab_dt * alpha
        d_sigma = -torch.exp(log_ab) * dlog_ab_dt / (2 * sigma)
        return ScheduleValues(alpha=alpha, sigma=sigma, d_alpha=d_alpha, d_sigma=d_sigma)

    def config(self) -> dict[str, Any]:
        return {
            "num_steps": self.num_steps,
            "beta_start": self.beta_start,
            "beta_end": self.beta_end,
        }


SCHEDULES: dict[str, type[Schedule]] = {
    cls.name: cls
    for cls in (
        LinearSchedule,
        OTSchedule,
        VPSchedule,
        VESchedule,
        CosineSchedule,
        PolynomialSchedule,
        DDPMSchedule,
    )
}


def make_schedule(name: str, **kwargs: Any) -> Schedule:
    """Build a schedule by registry name; unknown names or arguments raise ValueError.

    >>> make_schedule("ot", sigma_min=0.01)
    OTSchedule(sigma_min=0.01)
    """
    cls = choose("schedule", name, SCHEDULES)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"bad arguments {sorted(kwargs)} for schedule {name!r}: {err}") from None
