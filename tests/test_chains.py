"""NCSN's and DDPM's discrete chains tend to the VE and VP SDEs (at the rate the module
states), and NCSN's loss over noise levels is denoising score matching (Vincent's identity)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genlab.models.ncsn import ncsn_loss
from genlab.paths.chains import DDPMChain, NCSNChain
from genlab.paths.sde import VESDE, VPSDE

D64 = torch.float64


def _slope(ns: list[int], errs: list[float]) -> float:
    return float(np.polyfit(np.log(ns), np.log(errs), 1)[0])


@pytest.mark.parametrize("n", [3, 40])
def test_ncsn_chain_kernel_is_the_ve_kernel_at_every_level(n: int) -> None:
    """The increments' variances telescope: x_i | x_0 ~ N(x_0, sigma_i^2 - sigma_0^2), the VE
    SDE's kernel at tau_i, for any number of steps."""
    sde = VESDE(0.01, 50.0)
    chain = NCSNChain(sde, n)
    for i in range(n + 1):
        k = sde.kernel(torch.tensor(i / n, dtype=D64))
        m, s = chain.kernel(i)
        assert m == float(k.mean_coef)
        assert s == pytest.approx(float(k.std), rel=1e-12, abs=1e-15)


def test_ncsn_chain_steps_are_euler_maruyama_steps_of_the_ve_sde_at_rate_one() -> None:
    """sigma_i^2 - sigma_{i-1}^2 = g(tau_i)^2 / N (1 + O(1 / N)): the largest relative gap
    over the levels halves when N doubles."""
    sde = VESDE(0.01, 50.0)
    ns, errs = [50, 100, 200, 400, 800], []
    for n in ns:
        chain = NCSNChain(sde, n)
        tau = torch.arange(1, n + 1, dtype=D64) / n
        em_var = sde.diffusion(tau) ** 2 / n
        inc_var = torch.tensor([chain.increment_std(i) ** 2 for i in range(1, n + 1)], dtype=D64)
        errs.append(float((inc_var / em_var - 1).abs().max()))
    # leading term: 1 - (1 - exp(-2 k / N)) / (2 k / N) = k / N + O(1 / N^2), k = log(sigma_max / sigma_min)
    assert errs[-1] * ns[-1] == pytest.approx(sde.log_ratio, rel=0.01)
    assert _slope(ns, errs) == pytest.approx(-1.0, abs=0.05)


@pytest.mark.parametrize("frac", [0.5, 1.0])
def test_ddpm_chain_kernel_tends_to_the_vp_kernel_at_rate_one(frac: float) -> None:
    """abar_i = prod (1 - beta(tau_j) / N) -> exp(-int_0^tau beta): the errors of the kernel's
    mean coefficient and std at tau = frac fall as 1 / N (fitted slope -1)."""
    sde = VPSDE(0.1, 20.0)
    k = sde.kernel(torch.tensor(frac, dtype=D64))
    ns, mean_errs, std_errs = [400, 800, 1600, 3200, 6400], [], []
    for n in ns:
        m, s = DDPMChain(sde, n).kernel(int(frac * n))
        mean_errs.append(abs(m - float(k.mean_coef)))
        std_errs.append(abs(s - float(k.std)))
    assert mean_errs[-1] < 0.05 * float(k.mean_coef)
    assert _slope(ns, mean_errs) == pytest.approx(-1.0, abs=0.05)
    assert _slope(ns, std_errs) == pytest.approx(-1.0, abs=0.05)


