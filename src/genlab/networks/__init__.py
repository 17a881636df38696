"""Networks: plain ``nn.Module``s that map tensors to tensors.

Every network is called as ``net(x, t, y=None)`` with x of shape (B, *D), t a float or a
(B,) tensor in [0, 1] (t = 0 noise, t = 1 data) and optional class labels y (B,) long
(-1 = "no label"); it returns a tensor whose shape is fixed by its config. A network knows
nothing of paths or what it predicts (velocity, noise, data or score): that is the model's
business.

- :class:`TimeMLP` / :class:`MLPConfig`: vectors (B, dim), for 2D toys and tabular data.
- :class:`UNet` / :class:`UNetConfig`: square images (B, C, H, W), 8x8 to 32x32.
- :class:`SinusoidalTimeEmbedding`, :class:`FourierTimeEmbedding` (registry
  ``TIME_EMBEDDINGS``) and :class:`ClassEmbedding` (labels with a null token).
"""

from __future__ import annotations

from torch import nn

from genlab.networks.embeddings import (
    TIME_EMBEDDINGS,
    ClassEmbedding,
    FourierTimeEmbedding,
    SinusoidalTimeEmbedding,
)
from genlab.networks.gan import (
    ConvDiscriminator,
    ConvGenerator,
    MLPDiscriminator,
    MLPGenerator,
)
from genlab.networks.mlp import ACTIVATIONS, MLPConfig, TimeMLP
from genlab.networks.pix2pix import PatchDiscriminator, UNetGenerator
from genlab.networks.style import AdaIN, StyleGenerator, adain
from genlab.networks.unet import UNet, UNetConfig

__all__ = [
    "AdaIN",
    "ConvDiscriminator",
    "ConvGenerator",
    "MLPDiscriminator",
    "MLPGenerator",
    "PatchDiscriminator",
    "StyleGenerator",
    "UNetGenerator",
    "adain",
    "ACTIVATIONS",
    "TIME_EMBEDDINGS",
    "ClassEmbedding",
    "FourierTimeEmbedding",
    "MLPConfig",
    "SinusoidalTimeEmbedding",
    "TimeMLP",
    "UNet",
    "UNetConfig",
    "count_parameters",
]


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``module`` (buffers excluded).

    Args:
        module: any ``nn.Module``.
        trainable_only: count only parameters with ``requires_grad=True``.

    >>> count_parameters(nn.Linear(3, 2))
    8
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
