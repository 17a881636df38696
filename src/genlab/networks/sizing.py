"""Images of any size for the power-of-two conv networks: pad to the side they work at, crop back.

The DCGAN generator and discriminator, the style generator and the VAE's conv encoder and
decoder halve (or double) a square grid down to (or up from) 4x4, so they work at sides
8, 16, 32, 64, ... An image of H x W is padded (centred, with zeros: mid-grey for images in
[-1, 1]) to the smallest such side S >= max(H, W) on the way in, and an output of S x S is
cropped to its centre H x W on the way out. Padding and cropping are each other's inverse
on the image region, so a 28 x 28 MNIST digit goes through a network built for 32 x 32 and
comes back 28 x 28.

>>> working_side(28, 28), working_side(5, 12), working_side(32, 32)
(32, 16, 32)
>>> x = torch.arange(6.0).reshape(1, 1, 2, 3)
>>> torch.equal(crop_image(pad_image(x, 8), 2, 3), x)
True
"""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F

__all__ = ["SMALLEST_SIDE", "crop_image", "image_hw", "pad_image", "working_side"]

#: the smallest side the conv networks work at (one stride-2 level above their 4x4 bottom)
SMALLEST_SIDE = 8


def image_hw(size: object, name: str = "image_size") -> tuple[int, int]:
    """``size`` as (H, W): an int H (square images) or a pair (H, W) of positive ints."""
    pair = (size, size) if isinstance(size, numbers.Integral) and not isinstance(size, bool) else size
    if (
        not isinstance(pair, (tuple, list))
        or len(pair) != 2
        or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and int(v) >= 1 for v in pair)
    ):
        raise ValueError(f"{name} must be a positive int H or a pair (H, W) of positive ints; got {size!r}")
    return int(pair[0]), int(pair[1])


def working_side(h: int, w: int) -> int:
    """The smallest power of two >= max(h, w, SMALLEST_SIDE): the side the network is built for."""
    side = SMALLEST_SIDE
    while side < max(h, w):
        side *= 2
    return side


def _offsets(h: int, w: int, side: int) -> tuple[int, int]:
    return (side - h) // 2, (side - w) // 2


def pad_image(x: torch.Tensor, side: int) -> torch.Tensor:
    """Pad (B, C, H, W) with zeros to (B, C, side, side), the image in the centre."""
    h, w = x.shape[-2], x.shape[-1]
    if (h, w) == (side, side):
        return x
    top, left = _offsets(h, w, side)
    return F.pad(x, (left, side - w - left, top, side - h - top))


def crop_image(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The centre (B, C, h, w) of a (B, C, S, S) batch: the inverse of :func:`pad_image`."""
    side = x.shape[-1]
    if (h, w) == (x.shape[-2], side):
        return x
    top, left = _offsets(h, w, side)
    return x[..., top : top + h, left : left + w]
