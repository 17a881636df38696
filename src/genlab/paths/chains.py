"""The discrete noising chains of NCSN and DDPM, and their limits: the VE and VP SDEs.

Score-SDE time tau (data at tau = 0), N steps of size 1 / N, tau_i = i / N.

NCSN (Song & Ermon 2019) perturbs data at noise levels sigma_0 < sigma_1 < ... < sigma_N. As
a Markov chain (Song et al. 2021, Eq. 8):

    x_i = x_{i-1} + sqrt(sigma_i^2 - sigma_{i-1}^2) z_{i-1},       z ~ N(0, I).

With sigma_i = sigma(tau_i) of :class:`~genlab.paths.sde.VESDE`, the increment's variance is
sigma(tau)^2 - sigma(tau - 1/N)^2 = g(tau)^2 / N + O(1 / N^2): the chain is the Euler-Maruyama
discretisation of dx = sqrt(d sigma^2 / dtau) dw. Its kernel telescopes:
x_i | x_0 ~ N(x_0, (sigma_i^2 - sigma_0^2) I), the VE SDE's kernel at tau_i for every N.

DDPM (Ho et al. 2020) with beta_i = beta(tau_i) / N, beta(tau) the VP SDE's linear rate
(Song et al. 2021, Eq. 10):

    x_i = sqrt(1 - beta_i) x_{i-1} + sqrt(beta_i) z_{i-1}.

Its kernel is N(sqrt(abar_i) x_0, (1 - abar_i) I), abar_i = prod_{j <= i} (1 - beta_j). Since
log(1 - beta / N) = -beta / N + O(1 / N^2) and the right Riemann sum of beta is within O(1 / N)
of its integral, abar_i -> exp(-int_0^tau_i beta) at rate O(1 / N): the VP SDE's kernel
dx = -beta x / 2 dtau + sqrt(beta) dw. The tests fit that rate.
"""

from __future__ import annotations

import math

import torch

from genlab._validate import check_positive_int
from genlab.paths.sde import VESDE, VPSDE

__all__ = ["DDPMChain", "NCSNChain"]


def _grid(chain: str, sde: object, kind: type, num_steps: object) -> torch.Tensor:
    """Check a chain's SDE and step count; its levels tau_i = i / N, i = 0..N (float64)."""
    if not isinstance(sde, kind):
        raise ValueError(f"{chain} needs a {kind.__name__} (its limit), got {type(sde).__name__}")
    n = check_positive_int(num_steps, "num_steps")
    return torch.arange(n + 1, dtype=torch.float64) / n


class NCSNChain:
    """NCSN's noising chain on the N + 1 levels sigma_i = sigma(i / N) of a VE SDE.

    >>> chain = NCSNChain(VESDE(0.01, 50.0), 10)
    >>> round(float(chain.sigmas[-1]), 6)
    50.0
    """

    def __init__(self, sde: VESDE, num_steps: int) -> None:
        tau = _grid("NCSNChain", sde, VESDE, num_steps)
        self.sde, self.num_steps = sde, len(tau) - 1
        self.sigmas = sde.sigma(tau)  # (N + 1,), sigma_0 = sigma_min

    def increment_std(self, i: int) -> float:
        """sqrt(sigma_i^2 - sigma_{i-1}^2), the std of step i (1 <= i <= N)."""
        s = self.sigmas
        return math.sqrt(float(s[i] ** 2 - s[i - 1] ** 2))

    def step(self, x: torch.Tensor, i: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """x_{i-1} -> x_i."""
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return x + self.increment_std(i) * z

    def kernel(self, i: int) -> tuple[float, float]:
        """(mean coefficient, std) of x_i | x_0, accumulated step by step along the chain."""
        var = 0.0
        for j in range(1, i + 1):
            var += self.increment_std(j) ** 2
        return 1.0, math.sqrt(var)


class DDPMChain:
    """DDPM's noising chain with beta_i = beta(i / N) / N, beta the rate of a VP SDE.

    >>> chain = DDPMChain(VPSDE(0.1, 20.0), 1000)
    >>> round(float(chain.betas[1]), 6)
    0.00012
    """

    def __init__(self, sde: VPSDE, num_steps: int) -> None:
        tau = _grid("DDPMChain", sde, VPSDE, num_steps)
        self.sde, self.num_steps = sde, len(tau) - 1
        betas = sde.beta(tau) / self.num_steps
        if float(betas.max()) >= 1.0:
            raise ValueError(
                f"num_steps={self.num_steps} gives beta_i = beta(tau) / N >= 1 (beta_max = {sde.beta_max}); "
                "use more steps"
            )
        betas[0] = 0.0  # a placeholder, so that betas[i] is beta_i
        self.betas = betas

    def step(self, x: torch.Tensor, i: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """x_{i-1} -> x_i."""
        beta = float(self.betas[i])
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return math.sqrt(1.0 - beta) * x + math.sqrt(beta) * z

    def kernel(self, i: int) -> tuple[float, float]:
        """(mean coefficient, std) of x_i | x_0, accumulated step by step along the chain:
        m_i = sqrt(1 - beta_i) m_{i-1}, v_i = (1 - beta_i) v_{i-1} + beta_i."""
        m, v = 1.0, 0.0
        for j in range(1, i + 1):
            beta = float(self.betas[j])
            m, v = math.sqrt(1.0 - beta) * m, (1.0 - beta) * v + beta
        return m, math.sqrt(v)
