"""How straight the paths of an ODE flow are: straightness, path energy and normalised energy.

All functions take a trajectory as the ODE solvers return it (``ODESolution.trajectory``
and ``ODESolution.times``):

    trajectory  (S+1, B, *D)  states x_k^i of B samples on the time grid,
    times       (S+1,)        t_0 < t_1 < ... < t_S, usually from 0 to 1,

and return a Python float computed in float64. The velocity on each grid interval is the
piecewise-constant finite difference

    d_k^i = (x_{k+1}^i - x_k^i) / dt_k,   dt_k = t_{k+1} - t_k,   k = 0 .. S-1,

and every state is flattened to a vector (so ||.|| is the Euclidean norm over all of *D).

Time is first mapped affinely onto [0, 1], s = (t - t_0) / (t_S - t_0); for the usual grid
from 0 to 1 this is the identity, and for a grid ending at 1 - eps it makes the numbers
comparable with the [0, 1] definitions of the papers.

- :func:`straightness` (Liu et al. 2022, rectified flow): the mean squared deviation of the
  velocity from the chord, zero iff every path is a straight line traversed at constant
  speed;
- :func:`path_energy`: the mean kinetic energy int ||dx/dt||^2 dt;
- :func:`normalized_path_energy` (Tong et al. 2023): the excess of the path energy over the
  squared 2-Wasserstein distance between the start and end samples, its lower bound.

>>> t = torch.linspace(0, 1, 5, dtype=torch.float64)
>>> x0, x1 = torch.zeros(3, 2, dtype=torch.float64), torch.ones(3, 2, dtype=torch.float64)
>>> traj = x0 + t[:, None, None] * (x1 - x0)  # straight, constant speed
>>> straightness(traj, t), path_energy(traj, t)
(0.0, 2.0)
"""

from __future__ import annotations

from typing import Any

import torch

from genlab.metrics.distances import wasserstein2

__all__ = ["straightness", "path_energy", "normalized_path_energy"]


# --------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------


