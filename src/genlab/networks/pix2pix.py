"""pix2pix networks (Isola et al., 2017): a U-Net generator with skip connections and a
PatchGAN discriminator that scores (input, target) pairs patch by patch."""

from __future__ import annotations

import torch
from torch import nn

from genlab._validate import check_positive_int, check_tensor

__all__ = ["PatchDiscriminator", "UNetGenerator"]


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
            check_positive_int(value, f"UNetGenerator.{name}")
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
            check_positive_int(value, f"PatchDiscriminator.{name}")
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
