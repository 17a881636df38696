"""A small style-based generator (Karras et al., 2019): a mapping network z -> w, a learned
constant input, per-layer noise inputs and adaptive instance normalisation (AdaIN) at every
resolution, for 8x8 to 32x32 images."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genlab._validate import check_positive, check_positive_int, check_tensor
from genlab.networks.gan import (
    _check_batch,
    _image_geometry,
)
from genlab.networks.sizing import crop_image

__all__ = ["AdaIN", "EqualizedConv2d", "EqualizedLinear", "StyleGenerator", "adain"]


# --------------------------------------------------------------------------- equalised learning rate


class EqualizedLinear(nn.Module):
    """A linear layer with an equalised learning rate (Karras et al., 2018): the stored weight is
    N(0, 1 / lr_mul^2) and is scaled at every call by ``c = lr_mul * gain / sqrt(fan_in)``, so the
    weight in use starts with He's variance gain^2 / fan_in, and an optimiser whose steps do not
    depend on the gradient's scale (Adam) moves it by ``c`` times its learning rate: the same
    relative speed in every layer, ``lr_mul`` times slower (StyleGAN's mapping network: 0.01).
    The bias is stored divided by ``lr_mul`` and used times it."""

    def __init__(self, in_features: int, out_features: int, gain: float = math.sqrt(2), lr_mul: float = 1.0):
        super().__init__()
        check_positive_int(in_features, "in_features")
        check_positive_int(out_features, "out_features")
        self.lr_mul = check_positive(lr_mul, "lr_mul")
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / self.lr_mul)
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.scale = self.lr_mul * gain / math.sqrt(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class EqualizedConv2d(nn.Module):
    """A k x k convolution ('same' padding) with an equalised learning rate; see
    :class:`EqualizedLinear` (fan_in = in_channels k^2)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, gain: float = math.sqrt(2)) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.scale = gain / math.sqrt(in_channels * kernel * kernel)
        self.padding = kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


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

    def __init__(self, channels: int, w_dim: int, eps: float = 1e-5, equalized: bool = False) -> None:
        super().__init__()
        check_positive_int(channels, "AdaIN.channels")
        check_positive_int(w_dim, "AdaIN.w_dim")
        self.eps = check_positive(eps, "AdaIN.eps")
        self.affine: nn.Module = (
            EqualizedLinear(w_dim, 2 * channels, gain=1.0) if equalized else nn.Linear(w_dim, 2 * channels)
        )

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
    def __init__(self, c_in: int, c_out: int, w_dim: int, upsample: bool, equalized: bool = False) -> None:
        super().__init__()
        self.upsample = upsample
        self.conv: nn.Module = (
            EqualizedConv2d(c_in, c_out, 3) if equalized else nn.Conv2d(c_in, c_out, 3, padding=1)
        )
        self.noise = _NoiseInput(c_out)
        self.adain = AdaIN(c_out, w_dim, equalized=equalized)

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, generator: torch.Generator | None, noise: bool
    ) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = F.leaky_relu(self.noise(self.conv(x), generator, noise), 0.2)
        return self.adain(x, w)


class StyleGenerator(nn.Module):
    """A small style-based generator: ``z -> (B, channels, H, W)`` in [-1, 1] for ``image_size``
    H or (H, W) (built at the working side S of :mod:`~genlab.networks.sizing`, then cropped).

    ::

        w = mapping(z / rms(z))                      # mapping_layers x (Linear + LeakyReLU 0.2)
        h = const (4x4, learned); h = AdaIN(LReLU(conv(h) + s * noise), w)
        h = AdaIN(LReLU(conv(upsample(h)) + s * noise), w)   # n = log2(S/4) times, each
        h = AdaIN(LReLU(conv(h) + s * noise), w)             #   followed by a second block
        x = tanh(Conv1x1(h))

    Noise maps are drawn from the ``generator`` passed to :meth:`forward` (so the same seed
    gives the same image); ``noise=False`` drops them, making the output a function of z only.
    Per-channel noise scales start at 0.1 (StyleGAN starts at 0) so the noise path is active.

    With ``equalized_lr`` every layer is an :class:`EqualizedLinear` / :class:`EqualizedConv2d`,
    and the mapping network's learning rate is ``mapping_lr_mul`` times the others' (StyleGAN:
    0.01), which keeps w from drifting faster than the synthesis layers can follow.
    """

    def __init__(
        self,
        latent_dim: int,
        channels: int,
        image_size: int | tuple[int, int],
        w_dim: int = 64,
        mapping_layers: int = 4,
        base: int = 64,
        equalized_lr: bool = False,
        mapping_lr_mul: float = 1.0,
    ) -> None:
        super().__init__()
        if mapping_lr_mul != 1.0 and not equalized_lr:
            raise ValueError("mapping_lr_mul scales the equalised learning rate; set equalized_lr=True")
        for value, name in (
            (latent_dim, "latent_dim"),
            (channels, "channels"),
            (w_dim, "w_dim"),
            (mapping_layers, "mapping_layers"),
            (base, "base"),
        ):
            check_positive_int(value, f"StyleGenerator.{name}")
        self.image_size = image_size
        self.height, self.width, self.side = _image_geometry(image_size, "StyleGenerator.image_size")
        self.latent_dim, self.channels, self.w_dim = latent_dim, channels, w_dim
        mapping: list[nn.Module] = []
        dim = latent_dim
        for _ in range(mapping_layers):
            linear = (
                EqualizedLinear(dim, w_dim, lr_mul=mapping_lr_mul) if equalized_lr else nn.Linear(dim, w_dim)
            )
            mapping += [linear, nn.LeakyReLU(0.2)]
            dim = w_dim
        self.mapping = nn.Sequential(*mapping)
        for layer in self.mapping:  # (an equalised layer has He's variance by construction)
            # He initialisation for LeakyReLU(0.2): w keeps the scale of z through the layers
            # (torch's default init shrinks the variance ~3x per layer, so after four layers w
            # hardly depends on z and the generator collapses to one image)
            if isinstance(layer, nn.Linear):
                nn.init.kaiming_normal_(layer.weight, a=0.2, nonlinearity="leaky_relu")
                nn.init.zeros_(layer.bias)
        n = int(math.log2(self.side // 4))
        ch = base * 2**n
        self.const = nn.Parameter(torch.randn(1, ch, 4, 4))
        eq = equalized_lr
        blocks = [_StyleBlock(ch, ch, w_dim, upsample=False, equalized=eq)]
        for _ in range(n):  # two styled convolutions per resolution, as in StyleGAN
            blocks.append(_StyleBlock(ch, ch // 2, w_dim, upsample=True, equalized=eq))
            blocks.append(_StyleBlock(ch // 2, ch // 2, w_dim, upsample=False, equalized=eq))
            ch //= 2
        self.blocks = nn.ModuleList(blocks)
        self.to_image: nn.Module = (
            EqualizedConv2d(ch, channels, 1, gain=1.0) if eq else nn.Conv2d(ch, channels, 1)
        )

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
        return crop_image(torch.tanh(self.to_image(h)), self.height, self.width)  # (B, C, H, W)
