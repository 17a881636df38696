"""Adversarial translation between domains: what pix2pix (:mod:`genlab.models.pix2pix`, paired)
and CycleGAN (:mod:`genlab.models.cyclegan`, unpaired) share.

Notation: ``l(.)`` is a discriminator output (logit, or raw score for LSGAN), ``L_D(real,
fake)`` and ``L_G(fake)`` a GAN loss pair of :func:`~genlab.models.gan_losses.make_gan_loss`
(``"nonsaturating"``, ``"minimax"`` or ``"lsgan"``), ``E`` a batch mean and ``|.|_mean`` the
mean absolute value over *every element* (batch and data dims), the normalisation of the
papers' lambda.

Both losses draw all their randomness (pix2pix: the corruption; CycleGAN: the domain-A batch)
from the ``generator`` argument, fresh in ``d_loss`` and again in ``g_loss``, so a seeded run
resumes bit for bit. In ``g_loss`` the discriminators are frozen (their parameters get no
gradient), and in ``d_loss`` the fakes are computed without a graph into the generators.

"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from genlab._validate import ConfigError, check_choice, check_finite, check_positive_int, check_tensor
from genlab.models.adversarial import AdversarialOptions
from genlab.models.gan_losses import make_gan_loss
from genlab.models.nets import NetConfig
from genlab.networks.gan import _mlp

__all__ = ["TRANSLATION_LOSSES", "ImagePool", "ResidualMLP", "TranslationOptions"]

#: GAN losses the translation models accept. The WGAN critics need weight clipping or a
#: gradient penalty on (input, target) pairs and several critic steps; not wired here.
TRANSLATION_LOSSES: tuple[str, ...] = ("lsgan", "minimax", "nonsaturating")


@dataclass
class TranslationOptions(AdversarialOptions):
    """The ``model.gan`` settings of the translation families."""

    def validate(self) -> None:
        super().validate()
        check_choice("model.gan.loss", self.loss, TRANSLATION_LOSSES)


class ImagePool(nn.Module):
    """A history of generated samples for the discriminator (Shrivastava et al., 2017; CycleGAN
    keeps 50): ``query(fakes)`` returns the batch the discriminator sees.

    While the pool holds fewer than ``size`` samples, each fake is stored and returned as it is.
    Once it is full, each fake is, with probability 1/2, returned as it is, and otherwise swapped
    with a uniformly drawn stored one, which is returned in its place. The draws for a batch are
    made at once (two fakes drawing the same slot: the later one is stored). The pool is a
    buffer, so it travels with the checkpoint and a resumed run sees the same history.

    Args:
        size: the number of stored samples (0: no pool, ``query`` returns its input).
        shape: the shape of one sample.
    """

    items: torch.Tensor
    count: torch.Tensor

    def __init__(self, size: int, shape: tuple[int, ...]) -> None:
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"size must be an integer >= 0, got {size!r}")
        self.size = size
        if size:  # no state without a pool: checkpoints of runs without one keep their keys
            self.register_buffer("items", torch.zeros(size, *shape))
            self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def query(self, fakes: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The batch (B, *D) the discriminator sees in place of ``fakes`` (B, *D)."""
        if self.size == 0:
            return fakes
        fakes = fakes.detach()
        out = fakes.clone()
        stored = int(self.count)
        fill = min(self.size - stored, fakes.shape[0])
        if fill:
            self.items[stored : stored + fill] = fakes[:fill].to(self.items)
            self.count.fill_(stored + fill)
        rest = fakes.shape[0] - fill
        if rest:
            device = generator.device if generator is not None else fakes.device
            swap = torch.rand(rest, generator=generator, device=device).to(fakes.device) < 0.5
            slot = torch.randint(self.size, (rest,), generator=generator, device=device).to(fakes.device)
            rows = torch.arange(fill, fakes.shape[0], device=fakes.device)[swap]
            slots = slot[swap]
            out[rows] = self.items[slots].to(out)
            self.items[slots] = fakes[rows].to(self.items)
        return out


def check_unet_depth(net: NetConfig, shape: tuple[int, ...]) -> None:
    """The translators' U-Net halves the image once per entry of model.net.channel_mults."""
    levels = len(net.channel_mults)
    if shape[1] % 2**levels or shape[2] % 2**levels:
        raise ConfigError(
            f"model.net.channel_mults has {levels} entries, so the U-Net halves the image {levels} times; "
            f"images of {shape[1]}x{shape[2]} need fewer (e.g. channel_mults=[1, 2])"
        )


def translation_loss(name: str, loss_args: Mapping[str, float] | None) -> tuple[Callable[..., Any], ...]:
    if name not in TRANSLATION_LOSSES:
        raise ValueError(
            f"unknown translation GAN loss {name!r}; valid losses are: {', '.join(TRANSLATION_LOSSES)} "
            "(the WGAN critics are not supported by pix2pix / CycleGAN)"
        )
    if loss_args is not None and not isinstance(loss_args, Mapping):
        raise ValueError(f"loss_args must be a mapping of option names to numbers, got {loss_args!r}")
    return make_gan_loss(name, **dict(loss_args or {}))


def loss_weight(value: object, name: str) -> float:
    """A finite loss weight >= 0 (0 switches the term off, the papers' ablations)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < math.inf:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_module(value: object, name: str, role: str) -> nn.Module:
    if not isinstance(value, nn.Module):
        raise ValueError(f"{name} must be an nn.Module ({role}), got {type(value).__name__}")
    return value


def check_batch(x: object, data_shape: tuple[int, ...], name: str) -> torch.Tensor:
    check_tensor(x, name)
    assert isinstance(x, torch.Tensor)
    if x.dim() != len(data_shape) + 1 or tuple(x.shape[1:]) != data_shape or x.shape[0] < 1:
        want = ", ".join(["B", *map(str, data_shape)])
        raise ValueError(f"{name} must have shape ({want}) = (B, *data_shape); got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return check_finite(x, name)


def check_output(out: object, like: torch.Tensor, name: str) -> torch.Tensor:
    check_tensor(out, name)
    assert isinstance(out, torch.Tensor)
    if out.shape != like.shape:
        raise ValueError(f"{name} must return the input's shape {tuple(like.shape)}, got {tuple(out.shape)}")
    return out


def params_of(*modules: nn.Module) -> list[nn.Parameter]:
    return [p for m in modules for p in m.parameters()]


@contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Parameters of ``modules`` do not require grad inside the block (gradients still flow
    through the modules to their inputs); restored afterwards."""
    params = [p for p in params_of(*modules) if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def mean_abs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a - b|_mean: the mean absolute difference over every element."""
    return (a - b).abs().mean()


class ResidualMLP(nn.Module):
    """``x -> x + mlp(x)``: a translator between vector domains that starts near the identity.

    ``mlp`` has ``depth`` hidden layers of ``width`` units with SiLU. Shapes: (B, dim) -> (B, dim).

    >>> ResidualMLP(2, width=8, depth=2)(torch.zeros(3, 2)).shape
    torch.Size([3, 2])
    """

    def __init__(self, dim: int, width: int = 64, depth: int = 2) -> None:
        super().__init__()
        for value, name in ((dim, "dim"), (width, "width"), (depth, "depth")):
            check_positive_int(value, f"ResidualMLP.{name}")
        self.dim = dim
        self.net = _mlp(dim, width, depth, dim, nn.SiLU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor(x, "x")
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (B, {self.dim}); got {tuple(x.shape)}")
        return x + self.net(x)  # (B, dim)
