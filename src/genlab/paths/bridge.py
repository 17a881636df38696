"""The Brownian-bridge path of Schrodinger-bridge flow matching (SB-CFM, Tong et al. 2023).

Given a pair (x_0, x_1), the Brownian bridge with diffusion sigma has the Gaussian marginals

    p_t(x | x_0, x_1) = N(x; mu_t, s_t^2 I),   mu_t = (1 - t) x_0 + t x_1,   s_t = sigma sqrt(t (1 - t)),

and the vector field that generates them (the theorem-form Gaussian field, conditioned on both
ends) is

    u_t(x | x_0, x_1) = (1 - 2t) / (2 t (1 - t)) (x - mu_t) + (x_1 - x_0).

With x = mu_t + s_t eps this is x_1 - x_0 + sigma (1 - 2t) / (2 sqrt(t (1 - t))) eps. Paired by
the entropic OT plan with eps = 2 sigma^2 (:class:`~genlab.paths.ot.SchrodingerBridgeCoupling`)
the marginals are those of the Schrodinger bridge between p_0 and p_1; the learned field is
integrated as an ODE. sigma -> 0 recovers the straight-line (linear path) interpolant.
"""

from __future__ import annotations

import torch

from genlab._validate import check_batch_time, check_finite, check_positive, check_same_shape, check_tensor
from genlab.paths.gaussian import GaussianPath, PathSample, _expand

#: training times are drawn in [BRIDGE_T_MIN, 1 - BRIDGE_T_MIN]: the bridge's field has a
#: 1 / sqrt(t (1 - t)) factor on the noise at both ends
BRIDGE_T_MIN = 1e-4


class BridgePath(GaussianPath):
    """Linear interpolation plus Brownian-bridge noise of scale ``sigma``.

    Its ``schedule`` is the linear one (alpha_t = t, sigma_t = 1 - t), which is what the
    velocity-space conversions and samplers see; the extra noise only enters training.

    >>> path = BridgePath(sigma=0.5)
    >>> x0, x1 = torch.zeros(1, 2), torch.ones(1, 2)
    >>> path.std(torch.tensor([0.5]))
    tensor([0.2500])
    """

    def __init__(self, sigma: float = 0.5) -> None:
        super().__init__("linear")
        self.sigma = check_positive(sigma, "sigma")

    def __repr__(self) -> str:
        return f"BridgePath(sigma={self.sigma})"

    def mean(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """mu_t = (1 - t) x_0 + t x_1, (B, *D)."""
        tt = _expand(t, x1)
        return (1.0 - tt) * x0 + tt * x1

    def std(self, t: torch.Tensor) -> torch.Tensor:
        """s_t = sigma sqrt(t (1 - t)), shape of t."""
        return self.sigma * torch.sqrt((t * (1.0 - t)).clamp_min(0.0))

    def sample(
        self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None
    ) -> PathSample:
        """x_t ~ N(mu_t, s_t^2 I) and its velocity target, for pairs (B, *D) and t (B,)."""
        check_tensor(x0, "x0")
        check_tensor(x1, "x1")
        check_same_shape(x0, x1, "x0", "x1")
        check_finite(x1, "x1")
        return self.interpolate(x0, x1, check_batch_time(t, x1), generator)

    def interpolate(
        self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None
    ) -> PathSample:
        """:meth:`sample` without checks; t should avoid the end points (BRIDGE_T_MIN)."""
        eps = torch.randn(x1.shape, generator=generator, dtype=x1.dtype, device=x1.device)
        t_c = t.clamp(BRIDGE_T_MIN, 1.0 - BRIDGE_T_MIN)
        root = _expand(torch.sqrt(t_c * (1.0 - t_c)), x1)
        tt = _expand(t_c, x1)
        xt = (1.0 - tt) * x0 + tt * x1 + self.sigma * root * eps
        dxt = x1 - x0 + self.sigma * (1.0 - 2.0 * tt) / (2.0 * root) * eps
        return PathSample(t=t_c, x0=x0, x1=x1, xt=xt, dxt=dxt)

    def conditional_velocity_bridge(
        self, x: torch.Tensor, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """u_t(x | x_0, x_1) = (1 - 2t) / (2 t (1 - t)) (x - mu_t) + x_1 - x_0 (t in (0, 1))."""
        tt = _expand(t, x)
        return (1.0 - 2.0 * tt) / (2.0 * tt * (1.0 - tt)) * (x - self.mean(x0, x1, t)) + x1 - x0
