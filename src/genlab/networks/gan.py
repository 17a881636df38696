"""Generators and discriminators for GANs (vectors and small square images, 8x8 to 32x32).

Unlike the time-conditioned networks of this package, these are called without a time:
``generator(z, y=None)`` maps latents (B, latent_dim) to samples, ``discriminator(x, y=None)``
maps samples to logits (or critic values). Class labels ``y`` are (B,) long in
``{0..num_classes-1}``; conditional networks require them, unconditional ones refuse them.

- :class:`MLPGenerator`, :class:`MLPDiscriminator`: vectors (B, D).
- :class:`ConvGenerator` (DCGAN: linear to 4x4, transposed-conv blocks with BatchNorm + ReLU,
  tanh) and :class:`ConvDiscriminator` (strided convs, LeakyReLU 0.2, no normalisation, so it
  can serve as a WGAN-GP critic; class conditioning by projection, Miyato & Koyama, 2018).
- :func:`adain` / :class:`AdaIN` and :class:`StyleGenerator` (a small StyleGAN, Karras et al.,
  2019): mapping network ``z -> w``, learned constant input, per-layer noise and AdaIN.
- :class:`UNetGenerator` and :class:`PatchDiscriminator` for pix2pix (Isola et al., 2017).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genlab._validate import check_positive, check_tensor
from genlab.networks.embeddings import _check_positive_int

__all__ = [
    "IMAGE_SIZES",
    "AdaIN",
    "ConvDiscriminator",
    "ConvGenerator",
    "MLPDiscriminator",
    "MLPGenerator",
    "PatchDiscriminator",
    "StyleGenerator",
    "UNetGenerator",
    "adain",
]

IMAGE_SIZES: tuple[int, ...] = (8, 16, 32)
"""Image sizes supported by the convolutional generators and discriminators."""


# --------------------------------------------------------------------------- helpers


def _check_image_size(image_size: object, name: str = "image_size") -> int:
    if isinstance(image_size, bool) or image_size not in IMAGE_SIZES:
        valid = ", ".join(str(s) for s in IMAGE_SIZES)
        raise ValueError(f"{name} must be one of {valid}; got {image_size!r}")
    assert isinstance(image_size, int)
    return image_size


def _check_num_classes(num_classes: object, name: str) -> int | None:
    if num_classes is not None:
        _check_positive_int(num_classes, name)
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
    check_tensor(y, "y")
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise ValueError(f"y must be an integer tensor of class labels, got dtype {y.dtype}")
    if y.shape != (batch_size,):
        raise ValueError(f"y must have shape (B,) = ({batch_size},); got {tuple(y.shape)}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(
            f"y must hold labels in {{0..{num_classes - 1}}} (num_classes={num_classes}); "
            f"got values in [{int(y.min())}, {int(y.max())}]"
        )


def _check_batch(x: object, name: str, tail: tuple[int, ...], hint: str) -> torch.Tensor:
    check_tensor(x, name)
    assert isinstance(x, torch.Tensor)
    if x.dim() != len(tail) + 1 or tuple(x.shape[1:]) != tail:
        want = ", ".join(["B", *(str(s) for s in tail)])
        raise ValueError(f"{name} must have shape ({want}); got {tuple(x.shape)}{hint}")
    return x


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
            _check_positive_int(value, f"MLPGenerator.{name}")
        self.latent_dim, self.out_dim = latent_dim, out_dim
        self.num_classes = _check_num_classes(num_classes, "MLPGenerator.num_classes")
        extra = 0
        self.label_embed: nn.Embedding | None = None
        if self.num_classes is not None:
            _check_positive_int(embed_dim, "MLPGenerator.embed_dim")
            self.label_embed = nn.Embedding(self.num_classes, embed_dim)
            extra = embed_dim
        self.net = _mlp(latent_dim + extra, width, depth, out_dim, nn.ReLU)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        z = _check_batch(z, "z", (self.latent_dim,), "")
        _check_labels(y, self.num_classes, z.shape[0], "MLPGenerator")
        if self.label_embed is not None and y is not None:
            z = torch.cat([z, self.label_embed(y.long()).to(z)], dim=1)
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
            _check_positive_int(value, f"MLPDiscriminator.{name}")
        self.in_dim = in_dim
        self.num_classes = _check_num_classes(num_classes, "MLPDiscriminator.num_classes")
        extra = 0
        self.label_embed: nn.Embedding | None = None
        if self.num_classes is not None:
            _check_positive_int(embed_dim, "MLPDiscriminator.embed_dim")
            self.label_embed = nn.Embedding(self.num_classes, embed_dim)
            extra = embed_dim
        self.net = _mlp(in_dim + extra, width, depth, 1, nn.LeakyReLU, negative_slope=0.2)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        x = _check_batch(x, "x", (self.in_dim,), " (flatten images with x.flatten(1))")
        _check_labels(y, self.num_classes, x.shape[0], "MLPDiscriminator")
        if self.label_embed is not None and y is not None:
            x = torch.cat([x, self.label_embed(y.long()).to(x)], dim=1)
        return self.net(x).squeeze(1)  # (B,)


# --------------------------------------------------------------------------- DCGAN


class ConvGenerator(nn.Module):
    """DCGAN generator: ``z[, y] -> (B, channels, image_size, image_size)`` in [-1, 1].

    ``n = log2(image_size / 4)`` upsampling blocks; block k has ``base * 2^(n-1-k)`` channels::

        h = ReLU(BN(Linear([z, e(y)]) reshaped to (B, base * 2^n, 4, 4)))
        h = ReLU(BN(ConvTranspose(4, stride 2)(h)))          # n times, doubling H and W
        x = tanh(Conv3x3(h))
    """

    def __init__(
        self,
        latent_dim: int,
        channels: int,
        image_size: int,
        base: int = 64,
        num_classes: int | None = None,
        embed_dim: int = 16,
    ) -> None:
        super().__init__()
        for value, name in ((latent_dim, "latent_dim"), (channels, "channels"), (base, "base")):
            _check_positive_int(value, f"ConvGenerator.{name}")
        self.image_size = _check_image_size(image_size, "ConvGenerator.image_size")
        self.latent_dim, self.channels = latent_dim, channels
        self.num_classes = _check_num_classes(num_classes, "ConvGenerator.num_classes")
        extra = 0
        self.label_embed: nn.Embedding | None = None
        if self.num_classes is not None:
            _check_positive_int(embed_dim, "ConvGenerator.embed_dim")
            self.label_embed = nn.Embedding(self.num_classes, embed_dim)
            extra = embed_dim
        n = int(math.log2(self.image_size // 4))
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
        if self.label_embed is not None and y is not None:
            z = torch.cat([z, self.label_embed(y.long()).to(z)], dim=1)
        h = self.project(z).view(z.shape[0], self._ch0, 4, 4)
        h = self.blocks(F.relu(self.bn0(h)))
        return torch.tanh(self.to_image(h))  # (B, C, S, S)


class ConvDiscriminator(nn.Module):
    """DCGAN discriminator / WGAN critic: ``(B, C, S, S)[, y] -> (B,)`` logits.

    A 3x3 conv to ``base`` channels, then ``n = log2(S / 4)`` strided 4x4 convs doubling the
    channels, each followed by LeakyReLU(0.2); features ``h`` (flattened 4x4 map) give
    ``l = w.h + b [+ e(y).h]`` (projection conditioning). ``batchnorm=True`` adds BatchNorm
    after the strided convs (plain GANs only: it breaks the per-sample gradient penalty).
    """

    def __init__(
        self,
        channels: int,
        image_size: int,
        base: int = 64,
        num_classes: int | None = None,
        batchnorm: bool = False,
    ) -> None:
        super().__init__()
        for value, name in ((channels, "channels"), (base, "base")):
            _check_positive_int(value, f"ConvDiscriminator.{name}")
        self.image_size = _check_image_size(image_size, "ConvDiscriminator.image_size")
        self.channels = channels
        self.num_classes = _check_num_classes(num_classes, "ConvDiscriminator.num_classes")
        layers: list[nn.Module] = [nn.Conv2d(channels, base, 3, padding=1), nn.LeakyReLU(0.2)]
        ch = base
        for _ in range(int(math.log2(self.image_size // 4))):
            layers.append(nn.Conv2d(ch, ch * 2, 4, stride=2, padding=1))
            if batchnorm:
                layers.append(nn.BatchNorm2d(ch * 2))
            layers.append(nn.LeakyReLU(0.2))
            ch *= 2
        self.features = nn.Sequential(*layers)
        feat_dim = ch * 16
        self.head = nn.Linear(feat_dim, 1)
        self.label_embed = nn.Embedding(self.num_classes, feat_dim) if self.num_classes is not None else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        s = self.image_size
        x = _check_batch(x, "x", (self.channels, s, s), "")
        _check_labels(y, self.num_classes, x.shape[0], "ConvDiscriminator")
        h = self.features(x).flatten(1)  # (B, feat_dim)
        out = self.head(h).squeeze(1)
        if self.label_embed is not None and y is not None:
            out = out + (self.label_embed(y.long()).to(h) * h).sum(dim=1)
        return out  # (B,)


# --------------------------------------------------------------------------- StyleGAN


def adain(
    content: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """Adaptive instance normalisation (Huang & Belongie, 2017).

    ``AdaIN(x) = style_std * (x - mu_c(x)) / sigma_c(x) + style_mean`` with per-sample,
    per-channel statistics over H and W: ``mu_c`` the mean and ``sigma_c = sqrt(var_c + eps)``
    (biased variance). Shapes: content (B, C, H, W), style_mean and style_std (B, C).
    """
    check_tensor(content, "content")
    if content.dim() != 4:
        raise ValueError(f"content must have shape (B, C, H, W); got {tuple(content.shape)}")
    b, c = content.shape[:2]
    for name, t in (("style_mean", style_mean), ("style_std", style_std)):
        check_tensor(t, name)
        if t.shape != (b, c):
            raise ValueError(f"{name} must have shape (B, C) = ({b}, {c}); got {tuple(t.shape)}")
    eps = check_positive(eps, "eps")
    mean = content.mean(dim=(2, 3), keepdim=True)
    var = content.var(dim=(2, 3), keepdim=True, unbiased=False)
    normed = (content - mean) / torch.sqrt(var + eps)
    return style_std[:, :, None, None] * normed + style_mean[:, :, None, None]


class AdaIN(nn.Module):
    """AdaIN whose style comes from an affine map of ``w``: ``(mean, std) = (A_m w, 1 + A_s w)``.

    The std map is offset by 1 so that at initialisation the layer is close to plain instance
    normalisation. Shapes: x (B, channels, H, W), w (B, w_dim) -> (B, channels, H, W).
    """

    def __init__(self, channels: int, w_dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        _check_positive_int(channels, "AdaIN.channels")
        _check_positive_int(w_dim, "AdaIN.w_dim")
        self.eps = check_positive(eps, "AdaIN.eps")
        self.affine = nn.Linear(w_dim, 2 * channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        mean, log_std = self.affine(w).chunk(2, dim=1)
        return adain(x, mean, 1.0 + log_std, self.eps)


class _NoiseInput(nn.Module):
    """Adds ``scale_c * n`` with a fresh ``n ~ N(0, 1)`` map of shape (B, 1, H, W)."""

    def __init__(self, channels: int, init: float = 0.1) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((1, channels, 1, 1), init))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None, noise: bool) -> torch.Tensor:
        if not noise:
            return x
        b, _, h, w = x.shape
        n = torch.randn((b, 1, h, w), generator=generator, dtype=x.dtype, device=x.device)
        return x + self.scale * n


class _StyleBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, w_dim: int, upsample: bool) -> None:
        super().__init__()
        self.upsample = upsample
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.noise = _NoiseInput(c_out)
        self.adain = AdaIN(c_out, w_dim)

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, generator: torch.Generator | None, noise: bool
    ) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = F.leaky_relu(self.noise(self.conv(x), generator, noise), 0.2)
        return self.adain(x, w)


class StyleGenerator(nn.Module):
    """A small style-based generator: ``z -> (B, channels, image_size, image_size)`` in [-1, 1].

    ::

        w = mapping(z / rms(z))                      # mapping_layers x (Linear + LeakyReLU 0.2)
        h = const (4x4, learned); h = AdaIN(LReLU(conv(h) + s * noise), w)
        h = AdaIN(LReLU(conv(upsample(h)) + s * noise), w)   # n = log2(S/4) times
        x = tanh(Conv1x1(h))

    Noise maps are drawn from the ``generator`` passed to :meth:`forward` (so the same seed
    gives the same image); ``noise=False`` drops them, making the output a function of z only.
    Per-channel noise scales start at 0.1 (StyleGAN starts at 0) so the noise path is active.
    """

    def __init__(
        self,
        latent_dim: int,
        channels: int,
        image_size: int,
        w_dim: int = 64,
        mapping_layers: int = 4,
        base: int = 64,
    ) -> None:
        super().__init__()
        for value, name in (
            (latent_dim, "latent_dim"),
            (channels, "channels"),
            (w_dim, "w_dim"),
            (mapping_layers, "mapping_layers"),
            (base, "base"),
        ):
            _check_positive_int(value, f"StyleGenerator.{name}")
        self.image_size = _check_image_size(image_size, "StyleGenerator.image_size")
        self.latent_dim, self.channels, self.w_dim = latent_dim, channels, w_dim
        mapping: list[nn.Module] = []
        dim = latent_dim
        for _ in range(mapping_layers):
            mapping += [nn.Linear(dim, w_dim), nn.LeakyReLU(0.2)]
            dim = w_dim
        self.mapping = nn.Sequential(*mapping)
        n = int(math.log2(self.image_size // 4))
        ch = base * 2**n
        self.const = nn.Parameter(torch.randn(1, ch, 4, 4))
        blocks = [_StyleBlock(ch, ch, w_dim, upsample=False)]
        for _ in range(n):
            blocks.append(_StyleBlock(ch, ch // 2, w_dim, upsample=True))
            ch //= 2
        self.blocks = nn.ModuleList(blocks)
        self.to_image = nn.Conv2d(ch, channels, 1)

    def map(self, z: torch.Tensor) -> torch.Tensor:
        """The mapping network ``z -> w`` (B, w_dim), after normalising each z to unit RMS."""
        z = _check_batch(z, "z", (self.latent_dim,), "")
        z = z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)
        return self.mapping(z)

    def forward(
        self, z: torch.Tensor, generator: torch.Generator | None = None, noise: bool = True
    ) -> torch.Tensor:
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        w = self.map(z)
        h = self.const.expand(z.shape[0], -1, -1, -1).to(z)
        for block in self.blocks:
            h = block(h, w, generator, noise)
        return torch.tanh(self.to_image(h))  # (B, C, S, S)


# --------------------------------------------------------------------------- pix2pix


class UNetGenerator(nn.Module):
    """Encoder-decoder with skip connections, ``(B, in_channels, H, W) -> (B, out_channels, H, W)``.

    ::

        e_0 = LReLU(Conv3x3(x))                          # base channels, H x W
        e_k = LReLU(BN(Conv4x4 stride 2 (e_{k-1})))      # base 2^k channels, H / 2^k, k = 1..depth
        d_k = ReLU(Conv3x3([ReLU(BN(ConvT(d_{k+1}))), e_k]))   # k = depth-1..0, with d_depth = e_depth
        out = tanh(Conv1x1(d_0))

    H and W must be divisible by ``2^depth``; depth 2 suits 8x8 to 32x32 images.
    """

    def __init__(self, in_channels: int, out_channels: int, base: int = 32, depth: int = 2) -> None:
        super().__init__()
        for value, name in (
            (in_channels, "in_channels"),
            (out_channels, "out_channels"),
            (base, "base"),
            (depth, "depth"),
        ):
            _check_positive_int(value, f"UNetGenerator.{name}")
        self.in_channels, self.out_channels, self.depth = in_channels, out_channels, depth
        self.stem = nn.Sequential(nn.Conv2d(in_channels, base, 3, padding=1), nn.LeakyReLU(0.2))
        self.down = nn.ModuleList()
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        ch = base
        for _ in range(depth):
            self.down.append(
                nn.Sequential(
                    nn.Conv2d(ch, ch * 2, 4, stride=2, padding=1), nn.BatchNorm2d(ch * 2), nn.LeakyReLU(0.2)
                )
            )
            self.up.append(
                nn.Sequential(
                    nn.ConvTranspose2d(ch * 2, ch, 4, stride=2, padding=1), nn.BatchNorm2d(ch), nn.ReLU()
                )
            )
            self.merge.append(nn.Sequential(nn.Conv2d(ch * 2, ch, 3, padding=1), nn.ReLU()))
            ch *= 2
        self.head = nn.Conv2d(base, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor(x, "x")
        f = 2**self.depth
        if (
            x.dim() != 4
            or x.shape[1] != self.in_channels
            or x.shape[2] % f
            or x.shape[3] % f
            or x.shape[2] < f
        ):
            raise ValueError(
                f"x must have shape (B, {self.in_channels}, H, W) with H and W positive multiples of "
                f"2^depth = {f}; got {tuple(x.shape)}"
            )
        skips = [self.stem(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        h = skips.pop()
        for k in reversed(range(self.depth)):
            h = self.merge[k](torch.cat([self.up[k](h), skips[k]], dim=1))
        return torch.tanh(self.head(h))


class PatchDiscriminator(nn.Module):
    """PatchGAN: ``D(source, target) -> (B, 1, H / 2^n_layers, W / 2^n_layers)`` logits.

    The source image (``in_channels``) and the target or generated image (``target_channels``,
    default ``in_channels``) are concatenated on channels, then ``n_layers`` strided 4x4 convs
    with LeakyReLU(0.2) and a final 3x3 conv to one logit per patch.
    """

    def __init__(
        self, in_channels: int, target_channels: int | None = None, base: int = 64, n_layers: int = 2
    ) -> None:
        super().__init__()
        target_channels = in_channels if target_channels is None else target_channels
        for value, name in (
            (in_channels, "in_channels"),
            (target_channels, "target_channels"),
            (base, "base"),
            (n_layers, "n_layers"),
        ):
            _check_positive_int(value, f"PatchDiscriminator.{name}")
        self.in_channels, self.target_channels, self.n_layers = in_channels, target_channels, n_layers
        layers: list[nn.Module] = []
        ch_in, ch = in_channels + target_channels, base
        for _ in range(n_layers):
            layers += [nn.Conv2d(ch_in, ch, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            ch_in, ch = ch, ch * 2
        layers.append(nn.Conv2d(ch_in, 1, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_tensor(source, "source")
        check_tensor(target, "target")
        f = 2**self.n_layers
        if source.dim() != 4 or source.shape[1] != self.in_channels:
            raise ValueError(
                f"source must have shape (B, {self.in_channels}, H, W); got {tuple(source.shape)}"
            )
        if (
            target.dim() != 4
            or target.shape[1] != self.target_channels
            or target.shape[2:] != source.shape[2:]
        ):
            raise ValueError(
                f"target must have shape (B, {self.target_channels}, H, W) matching source's H, W; "
                f"got {tuple(target.shape)} for source {tuple(source.shape)}"
            )
        if target.shape[0] != source.shape[0]:
            raise ValueError(f"source and target batch sizes differ: {source.shape[0]} vs {target.shape[0]}")
        if source.shape[2] % f or source.shape[3] % f or source.shape[2] < f:
            raise ValueError(
                f"source H and W must be positive multiples of 2^n_layers = {f}; "
                f"got {tuple(source.shape[2:])}"
            )
        return self.net(torch.cat([source, target], dim=1))
