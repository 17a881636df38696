"""Generative adversarial networks: one generator G(z[, y]) against one discriminator D(x[, y]).

With ``z ~ N(0, I_latent_dim)`` and x a data batch, per training step (see
:mod:`genlab.models.adversarial` for the alternating schedule):

    d_loss = L_D(D(x, y), D(G(z, y), y))   [+ lambda E(||grad D(x_hat)|| - 1)^2  for wgan-gp]
    g_loss = L_G(D(G(z, y), y))

with the pair (L_D, L_G) chosen by name from :data:`~genlab.models.gan_losses.GAN_LOSSES`:
minimax, nonsaturating (the default), lsgan (a, b, c), wgan (weight clipping to [-c, c] after
every critic step; the original algorithm uses RMSProp and n_critic = 5) and wgan-gp
(gradient penalty, Gulrajani et al. 2017). With labels y (conditional GAN, Mirza & Osindero
2014) both networks see the class. Two stabilisers are options: the R1 penalty
(gamma / 2) E ||grad_x D(x)||^2 on the real batch (``r1_gamma``, Mescheder et al. 2018) and
spectral normalisation of every discriminator layer (``model.gan.spectral_norm``, Miyato et
al. 2018). The fake batch of the discriminator step is detached, so
that step moves D only; the generator step backpropagates through D into G (the trainer
steps G's optimiser only).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from genlab._validate import ConfigError, check_finite, check_min, check_tensor
from genlab.models.adversarial import AdversarialModel, AdversarialOptions
from genlab.models.base import split_batch
from genlab.models.gan_losses import GAN_LOSSES, clip_weights, gradient_penalty, make_gan_loss, r1_penalty
from genlab.models.nets import NetConfig, check_net_kind, label_count
from genlab.models.registry import DataInfo, Family, FamilyConfig, register

__all__ = ["GAN"]


class GAN(AdversarialModel):
    """A GAN over samples of shape ``data_shape``; see the module docstring.

    Args:
        generator: G, maps (B, latent_dim) [and labels (B,)] to (B, *data_shape) or
            (B, prod(data_shape)); a generator whose forward takes ``generator=`` (the
            style-based one, for its noise inputs) receives the training / sampling RNG.
        discriminator: D, maps (B, *data_shape) [and labels] to (B,) or (B, 1) scores.
        data_shape: shape of one sample.
        latent_dim: size of z.
        loss: minimax, nonsaturating, lsgan, wgan or wgan-gp.
        loss_args: options of the loss (lsgan: a, b, c).
        n_critic: discriminator updates per generator update (>= 1).
        clip: wgan: the critic's weights are clamped to [-clip, clip] after every update.
        gp_weight: wgan-gp: the penalty weight lambda.
        num_classes: number of classes of a conditional GAN (None: unconditional).
        r1_gamma: weight gamma of the R1 penalty (gamma / 2) E ||grad D(x)||^2 on the real
            batch of every discriminator step (0: off).
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        data_shape: Sequence[int],
        *,
        latent_dim: int,
        loss: str = "nonsaturating",
        loss_args: Mapping[str, float] | None = None,
        n_critic: int = 1,
        clip: float = 0.01,
        gp_weight: float = 10.0,
        num_classes: int | None = None,
        r1_gamma: float = 0.0,
    ) -> None:
        super().__init__()
        if not isinstance(generator, nn.Module) or not isinstance(discriminator, nn.Module):
            raise ValueError("generator and discriminator must be nn.Modules")
        self.generator = generator
        self.discriminator = discriminator
        self.data_shape = tuple(int(d) for d in data_shape)
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
            raise ValueError(f"latent_dim must be a positive integer, got {latent_dim!r}")
        self.latent_dim = latent_dim
        if loss not in GAN_LOSSES:
            raise ValueError(f"unknown GAN loss {loss!r}; valid losses: {', '.join(GAN_LOSSES)}")
        self.loss_name = loss
        self._d_loss, self._g_loss = make_gan_loss(loss, **dict(loss_args or {}))
        if isinstance(n_critic, bool) or not isinstance(n_critic, int) or n_critic < 1:
            raise ValueError(f"n_critic must be an integer >= 1 (critic steps per G step), got {n_critic!r}")
        self.n_critic = n_critic
        for value, name in ((clip, "clip"), (gp_weight, "gp_weight")):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        self.clip = float(clip)
        self.gp_weight = float(gp_weight)
        if (
            isinstance(r1_gamma, bool)
            or not isinstance(r1_gamma, (int, float))
            or not 0 <= r1_gamma < math.inf
        ):
            raise ValueError(f"r1_gamma must be a number >= 0, got {r1_gamma!r}")
        self.r1_gamma = float(r1_gamma)
        if num_classes is not None and (isinstance(num_classes, bool) or num_classes < 2):
            raise ValueError(f"num_classes must be an integer >= 2 or None, got {num_classes!r}")
        self.num_classes = num_classes
        self._g_takes_rng = "generator" in inspect.signature(generator.forward).parameters
        self._check_networks()

    def _check_networks(self) -> None:
        """One probe pass: G must make samples of ``data_shape`` that D scores one by one."""
        y = torch.zeros(2, dtype=torch.long) if self.num_classes is not None else None
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                kwargs: dict[str, Any] = {"generator": torch.Generator()} if self._g_takes_rng else {}
                z = torch.zeros(2, self.latent_dim)
                out = self.generator(z, **kwargs) if y is None else self.generator(z, y, **kwargs)
                if out.shape[0] != 2 or out[0].numel() != math.prod(self.data_shape):
                    raise ValueError(
                        f"the generator makes samples of shape {tuple(out.shape[1:])} but the data have "
                        f"shape {self.data_shape}; build it for that size"
                    )
                x = out.reshape(2, *self.data_shape)
                scores = self.discriminator(x) if y is None else self.discriminator(x, y)
                if scores.numel() != 2:
                    raise ValueError(
                        f"the discriminator must give one score per sample of shape {self.data_shape}, "
                        f"got output of shape {tuple(scores.shape)} for a batch of 2"
                    )
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0]
            raise ValueError(
                f"generator / discriminator do not fit samples of shape {self.data_shape} ({first})"
            ) from None
        finally:
            self.train(was_training)

    # -- players ----------------------------------------------------------------------
    def discriminator_parameters(self) -> list[nn.Parameter]:
        return list(self.discriminator.parameters())

    def generator_parameters(self) -> list[nn.Parameter]:
        return list(self.generator.parameters())

    def _latents(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        p = next(self.generator.parameters())
        return torch.randn((n, self.latent_dim), generator=generator, dtype=p.dtype, device=p.device)

    def _G(self, z: torch.Tensor, y: torch.Tensor | None, generator: torch.Generator | None) -> torch.Tensor:
        kwargs: dict[str, Any] = {"generator": generator} if self._g_takes_rng else {}
        out = self.generator(z, **kwargs) if y is None else self.generator(z, y, **kwargs)
        return out.reshape(z.shape[0], *self.data_shape)

    def _D(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        out = self.discriminator(x) if y is None else self.discriminator(x, y)
        return out.reshape(x.shape[0])

    def _batch(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        x, y = split_batch(batch)
        check_tensor(x, "batch")
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(
                f"batch has sample shape {tuple(x.shape[1:])} but the model was built for {self.data_shape}"
            )
        check_finite(x, "batch")
        if self.num_classes is None:
            return x, None
        if y is None:
            raise ValueError("a conditional GAN trains on labelled batches (x, y)")
        return x, y.long()

    # -- losses -----------------------------------------------------------------------
    def d_loss(self, batch: Any, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        x, y = self._batch(batch)
        with torch.no_grad():
            fake = self._G(self._latents(x.shape[0], generator), y, generator)
        real_out, fake_out = self._D(x, y), self._D(fake, y)
        loss = self._d_loss(real_out, fake_out)
        out = {"d_real": real_out.mean().detach(), "d_fake": fake_out.mean().detach()}
        if self.loss_name in ("wgan", "wgan-gp"):
            # E f(x) - E f(G(z)): the critic's estimate of W1 (up to its Lipschitz constant)
            out["w1_estimate"] = (real_out.mean() - fake_out.mean()).detach()
        if self.loss_name == "wgan-gp":
            penalty = gradient_penalty(lambda v: self._D(v, y), x, fake, generator, self.gp_weight)
            out["gp"] = penalty.detach()
            loss = loss + penalty
        if self.r1_gamma > 0:
            r1 = r1_penalty(lambda v: self._D(v, y), x, self.r1_gamma)
            out["r1"] = r1.detach()
            loss = loss + r1
        return {"loss": loss, **out}

    def g_loss(self, batch: Any, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        x, y = self._batch(batch)
        fake = self._G(self._latents(x.shape[0], generator), y, generator)
        return {"loss": self._g_loss(self._D(fake, y))}

    def after_d_step(self) -> None:
        if self.loss_name == "wgan":
            with torch.no_grad():
                clip_weights(self.discriminator, self.clip)

    # -- sampling ---------------------------------------------------------------------
    def generate(
        self,
        n: int,
        generator: torch.Generator | None = None,
        y: torch.Tensor | None = None,
        x0: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """G(z[, y]) for n draws z ~ N(0, I). -> (n, *data_shape)."""
        if self.num_classes is not None and y is None:
            raise ValueError(f"a conditional GAN needs labels y in [0, {self.num_classes - 1}]")
        return self._G(self._latents(n, generator), y, generator)


@dataclass
class GANOptions(AdversarialOptions):
    """The ``model.gan`` section of a GAN."""

    latent_dim: int = 32  # size of z
    clip: float = 0.01  # wgan: critic weights clamped to [-clip, clip]
    gp_weight: float = 10.0  # wgan-gp: gradient-penalty weight lambda
    r1_gamma: float = 0.0  # R1 penalty (gamma / 2) E ||grad D(x)||^2 on real data; 0: off
    spectral_norm: bool = False  # spectral normalisation of every discriminator layer
    equalized_lr: bool = False  # net.kind=style: equalised learning rate in every generator layer
    mapping_lr_mul: float = 1.0  # net.kind=style with equalized_lr: the mapping network's lr multiplier

    def validate(self) -> None:
        super().validate()
        check_min("model.gan.latent_dim", self.latent_dim, 1)
        check_min("model.gan.r1_gamma", self.r1_gamma, 0.0)
        check_min("model.gan.mapping_lr_mul", self.mapping_lr_mul, 0.0, strict=True)
        if self.mapping_lr_mul != 1.0 and not self.equalized_lr:
            raise ConfigError(
                "model.gan.mapping_lr_mul scales the equalised learning rate; set model.gan.equalized_lr=true"
            )
        check_min("model.gan.clip", self.clip, 0.0, strict=True)
        check_min("model.gan.gp_weight", self.gp_weight, 0.0, strict=True)


@dataclass(kw_only=True)
class GANConfig(FamilyConfig):
    """``model`` settings of a GAN (``model.family: gan``): MLPs for vectors; for images a DCGAN
    (``net.kind: conv``) or the style-based generator (``net.kind: style``)."""

    CONDITIONAL = True

    family: str = "gan"
    net: NetConfig = field(default_factory=NetConfig)
    gan: GANOptions = field(default_factory=GANOptions)

    def build(self, data: DataInfo) -> nn.Module:
        from genlab.networks.gan import (
            ConvDiscriminator,
            ConvGenerator,
            MLPDiscriminator,
            MLPGenerator,
            spectral_normalise,
        )
        from genlab.networks.style import StyleGenerator

        net, g, shape = self.net, self.gan, data.shape
        kind = check_net_kind(self.family, net, shape, ("conv", "style"))
        if g.equalized_lr and kind != "style":
            raise ConfigError(
                f"model.gan.equalized_lr is for the style generator (net.kind=style), not {kind}"
            )
        classes = label_count(net, data.num_classes)
        generator: nn.Module
        if kind == "mlp":
            generator = MLPGenerator(g.latent_dim, shape[0], net.width, net.depth, classes)
            discriminator: nn.Module = MLPDiscriminator(shape[0], net.width, net.depth, classes)
        else:
            channels, size = shape[0], (shape[1], shape[2])
            if kind == "style":
                if classes is not None:
                    raise ConfigError(
                        "model.net.kind=style has no label input; use kind=conv for a conditional GAN"
                    )
                generator = StyleGenerator(
                    g.latent_dim,
                    channels,
                    size,
                    base=net.base_channels,
                    equalized_lr=g.equalized_lr,
                    mapping_lr_mul=g.mapping_lr_mul,
                )
            else:
                generator = ConvGenerator(g.latent_dim, channels, size, net.base_channels, classes)
            # the style generator collapses to a few images against a plain discriminator
            # (FD ~800 on digits); the minibatch-std feature of StyleGAN's discriminator helps
            discriminator = ConvDiscriminator(
                channels, size, net.base_channels, classes, minibatch_std=kind == "style"
            )
        if g.spectral_norm:
            spectral_normalise(discriminator)
        return GAN(
            generator,
            discriminator,
            shape,
            latent_dim=g.latent_dim,
            loss=g.loss,
            loss_args=g.loss_args,
            n_critic=g.n_critic,
            clip=g.clip,
            gp_weight=g.gp_weight,
            num_classes=classes,
            r1_gamma=g.r1_gamma,
        )


register(Family("gan", GAN, GANConfig))
