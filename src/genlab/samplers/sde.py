"""Stochastic and ODE samplers for diffusion models and the SDE extension trick.

All samplers run forwards in flow-matching time t (t = 0 prior/noise, t = 1 data); the
forward SDE is evaluated at tau = flip_time(t). With s = grad log p_t:

* reverse SDE, written forwards in t:   dx = [-f(x, tau) + g(tau)^2 s] dt + g(tau) dW
* probability-flow ODE:                 dx/dt = -f(x, tau) + g(tau)^2 s / 2
* SDE extension trick (any sigma_t >= 0, any Gaussian path with velocity u_t):
                                        dx = [u_t(x) + sigma_t^2 s / 2] dt + sigma_t dW
  For the path of a forward SDE, u_t is the PF-ODE drift, and sigma_t = g(1 - t) gives back
  the reverse SDE exactly: diffusion and flow matching are one object in two parameterisations.
* predictor-corrector (Song et al. 2021, Algorithm in their appendix G): at each time a
  Langevin corrector x <- x + e s + sqrt(2 e) z with e = 2 a (snr |z| / |s|)^2 (batch-mean
  norms; for VP a = (alpha_t / alpha_{t+h})^2, the 1 - beta_i of the discrete chain, else 1),
  then an Euler-Maruyama predictor step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from genlab.paths.sde import ForwardSDE, flip_time
from genlab.samplers.field import PredictionField, batch_time
from genlab.solvers import ODESolution, ODESolver, TimeGrid, integrate
from genlab.solvers.sde import SDESolution, euler_maruyama

#: diffusion samplers stop at t = 1 - SAMPLE_T_EPS (tau = 1e-3, as in Song et al.) where
#: the kernel std is small but the score still finite
SAMPLE_T_EPS = 1e-3


def sampling_grid(steps: int | TimeGrid, t_end: float = 1.0 - SAMPLE_T_EPS) -> TimeGrid:
    """Uniform grid from t = 0 (prior) to t_end; a TimeGrid is returned unchanged."""
    if isinstance(steps, TimeGrid):
        return steps
    return TimeGrid.uniform(steps, 0.0, t_end)


def _tau(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return flip_time(batch_time(t, x))


TauDrift = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (x, tau, score)
Field = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (t, x) for the solvers


def _in_flow_time(drift: TauDrift, field: PredictionField) -> Field:
    """A drift written in tau (dtau < 0 towards the data) as a field forwards in t = 1 - tau:
    dx/dt = -drift(x, tau, s(x, t)), with the model's score s."""

    def f(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        tb = batch_time(t, x)
        return -drift(x, flip_time(tb), field.score(x, tb))

    return f


def reverse_sde_drift(sde: ForwardSDE, field: PredictionField) -> Field:
    """b(t, x) = -f(x, tau) + g(tau)^2 s(x, t)."""
    return _in_flow_time(sde.reverse_drift, field)


def pf_ode_velocity(sde: ForwardSDE, field: PredictionField) -> Field:
    """v(t, x) = -f(x, tau) + g(tau)^2 s(x, t) / 2 (the probability-flow ODE in t)."""
    return _in_flow_time(sde.pf_ode_drift, field)


def sample_reverse_sde(
    sde: ForwardSDE,
    field: PredictionField,
    x_init: torch.Tensor,
    steps: int | TimeGrid,
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
) -> SDESolution:
    """Euler-Maruyama on the reverse SDE from the prior (t = 0) to t = 1 - SAMPLE_T_EPS
    (``steps`` uniform steps, or the given TimeGrid)."""

    def g(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return sde.diffusion(_tau(t, x))

    with torch.no_grad():
        return euler_maruyama(
            reverse_sde_drift(sde, field),
            g,
            x_init,
            sampling_grid(steps),
            generator,
            return_trajectory,
            noise_last_step=False,
        )


def sample_pf_ode(
    sde: ForwardSDE,
    field: PredictionField,
    x_init: torch.Tensor,
    solver: str | ODESolver = "rk4",
    steps: int | TimeGrid = 100,
    return_trajectory: bool = False,
    **solver_options: Any,
) -> ODESolution:
    """Integrate the probability-flow ODE from the prior to t = 1 - SAMPLE_T_EPS
    (``steps`` uniform steps, or the given TimeGrid)."""
    with torch.no_grad():
        return integrate(
            pf_ode_velocity(sde, field),
            x_init,
            sampling_grid(steps),
            solver,
            return_trajectory,
            **solver_options,
        )


def _mean_norm(v: torch.Tensor) -> torch.Tensor:
    return v.flatten(1).norm(dim=1).mean()


def langevin_corrector_step(
    x: torch.Tensor,
    score: torch.Tensor,
    snr: float,
    alpha: torch.Tensor | float,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """x + e s + sqrt(2 e) z with e = 2 alpha (snr |z| / |s|)^2.

    The norms are batch means of per-sample norms (as in Song et al.'s code): in low
    dimension a per-sample |s| can be ~0 near a mode and would make e explode.
    """
    z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    step = 2 * alpha * (snr * _mean_norm(z) / _mean_norm(score).clamp_min(1e-12)) ** 2
    return x + step * score + torch.sqrt(2 * step) * z


def sample_pc(
    sde: ForwardSDE,
    field: PredictionField,
    x_init: torch.Tensor,
    steps: int | TimeGrid,
    snr: float = 0.16,
    n_corrector: int = 1,
    generator: torch.Generator | None = None,
) -> SDESolution:
    """Predictor-corrector sampling: Langevin corrector(s), then a reverse-SDE EM predictor.

    The last predictor step returns its mean (no noise), as in Song et al.
    """
    if snr <= 0 or n_corrector < 0:
        raise ValueError(f"snr must be > 0 and n_corrector >= 0, got snr={snr}, n_corrector={n_corrector}")
    grid = sampling_grid(steps)
    times = grid.times.to(dtype=x_init.dtype, device=x_init.device)
    times64 = grid.times.to(torch.float64)  # on the CPU: the scalars below need no device sync
    drift = reverse_sde_drift(sde, field)
    x, nfe = x_init, 0
    with torch.no_grad():
        for i in range(grid.steps):
            t, h = times[i], times[i + 1] - times[i]
            tb = batch_time(t, x)
            tau = flip_time(tb)
            alpha: torch.Tensor | float = 1.0
            if sde.variance_preserving:  # Song et al.'s alpha_i = 1 - beta_i of the discrete chain
                sv = field.path.schedule.values(times64[i : i + 2])
                alpha = float((sv.alpha[0] / sv.alpha[1]) ** 2)
            for _ in range(n_corrector):
                x = langevin_corrector_step(x, field.score(x, tb), snr, alpha, generator)
                nfe += 1
            x_mean = x + drift(t, x) * h
            nfe += 1
            if i < grid.steps - 1:
                z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
                g = sde.diffusion(tau).reshape((-1,) + (1,) * (x.dim() - 1))
                x = x_mean + g * h.abs().sqrt() * z
            else:
                x = x_mean
    return SDESolution(x=x, times=times, trajectory=None, nfe=nfe)


NoiseSchedule = float | Callable[[torch.Tensor], torch.Tensor]


def sample_extension(
    field: PredictionField,
    x_init: torch.Tensor,
    noise: NoiseSchedule,
    steps: int | TimeGrid,
    generator: torch.Generator | None = None,
    t_end: float = 1.0 - SAMPLE_T_EPS,
    return_trajectory: bool = False,
) -> SDESolution:
    """The SDE extension trick: dx = [u_t + sigma_t^2 s_t / 2] dt + sigma_t dW.

    ``noise`` is sigma_t: a constant >= 0 or a function of t (B,) -> (B,). sigma_t = 0 is the
    ODE; any sigma_t keeps the marginals p_t of the path (for the exact u_t and s_t).
    ``steps`` uniform steps on [0, t_end], or a TimeGrid.
    """
    if not callable(noise) and (not isinstance(noise, (int, float)) or noise < 0):
        raise ValueError(f"noise must be a number >= 0 or a function of t, got {noise!r}")

    def sigma(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        tb = batch_time(t, x)
        return noise(tb) if callable(noise) else torch.full_like(tb, float(noise))

    def drift(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        tb = batch_time(t, x)
        out = field.raw(x, tb)
        v = field.path.convert(out, x, tb, field.prediction, "velocity")
        s = field.path.convert(out, x, tb, field.prediction, "score")
        sig = sigma(t, x).reshape((-1,) + (1,) * (x.dim() - 1))
        return v + 0.5 * sig**2 * s

    with torch.no_grad():
        return euler_maruyama(
            drift,
            sigma,
            x_init,
            sampling_grid(steps, t_end),
            generator,
            return_trajectory,
            noise_last_step=False,
        )
