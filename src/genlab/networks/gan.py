"""Generators and discriminators for GANs (vectors and small square images, 8x8 to 32x32).

Unlike the time-conditioned networks of this package, these are called without a time:
``generator(z, y=None)`` maps latents (B, latent_dim) to samples, ``discriminator(x, y=None)``
maps samples to logits (or critic values). Class labels ``y`` are (B,) long in
``{0..num_classes-1}``; conditional networks require them, unconditional ones refuse them.

- :class:`MLPGenerator`, :class:`MLPDiscriminator`: vectors (B, D).
- :class:`ConvGenerator` (DCGAN: linear to 4x4, transposed-conv blocks with BatchNorm + ReLU,
  tanh) and :class:`ConvDiscriminator` (strided convs, LeakyReLU 0.2, no normalisation, so it
  can serve as a WGAN-GP critic; class conditioning by projection, Miyato & Koyama, 2018).
- the style-based generator is in :mod:`genlab.networks.style`, the pix2pix U-Net and
  PatchGAN discriminator in :mod:`genlab.networks.pix2pix` (all of them: ``genlab.networks``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genlab._validate import check_class_labels, check_positive_int, check_tensor
from genlab.networks.sizing import crop_image, image_hw, pad_image, working_side

__all__ = [
    "IMAGE_SIZES",
    "ConvDiscriminator",
    "spectral_normalise",
    "ConvGenerator",
    "MLPDiscriminator",
    "MLPGenerator",
]

#: image sides the networks work at without padding (any other H x W is padded to the next)
IMAGE_SIZES: tuple[int, ...] = (8, 16, 32, 64)
"""Image sizes supported by the convolutional generators and discriminators."""


# --------------------------------------------------------------------------- helpers


def spectral_normalise(module: nn.Module) -> nn.Module:
    """Spectral normalisation (Miyato et al., 2018) of every linear and convolutional layer of
    ``module``, in place: each weight W is used as W / sigma(W), sigma the largest singular value
    of W reshaped to (out, in * kernel), estimated by one power iteration per training forward
    pass (``torch.nn.utils.parametrizations.spectral_norm``). Returns ``module``."""
    from torch.nn.utils.parametrizations import spectral_norm

    layers = [m for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d))]
    for layer in layers:
        spectral_norm(layer)
    return module


def _image_geometry(image_size: object, name: str = "image_size") -> tuple[int, int, int]:
    """(H, W) of the images and the side S the network works at (see :mod:`.sizing`)."""
    h, w = image_hw(image_size, name)
    return h, w, working_side(h, w)


def _check_num_classes(num_classes: object, name: str) -> int | None:
    if num_classes is not None:
        check_positive_int(num_classes, name)
    return num_classes  # type: ignore[return-value]


def _check_labels(y: torch.Tensor | None, num_classes: int | None, batch_size: int, owner: str) -> None:
    if num_classes is None:
        if y is not None:
            raise ValueError(
                f"{owner} was built without class conditioning (num_classes=None) but got labels y; "
                "pass y=None or build it with num_classes set"
            )
        return
    if y is None:
        raise ValueError(
            f"{owner} is class-conditional (num_classes={num_classes}); pass labels y of shape (B,)"
        )
    check_class_labels(y, num_classes, batch_size)


def _check_batch(x: object, name: str, tail: tuple[int, ...], hint: str) -> torch.Tensor:
    check_tensor(x, name)
    assert isinstance(x, torch.Tensor)
    if x.dim() != len(tail) + 1 or tuple(x.shape[1:]) != tail:
        want = ", ".join(["B", *(str(s) for s in tail)])
        raise ValueError(f"{name} must have shape ({want}); got {tuple(x.shape)}{hint}")
    return x


def _label_embedding(num_classes: int | None, embed_dim: int, owner: str) -> tuple[nn.Embedding | None, int]:
    """A label embedding of ``embed_dim`` features for a conditional network (None for an
    unconditional one) and the number of input features it adds."""
    if num_classes is None:
        return None, 0
    check_positive_int(embed_dim, f"{owner}.embed_dim")
    return nn.Embedding(num_classes, embed_dim), embed_dim


def _append_label(h: torch.Tensor, embed: nn.Embedding | None, y: torch.Tensor | None) -> torch.Tensor:
    """Concatenate the label embedding of y to features h (B, F) -> (B, F + embed_dim)."""
    if embed is None or y is None:
        return h
    return torch.cat([h, embed(y.long()).to(h)], dim=1)


def _mlp(
    in_dim: int, width: int, depth: int, out_dim: int, act: type[nn.Module], **act_kw: float
) -> nn.Sequential:
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(depth):
        layers += [nn.Linear(dim, width), act(**act_kw)]
        dim = width
    layers.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------- MLPs


class MLPGenerator(nn.Module):
    """``G(z[, y])``: ``depth`` hidden layers of ``width`` units with ReLU, linear output.

    Conditioning concatenates a learned label embedding (``embed_dim`` units) to ``z``.
    Shapes: z (B, latent_dim), y (B,) -> (B, out_dim).

    >>> MLPGenerator(4, 2, width=8, depth=2)(torch.randn(3, 4)).shape
    torch.Size([3, 2])
    """

    def __init__(
        self,
        latent_dim: int,
        out_dim: int,
        width: int = 256,
        depth: int = 3,
        num_classes: int | None = None,
        embed_dim: int = 16,
    ) -> None:
        super().__init__()
        for value, name in (
            (latent_dim, "latent_dim"),
            (out_dim, "out_dim"),
            (width, "width"),
            (depth, "depth"),
        ):
            check_positive_int(value, f"MLPGenerator.{name}")
        self.latent_dim, self.out_dim = latent_dim, out_dim
        self.num_classes = _check_num_classes(num_classes, "MLPGenerator.num_classes")
        self.label_embed, extra = _label_embedding(self.num_classes, embed_dim, "MLPGenerator")
        self.net = _mlp(latent_dim + extra, width, depth, out_dim, nn.ReLU)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        z = _check_batch(z, "z", (self.latent_dim,), "")
        _check_labels(y, self.num_classes, z.shape[0], "MLPGenerator")
        z = _append_label(z, self.label_embed, y)
        return self.net(z)  # (B, out_dim)


class MLPDiscriminator(nn.Module):
    """``D(x[, y])``: ``depth`` hidden layers with LeakyReLU(0.2), returning (B,) logits.

    Conditioning concatenates a learned label embedding to ``x``. Without normalisation layers
    it can also serve as a WGAN critic.

    >>> MLPDiscriminator(2, width=8, depth=2)(torch.randn(3, 2)).shape
    torch.Size([3])
    """

    def __init__(
        self,
        in_dim: int,
        width: int = 256,
        depth: int = 3,
        num_classes: int | None = None,
        embed_dim: int = 16,
    ) -> None:
        super().__init__()
        for value, name in ((in_dim, "in_dim"), (width, "width"), (depth, "depth")):
            check_positive_int(value, f"MLPDiscriminator.{name}")
        self.in_dim = in_dim
        self.num_classes = _check_num_classes(num_classes, "MLPDiscriminator.num_classes")
        self.label_embed, extra = _label_embedding(self.num_classes, embed_dim, "MLPDiscriminator")
        self.net = _mlp(in_dim + extra, width, depth, 1, nn.LeakyReLU, negative_slope=0.2)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        x = _check_batch(x, "x", (self.in_dim,), " (flatten images with x.flatten(1))")
        _check_labels(y, self.num_classes, x.shape[0], "MLPDiscriminator")
        x = _append_label(x, self.label_embed, y)
        return self.net(x).squeeze(1)  # (B,)


# --------------------------------------------------------------------------- DCGAN


class ConvGenerator(nn.Module):
    """DCGAN generator: ``z[, y] -> (B, channels, H, W)`` in [-1, 1], for ``image_size`` H or
    (H, W); it works at the side S of :func:`~genlab.networks.sizing.working_side` and crops.

    ``n = log2(S / 4)`` upsampling blocks; block k has ``base * 2^(n-1-k)`` channels::

        h = ReLU(BN(Linear([z, e(y)]) reshaped to (B, base * 2^n, 4, 4)))
        h = ReLU(BN(ConvTranspose(4, stride 2)(h)))          # n times, doubling H and W
        x = tanh(Conv3x3(h))
    """

    def __init__(
        self,
        latent_dim: int,
        channels: int,
        image_size: int | tuple[int, int],
        base: int = 64,
        num_classes: int | None = None,
        embed_dim: int = 16,
    ) -> None:
        super().__init__()
        for value, name in ((latent_dim, "latent_dim"), (channels, "channels"), (base, "base")):
            check_positive_int(value, f"ConvGenerator.{name}")
        self.image_size = image_size
        self.height, self.width, self.side = _image_geometry(image_size, "ConvGenerator.image_size")
        self.latent_dim, self.channels = latent_dim, channels
        self.num_classes = _check_num_classes(num_classes, "ConvGenerator.num_classes")
        self.label_embed, extra = _label_embedding(self.num_classes, embed_dim, "ConvGenerator")
        n = int(math.log2(self.side // 4))
        self._ch0 = base * 2**n
        self.project = nn.Linear(latent_dim + extra, self._ch0 * 16)
        self.bn0 = nn.BatchNorm2d(self._ch0)
        blocks: list[nn.Module] = []
        ch = self._ch0
        for _ in range(n):
            blocks += [
                nn.ConvTranspose2d(ch, ch // 2, 4, stride=2, padding=1),
                nn.BatchNorm2d(ch // 2),
                nn.ReLU(),
            ]
            ch //= 2
        self.blocks = nn.Sequential(*blocks)
        self.to_image = nn.Conv2d(ch, channels, 3, padding=1)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        z = _check_batch(z, "z", (self.latent_dim,), "")
        _check_labels(y, self.num_classes, z.shape[0], "ConvGenerator")
        z = _append_label(z, self.label_embed, y)
        h = self.project(z).view(z.shape[0], self._ch0, 4, 4)
        h = self.blocks(F.relu(self.bn0(h)))
        return crop_image(torch.tanh(self.to_image(h)), self.height, self.width)  # (B, C, H, W)


class ConvDiscriminator(nn.Module):
    """DCGAN discriminator / WGAN critic: ``(B, C, H, W)[, y] -> (B,)`` logits (images padded
    to the working side S of :mod:`~genlab.networks.sizing`).

    A 3x3 conv to ``base`` channels, then ``n = log2(S / 4)`` strided 4x4 convs doubling the
    channels, each followed by LeakyReLU(0.2); features ``h`` (flattened 4x4 map) give
    ``l = w.h + b [+ e(y).h]`` (projection conditioning). ``batchnorm=True`` adds BatchNorm
    after the strided convs (plain GANs only: it breaks the per-sample gradient penalty).
    ``minibatch_std=True`` appends the minibatch standard deviation (Karras et al. 2018: the
    std over the batch of every feature, averaged to one number, as an extra 4x4 channel),
    so that D can see a batch that lacks variety and G is pushed away from mode collapse.
    """

    def __init__(
        self,
        channels: int,
        image_size: int | tuple[int, int],
        base: int = 64,
        num_classes: int | None = None,
        batchnorm: bool = False,
        minibatch_std: bool = False,
    ) -> None:
        super().__init__()
        for value, name in ((channels, "channels"), (base, "base")):
            check_positive_int(value, f"ConvDiscriminator.{name}")
        self.image_size = image_size
        self.height, self.width, self.side = _image_geometry(image_size, "ConvDiscriminator.image_size")
        self.channels = channels
        self.num_classes = _check_num_classes(num_classes, "ConvDiscriminator.num_classes")
        layers: list[nn.Module] = [nn.Conv2d(channels, base, 3, padding=1), nn.LeakyReLU(0.2)]
        ch = base
        for _ in range(int(math.log2(self.side // 4))):
            layers.append(nn.Conv2d(ch, ch * 2, 4, stride=2, padding=1))
            if batchnorm:
                layers.append(nn.BatchNorm2d(ch * 2))
            layers.append(nn.LeakyReLU(0.2))
            ch *= 2
        self.features = nn.Sequential(*layers)
        self.minibatch_std = bool(minibatch_std)
        feat_dim = (ch + int(self.minibatch_std)) * 16
        self.head = nn.Linear(feat_dim, 1)
        self.label_embed = nn.Embedding(self.num_classes, feat_dim) if self.num_classes is not None else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        x = _check_batch(x, "x", (self.channels, self.height, self.width), "")
        _check_labels(y, self.num_classes, x.shape[0], "ConvDiscriminator")
        h = self.features(pad_image(x, self.side))  # (B, ch, 4, 4)
        if self.minibatch_std:
            spread = h.std(dim=0, unbiased=False).mean() if h.shape[0] > 1 else h.new_zeros(())
            h = torch.cat([h, spread.expand(h.shape[0], 1, 4, 4)], dim=1)
        h = h.flatten(1)  # (B, feat_dim)
        out = self.head(h).squeeze(1)
        if self.label_embed is not None and y is not None:
            out = out + (self.label_embed(y.long()).to(h) * h).sum(dim=1)
        return out  # (B,)
