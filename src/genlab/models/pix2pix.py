"""pix2pix (Isola et al., 2017): paired image-to-image translation, a conditional GAN on
pairs (s, x) where s = C(x) + sigma eps is the corrupted input of a clean image x
(:class:`~genlab.paths.corruptions.DataCoupling`), a generator G(s) and a discriminator
D(s, t) that scores (input, target) pairs patch by patch:

    L_D = L_D(D(s, x), D(s, G(s)))                       (G(s) detached)
    L_G = L_G(D(s, G(s))) + lambda_L1 |G(s) - x|_mean     (lambda_L1 = 100 in the paper)

Notation and randomness: :mod:`genlab.models.translation`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from genlab._validate import ConfigError, check_choice, check_min, check_positive_int, check_tensor
from genlab.models.adversarial import AdversarialModel
from genlab.models.base import Batch, split_batch
from genlab.models.coders import check_data_shape
from genlab.models.nets import NetConfig, check_net_kind
from genlab.models.registry import DataInfo, Family, FamilyConfig, register
from genlab.models.translation import (
    TranslationOptions,
    check_batch,
    check_module,
    check_output,
    check_unet_depth,
    frozen,
    loss_weight,
    mean_abs,
    params_of,
    translation_loss,
)
from genlab.networks.pix2pix import PatchDiscriminator, UNetGenerator
from genlab.paths.corruptions import CORRUPTIONS, Corruption, DataCoupling, make_corruption

__all__ = ["Pix2Pix", "Pix2PixConfig"]


class Pix2Pix(AdversarialModel):
    """pix2pix: conditional GAN plus lambda L1 on (corrupted, clean) image pairs; see the module docstring.

    Args:
        data_shape: (C, H, W) of the clean images; H and W multiples of 2^depth for the
            default networks.
        corruption: the corruption C (a :class:`~genlab.paths.corruptions.Corruption` or a
            name of :func:`~genlab.paths.corruptions.make_corruption`); inputs are
            s = C(x) + noise_std * eps.
        noise_std: extra Gaussian noise on the inputs, >= 0.
        loss: ``"nonsaturating"`` (the paper's), ``"minimax"`` or ``"lsgan"``.
        loss_args: options of the loss, e.g. ``{"a": -1, "b": 1, "c": 0}`` for LSGAN.
        l1_weight: lambda_L1 >= 0 on the per-element mean absolute error (0: cGAN alone).
        hidden, depth: base channels and number of halvings of the default U-Net generator
            and PatchGAN discriminator (``depth`` strided layers: one logit per
            2^depth x 2^depth region).
        generator: optional module s (B, C, H, W) -> (B, C, H, W) replacing the U-Net.
        discriminator: optional module (s, t) -> patch logits (B, ...) replacing the PatchGAN.

    ``self.coupling`` (a DataCoupling) gives the inputs of held-out images at sampling time,
    ``generate(n, x0=coupling.inputs(x, gen))``.

    >>> from genlab.paths.corruptions import make_corruption
    >>> model = Pix2Pix((1, 8, 8), make_corruption("superres", factor=2), hidden=4)
    >>> model.generate(3, x0=torch.zeros(3, 1, 8, 8)).shape
    torch.Size([3, 1, 8, 8])
    """

    starts_from_inputs = True
    takes_inputs = True

    def __init__(
        self,
        data_shape: Sequence[int],
        corruption: Corruption | str,
        *,
        noise_std: float = 0.0,
        loss: str = "nonsaturating",
        loss_args: Mapping[str, float] | None = None,
        l1_weight: float = 100.0,
        hidden: int = 32,
        depth: int = 2,
        generator: nn.Module | None = None,
        discriminator: nn.Module | None = None,
    ) -> None:
        super().__init__()
        shape = check_data_shape(data_shape)
        if len(shape) != 3:
            raise ValueError(f"pix2pix translates images: data_shape must be (C, H, W), got {shape!r}")
        self.data_shape: tuple[int, ...] = shape
        if isinstance(corruption, str):
            corruption = make_corruption(corruption)
        self.coupling = DataCoupling(corruption, noise_std)
        self.loss_name = loss
        self._d_loss_fn, self._g_loss_fn = translation_loss(loss, loss_args)
        self.l1_weight = loss_weight(l1_weight, "l1_weight")
        check_positive_int(hidden, "hidden")
        check_positive_int(depth, "depth")
        c = shape[0]
        self.g_net = (
            UNetGenerator(c, c, base=hidden, depth=depth)
            if generator is None
            else check_module(generator, "generator", "inputs (B, C, H, W) -> images (B, C, H, W)")
        )
        self.d_net = (
            PatchDiscriminator(c, c, base=hidden, n_layers=depth)
            if discriminator is None
            else check_module(discriminator, "discriminator", "(source, target) -> patch logits")
        )

    # -- players ------------------------------------------------------------------------
    def discriminator_parameters(self) -> list[nn.Parameter]:
        return params_of(self.d_net)

    def generator_parameters(self) -> list[nn.Parameter]:
        return params_of(self.g_net)

    def translate(self, s: torch.Tensor) -> torch.Tensor:
        """G(s): inputs (B, C, H, W) -> translated images (B, C, H, W)."""
        s = check_batch(s, self.data_shape, "inputs")
        return check_output(self.g_net(s), s, "the generator")

    def _scores(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = self.d_net(s, t)
        check_tensor(out, "discriminator output")
        return out.flatten()  # (B * patches,)

    # -- losses -------------------------------------------------------------------------
    def d_loss(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """L_D = L_D(D(s, x), D(s, G(s))) with s = C(x) + sigma eps drawn from ``generator``."""
        x, _ = split_batch(batch)
        x = check_batch(x, self.data_shape, "x")
        s = self.coupling.inputs(x, generator)  # (B, C, H, W)
        with torch.no_grad():
            fake = self.translate(s)
        real_scores, fake_scores = self._scores(s, x), self._scores(s, fake)
        loss = self._d_loss_fn(real_scores, fake_scores)
        return {"loss": loss, "d_real": real_scores.detach().mean(), "d_fake": fake_scores.detach().mean()}

    def g_loss(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """L_G = L_G(D(s, G(s))) + lambda_L1 |G(s) - x|_mean with fresh inputs s from ``generator``."""
        x, _ = split_batch(batch)
        x = check_batch(x, self.data_shape, "x")
        s = self.coupling.inputs(x, generator)  # (B, C, H, W)
        fake = self.translate(s)
        with frozen(self.d_net):
            scores = self._scores(s, fake)
        adversarial = self._g_loss_fn(scores)
        l1 = mean_abs(fake, x)
        loss = adversarial + self.l1_weight * l1
        # no key shared with d_loss: the trainer merges both dicts into one metrics record
        return {"loss": loss, "adversarial": adversarial.detach(), "l1": l1.detach()}

    # -- sampling -----------------------------------------------------------------------
    def generate(
        self,
        n: int,
        generator: torch.Generator | None = None,
        y: torch.Tensor | None = None,
        x0: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """G(x0) for n inputs x0 (n, C, H, W), e.g. ``model.coupling.inputs(clean, gen)``."""
        if x0 is None:
            raise ValueError(
                "pix2pix translates inputs: pass x0 (n, C, H, W), e.g. "
                "x0 = model.coupling.inputs(clean_images, generator)"
            )
        x0 = check_batch(x0, self.data_shape, "x0")
        if x0.shape[0] != n:
            raise ValueError(f"x0 must hold n = {n} inputs, got {x0.shape[0]}")
        return self.translate(x0)

    def extra_repr(self) -> str:
        return f"data_shape={self.data_shape}, coupling={self.coupling!r}, loss={self.loss_name!r}, " + (
            f"l1_weight={self.l1_weight}"
        )


@dataclass
class Pix2PixOptions(TranslationOptions):
    """The ``model.gan`` section of pix2pix."""

    l1_weight: float = 100.0  # weight of the L1 term
    corruption: str = "superres"  # input made from the target: superres, inpaint, denoise
    corruption_args: dict[str, int | float | str] = field(default_factory=dict)  # {factor: 2}

    def validate(self) -> None:
        super().validate()
        check_min("model.gan.l1_weight", self.l1_weight, 0.0)
        check_choice("model.gan.corruption", self.corruption, CORRUPTIONS)


@dataclass(kw_only=True)
class Pix2PixConfig(FamilyConfig):
    """``model`` settings of pix2pix (``model.family: pix2pix``): a U-Net generator."""

    family: str = "pix2pix"
    net: NetConfig = field(default_factory=lambda: NetConfig(kind="unet"))
    gan: Pix2PixOptions = field(default_factory=Pix2PixOptions)

    def build(self, data: DataInfo) -> nn.Module:
        net, g, shape = self.net, self.gan, data.shape
        if len(shape) != 3:
            raise ConfigError(f"model.family=pix2pix translates images; the data have shape {shape}")
        check_net_kind(self.family, net, shape, ("unet",))
        args: dict[str, Any] = dict(g.corruption_args)
        noise_std = args.pop("noise_std", 0.0)
        numeric = isinstance(noise_std, (int, float)) and not isinstance(noise_std, bool)
        if not numeric or not 0 <= noise_std < math.inf:
            raise ConfigError(f"model.gan.corruption_args.noise_std must be a number >= 0, got {noise_std!r}")
        check_unet_depth(net, shape)
        try:
            corruption = make_corruption(g.corruption, shape, **args)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"model.gan.corruption_args: {err}") from None
        model = Pix2Pix(
            shape,
            corruption,
            noise_std=noise_std,
            loss=g.loss,
            loss_args=g.loss_args,
            l1_weight=g.l1_weight,
            hidden=net.base_channels,
            depth=len(net.channel_mults),
        )
        model.n_critic = g.n_critic
        return model


register(Family("pix2pix", Pix2Pix, Pix2PixConfig))