def _checked(trajectory: Any, times: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate and return (x (S+1, B, F) float64, ds (S,) float64) on a float64 device."""
    if not isinstance(trajectory, torch.Tensor):
        raise ValueError(
            f"trajectory must be a torch.Tensor of shape (S+1, B, *D), got {type(trajectory).__name__}"
        )
    if trajectory.dim() < 3:
        raise ValueError(
            "trajectory must have shape (S+1, B, *D) with at least one data dimension, got "
            f"{tuple(trajectory.shape)}; for scalar states use trajectory[..., None]"
        )
    if trajectory.shape[0] < 2:
        raise ValueError(f"trajectory must hold at least 2 states (S+1 >= 2), got {trajectory.shape[0]}")
    if trajectory.shape[1] < 1 or trajectory[0, 0].numel() < 1:
        raise ValueError(
            f"trajectory must hold B >= 1 samples of non-empty states, got {tuple(trajectory.shape)}"
        )
    if not trajectory.is_floating_point():
        raise ValueError(f"trajectory must be a floating-point tensor, got {trajectory.dtype}")
    if not isinstance(times, torch.Tensor):
        try:
            times = torch.as_tensor(times, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"times must be a tensor of shape (S+1,), got {type(times).__name__}") from err
    n_states = trajectory.shape[0]
    if times.shape != (n_states,):
        raise ValueError(
            f"times must have shape (S+1,) = ({n_states},) to match trajectory {tuple(trajectory.shape)}, "
            f"got {tuple(times.shape)}"
        )
    if times.is_complex() or times.dtype == torch.bool:
        raise ValueError(f"times must be real numbers, got dtype {times.dtype}")
    # float64 on a device that supports it (MPS has no float64)
    device = trajectory.device if trajectory.device.type != "mps" else torch.device("cpu")
    t = times.detach().to(device=device, dtype=torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise ValueError("times contains non-finite value(s) (NaN or inf)")
    dt = t[1:] - t[:-1]  # (S,)
    if not bool((dt > 0).all()):
        k = int(torch.nonzero(dt <= 0)[0, 0])
        raise ValueError(
            f"times must be strictly increasing, got times[{k}] = {float(t[k]):.6g} >= "
            f"times[{k + 1}] = {float(t[k + 1]):.6g}"
        )
    x = trajectory.detach().to(device=device, dtype=torch.float64)
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"trajectory contains {bad} non-finite value(s) (NaN or inf)")
    ds = dt / (t[-1] - t[0])  # (S,) steps of the time rescaled to [0, 1]
    return x.reshape(n_states, x.shape[1], -1), ds


def _velocities(x: torch.Tensor, ds: torch.Tensor) -> torch.Tensor:
    """Piecewise-constant velocities d_k = (x_{k+1} - x_k) / ds_k, shape (S, B, F)."""
    return (x[1:] - x[:-1]) / ds[:, None, None]


# --------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------


def straightness(trajectory: torch.Tensor, times: torch.Tensor) -> float:
    """Straightness of the paths (Liu et al. 2022, "Flow straight and fast"; lower is straighter).

    The continuous definition for paths x^i(t), t in [0, 1], is

        S = E_i int_0^1 || (x^i(1) - x^i(0)) - dx^i/dt ||^2 dt,

    the mean squared deviation of the velocity from the chord. It is estimated with the
    piecewise-constant finite-difference velocity on each grid interval:

        S ~ (1/B) sum_i sum_k dt_k || (x_S^i - x_0^i) / (t_S - t_0) - (x_{k+1}^i - x_k^i) / dt_k ||^2,

    with times rescaled to [0, 1] first (see the module docstring). The estimate is zero iff
    every path, sampled on the grid, is a straight line traversed at constant speed; since
    sum_k dt_k d_k = x_S - x_0, it also equals ``path_energy - E_i ||x_S^i - x_0^i||^2``.

    Args:
        trajectory: (S+1, B, *D) states on the grid, S >= 1; any floating dtype.
        times: (S+1,) strictly increasing, finite times of the states.

    Returns:
        S >= 0 as a Python float (units of x squared).
    """
    x, ds = _checked(trajectory, times)
    chord = x[-1] - x[0]  # (B, F), the chord velocity on [0, 1]
    dev = chord[None] - _velocities(x, ds)  # (S, B, F)
    per_sample = (ds[:, None] * (dev**2).sum(-1)).sum(0)  # (B,)
    return float(per_sample.mean())


def path_energy(trajectory: torch.Tensor, times: torch.Tensor) -> float:
    """Mean kinetic energy of the paths, PE = E_i int_0^1 ||dx^i/dt||^2 dt.

    Estimated with the same piecewise-constant velocities as :func:`straightness` (times
    rescaled to [0, 1]):

        PE ~ (1/B) sum_i sum_k dt_k || (x_{k+1}^i - x_k^i) / dt_k ||^2.

    By Cauchy-Schwarz the estimate is at least E_i ||x_S^i - x_0^i||^2, with equality iff
    every path is straight and traversed at constant speed.

    Args:
        trajectory: (S+1, B, *D) states on the grid, S >= 1.
        times: (S+1,) strictly increasing, finite times of the states.

    Returns:
        PE >= 0 as a Python float.
    """
    x, ds = _checked(trajectory, times)
    v = _velocities(x, ds)  # (S, B, F)
    per_sample = (ds[:, None] * (v**2).sum(-1)).sum(0)  # (B,)
    return float(per_sample.mean())


def normalized_path_energy(trajectory: torch.Tensor, times: torch.Tensor, max_points: int = 5000) -> float:
    """Normalised path energy (Tong et al. 2023): how far the flow is from optimal transport.

        NPE = | PE - W2^2(p_0, p_1) | / W2^2(p_0, p_1),

    where PE is :func:`path_energy` and W2^2 is the exact squared 2-Wasserstein distance
    between the empirical measures of the start states x_0^i and the end states x_S^i
    (:func:`genlab.metrics.wasserstein2`, network simplex).

    By the Benamou-Brenier formula, W2^2(p_0, p_1) = min over flows from p_0 to p_1 of
    int_0^1 E ||dx/dt||^2 dt, so PE >= W2^2 in the continuous limit, with equality only for
    the optimal transport map traversed along straight lines at constant speed: NPE = 0
    means the flow *is* the OT map. The discrete estimate keeps the bound exactly, since
    PE >= E_i ||x_S^i - x_0^i||^2 (Cauchy-Schwarz) >= W2^2 (the pairing i -> i is one
    coupling of the two empirical measures); the absolute value only guards rounding.

    Args:
        trajectory: (S+1, B, *D) states on the grid, S >= 1, B <= ``max_points``.
        times: (S+1,) strictly increasing, finite times of the states.
        max_points: passed to :func:`wasserstein2` (exact OT costs O(B^2) memory and
            roughly cubic time in B).

    Returns:
        NPE >= 0 as a Python float (dimensionless).

    Raises:
        ValueError: on bad inputs, or when W2(p_0, p_1) = 0 (the flow moves nothing on
            average and NPE is undefined).
    """
    x, ds = _checked(trajectory, times)
    v = _velocities(x, ds)  # (S, B, F)
    pe = float((ds[:, None] * (v**2).sum(-1)).sum(0).mean())
    w2_sq = wasserstein2(x[0].cpu(), x[-1].cpu(), max_points=max_points) ** 2
    if w2_sq <= 0.0:
        raise ValueError(
            "normalized_path_energy is undefined: the start and end states of trajectory have the "
            "same empirical distribution (W2 = 0)"
        )
    return abs(pe - w2_sq) / w2_sq
