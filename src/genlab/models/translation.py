"""Adversarial translation between domains: pix2pix (paired) and CycleGAN (unpaired).

Notation: ``l(.)`` is a discriminator output (logit, or raw score for LSGAN), ``L_D(real,
fake)`` and ``L_G(fake)`` a GAN loss pair of :func:`~genlab.models.gan_losses.make_gan_loss`
(``"nonsaturating"``, ``"minimax"`` or ``"lsgan"``), ``E`` a batch mean and ``|.|_mean`` the
mean absolute value over *every element* (batch and data dims), the normalisation of the
papers' lambda.

pix2pix (Isola et al., 2017): a conditional GAN on pairs (s, x) where s = C(x) + sigma eps is
the corrupted input of a clean image x (:class:`~genlab.paths.corruptions.DataCoupling`), a
generator G(s) and a discriminator D(s, t) that scores (input, target) pairs patch by patch:

    L_D = L_D(D(s, x), D(s, G(s)))                       (G(s) detached)
    L_G = L_G(D(s, G(s))) + lambda_L1 |G(s) - x|_mean     (lambda_L1 = 100 in the paper)

CycleGAN (Zhu et al., 2017): unpaired domains A (the ``source``) and B (the data), two
generators G_ab: A -> B, G_ba: B -> A and two discriminators D_a, D_b; least squares by
default (Mao et al., 2017, with a = 0, b = c = 1):

    L_D = L_D(D_b(x_b), D_b(G_ab(x_a))) + L_D(D_a(x_a), D_a(G_ba(x_b)))         (fakes detached)
    L_G = L_G(D_b(G_ab(x_a))) + L_G(D_a(G_ba(x_b)))
          + lambda_cyc (|G_ba(G_ab(x_a)) - x_a|_mean + |G_ab(G_ba(x_b)) - x_b|_mean)

with lambda_cyc = 10. The cycle term is a per-element mean (the paper's lambda is on mean
absolute errors); it equals :func:`~genlab.models.gan_losses.cycle_consistency_loss` (which
sums over each sample's dims) divided by prod(data_shape), and is computed directly here so
that the translated batches G_ab(x_a), G_ba(x_b) are shared with the adversarial terms.
Left out of this implementation: the history buffer of 50 generated images fed to the
discriminators and the optional identity loss.

Both losses draw all their randomness (pix2pix: the corruption; CycleGAN: the domain-A batch)
from the ``generator`` argument, fresh in ``d_loss`` and again in ``g_loss``, so a seeded run
resumes bit for bit. In ``g_loss`` the discriminators are frozen (their parameters get no
gradient), and in ``d_loss`` the fakes are computed without a graph into the generators.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from genlab._validate import check_finite, check_positive_int, check_tensor
from genlab.data.domains import ImageTransform, as_transform
from genlab.models.adversarial import AdversarialModel
from genlab.models.base import Batch, split_batch
from genlab.models.coders import check_data_shape, check_image_shape
from genlab.models.gan_losses import make_gan_loss
from genlab.models.registry import Family, register
from genlab.networks.gan import ConvDiscriminator, MLPDiscriminator, _mlp
from genlab.networks.pix2pix import PatchDiscriminator, UNetGenerator
from genlab.paths.corruptions import Corruption, DataCoupling, make_corruption

__all__ = ["TRANSLATION_LOSSES", "CycleGAN", "Pix2Pix", "ResidualMLP"]

#: GAN losses the translation models accept. The WGAN critics need weight clipping or a
#: gradient penalty on (input, target) pairs and several critic steps; not wired here.
TRANSLATION_LOSSES: tuple[str, ...] = ("lsgan", "minimax", "nonsaturating")


# --------------------------------------------------------------------------- helpers


def _make_loss(name: str, loss_args: Mapping[str, float] | None) -> tuple[Callable[..., Any], ...]:
    if name not in TRANSLATION_LOSSES:
        raise ValueError(
            f"unknown translation GAN loss {name!r}; valid losses are: {', '.join(TRANSLATION_LOSSES)} "
            "(the WGAN critics are not supported by pix2pix / CycleGAN)"
        )
    if loss_args is not None and not isinstance(loss_args, Mapping):
        raise ValueError(f"loss_args must be a mapping of option names to numbers, got {loss_args!r}")
    return make_gan_loss(name, **dict(loss_args or {}))


def _weight(value: object, name: str) -> float:
    """A finite loss weight >= 0 (0 switches the term off, the papers' ablations)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < math.inf:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _module(value: object, name: str, role: str) -> nn.Module:
    if not isinstance(value, nn.Module):
        raise ValueError(f"{name} must be an nn.Module ({role}), got {type(value).__name__}")
    return value


def _check_batch(x: object, data_shape: tuple[int, ...], name: str) -> torch.Tensor:
    check_tensor(x, name)
    assert isinstance(x, torch.Tensor)
    if x.dim() != len(data_shape) + 1 or tuple(x.shape[1:]) != data_shape or x.shape[0] < 1:
        want = ", ".join(["B", *map(str, data_shape)])
        raise ValueError(f"{name} must have shape ({want}) = (B, *data_shape); got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return check_finite(x, name)


def _check_output(out: object, like: torch.Tensor, name: str) -> torch.Tensor:
    check_tensor(out, name)
    assert isinstance(out, torch.Tensor)
    if out.shape != like.shape:
        raise ValueError(f"{name} must return the input's shape {tuple(like.shape)}, got {tuple(out.shape)}")
    return out


def _params(*modules: nn.Module) -> list[nn.Parameter]:
    return [p for m in modules for p in m.parameters()]


@contextmanager
def _frozen(*modules: nn.Module) -> Iterator[None]:
    """Parameters of ``modules`` do not require grad inside the block (gradients still flow
    through the modules to their inputs); restored afterwards."""
    params = [p for p in _params(*modules) if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _mean_abs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
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


# --------------------------------------------------------------------------- pix2pix


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
        self._d_loss_fn, self._g_loss_fn = _make_loss(loss, loss_args)
        self.l1_weight = _weight(l1_weight, "l1_weight")
        check_positive_int(hidden, "hidden")
        check_positive_int(depth, "depth")
        c = shape[0]
        self.g_net = (
            UNetGenerator(c, c, base=hidden, depth=depth)
            if generator is None
            else _module(generator, "generator", "inputs (B, C, H, W) -> images (B, C, H, W)")
        )
        self.d_net = (
            PatchDiscriminator(c, c, base=hidden, n_layers=depth)
            if discriminator is None
            else _module(discriminator, "discriminator", "(source, target) -> patch logits")
        )

    # -- players ------------------------------------------------------------------------
    def discriminator_parameters(self) -> list[nn.Parameter]:
        return _params(self.d_net)

    def generator_parameters(self) -> list[nn.Parameter]:
        return _params(self.g_net)

    def translate(self, s: torch.Tensor) -> torch.Tensor:
        """G(s): inputs (B, C, H, W) -> translated images (B, C, H, W)."""
        s = _check_batch(s, self.data_shape, "inputs")
        return _check_output(self.g_net(s), s, "the generator")

    def _scores(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = self.d_net(s, t)
        check_tensor(out, "discriminator output")
        return out.flatten()  # (B * patches,)

    # -- losses -------------------------------------------------------------------------
    def d_loss(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """L_D = L_D(D(s, x), D(s, G(s))) with s = C(x) + sigma eps drawn from ``generator``."""
        x, _ = split_batch(batch)
        x = _check_batch(x, self.data_shape, "x")
        s = self.coupling.inputs(x, generator)  # (B, C, H, W)
        with torch.no_grad():
            fake = self.translate(s)
        real_scores, fake_scores = self._scores(s, x), self._scores(s, fake)
        loss = self._d_loss_fn(real_scores, fake_scores)
        return {"loss": loss, "d_real": real_scores.detach().mean(), "d_fake": fake_scores.detach().mean()}

    def g_loss(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """L_G = L_G(D(s, G(s))) + lambda_L1 |G(s) - x|_mean with fresh inputs s from ``generator``."""
        x, _ = split_batch(batch)
        x = _check_batch(x, self.data_shape, "x")
        s = self.coupling.inputs(x, generator)  # (B, C, H, W)
        fake = self.translate(s)
        with _frozen(self.d_net):
            scores = self._scores(s, fake)
        adversarial = self._g_loss_fn(scores)
        l1 = _mean_abs(fake, x)
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
        x0 = _check_batch(x0, self.data_shape, "x0")
        if x0.shape[0] != n:
            raise ValueError(f"x0 must hold n = {n} inputs, got {x0.shape[0]}")
        return self.translate(x0)

    def extra_repr(self) -> str:
        return f"data_shape={self.data_shape}, coupling={self.coupling!r}, loss={self.loss_name!r}, " + (
            f"l1_weight={self.l1_weight}"
        )


# --------------------------------------------------------------------------- CycleGAN


class CycleGAN(AdversarialModel):
    """CycleGAN: two translators and two discriminators with a cycle L1; see the module docstring.

    Args:
        data_shape: (D,) for vectors or (C, H, W) for square images with H in {8, 16, 32}
            (the default networks).
        source: domain A, anything with ``sample(shape, generator, dtype, device)``: a
            :class:`~genlab.paths.DataSource` of a 2D toy, or a
            :class:`~genlab.data.domains.TransformedImages`. Domain B is the data batch.
        loss: ``"lsgan"`` (the paper's), ``"nonsaturating"`` or ``"minimax"``.
        loss_args: options of the loss (LSGAN targets a, b, c).
        cycle_weight: lambda_cyc >= 0 on the per-element mean cycle error.
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
        loss: str = "lsgan",
        loss_args: Mapping[str, float] | None = None,
        cycle_weight: float = 10.0,
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
        self._d_loss_fn, self._g_loss_fn = _make_loss(loss, loss_args)
        self.cycle_weight = _weight(cycle_weight, "cycle_weight")
        hidden = (16 if image else 64) if hidden is None else check_positive_int(hidden, "hidden")
        depth = 2 if depth is None else check_positive_int(depth, "depth")
        if transform is not None and not image:
            raise ValueError(f"transform applies to image domains; data_shape is {shape!r}")
        self.coupling: ImageTransform | None = None if transform is None else as_transform(transform)

        if image and any(m is None for m in (g_ab, g_ba, d_a, d_b)):
            check_image_shape(shape)

        def translator() -> nn.Module:
            if image:
                return UNetGenerator(shape[0], shape[0], base=hidden, depth=depth)
            return ResidualMLP(shape[0], width=hidden, depth=depth)

        def critic() -> nn.Module:
            if image:
                return ConvDiscriminator(shape[0], shape[1], base=hidden)
            return MLPDiscriminator(shape[0], width=hidden, depth=depth)

        role_g, role_d = "translator (B, *D) -> (B, *D)", "discriminator (B, *D) -> (B,)"
        self.g_ab = translator() if g_ab is None else _module(g_ab, "g_ab", role_g)
        self.g_ba = translator() if g_ba is None else _module(g_ba, "g_ba", role_g)
        self.d_a = critic() if d_a is None else _module(d_a, "d_a", role_d)
        self.d_b = critic() if d_b is None else _module(d_b, "d_b", role_d)

    @property  # type: ignore[misc]
    def starts_from_inputs(self) -> bool:  # type: ignore[override]
        """True when the domains are images related by a known transform (``self.coupling``)."""
        return self.coupling is not None

    # -- players ------------------------------------------------------------------------
    def discriminator_parameters(self) -> list[nn.Parameter]:
        return _params(self.d_a, self.d_b)

    def generator_parameters(self) -> list[nn.Parameter]:
        return _params(self.g_ab, self.g_ba)

    def translate_ab(self, x_a: torch.Tensor) -> torch.Tensor:
        """G_ab: domain A (B, *D) -> domain B (B, *D)."""
        return _check_output(self.g_ab(x_a), x_a, "g_ab")

    def translate_ba(self, x_b: torch.Tensor) -> torch.Tensor:
        """G_ba: domain B (B, *D) -> domain A (B, *D)."""
        return _check_output(self.g_ba(x_b), x_b, "g_ba")

    def draw_a(self, n: int, generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
        """n samples x_a (n, *D) of domain A, drawn from the source with ``generator``."""
        x_a = self.source.sample((n, *self.data_shape), generator, dtype=like.dtype, device=like.device)
        return _check_batch(x_a, self.data_shape, "source samples")

    def _score(self, d: nn.Module, x: torch.Tensor, name: str) -> torch.Tensor:
        out = d(x)
        check_tensor(out, f"{name} output")
        return out.flatten()  # (B,)

    # -- losses -------------------------------------------------------------------------
    def d_loss(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """L_D = L_D(D_b(x_b), D_b(G_ab(x_a))) + L_D(D_a(x_a), D_a(G_ba(x_b))), fakes detached."""
        x_b, _ = split_batch(batch)
        x_b = _check_batch(x_b, self.data_shape, "x")
        x_a = self.draw_a(x_b.shape[0], generator, x_b)  # (B, *D)
        with torch.no_grad():
            fake_b, fake_a = self.translate_ab(x_a), self.translate_ba(x_b)
        d_b = self._d_loss_fn(self._score(self.d_b, x_b, "d_b"), self._score(self.d_b, fake_b, "d_b"))
        d_a = self._d_loss_fn(self._score(self.d_a, x_a, "d_a"), self._score(self.d_a, fake_a, "d_a"))
        return {"loss": d_a + d_b, "d_a": d_a.detach(), "d_b": d_b.detach()}

    def g_loss(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """L_G = L_G(D_b(G_ab(x_a))) + L_G(D_a(G_ba(x_b))) + lambda_cyc * cycle, fresh x_a."""
        x_b, _ = split_batch(batch)
        x_b = _check_batch(x_b, self.data_shape, "x")
        x_a = self.draw_a(x_b.shape[0], generator, x_b)  # (B, *D)
        fake_b, fake_a = self.translate_ab(x_a), self.translate_ba(x_b)  # (B, *D) each
        with _frozen(self.d_a, self.d_b):
            g_ab = self._g_loss_fn(self._score(self.d_b, fake_b, "d_b"))
            g_ba = self._g_loss_fn(self._score(self.d_a, fake_a, "d_a"))
        cycle = _mean_abs(self.translate_ba(fake_b), x_a) + _mean_abs(self.translate_ab(fake_a), x_b)
        loss = g_ab + g_ba + self.cycle_weight * cycle
        return {"loss": loss, "g_ab": g_ab.detach(), "g_ba": g_ba.detach(), "cycle": cycle.detach()}

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
        x0 = _check_batch(x0, self.data_shape, "x0")
        if x0.shape[0] != n:
            raise ValueError(f"x0 must hold n = {n} inputs, got {x0.shape[0]}")
        return self.translate_ab(x0)

    def extra_repr(self) -> str:
        return (
            f"data_shape={self.data_shape}, source={self.source!r}, loss={self.loss_name!r}, "
            f"cycle_weight={self.cycle_weight}, coupling={self.coupling!r}"
        )


register(Family("pix2pix", Pix2Pix))
register(Family("cyclegan", CycleGAN))
