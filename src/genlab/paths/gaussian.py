"""Gaussian conditional probability paths and every conversion between parameterisations.

For a schedule (alpha_t, sigma_t) the conditional path given a data point x_1 is

    p_t(x | x_1) = N(alpha_t x_1, sigma_t^2 I),   x_t = alpha_t x_1 + sigma_t x_0,

with conditional velocity (the lecture's theorem, mu_t = alpha_t x_1)

    u_t(x | x_1) = mu'_t + (sigma'_t / sigma_t)(x - mu_t)
                 = alpha'_t x_1 + (sigma'_t / sigma_t)(x - alpha_t x_1),

and conditional score  grad_x log p_t(x | x_1) = -(x - alpha_t x_1) / sigma_t^2.

A network may predict any of four quantities at (x, t); they determine each other through
the 2x2 linear system  [x; v] = [[alpha, sigma], [alpha', sigma']] [x_1; x_0]  and
score = -x_0 / sigma. :meth:`GaussianPath.convert` is the single place where these
conversions live (the marginal versions follow by taking E[. | x_t = x] of both sides).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from enum import Enum

import torch

from genlab._validate import check_batch_time, check_finite, check_same_shape, check_tensor
from genlab.paths.schedules import T_END_GAP, Schedule, ScheduleValues, make_schedule

#: Smallest magnitude a denominator (alpha_t, sigma_t or the determinant) may take in a
#: conversion; it keeps singular endpoints (x_1 from noise at t = 0, the score at t = 1)
#: finite instead of inf / NaN.
DIVISION_GUARD = 1e-8

__all__ = ["DIVISION_GUARD", "T_END_GAP", "GaussianPath", "PathSample", "Prediction"]


class Prediction(str, Enum):
    """What a network outputs at (x, t). The names cannot be misread: genlab's x_0 is the
    source (noise) and x_1 the data, the opposite of DDPM papers' x_0, so the old names
    ``x0`` / ``x1`` are read as ``noise`` / ``data`` with a deprecation warning."""

    VELOCITY = "velocity"  # u_t(x) = alpha' x_1 + sigma' x_0
    NOISE = "noise"  # the source sample x_0 (epsilon-prediction)
    DATA = "data"  # the data sample x_1 (denoiser, "x0-prediction" in DDPM papers)
    SCORE = "score"  # grad_x log p_t(x) = -x_0 / sigma_t

    @classmethod
    def parse(cls, value: str | Prediction) -> Prediction:
        """Accept an enum member, its value or an alias (epsilon, eps, v; the old x0, x1)."""
        if isinstance(value, Prediction):
            return value
        if isinstance(value, str) and value in DEPRECATED_PREDICTIONS:
            new = DEPRECATED_PREDICTIONS[value]
            warnings.warn(
                f"prediction {value!r} is now called {new!r} (genlab's x_0 is the noise, x_1 the data); "
                f"write {new!r}",
                FutureWarning,
                stacklevel=2,
            )
            value = new
        aliases = {"epsilon": "noise", "eps": "noise", "v": "velocity"}
        key = aliases.get(value, value) if isinstance(value, str) else value
        try:
            return cls(key)
        except ValueError:
            valid = [m.value for m in cls] + sorted(aliases)
            raise ValueError(f"unknown prediction {value!r}; valid: {', '.join(valid)}") from None


#: the old prediction names and the ones that replace them
DEPRECATED_PREDICTIONS = {"x0": "noise", "x1": "data"}


def _guard(den: torch.Tensor) -> torch.Tensor:
    """Keep |den| >= DIVISION_GUARD, preserving its sign (0 maps to +DIVISION_GUARD)."""
    sign = torch.where(den < 0, -torch.ones_like(den), torch.ones_like(den))
    return sign * den.abs().clamp_min(DIVISION_GUARD)


def _expand(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, ..., 1) so it broadcasts against x of shape (B, *D)."""
    return v.reshape(v.shape + (1,) * (x.dim() - v.dim()))


@dataclass(frozen=True)
class PathSample:
    """A draw from the conditional path, with its regression target."""

    t: torch.Tensor  # (B,) times
    x0: torch.Tensor  # (B, *D) source sample
    x1: torch.Tensor  # (B, *D) data sample
    xt: torch.Tensor  # (B, *D) alpha_t x1 + sigma_t x0
    dxt: torch.Tensor  # (B, *D) d x_t / dt = alpha'_t x1 + sigma'_t x0 (velocity target)


