"""The ``model.net`` section: one network setting shared by the families that have networks,
and the time-conditioned network (a :class:`~genlab.networks.TimeMLP` for vectors, a
:class:`~genlab.networks.UNet` for images) that the Gaussian-path families and the CNF build
from it. The architecture settings are handed on by name (:func:`settings_for`), never copied
field by field, so a new network setting is one line here and one in the network's config.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from torch import nn

from genlab._validate import ConfigError, check_choice, check_min
from genlab.networks import MLPConfig, TimeMLP, UNet, UNetConfig
from genlab.networks.mlp import DEFAULT_TIME_SCALE

__all__ = ["NET_KINDS", "NetConfig", "build_time_network", "check_net_kind", "settings_for"]

NET_KINDS = ("mlp", "unet", "conv", "style")


@dataclass
class NetConfig:
    kind: str = "mlp"  # mlp (vectors), unet (images); vae/gan images: conv, style (GAN generator)
    width: int = 256  # mlp: hidden width
    depth: int = 4  # mlp: number of hidden layers
    activation: str = "silu"  # mlp: silu, relu, gelu, tanh, elu, softplus
    time_embedding: str = "sinusoidal"  # sinusoidal or fourier
    time_dim: int = 64  # size of the time features
    time_scale: float = DEFAULT_TIME_SCALE  # mlp, sinusoidal: features of time_scale * t (runs before: 1000)
    base_channels: int = 32  # unet: channels at full resolution
    channel_mults: tuple[int, ...] = (1, 2)  # unet: channel multiplier per resolution
    num_res_blocks: int = 1  # unet: residual blocks per resolution
    attention: bool = False  # unet: self-attention at the lowest resolution
    dropout: float = 0.0  # unet: dropout in residual blocks
    class_conditional: bool = False  # condition on labels (with a null token for guidance)

    def validate(self) -> None:
        check_choice("model.net.kind", self.kind, NET_KINDS)
        check_min("model.net.width", self.width, 1)
        check_min("model.net.depth", self.depth, 1)
        if not (isinstance(self.time_scale, (int, float)) and 0 < self.time_scale < float("inf")):
            raise ConfigError(f"model.net.time_scale must be a positive number, got {self.time_scale!r}")


def settings_for(config_cls: type, net: NetConfig, **given: Any) -> Any:
    """``config_cls`` (a network's config dataclass) with every setting it shares by name with
    ``net``, plus the data-given ones (``dim``, ``in_channels``, ``num_classes``, ...)."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    shared = {f.name: getattr(net, f.name) for f in dataclasses.fields(net) if f.name in names}
    return config_cls(**{**shared, **given})


def check_net_kind(family: str, net: NetConfig, shape: tuple[int, ...], image_kinds: tuple[str, ...]) -> str:
    """The configured network kind, checked against the data: mlp for vectors, one of
    ``image_kinds`` for images."""
    if len(shape) == 1:
        if net.kind != "mlp":
            raise ConfigError(
                f"model.family={family} on vector data uses MLPs; set model.net.kind=mlp (got {net.kind})"
            )
        return net.kind
    if net.kind not in image_kinds:
        raise ConfigError(
            f"model.family={family} on images of shape {shape} needs model.net.kind="
            f"{' or '.join(image_kinds)} (got {net.kind})"
        )
    return net.kind


def label_count(net: NetConfig, num_classes: int | None) -> int | None:
    """The number of classes of a conditional network (None when unconditional)."""
    if not net.class_conditional:
        return None
    if num_classes is None:
        raise ConfigError(
            "model.net.class_conditional=true needs a labelled data set (digits, mnist, cifar10)"
        )
    return num_classes


def build_time_network(
    family: str, net: NetConfig, shape: tuple[int, ...], num_classes: int | None, interval: bool = False
) -> nn.Module:
    """A TimeMLP for vectors or a UNet for images, as configured; with ``interval`` a network
    of two times, f(x, t, y, s=s) (an MLP only)."""
    if net.kind not in ("mlp", "unet"):
        raise ConfigError(
            f"model.net.kind={net.kind} is a GAN / autoencoder network; model.family={family} "
            "takes model.net.kind=mlp (vectors) or unet (images)"
        )
    classes = label_count(net, num_classes)
    try:
        if net.kind == "mlp":
            if len(shape) != 1:
                raise ConfigError(
                    f"model.net.kind=mlp needs vector data, got samples of shape {shape}; "
                    "use model.net.kind=unet"
                )
            mlp = settings_for(MLPConfig, net, dim=shape[0], num_classes=classes, interval=interval)
            return TimeMLP(mlp)
        if interval:
            raise ConfigError(
                f"model.family={family} takes vector data (model.net.kind=mlp) for now; "
                f"the data have samples of shape {shape}"
            )
        if len(shape) != 3 or shape[1] != shape[2]:
            raise ConfigError(
                f"model.net.kind=unet needs square images (C, H, H), got samples of shape {shape}"
            )
        unet = settings_for(UNetConfig, net, in_channels=shape[0], image_size=shape[1], num_classes=classes)
        return UNet(unet)
    except ConfigError:
        raise
    except ValueError as err:
        raise ConfigError(f"model.net: {err}") from None