@pytest.mark.parametrize("which", ["ncsn", "ddpm"])
def test_running_the_chain_draws_from_its_kernel(which: str) -> None:
    """20 steps of ``step`` from x_0 = 1.5 (200000 paths): mean and std of x_20 match the
    chain's kernel within 5 standard errors."""
    n, paths, x0 = 20, 200_000, 1.5
    chain = NCSNChain(VESDE(0.1, 5.0), n) if which == "ncsn" else DDPMChain(VPSDE(0.1, 10.0), n)
    g = torch.Generator().manual_seed(0)
    x = torch.full((paths, 1), x0, dtype=D64)
    for i in range(1, n + 1):
        x = chain.step(x, i, g)
    m, s = chain.kernel(n)
    assert abs(float(x.mean()) - m * x0) < 5 * s / math.sqrt(paths)
    assert abs(float(x.std()) - s) < 5 * s / math.sqrt(2 * paths)


def test_chains_refuse_the_wrong_sde_and_too_few_ddpm_steps() -> None:
    with pytest.raises(ValueError, match="VESDE"):
        NCSNChain(VPSDE(), 10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="VPSDE"):
        DDPMChain(VESDE(), 10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="use more steps"):
        DDPMChain(VPSDE(0.1, 20.0), 10)
    with pytest.raises(ValueError, match="num_steps"):
        NCSNChain(VESDE(), 0)


# ------------------------------------------------------------------ NCSN's loss

MU, S2 = torch.tensor([1.0, -2.0], dtype=D64), 0.25  # data N(MU, S2 I)
SIGMAS = torch.tensor([2.0, 0.7, 0.2, 0.05], dtype=D64)


def _true_score(xt: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """grad log N(MU, (S2 + sigma^2) I) at xt, the score of the data perturbed at sigma."""
    return -(xt - MU) / (S2 + sigma[:, None] ** 2)


def _wrong_score(xt: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return _true_score(xt, sigma) + 0.4 * torch.tanh(xt) - 0.1


def _draw(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = MU + math.sqrt(S2) * torch.randn(n, 2, generator=g, dtype=D64)
    level = torch.randint(len(SIGMAS), (n,), generator=g)
    return x, level


def test_ncsn_loss_at_the_true_score_is_its_closed_form_minimum() -> None:
    """With lambda = sigma^2: lambda l(s*) = 1/2 E||(S2 z - sigma (x - mu)) / (S2 + sigma^2)||^2
    = D S2 / (2 (S2 + sigma^2)) per level, averaged over the levels."""
    n = 400_000
    x, level = _draw(n, 1)
    per = ncsn_loss(_true_score, x, SIGMAS, torch.Generator().manual_seed(2), level=level)
    want = float((2 * S2 / (2 * (S2 + SIGMAS[level] ** 2))).mean())
    assert abs(float(per.mean()) - want) < 5 * float(per.std()) / math.sqrt(n)


def test_ncsn_loss_is_explicit_score_matching_up_to_a_constant() -> None:
    """Vincent (2011): L(s) - L(s*) = 1/2 E sigma^2 ||s - s*||^2 for any s, with s* the score
    of the perturbed data; the same draws serve both losses, so their noise cancels."""
    n = 400_000
    x, level = _draw(n, 3)
    a = ncsn_loss(_true_score, x, SIGMAS, torch.Generator().manual_seed(4), level=level)
    b = ncsn_loss(_wrong_score, x, SIGMAS, torch.Generator().manual_seed(4), level=level)
    # rebuild the same x~ to evaluate the explicit loss
    g = torch.Generator().manual_seed(4)
    z = torch.randn(x.shape, generator=g, dtype=D64)
    sigma = SIGMAS[level]
    xt = x + sigma[:, None] * z
    esm = 0.5 * sigma**2 * (_wrong_score(xt, sigma) - _true_score(xt, sigma)).pow(2).sum(1)
    diff = b - a - esm  # mean zero exactly when the DSM target is right
    assert float(esm.mean()) > 0.01
    assert abs(float(diff.mean())) < 5 * float(diff.std()) / math.sqrt(n)


def test_ncsn_loss_checks_its_inputs() -> None:
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="positive noise levels"):
        ncsn_loss(_true_score, x, torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="level must have shape"):
        ncsn_loss(_true_score, x, torch.tensor([1.0]), level=torch.zeros(2, dtype=torch.long))
