"""Samplers that step between noise levels of a Gaussian path: DDPM, DDIM, DPM-Solver++.

All step forwards in flow-matching time (t = 0 noise, t = 1 data) using the data and noise
predictions x1_hat, x0_hat of a :class:`PredictionField`.

* DDPM ancestral sampling (Ho et al. 2020, Algorithm 2), on the discrete DDPM schedule:
  x_{k-1} = (x_k - beta_k / sqrt(1 - alpha_bar_k) eps_hat) / sqrt(1 - beta_k) + sqrt(beta_k) z.
* DDIM (Song, Meng & Ermon 2021), variance-preserving paths, from t to s > t:
  x_s = alpha_s x1_hat + sqrt(sigma_s^2 - c^2) x0_hat + c z,
  c = eta (sigma_s / sigma_t) sqrt(1 - alpha_t^2 / alpha_s^2); eta = 0 is deterministic.
* DPM-Solver++(2M) (Lu et al. 2022), any Gaussian path, with lambda = log(alpha / sigma),
  h_i = lambda_{i+1} - lambda_i, r_i = h_{i-1} / h_i:
  x_{i+1} = (sigma_{i+1} / sigma_i) x_i + alpha_{i+1} (1 - e^{-h_i}) D_i,
  D_i = (1 + 1 / (2 r_i)) x1_hat_i - x1_hat_{i-1} / (2 r_i)  (first and last steps, and
  infinite h: D_i = x1_hat_i, which is DDIM with eta = 0; the first-order last step is
  Lu et al.'s "lower order final", stable when sigma_end is tiny). e^{-h} is formed as a
  ratio, so alpha = 0 at t = 0 or sigma = 0 at t = 1 are handled exactly.
"""

from __future__ import annotations

import math

import torch

from genlab.paths import DDPMSchedule, Prediction, Schedule
from genlab.samplers.field import PredictionField
from genlab.solvers import TimeGrid
from genlab.solvers.grids import as_grid

#: tolerance on |alpha^2 + sigma^2 - 1| for a path to count as variance preserving
VP_TOLERANCE = 1e-4


def is_variance_preserving(schedule: Schedule) -> bool:
    """alpha_t^2 + sigma_t^2 = 1 on [0, 1] (VP, cosine, DDPM paths)."""
    t = torch.linspace(0.0, 1.0, 21, dtype=torch.float64)
    v = schedule.values(t)
    return bool(((v.alpha**2 + v.sigma**2 - 1).abs() < VP_TOLERANCE).all())


def _require_vp(schedule: Schedule, what: str) -> None:
    if not is_variance_preserving(schedule):
        raise ValueError(
            f"{what} needs a variance-preserving path (vp, cosine, ddpm, sde-vp); "
            f"got {schedule.name}: use the ode, dpm or extension sampler instead"
        )