class GaussianPath:
    """The Gaussian conditional path x_t = alpha_t x_1 + sigma_t x_0 of a schedule.

    >>> path = GaussianPath("linear")
    >>> x0, x1 = torch.zeros(2, 3), torch.ones(2, 3)
    >>> path.sample(x0, x1, torch.tensor([0.25, 1.0])).xt[:, 0]
    tensor([0.2500, 1.0000])
    """

    def __init__(self, schedule: Schedule | str = "linear", **schedule_kwargs: float) -> None:
        if isinstance(schedule, str):
            schedule = make_schedule(schedule, **schedule_kwargs)
        elif schedule_kwargs:
            raise ValueError("schedule keyword arguments are only accepted with a schedule name")
        if not isinstance(schedule, Schedule):
            raise ValueError(f"schedule must be a Schedule or a name, got {type(schedule).__name__}")
        self.schedule = schedule

    def __repr__(self) -> str:
        return f"GaussianPath({self.schedule!r})"

    # -- coefficients -------------------------------------------------------------------
    def coefficients(self, t: torch.Tensor, x: torch.Tensor) -> ScheduleValues:
        """Schedule values at t (scalar or (B,)), reshaped to broadcast against x (B, *D)."""
        t = check_batch_time(t, x)
        sv = self.schedule.values(t)
        return ScheduleValues(*(_expand(v, x) for v in (sv.alpha, sv.sigma, sv.d_alpha, sv.d_sigma)))

    # -- sampling the conditional path ----------------------------------------------------
    def sample(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> PathSample:
        """Return x_t and its velocity target for paired x0, x1 of shape (B, *D), t (B,)."""
        check_tensor(x0, "x0")
        check_tensor(x1, "x1")
        check_same_shape(x0, x1, "x0", "x1")
        check_finite(x1, "x1")
        return self.interpolate(x0, x1, check_batch_time(t, x1))

    def interpolate(
        self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None
    ) -> PathSample:
        """:meth:`sample` without input checks, for training loops that validated already.

        x0, x1 (B, *D) of one shape and dtype; t (B,) in [0, 1]. Given the pair, x_t is
        deterministic here and ``generator`` is unused (the bridge path draws noise with it).
        """
        sv = self.schedule.values(t)
        alpha, sigma, d_alpha, d_sigma = (
            _expand(v, x1) for v in (sv.alpha, sv.sigma, sv.d_alpha, sv.d_sigma)
        )
        xt = alpha * x1 + sigma * x0  # (B, *D)
        dxt = d_alpha * x1 + d_sigma * x0  # (B, *D)
        return PathSample(t=t, x0=x0, x1=x1, xt=xt, dxt=dxt)

    def conditional_velocity(self, x: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """u_t(x | x_1) = alpha'_t x_1 + (sigma'_t / sigma_t)(x - alpha_t x_1)."""
        check_same_shape(x, x1, "x", "x1")
        c = self.coefficients(t, x)
        return c.d_alpha * x1 + c.d_sigma / _guard(c.sigma) * (x - c.alpha * x1)

    def conditional_score(self, x: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """grad_x log p_t(x | x_1) = -(x - alpha_t x_1) / sigma_t^2."""
        check_same_shape(x, x1, "x", "x1")
        c = self.coefficients(t, x)
        return -(x - c.alpha * x1) / _guard(c.sigma**2)

    def conditional_log_prob(self, x: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """log N(x; alpha_t x_1, sigma_t^2 I), summed over the non-batch dimensions -> (B,)."""
        check_same_shape(x, x1, "x", "x1")
        c = self.coefficients(t, x)
        var = _guard(c.sigma**2)
        d = x[0].numel()
        quad = ((x - c.alpha * x1) ** 2 / var).flatten(1).sum(1)
        log_var = torch.log(var).flatten(1)[:, 0]
        return -0.5 * (quad + d * (log_var + torch.log(torch.tensor(2 * torch.pi, dtype=x.dtype))))

    # -- conversions between parameterisations -------------------------------------------
    def convert(
        self,
        pred: torch.Tensor,
        x: torch.Tensor,
        t: torch.Tensor,
        src: str | Prediction,
        dst: str | Prediction,
    ) -> torch.Tensor:
        """Convert a prediction at (x, t) from parameterisation ``src`` to ``dst``.

        Both sides are linear in (x_1, x_0): recover the pair from ``src``, then form
        ``dst``. Shapes: pred and x (B, *D); t scalar or (B,).
        """
        src, dst = Prediction.parse(src), Prediction.parse(dst)
        check_same_shape(pred, x, "pred", "x")
        if src == dst:
            return pred
        c = self.coefficients(t, x)
        x0, x1 = self._to_pair(pred, x, c, src)
        if dst == Prediction.VELOCITY:
            return c.d_alpha * x1 + c.d_sigma * x0
        if dst == Prediction.NOISE:
            return x0
        if dst == Prediction.DATA:
            return x1
        return -x0 / _guard(c.sigma)

    @staticmethod
    def _to_pair(
        pred: torch.Tensor, x: torch.Tensor, c: ScheduleValues, src: Prediction
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_0, x_1) consistent with x = alpha x_1 + sigma x_0 and the prediction."""
        if src == Prediction.DATA:
            return (x - c.alpha * pred) / _guard(c.sigma), pred
        if src in (Prediction.NOISE, Prediction.SCORE):
            x0 = pred if src == Prediction.NOISE else -c.sigma * pred
            return x0, (x - c.sigma * x0) / _guard(c.alpha)
        # velocity: solve [[alpha, sigma], [alpha', sigma']] [x1; x0] = [x; v]
        det = _guard(c.alpha * c.d_sigma - c.sigma * c.d_alpha)
        x1 = (c.d_sigma * x - c.sigma * pred) / det
        x0 = (c.alpha * pred - c.d_alpha * x) / det
        return x0, x1
