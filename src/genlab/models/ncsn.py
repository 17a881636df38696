"""NCSN's training objective: denoising score matching over a finite set of noise levels.

Song & Ermon (2019), Eqs. 5-6. For noise levels sigma_1 > ... > sigma_L and a noise-conditional
score network s(x, sigma), with x~ = x + sigma z:

    l(s; sigma) = 1/2 E ||s(x~, sigma) + (x~ - x) / sigma^2||^2,
    L(s) = 1/L sum_i lambda(sigma_i) l(s; sigma_i),        lambda(sigma) = sigma^2,

so that every level weighs alike: lambda(sigma) l = 1/2 E ||sigma s(x~, sigma) + z||^2.
By Vincent (2011), l(s; sigma) differs from the explicit score-matching loss
1/2 E ||s(x~, sigma) - grad log p_sigma(x~)||^2 by a constant independent of s, so its
minimiser is the score of the data perturbed at sigma. The continuous-time limit (a density of
levels in place of L of them) is :class:`~genlab.models.diffusion.Diffusion`'s loss on the VE SDE;
sampling is annealed Langevin dynamics (:func:`~genlab.samplers.langevin.annealed_langevin`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from genlab._validate import check_tensor

__all__ = ["ncsn_loss"]

NoiseScore = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def ncsn_loss(
    score: NoiseScore,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    generator: torch.Generator | None = None,
    level: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample NCSN loss lambda(sigma) l at one level per sample. -> (B,).

    score(x~, sigma) -> (B, *D) with sigma of shape (B,); x (B, *D); sigmas (L,) positive.
    The level of each sample is ``level`` (B,) long if given, else uniform on {0..L-1}; the
    mean over a batch estimates L(s).
    """
    check_tensor(x, "x")
    check_tensor(sigmas, "sigmas")
    if sigmas.dim() != 1 or sigmas.numel() < 1 or not bool((sigmas > 0).all()):
        raise ValueError(
            f"sigmas must be a 1-D tensor of positive noise levels, got shape {tuple(sigmas.shape)}"
        )
    b = x.shape[0]
    if level is None:
        level = torch.randint(sigmas.numel(), (b,), generator=generator, device=x.device)
    elif level.shape != (b,):
        raise ValueError(f"level must have shape (B,) = ({b},), got {tuple(level.shape)}")
    sigma = sigmas.to(x)[level]  # (B,)
    sig = sigma.reshape(b, *([1] * (x.dim() - 1)))
    z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    out = score(x + sig * z, sigma)
    # lambda(sigma) * 1/2 ||s + (x~ - x) / sigma^2||^2 = 1/2 ||sigma s + z||^2
    return 0.5 * (sig * out + z).flatten(1).pow(2).sum(1)