def _coef(schedule: Schedule, t: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    v = schedule.values(t.to(torch.float64).reshape(()))
    return v.alpha.to(x.dtype), v.sigma.to(x.dtype)


def _tb(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return t.to(x.dtype).expand(x.shape[0])


def ddim(
    field: PredictionField,
    x_init: torch.Tensor,
    grid: TimeGrid | int,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DDIM over ``grid`` (t increasing); eta = 0 deterministic, eta = 1 DDPM-like noise."""
    schedule = field.path.schedule
    _require_vp(schedule, "DDIM")
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    grid = as_grid(grid)
    times = grid.times
    x = x_init
    with torch.no_grad():
        for i in range(grid.steps):
            t, s = times[i], times[i + 1]
            a_t, s_t = _coef(schedule, t, x)
            a_s, s_s = _coef(schedule, s, x)
            out = field.raw(x, _tb(t, x))
            x1 = field.path.convert(out, x, _tb(t, x), field.prediction, Prediction.DATA)
            x0 = field.path.convert(out, x, _tb(t, x), field.prediction, Prediction.NOISE)
            c = eta * (s_s / s_t) * torch.sqrt((1 - a_t**2 / a_s**2).clamp_min(0.0))
            x = a_s * x1 + torch.sqrt((s_s**2 - c**2).clamp_min(0.0)) * x0
            if eta > 0 and i < grid.steps - 1:
                x = x + c * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return x


def ddpm_ancestral(
    field: PredictionField,
    x_init: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The DDPM sampling loop over all T steps of the discrete schedule (T network calls)."""
    schedule = field.path.schedule
    if not isinstance(schedule, DDPMSchedule):
        raise ValueError(f"the ddpm sampler needs the discrete DDPM schedule, got {schedule.name}; use ddim")
    T = schedule.num_steps
    x = x_init
    with torch.no_grad():
        for k in range(T, 0, -1):
            beta = float(schedule.betas[k])
            ab = float(torch.exp(schedule.log_alpha_bar[k]))
            eps = field.noise(x, _tb(schedule.time_of_step(k), x))
            x = (x - beta / math.sqrt(1 - ab) * eps) / math.sqrt(1 - beta)
            if k > 1:
                x = x + math.sqrt(beta) * torch.randn(
                    x.shape, generator=generator, dtype=x.dtype, device=x.device
                )
    return x


def ddpm_grid(schedule: DDPMSchedule, steps: int) -> TimeGrid:
    """``steps`` evenly spaced integer steps from k = T down to k = 0, as times."""
    ks = torch.linspace(schedule.num_steps, 0, steps + 1, dtype=torch.float64).round()
    return TimeGrid(schedule.time_of_step(ks))


def dpm_solver_pp(field: PredictionField, x_init: torch.Tensor, grid: TimeGrid | int) -> torch.Tensor:
    """DPM-Solver++(2M): second-order multistep on the data prediction; NFE = grid.steps."""
    schedule = field.path.schedule
    grid = as_grid(grid)
    times = grid.times
    x = x_init
    prev_d: torch.Tensor | None = None
    prev_h = math.inf
    with torch.no_grad():
        for i in range(grid.steps):
            t, s = times[i], times[i + 1]
            a_t, s_t = _coef(schedule, t, x)
            a_s, s_s = _coef(schedule, s, x)
            d = field.data(x, _tb(t, x))
            # e^{-h} = (alpha_t sigma_s) / (sigma_t alpha_s), exactly 0 when alpha_t or sigma_s is 0
            em = (a_t * s_s) / (s_t * a_s)
            h = -math.log(float(em)) if float(em) > 0 else math.inf
            last = i == grid.steps - 1  # "lower order final": h is large at the last step
            if prev_d is None or last or not math.isfinite(h) or not math.isfinite(prev_h):
                d_eff = d
            else:
                r = prev_h / h
                d_eff = (1 + 1 / (2 * r)) * d - prev_d / (2 * r)
            x = (s_s / s_t) * x + a_s * (1 - em) * d_eff
            prev_d, prev_h = d, h
    return x


def logsnr_grid(schedule: Schedule, steps: int, t0: float, t1: float) -> TimeGrid:
    """``steps`` intervals uniform in lambda = log(alpha / sigma) between t0 and t1 (finite
    lambda at both ends), found by bisection on the monotone schedule."""

    def lam(t: torch.Tensor) -> torch.Tensor:
        v = schedule.values(t)
        return torch.log(v.alpha) - torch.log(v.sigma)

    ends = torch.tensor([t0, t1], dtype=torch.float64)
    l0, l1 = lam(ends)
    if not (torch.isfinite(l0) and torch.isfinite(l1)):
        raise ValueError("logsnr_grid needs alpha > 0 and sigma > 0 at both ends; move t0 / t1 inside (0, 1)")
    targets = torch.linspace(float(l0), float(l1), steps + 1, dtype=torch.float64)
    lo = torch.full_like(targets, t0)
    hi = torch.full_like(targets, t1)
    for _ in range(60):  # bisection to ~1e-18 relative
        mid = 0.5 * (lo + hi)
        below = lam(mid) < targets
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    ts = 0.5 * (lo + hi)
    ts[0], ts[-1] = t0, t1
    return TimeGrid(ts)
