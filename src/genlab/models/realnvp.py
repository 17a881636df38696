"""RealNVP (Dinh et al. 2017): a normalizing flow of affine coupling layers.

A coupling layer with binary mask m keeps x_m and transforms the rest:

    y = m * x + (1 - m) * (x * exp(s(m * x)) + t(m * x)),
    log |det dy/dx| = sum over the unmasked coordinates of s(m * x),

and is inverted in closed form, x = m * y + (1 - m) * (y - t(m * y)) * exp(-s(m * y)).
Stacking layers with alternating masks (for vectors: first half / second half and even /
odd coordinates, which plays the role of the permutations between layers; for images:
checkerboards of both parities, and channel halves when C > 1) gives a bijection
f: data -> latent with

    log p(x) = log N(f(x); 0, I) + sum_layers log |det J_layer|,

trained by maximum likelihood; sampling is x = f^{-1}(z), z ~ N(0, I). The scale s is
bounded by tanh times a learned per-coordinate scale for stability.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from genlab._validate import check_finite, check_min
from genlab.models.base import Batch, split_batch
from genlab.models.registry import DataInfo, Family, FamilyConfig, register
from genlab.paths import GaussianSource


class _Conditioner(nn.Module):
    """(s, t) from the masked input: ``depth`` hidden layers (Linear for vectors, 3x3 Conv2d
    for images) and a zero-initialised last layer, so every coupling starts as the identity."""

    def __init__(self, channels: int, hidden: int, depth: int, image: bool) -> None:
        super().__init__()

        def layer(n_in: int, n_out: int) -> nn.Conv2d | nn.Linear:
            return nn.Conv2d(n_in, n_out, 3, padding=1) if image else nn.Linear(n_in, n_out)

        layers: list[nn.Module] = []
        width = channels
        for _ in range(depth):
            layers += [layer(width, hidden), nn.SiLU()]
            width = hidden
        last = layer(width, 2 * channels)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)  # type: ignore[arg-type]  # both layer kinds have a bias
        self.net = nn.Sequential(*layers, last)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self.net(x).chunk(2, dim=1)  # split along features / channels
        return s, t


class AffineCoupling(nn.Module):
    """One affine coupling layer with a fixed binary mask (1 = kept, 0 = transformed)."""

    mask: torch.Tensor  # buffer: 1 = kept, 0 = transformed

    def __init__(self, mask: torch.Tensor, conditioner: nn.Module) -> None:
        super().__init__()
        self.register_buffer("mask", mask.float())
        self.conditioner = conditioner
        self.scale = nn.Parameter(torch.zeros_like(mask, dtype=torch.float32))  # tanh bound, learned

    def _st(self, x_kept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self.conditioner(x_kept)
        inv = 1 - self.mask
        s = torch.tanh(s) * self.scale.exp() * inv  # only the transformed coordinates move
        return s, t * inv

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """y = f(x) and log|det J| (B,)."""
        s, t = self._st(x * self.mask)
        y = x * self.mask + (1 - self.mask) * (x * torch.exp(s) + t)
        return y, s.flatten(1).sum(1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        s, t = self._st(y * self.mask)
        return y * self.mask + (1 - self.mask) * (y - t) * torch.exp(-s)


def _vector_masks(dim: int, n_layers: int) -> list[torch.Tensor]:
    """Alternate between the first-half mask and the alternating-coordinate mask, each in
    both parities, so every coordinate is transformed and conditions the others."""
    half = (torch.arange(dim) < (dim + 1) // 2).float()
    alt = (torch.arange(dim) % 2 == 0).float()
    base = [half, 1 - half, alt, 1 - alt] if dim > 2 else [half, 1 - half]
    return [base[i % len(base)] for i in range(n_layers)]


def _image_masks(shape: tuple[int, int, int], n_layers: int) -> list[torch.Tensor]:
    c, h, w = shape
    ii, jj = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    checker = ((ii + jj) % 2 == 0).float().expand(c, h, w)
    masks = [checker, 1 - checker]
    if c > 1:
        ch = (torch.arange(c) < c // 2).float()[:, None, None].expand(c, h, w)
        masks += [ch, 1 - ch]
    return [masks[i % len(masks)].clone() for i in range(n_layers)]


class RealNVP(nn.Module):
    """A RealNVP flow on vectors (D,) or images (C, H, W).

    Args:
        data_shape: shape of one sample.
        n_layers: number of coupling layers (even is best: every coordinate gets transformed).
        hidden: width of the conditioners; depth: their hidden layers.
    """

    SAMPLERS: ClassVar[tuple[str, ...]] = ("exact",)  # x = f^{-1}(z) in one pass

    def __init__(
        self, data_shape: Sequence[int], *, n_layers: int = 8, hidden: int = 128, depth: int = 2
    ) -> None:
        super().__init__()
        self.data_shape = tuple(int(d) for d in data_shape)
        if not isinstance(n_layers, int) or n_layers < 2:
            raise ValueError(f"n_layers must be an integer >= 2, got {n_layers!r}")
        if len(self.data_shape) == 1:
            dim = self.data_shape[0]
            if dim < 2:
                raise ValueError("RealNVP needs at least 2 dimensions to couple")
            masks = _vector_masks(dim, n_layers)
            self.layers = nn.ModuleList(
                AffineCoupling(m, _Conditioner(dim, hidden, depth, image=False)) for m in masks
            )
        elif len(self.data_shape) == 3:
            c = self.data_shape[0]
            masks = _image_masks(self.data_shape, n_layers)  # type: ignore[arg-type]
            self.layers = nn.ModuleList(
                AffineCoupling(m, _Conditioner(c, hidden, depth, image=True)) for m in masks
            )
        else:
            raise ValueError(f"data_shape must be (D,) or (C, H, W), got {self.data_shape}")
        self.source = GaussianSource(1.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z = f(x) and sum of log|det J| (B,)."""
        logdet = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for layer in self.layers:
            x, ld = layer(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self.layers):
            z = layer.inverse(z)  # type: ignore[operator]
        return z

    def _check(self, x: torch.Tensor) -> None:
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(
                f"x has sample shape {tuple(x.shape[1:])}, the flow was built for {self.data_shape}"
            )
        check_finite(x, "x")

    def log_prob(self, x: torch.Tensor, **_: Any) -> torch.Tensor:  # ODE options do not apply
        """Exact log p(x) in nats, (B,)."""
        self._check(x)
        z, logdet = self(x)
        return self.source.log_prob(z) + logdet

    def loss(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Negative log-likelihood per dimension (nats), averaged over the batch."""
        x, _ = split_batch(batch)
        d = math.prod(self.data_shape)
        return {"loss": -self.log_prob(x).mean() / d}

    def sample(
        self,
        n: int,
        solver: Any = None,
        grid: Any = None,
        generator: torch.Generator | None = None,
        y: Any = None,
        return_trajectory: bool = False,
        x0: torch.Tensor | None = None,
        sampler: str = "exact",
        **options: Any,
    ) -> Any:
        """Exact samples x = f^{-1}(z), z ~ N(0, I); returns an object with ``.x`` and ``.nfe`` = 1."""
        from genlab.solvers import ODESolution

        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        options.pop("steps", None)  # one pass: a number of steps does not apply (as solver, grid)
        if options:
            raise ValueError(f"unexpected sampler option(s): {', '.join(sorted(options))}")
        param = next(self.parameters())
        shape = (n, *self.data_shape)
        z = x0 if x0 is not None else self.source.sample(shape, generator, param.dtype, param.device)
        with torch.no_grad():
            x = self.inverse(z)
        return ODESolution(x=x, times=torch.tensor([0.0, 1.0]), trajectory=None, nfe=1)


@dataclass(kw_only=True)
class RealNVPConfig(FamilyConfig):
    """``model`` settings of RealNVP (``model.family: realnvp``); it has no ``model.net``."""

    family: str = "realnvp"
    flow_layers: int = 8  # coupling layers
    flow_hidden: int = 128  # width of each layer's scale / shift network

    def validate(self) -> None:
        super().validate()
        check_min("model.flow_layers", self.flow_layers, 2)
        check_min("model.flow_hidden", self.flow_hidden, 1)

    def build(self, data: DataInfo) -> nn.Module:
        return RealNVP(data.shape, n_layers=self.flow_layers, hidden=self.flow_hidden)


register(Family("realnvp", RealNVP, RealNVPConfig, has_log_prob=True, likelihood_trained=True))
