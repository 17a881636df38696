"""CycleGAN (Zhu et al., 2017): unpaired domains A (the ``source``) and B (the data), two
generators G_ab: A -> B, G_ba: B -> A and two discriminators D_a, D_b; least squares by
default (Mao et al., 2017, with a = 0, b = c = 1):

    L_D = L_D(D_b(x_b), D_b(G_ab(x_a))) + L_D(D_a(x_a), D_a(G_ba(x_b)))         (fakes detached)
    L_G = L_G(D_b(G_ab(x_a))) + L_G(D_a(G_ba(x_b)))
          + lambda_cyc (|G_ba(G_ab(x_a)) - x_a|_mean + |G_ab(G_ba(x_b)) - x_b|_mean)

with lambda_cyc = 10. The cycle term is a per-element mean (the paper's lambda is on mean
absolute errors); it equals :func:`~genlab.models.gan_losses.cycle_consistency_loss` (which
sums over each sample's dims) divided by prod(data_shape), and is computed directly here so
that the translated batches G_ab(x_a), G_ba(x_b) are shared with the adversarial terms.

The paper's two additions are options: the identity term
lambda_id (|G_ab(x_b) - x_b|_mean + |G_ba(x_a) - x_a|_mean) added to L_G (``identity_weight``;
the paper uses 0.5 lambda_cyc for photo <-> painting), which asks each translator to leave a
sample of its target domain alone, and a history of ``pool_size`` generated samples per domain
(:class:`~genlab.models.translation.ImagePool`; the paper's 50) from which the discriminators
see half of their fakes, which damps the oscillation between the players.

Notation and randomness: :mod:`genlab.models.translation`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from genlab._validate import ConfigError, check_choice, check_min, check_positive_int, check_tensor
from genlab.data import TOY_DATASETS, make_toy
from genlab.data.domains import ImageTransform, TransformedImages, as_transform
from genlab.models.adversarial import AdversarialModel
from genlab.models.base import Batch, split_batch
from genlab.models.coders import check_data_shape, check_image_shape
from genlab.models.nets import NetConfig, check_net_kind
from genlab.models.registry import DataInfo, Family, FamilyConfig, register
from genlab.models.translation import (
    ImagePool,
    ResidualMLP,
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
from genlab.networks.gan import ConvDiscriminator, MLPDiscriminator
from genlab.networks.pix2pix import UNetGenerator
from genlab.paths.couplings import DataSource

__all__ = ["CycleGAN", "CycleGANConfig"]


class CycleGAN(AdversarialModel):
    """CycleGAN: two translators and two discriminators with a cycle L1; see the module docstring.

    Args:
        data_shape: (D,) for vectors or (C, H, W) for images whose sides 2^depth divides (the
            default U-Net translators; the discriminators take any size).
        source: domain A, anything with ``sample(shape, generator, dtype, device)``: a
            :class:`~genlab.paths.DataSource` of a 2D toy, or a
            :class:`~genlab.data.domains.TransformedImages`. Domain B is the data batch.
        loss: ``"lsgan"`` (the paper's), ``"nonsaturating"`` or ``"minimax"``.
        loss_args: options of the loss (LSGAN targets a, b, c).
        cycle_weight: lambda_cyc >= 0 on the per-element mean cycle error.
        identity_weight: lambda_id >= 0 on the per-element mean identity error (0: off).
        pool_size: generated samples kept per domain for the discriminators (0: none).
        hidden, depth: vectors: width and hidden layers of the residual MLP translators and
            MLP discriminators (default 64, 2); images: base channels of the U-Net translators
            and conv discriminators and the U-Net's halvings (default 16, 2).
        transform: for image domains A = T(data), the :class:`~genlab.data.domains.ImageTransform`
            (or its name). It becomes ``self.coupling`` (``inputs(x, gen) = T(x)``) and makes
            ``starts_from_inputs`` true, so a sampling run shows T(x) | G_ab(T(x)) | x for
            held-out images x.
        g_ab, g_ba: optional translator modules (B, *D) -> (B, *D).
        d_a, d_b: optional discriminator modules (B, *D) -> (B,) scores.

    >>> from genlab.data import make_toy
    >>> from genlab.paths.couplings import DataSource
    >>> model = CycleGAN((2,), DataSource(make_toy("moons")), hidden=8)
    >>> model.generate(5, torch.Generator().manual_seed(0)).shape
    torch.Size([5, 2])
    """

    takes_inputs = True

    def __init__(
        self,
        data_shape: Sequence[int] | int,
        source: Any,
        *,
        loss: str = "lsgan",
        loss_args: Mapping[str, float] | None = None,
        cycle_weight: float = 10.0,
        identity_weight: float = 0.0,
        pool_size: int = 0,
        hidden: int | None = None,
        depth: int | None = None,
        transform: ImageTransform | str | None = None,
        g_ab: nn.Module | None = None,
        g_ba: nn.Module | None = None,
        d_a: nn.Module | None = None,
        d_b: nn.Module | None = None,
    ) -> None:
        super().__init__()
        shape = check_data_shape(data_shape)
        self.data_shape: tuple[int, ...] = shape
        image = len(shape) == 3
        if not callable(getattr(source, "sample", None)):
            raise ValueError(
                "source (domain A) must have sample(shape, generator, dtype, device), e.g. "
                f"DataSource(make_toy('moons')) or TransformedImages(digits, 'inverted'); got {source!r}"
            )
        self.source = source
        self.loss_name = loss
        self._d_loss_fn, self._g_loss_fn = translation_loss(loss, loss_args)
        self.cycle_weight = loss_weight(cycle_weight, "cycle_weight")
        self.identity_weight = loss_weight(identity_weight, "identity_weight")
        self.pool_a, self.pool_b = ImagePool(pool_size, shape), ImagePool(pool_size, shape)
        hidden = (16 if image else 64) if hidden is None else check_positive_int(hidden, "hidden")
        depth = 2 if depth is None else check_positive_int(depth, "depth")
        if transform is not None and not image:
            raise ValueError(f"transform applies to image domains; data_shape is {shape!r}")
        self.coupling: ImageTransform | None = None if transform is None else as_transform(transform)

        if image and any(m is None for m in (g_ab, g_ba, d_a, d_b)):
            _, h, w = check_image_shape(shape)
            if h % 2**depth or w % 2**depth:
                raise ValueError(
                    f"the U-Net translators halve the image {depth} times: H and W must be multiples of "
                    f"{2**depth}, got {h}x{w} (use a smaller depth)"
                )

        def translator() -> nn.Module:
            if image:
                return UNetGenerator(shape[0], shape[0], base=hidden, depth=depth)
            return ResidualMLP(shape[0], width=hidden, depth=depth)

        def critic() -> nn.Module:
            if image:
                return ConvDiscriminator(shape[0], (shape[1], shape[2]), base=hidden)
            return MLPDiscriminator(shape[0], width=hidden, depth=depth)

        role_g, role_d = "translator (B, *D) -> (B, *D)", "discriminator (B, *D) -> (B,)"
        self.g_ab = translator() if g_ab is None else check_module(g_ab, "g_ab", role_g)
        self.g_ba = translator() if g_ba is None else check_module(g_ba, "g_ba", role_g)
        self.d_a = critic() if d_a is None else check_module(d_a, "d_a", role_d)
        self.d_b = critic() if d_b is None else check_module(d_b, "d_b", role_d)

    @property  # type: ignore[misc]
    def starts_from_inputs(self) -> bool:  # type: ignore[override]
        """True when the domains are images related by a known transform (``self.coupling``)."""
        return self.coupling is not None

    # -- players ------------------------------------------------------------------------
    def discriminator_parameters(self) -> list[nn.Parameter]:
        return params_of(self.d_a, self.d_b)

    def generator_parameters(self) -> list[nn.Parameter]:
        return params_of(self.g_ab, self.g_ba)

    def translate_ab(self, x_a: torch.Tensor) -> torch.Tensor:
        """G_ab: domain A (B, *D) -> domain B (B, *D)."""
        return check_output(self.g_ab(x_a), x_a, "g_ab")

    def translate_ba(self, x_b: torch.Tensor) -> torch.Tensor:
        """G_ba: domain B (B, *D) -> domain A (B, *D)."""
        return check_output(self.g_ba(x_b), x_b, "g_ba")

    def draw_a(self, n: int, generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
        """n samples x_a (n, *D) of domain A, drawn from the source with ``generator``."""
        x_a = self.source.sample((n, *self.data_shape), generator, dtype=like.dtype, device=like.device)
        return check_batch(x_a, self.data_shape, "source samples")

    def _score(self, d: nn.Module, x: torch.Tensor, name: str) -> torch.Tensor:
        out = d(x)
        check_tensor(out, f"{name} output")
        return out.flatten()  # (B,)

    # -- losses -------------------------------------------------------------------------
    def d_loss(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """L_D = L_D(D_b(x_b), D_b(G_ab(x_a))) + L_D(D_a(x_a), D_a(G_ba(x_b))), fakes detached."""
        x_b, _ = split_batch(batch)
        x_b = check_batch(x_b, self.data_shape, "x")
        x_a = self.draw_a(x_b.shape[0], generator, x_b)  # (B, *D)
        with torch.no_grad():
            fake_b, fake_a = self.translate_ab(x_a), self.translate_ba(x_b)
        fake_b, fake_a = self.pool_b.query(fake_b, generator), self.pool_a.query(fake_a, generator)
        d_b = self._d_loss_fn(self._score(self.d_b, x_b, "d_b"), self._score(self.d_b, fake_b, "d_b"))
        d_a = self._d_loss_fn(self._score(self.d_a, x_a, "d_a"), self._score(self.d_a, fake_a, "d_a"))
        return {"loss": d_a + d_b, "d_a": d_a.detach(), "d_b": d_b.detach()}

    def g_loss(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """L_G = L_G(D_b(G_ab(x_a))) + L_G(D_a(G_ba(x_b))) + lambda_cyc * cycle, fresh x_a."""
        x_b, _ = split_batch(batch)
        x_b = check_batch(x_b, self.data_shape, "x")
        x_a = self.draw_a(x_b.shape[0], generator, x_b)  # (B, *D)
        fake_b, fake_a = self.translate_ab(x_a), self.translate_ba(x_b)  # (B, *D) each
        with frozen(self.d_a, self.d_b):
            g_ab = self._g_loss_fn(self._score(self.d_b, fake_b, "d_b"))
            g_ba = self._g_loss_fn(self._score(self.d_a, fake_a, "d_a"))
        cycle = mean_abs(self.translate_ba(fake_b), x_a) + mean_abs(self.translate_ab(fake_a), x_b)
        loss = g_ab + g_ba + self.cycle_weight * cycle
        out = {"g_ab": g_ab.detach(), "g_ba": g_ba.detach(), "cycle": cycle.detach()}
        if self.identity_weight > 0:
            identity = mean_abs(self.translate_ab(x_b), x_b) + mean_abs(self.translate_ba(x_a), x_a)
            loss = loss + self.identity_weight * identity
            out["identity"] = identity.detach()
        return {"loss": loss, **out}

    # -- sampling -----------------------------------------------------------------------
    def generate(
        self,
        n: int,
        generator: torch.Generator | None = None,
        y: torch.Tensor | None = None,
        x0: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """G_ab(x0) (n, *D); without x0, x0 ~ domain A is drawn from the source with ``generator``."""
        if y is not None:
            raise ValueError("CycleGAN is not class-conditional; pass y=None")
        if x0 is None:
            like = next(iter(self.parameters()), torch.empty(0))
            x0 = self.draw_a(n, generator, like.detach())
        x0 = check_batch(x0, self.data_shape, "x0")
        if x0.shape[0] != n:
            raise ValueError(f"x0 must hold n = {n} inputs, got {x0.shape[0]}")
        return self.translate_ab(x0)

    def extra_repr(self) -> str:
        return (
            f"data_shape={self.data_shape}, source={self.source!r}, loss={self.loss_name!r}, "
            f"cycle_weight={self.cycle_weight}, coupling={self.coupling!r}"
        )


@dataclass
class CycleGANOptions(TranslationOptions):
    """The ``model.gan`` section of CycleGAN."""

    cycle_weight: float = 10.0  # weight of the cycle-consistency term
    identity_weight: float = 0.0  # weight of the identity term (the paper: 0.5 cycle_weight for photos)
    pool_size: int = 0  # generated samples kept per domain for the discriminators (the paper: 50)
    domain: str = "inverted"  # domain A: a 2D toy set, or inverted / rotated images

    def validate(self) -> None:
        super().validate()
        check_min("model.gan.cycle_weight", self.cycle_weight, 0.0)
        check_min("model.gan.identity_weight", self.identity_weight, 0.0)
        check_min("model.gan.pool_size", self.pool_size, 0)
        check_choice("model.gan.domain", self.domain, ["inverted", "rotated", *TOY_DATASETS])


@dataclass(kw_only=True)
class CycleGANConfig(FamilyConfig):
    """``model`` settings of CycleGAN (``model.family: cyclegan``): residual MLPs for vectors,
    U-Net translators for images."""

    family: str = "cyclegan"
    net: NetConfig = field(default_factory=NetConfig)  # mlp for vectors, unet for images
    gan: CycleGANOptions = field(default_factory=CycleGANOptions)

    def build(self, data: DataInfo) -> nn.Module:
        net, g, shape = self.net, self.gan, data.shape
        kind = check_net_kind(self.family, net, shape, ("unet",))
        image_domain = g.domain in ("inverted", "rotated")
        if image_domain != (len(shape) == 3):
            what = "an image transform (inverted, rotated)" if len(shape) == 3 else "a 2D toy data set"
            raise ConfigError(f"model.gan.domain={g.domain} does not fit data of shape {shape}; give {what}")
        if image_domain:
            if data.load_dataset is None:
                raise ValueError(
                    "CycleGAN on images builds domain A from the training set; pass load_dataset"
                )
            source: Any = TransformedImages(data.load_dataset(), g.domain)
            transform: str | None = g.domain
        else:
            if shape != (2,):
                raise ConfigError(
                    f"model.gan.domain={g.domain} gives 2D points but the data have shape {shape}"
                )
            source, transform = DataSource(make_toy(g.domain), g.domain), None
        if kind != "mlp":
            check_unet_depth(net, shape)
        model = CycleGAN(
            shape,
            source,
            loss=g.loss,
            loss_args=g.loss_args,
            cycle_weight=g.cycle_weight,
            identity_weight=g.identity_weight,
            pool_size=g.pool_size,
            hidden=net.width if kind == "mlp" else net.base_channels,
            depth=net.depth if kind == "mlp" else len(net.channel_mults),
            transform=transform,
        )
        model.n_critic = g.n_critic
        return model


register(Family("cyclegan", CycleGAN, CycleGANConfig))
