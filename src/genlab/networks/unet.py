"""Small time- (and class-) conditioned U-Net for 8x8 to 32x32 images.

The architecture follows DDPM (Ho et al., 2020, appendix B) at toy scale, as in the
improved-DDPM / ADM code (Nichol & Dhariwal, 2021):

- a conditioning vector ``emb = MLP(time_embedding(t)) [+ class_table(y)]`` of size
  ``time_dim``; the class table has ``num_classes + 1`` rows, the last being the "no label"
  token used for ``y=None`` or ``y == -1`` (classifier-free guidance, Ho & Salimans, 2022);
- residual blocks ``x + conv(drop(act(norm(conv(act(norm(x))) + Linear(act(emb))))))``
  with GroupNorm and SiLU, the conditioning added per channel after the first conv;
- per resolution level ``num_res_blocks`` blocks, then a stride-2 3x3 conv to halve H, W
  (except after the last level); a middle block (res, optional self-attention, res) at the
  lowest resolution; the mirror path upsamples by nearest-neighbour x2 followed by a 3x3
  conv, and every up block concatenates the matching skip activation of the down path;
- the output head is GroupNorm, SiLU and a 3x3 conv back to ``in_channels`` whose weight
  and bias are zero-initialised, so the untrained network outputs exactly 0: training
  starts from the trivial predictor (zero velocity / noise) and the first updates are
  small and stable. Gradients still reach the last conv on the first backward pass and
  every other parameter from the second step on.

Shapes: x (B, C, H, W) with C = in_channels and H = W = image_size; t scalar or (B,);
y (B,) long or None; output (B, C, H, W).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genlab._validate import check_batch_time, check_positive_int, check_tensor, choose
from genlab.networks.embeddings import (
    TIME_EMBEDDINGS,
    ClassEmbedding,
    _class_conditioning,
)

__all__ = ["UNet", "UNetConfig"]


@dataclass
class UNetConfig:
    """Configuration of :class:`UNet`. Validated on construction."""

    in_channels: int = 1  # image channels C (1 for digits/MNIST, 3 for CIFAR-10)
    image_size: int = 8  # height = width of the (square) images
    base_channels: int = 32  # channels at the first resolution level
    channel_mults: tuple[int, ...] = (1, 2)  # channels per level = base_channels * mult
    num_res_blocks: int = 1  # residual blocks per level on the way down (up uses one more)
    time_dim: int = 128  # size of the conditioning vector (time + class embedding); even
    dropout: float = 0.0  # dropout probability inside residual blocks
    num_classes: int | None = None  # class labels 0..num_classes-1, None for unconditional
    groups: int = 8  # GroupNorm groups; must divide base_channels * every mult
    attention: bool = False  # single-head self-attention in the middle (lowest-res) block
    time_embedding: str = "sinusoidal"  # one of TIME_EMBEDDINGS: sinusoidal, fourier

    def __post_init__(self) -> None:
        self.channel_mults = tuple(self.channel_mults)
        for name in ("in_channels", "image_size", "base_channels", "num_res_blocks", "groups"):
            check_positive_int(getattr(self, name), f"UNetConfig.{name}")
        if not self.channel_mults:
            raise ValueError("UNetConfig.channel_mults must have at least one level, e.g. (1, 2)")
        for m in self.channel_mults:
            check_positive_int(m, "every entry of UNetConfig.channel_mults")
        check_positive_int(self.time_dim, "UNetConfig.time_dim")
        if self.time_dim % 2:
            raise ValueError(f"UNetConfig.time_dim must be even, got {self.time_dim}")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"UNetConfig.dropout must lie in [0, 1), got {self.dropout!r}")
        if self.num_classes is not None:
            check_positive_int(self.num_classes, "UNetConfig.num_classes")
        choose("time embedding", self.time_embedding, TIME_EMBEDDINGS)
        factor = self.downsample_factor
        if self.image_size % factor:
            raise ValueError(
                f"UNetConfig.image_size={self.image_size} must be divisible by "
                f"2**(len(channel_mults) - 1) = {factor} (channel_mults={self.channel_mults}); "
                "use fewer levels in channel_mults or pad/resize the images"
            )
        for m in self.channel_mults:
            channels = self.base_channels * m
            if channels % self.groups:
                raise ValueError(
                    f"GroupNorm needs channels divisible by groups: base_channels * mult = "
                    f"{self.base_channels} * {m} = {channels} is not divisible by "
                    f"groups={self.groups}; change base_channels or groups"
                )

    @property
    def downsample_factor(self) -> int:
        """Total spatial reduction 2**(levels - 1) between input and the middle block."""
        return 2 ** (len(self.channel_mults) - 1)


class ResBlock(nn.Module):
    """Residual block with GroupNorm, SiLU, dropout and an additive conditioning vector.

    Shapes: x (B, in_ch, H, W), emb (B, emb_dim) -> (B, out_ch, H, W).
    """

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, out_ch, H, W)
        h = h + self.emb_proj(F.silu(emb))[:, :, None, None]  # (B, out_ch, H, W)
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))  # (B, out_ch, H, W)
        return self.skip(x) + h  # (B, out_ch, H, W)


class SelfAttention2d(nn.Module):
    """Single-head self-attention over the H*W positions, with a residual connection.

    Shapes: x (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        qkv = self.qkv(self.norm(x)).reshape(B, 3, C, H * W)  # (B, 3, C, N)
        q, k, v = qkv.transpose(-1, -2).unbind(dim=1)  # each (B, N, C)
        h = F.scaled_dot_product_attention(q, k, v)  # (B, N, C)
        h = h.transpose(-1, -2).reshape(B, C, H, W)  # (B, C, H, W)
        return x + self.proj(h)  # (B, C, H, W)


class Downsample(nn.Module):
    """Stride-2 3x3 conv. Shapes: (B, C, H, W) -> (B, C, H/2, W/2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)  # (B, C, H/2, W/2)


class Upsample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 conv. Shapes: (B, C, H, W) -> (B, C, 2H, 2W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))  # (B, C, 2H, 2W)


class UNet(nn.Module):
    """Time-conditioned U-Net ``f(x, t[, y])`` for square images; see the module docstring.

    Shapes: x (B, C, H, W) with C = in_channels, H = W = image_size; t scalar or (B,) in
    [0, 1]; y (B,) long (-1 = "no label") or None -> (B, C, H, W).

    >>> net = UNet(UNetConfig(in_channels=1, image_size=8, base_channels=8, groups=4))
    >>> net(torch.randn(2, 1, 8, 8), 0.5).shape
    torch.Size([2, 1, 8, 8])
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        if not isinstance(config, UNetConfig):
            raise ValueError(f"UNet expects a UNetConfig, got {type(config).__name__}")
        self.config = config
        cfg = config
        emb_dim = cfg.time_dim

        self.time_embed = choose("time embedding", cfg.time_embedding, TIME_EMBEDDINGS)(emb_dim)
        self.time_mlp = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_embed = ClassEmbedding(cfg.num_classes, emb_dim) if cfg.num_classes is not None else None

        def res(i: int, o: int) -> ResBlock:
            return ResBlock(i, o, emb_dim, cfg.groups, cfg.dropout)

        levels = [cfg.base_channels * m for m in cfg.channel_mults]
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.base_channels, 3, padding=1)

        # Down path: remember the channel count of every activation pushed as a skip.
        self.down = nn.ModuleList()
        skip_channels = [cfg.base_channels]
        ch = cfg.base_channels
        for level, out_ch in enumerate(levels):
            for _ in range(cfg.num_res_blocks):
                self.down.append(res(ch, out_ch))
                ch = out_ch
                skip_channels.append(ch)
            if level < len(levels) - 1:
                self.down.append(Downsample(ch))
                skip_channels.append(ch)

        self.mid1 = res(ch, ch)
        self.mid_attn: nn.Module = SelfAttention2d(ch, cfg.groups) if cfg.attention else nn.Identity()
        self.mid2 = res(ch, ch)

        # Up path: one more block per level than on the way down, each eating one skip.
        self.up = nn.ModuleList()
        for level, out_ch in reversed(list(enumerate(levels))):
            for _ in range(cfg.num_res_blocks + 1):
                self.up.append(res(ch + skip_channels.pop(), out_ch))
                ch = out_ch
            if level > 0:
                self.up.append(Upsample(ch))
        assert not skip_channels, "every skip connection must be consumed"

        self.norm_out = nn.GroupNorm(cfg.groups, ch)
        self.conv_out = nn.Conv2d(ch, cfg.in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # zero init: the untrained network outputs 0
        if self.conv_out.bias is not None:
            nn.init.zeros_(self.conv_out.bias)

    def _check_input(self, x: torch.Tensor) -> None:
        check_tensor(x, "x")
        c, s = self.config.in_channels, self.config.image_size
        if x.dim() != 4:
            raise ValueError(
                f"UNet expects x of shape (B, C, H, W) = (B, {c}, {s}, {s}); got {tuple(x.shape)}"
            )
        if x.shape[1] != c:
            raise ValueError(
                f"UNet was built for {c} channel(s) but x has {x.shape[1]} "
                f"(shape {tuple(x.shape)}); set UNetConfig(in_channels={x.shape[1]})"
            )
        if x.shape[2:] != (s, s):
            raise ValueError(
                f"UNet was built for {s}x{s} images but x is {x.shape[2]}x{x.shape[3]}; "
                f"set UNetConfig(image_size=...) to the image size (square images only)"
            )

    def forward(
        self, x: torch.Tensor, t: torch.Tensor | float, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Evaluate the network.

        Args:
            x: images, shape (B, in_channels, image_size, image_size).
            t: times in [0, 1], a float, a 0-dim tensor or shape (B,).
            y: class labels (B,) long with -1 meaning "no label", or None (all "no label").
               Only for a network built with ``num_classes``.

        Returns:
            Tensor of shape (B, in_channels, image_size, image_size).
        """
        self._check_input(x)
        # check_batch_time accepts floats too; its annotation only says Tensor.
        t = check_batch_time(t, x)  # (B,)
        emb = self.time_mlp(self.time_embed(t))  # (B, time_dim)
        label = _class_conditioning(self.class_embed, y, x.shape[0], "UNet")
        if label is not None:
            emb = emb + label.to(emb)  # (B, time_dim)

        h = self.conv_in(x)  # (B, base, H, W)
        skips = [h]
        for block in self.down:
            h = block(h, emb) if isinstance(block, ResBlock) else block(h)  # (B, ch, h, w)
            skips.append(h)

        h = self.mid1(h, emb)  # (B, ch, H/f, W/f)
        h = self.mid_attn(h)  # (B, ch, H/f, W/f)
        h = self.mid2(h, emb)  # (B, ch, H/f, W/f)

        for block in self.up:
            if isinstance(block, ResBlock):
                h = block(torch.cat([h, skips.pop()], dim=1), emb)  # (B, ch, h, w)
            else:
                h = block(h)  # (B, ch, 2h, 2w)

        return self.conv_out(F.silu(self.norm_out(h)))  # (B, C, H, W)
