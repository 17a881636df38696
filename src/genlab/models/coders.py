"""Default encoder and decoder networks of the autoencoder families (VAE, VQ-VAE).

The models accept any ``nn.Module`` (``VAE(encoder=..., decoder=...)``); these are the ones
they build when none is given: an MLP for vectors (B, D), a strided-conv encoder / decoder
to a flat latent for images of any H x W (VAE; they work at the next power-of-two side and
pad / crop, :mod:`genlab.networks.sizing`), and conv encoders / decoders to a latent grid of
side H/2 or H/4 (VQ-VAE). Also the shape checks both families share.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from genlab._validate import check_positive_int
from genlab.networks.sizing import crop_image, pad_image, working_side

__all__ = [
    "IMAGE_SIZES",
    "ConvDecoder",
    "ConvEncoder",
    "GridDecoder",
    "GridEncoder",
    "MLPCoder",
    "check_data_shape",
    "check_image_shape",
]


# --------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------

#: image sides the flat conv encoder and decoder work at without padding
IMAGE_SIZES: tuple[int, ...] = (8, 16, 32, 64)
#: side of the smallest grid of the flat convolutional encoder / decoder
_BOTTOM = 4


def check_data_shape(data_shape: object, name: str = "data_shape") -> tuple[int, ...]:
    """Return ``data_shape`` as a tuple: (D,) for vectors or (C, H, W) for images."""
    if isinstance(data_shape, int) and not isinstance(data_shape, bool):
        data_shape = (data_shape,)
    if not isinstance(data_shape, Sequence) or isinstance(data_shape, str):
        raise ValueError(f"{name} must be a tuple (D,) or (C, H, W), got {data_shape!r}")
    shape = tuple(data_shape)
    if len(shape) not in (1, 3):
        raise ValueError(
            f"{name} must be (D,) for vectors or (C, H, W) for images, got {shape!r} "
            f"({len(shape)} dims); flatten other data to (D,)"
        )
    for d in shape:
        check_positive_int(d, f"every entry of {name}")
    return shape


def check_image_shape(data_shape: tuple[int, ...], name: str = "data_shape") -> tuple[int, int, int]:
    """Require an image shape (C, H, W) (any H, W >= 1)."""
    if len(data_shape) != 3:
        raise ValueError(f"{name} must be an image shape (C, H, W) for the conv networks, got {data_shape!r}")
    c, h, w = data_shape
    return c, h, w


class MLPCoder(nn.Module):
    """MLP ``in_dim -> hidden -> hidden -> out_dim`` (SiLU); flattens its input.

    Shapes: x (B, *) with prod(*) = in_dim -> (B, out_dim).
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 128) -> None:
        super().__init__()
        check_positive_int(in_dim, "in_dim")
        check_positive_int(out_dim, "out_dim")
        check_positive_int(hidden, "hidden")
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))  # (B, out_dim)


def _levels(image_size: int) -> int:
    """Number of stride-2 halvings from ``image_size`` down to the 4x4 bottom grid."""
    return (image_size // _BOTTOM).bit_length() - 1


class ConvEncoder(nn.Module):
    """Conv encoder: the image padded to the working side S, stride-2 convs down to 4x4, then a
    linear map. Shapes: x (B, C, H, W) -> (B, out_dim). Channels double at every halving.
    """

    def __init__(self, data_shape: Sequence[int], out_dim: int, hidden: int = 32) -> None:
        super().__init__()
        c, height, width = check_image_shape(tuple(data_shape))
        self.side = h = working_side(height, width)
        check_positive_int(out_dim, "out_dim")
        check_positive_int(hidden, "hidden")
        layers: list[nn.Module] = [nn.Conv2d(c, hidden, 3, padding=1), nn.SiLU()]
        ch = hidden
        for _ in range(_levels(h)):
            layers += [nn.Conv2d(ch, 2 * ch, 4, stride=2, padding=1), nn.SiLU()]
            ch *= 2
        self.conv = nn.Sequential(*layers)
        self.head = nn.Linear(ch * _BOTTOM * _BOTTOM, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(pad_image(x, self.side)).flatten(1))  # (B, out_dim)


class ConvDecoder(nn.Module):
    """Mirror of :class:`ConvEncoder`: a linear map to a 4x4 grid, transposed convs up to the
    working side S, cropped to H x W. Shapes: z (B, in_dim) -> (B, C, H, W) (unbounded
    outputs: means or logits).
    """

    def __init__(self, in_dim: int, data_shape: Sequence[int], hidden: int = 32) -> None:
        super().__init__()
        c, self.height, self.width = check_image_shape(tuple(data_shape))
        h = working_side(self.height, self.width)
        check_positive_int(in_dim, "in_dim")
        check_positive_int(hidden, "hidden")
        levels = _levels(h)
        ch = hidden * 2**levels
        self.bottom_channels = ch
        self.head = nn.Linear(in_dim, ch * _BOTTOM * _BOTTOM)
        layers: list[nn.Module] = [nn.SiLU()]
        for _ in range(levels):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, stride=2, padding=1), nn.SiLU()]
            ch //= 2
        layers.append(nn.Conv2d(ch, c, 3, padding=1))
        self.conv = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.head(z).reshape(z.shape[0], self.bottom_channels, _BOTTOM, _BOTTOM)
        return crop_image(self.conv(h), self.height, self.width)  # (B, C, H, W)


# --------------------------------------------------------------------------------------
# VAE
# --------------------------------------------------------------------------------------


def _check_factor(downsample: object) -> int:
    if downsample not in (2, 4) or isinstance(downsample, bool):
        raise ValueError(f"downsample must be 2 or 4 (latent grid H/2 or H/4), got {downsample!r}")
    return int(downsample)  # type: ignore[call-overload]


class GridEncoder(nn.Module):
    """Conv encoder to a latent grid. Shapes: (B, C, H, W) -> (B, code_dim, H/f, W/f)."""

    def __init__(self, channels: int, code_dim: int, hidden: int = 32, downsample: int = 2) -> None:
        super().__init__()
        check_positive_int(channels, "channels")
        check_positive_int(code_dim, "code_dim")
        check_positive_int(hidden, "hidden")
        layers: list[nn.Module] = [nn.Conv2d(channels, hidden, 3, padding=1), nn.SiLU()]
        for _ in range(_check_factor(downsample).bit_length() - 1):
            layers += [nn.Conv2d(hidden, hidden, 4, stride=2, padding=1), nn.SiLU()]
        layers += [nn.Conv2d(hidden, hidden, 3, padding=1), nn.SiLU(), nn.Conv2d(hidden, code_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, code_dim, H/f, W/f)


class GridDecoder(nn.Module):
    """Mirror of :class:`GridEncoder`. Shapes: (B, code_dim, h, w) -> (B, C, f h, f w)."""

    def __init__(self, channels: int, code_dim: int, hidden: int = 32, downsample: int = 2) -> None:
        super().__init__()
        check_positive_int(channels, "channels")
        check_positive_int(code_dim, "code_dim")
        check_positive_int(hidden, "hidden")
        layers: list[nn.Module] = [nn.Conv2d(code_dim, hidden, 3, padding=1), nn.SiLU()]
        for _ in range(_check_factor(downsample).bit_length() - 1):
            layers += [nn.ConvTranspose2d(hidden, hidden, 4, stride=2, padding=1), nn.SiLU()]
        layers.append(nn.Conv2d(hidden, channels, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)  # (B, C, H, W)
