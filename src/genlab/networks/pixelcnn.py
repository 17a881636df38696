"""PixelCNN (van den Oord et al., 2016) over a small grid of discrete codes: the autoregressive
prior of a VQ-VAE's code grid.

The grid (B, h, w) of code indices is embedded, then passed through masked convolutions whose
output at position (i, j) sees only positions before it in raster order (the rows above, and
the positions left of it in its row):

- the first layer has a type-A mask (the centre excluded): it sees strictly earlier positions;
- later layers have type-B masks (the centre included), which keeps the whole stack causal;
- a 1x1 convolution gives the logits (B, K, h, w) of p(z_ij | z_<ij).

A stack of masked k x k convolutions has a blind spot (positions up and to the right beyond
the kernel's reach). The default kernel is 2 max(h, w) - 1 up to 7, which on grids of side
4 or less covers every earlier position in the first layer: no blind spot there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genlab._validate import check_positive_int, check_tensor

__all__ = ["MaskedConv2d", "PixelCNN", "default_kernel"]

#: the largest default kernel side (grids of side <= 4 have no blind spot with it)
MAX_DEFAULT_KERNEL = 7


def default_kernel(grid_hw: tuple[int, int]) -> int:
    """The kernel side of a grid: 2 max(h, w) - 1 (all earlier positions in one layer), at most 7."""
    return min(2 * max(grid_hw) - 1, MAX_DEFAULT_KERNEL)


class MaskedConv2d(nn.Conv2d):
    """A k x k convolution (k odd, 'same' padding) whose weights are zero where the input lies
    at or after the output position in raster order: type "A" also zeroes the centre, type "B"
    keeps it."""

    mask: torch.Tensor

    def __init__(self, mask_type: str, in_channels: int, out_channels: int, kernel: int) -> None:
        if mask_type not in ("A", "B"):
            raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"kernel must be a positive odd integer, got {kernel!r}")
        super().__init__(in_channels, out_channels, kernel, padding=kernel // 2)
        mask = torch.ones(kernel, kernel)
        c = kernel // 2
        mask[c, c + (1 if mask_type == "B" else 0) :] = (
            0  # the centre row from the centre (A) or after it (B)
        )
        mask[c + 1 :, :] = 0  # every row below
        self.register_buffer("mask", mask[None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class PixelCNN(nn.Module):
    """Logits of p(z_ij | z_<ij) for a (B, h, w) grid of codes in {0..num_codes-1}.

    Args:
        num_codes: K.
        hidden: channels of every layer.
        layers: masked convolutions (the first of type A), >= 1.
        kernel: their odd side.

    Shapes: (B, h, w) long -> (B, K, h, w).
    """

    def __init__(self, num_codes: int, hidden: int = 64, layers: int = 4, kernel: int = 7) -> None:
        super().__init__()
        self.num_codes = check_positive_int(num_codes, "num_codes")
        check_positive_int(hidden, "hidden")
        check_positive_int(layers, "layers")
        self.embed = nn.Embedding(num_codes, hidden)
        convs = [MaskedConv2d("A", hidden, hidden, kernel)]
        convs += [MaskedConv2d("B", hidden, hidden, kernel) for _ in range(layers - 1)]
        self.convs = nn.ModuleList(convs)
        self.out = nn.Conv2d(hidden, num_codes, 1)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        check_tensor(codes, "codes")
        if codes.dim() != 3 or codes.dtype != torch.long:
            raise ValueError(f"codes must be a (B, h, w) long tensor, got {tuple(codes.shape)} {codes.dtype}")
        return self.body(self.embed(codes).permute(0, 3, 1, 2))

    def body(self, h: torch.Tensor) -> torch.Tensor:
        """The masked stack on embedded codes (B, hidden, h, w) -> logits (B, K, h, w)."""
        h = self.convs[0](h)
        for conv in self.convs[1:]:
            h = h + conv(F.relu(h))  # residual type-B layers keep the stack causal
        return self.out(F.relu(h))
