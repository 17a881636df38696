"""Time and class embeddings shared by every network.

A time embedding maps a batch of times ``t`` of shape (B,) (t in [0, 1], t = 0 noise,
t = 1 data) to features of shape (B, dim). Two are provided:

- :class:`SinusoidalTimeEmbedding`: the fixed sin/cos features of the Transformer
  (Vaswani et al., 2017, "Attention is all you need", section 3.5) as used for diffusion
  time steps by DDPM (Ho et al., 2020);
- :class:`FourierTimeEmbedding`: Gaussian random Fourier features (Tancik et al., 2020,
  "Fourier features let networks learn high frequency functions in low dimensional
  domains"), as used for continuous time by score-SDE models (Song et al., 2021).

:class:`ClassEmbedding` is a learned label table with one extra "no label" (null) row, the
ingredient classifier-free guidance needs (Ho & Salimans, 2022).

Neither time embedding has trainable parameters; the Fourier frequencies are a buffer, so
they travel with ``.to()``/``.double()`` and are stored in the ``state_dict``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from genlab._validate import check_positive_int, check_tensor, has_values

__all__ = [
    "TIME_EMBEDDINGS",
    "ClassEmbedding",
    "FourierTimeEmbedding",
    "SinusoidalTimeEmbedding",
]


def _check_even_dim(dim: int, name: str) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2 or dim % 2:
        raise ValueError(
            f"{name} needs an even embedding dimension >= 2 (half sines, half cosines); got dim={dim!r}"
        )
    return dim


def _check_times(t: torch.Tensor, name: str) -> torch.Tensor:
    check_tensor(t, "t")
    if t.dim() != 1:
        raise ValueError(
            f"{name} expects t of shape (B,); got {tuple(t.shape)} "
            "(networks broadcast a scalar t with genlab._validate.check_batch_time)"
        )
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    return t


class SinusoidalTimeEmbedding(nn.Module):
    """Transformer sinusoidal features of ``time_scale * t``.

    With ``half = dim // 2`` and frequencies ``w_k = max_period ** (-k / half)``,
    k = 0, ..., half - 1::

        emb(t) = [cos(s t w_0), ..., cos(s t w_{half-1}), sin(s t w_0), ..., sin(s t w_{half-1})]

    where ``s = time_scale``. The features were designed for integer positions 0..~1000, so a
    continuous t in [0, 1] is scaled by ``time_scale = 1000`` (the DDPM step count) by default:
    the fastest component then turns ~160 times over [0, 1] and the slowest barely moves,
    which resolves both coarse and fine differences in t.

    Args:
        dim: output dimension (even).
        max_period: the longest wavelength, in units of ``time_scale * t``.
        time_scale: factor applied to t before the sinusoids.

    Shapes: t (B,) -> (B, dim), in the dtype of t.

    >>> SinusoidalTimeEmbedding(8)(torch.zeros(3)).shape
    torch.Size([3, 8])
    """

    def __init__(self, dim: int, max_period: float = 10000.0, time_scale: float = 1000.0) -> None:
        super().__init__()
        self.dim = _check_even_dim(dim, "SinusoidalTimeEmbedding")
        if not max_period > 1:
            raise ValueError(f"max_period must be > 1, got {max_period!r}")
        if not time_scale > 0:
            raise ValueError(f"time_scale must be positive, got {time_scale!r}")
        self.max_period = float(max_period)
        self.time_scale = float(time_scale)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """Embed times t (B,) as (B, dim)."""
        t = _check_times(t, "SinusoidalTimeEmbedding")
        half = self.dim // 2
        k = torch.arange(half, device=t.device, dtype=t.dtype)  # (half,)
        freqs = torch.exp(-math.log(self.max_period) * k / half)  # (half,)
        args = (self.time_scale * t)[:, None] * freqs[None, :]  # (B, half)
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, max_period={self.max_period:g}, time_scale={self.time_scale:g}"


class FourierTimeEmbedding(nn.Module):
    """Gaussian random Fourier features of t (fixed, not trained).

    With frequencies ``W ~ N(0, scale^2)`` of shape (dim // 2,) drawn once from a generator
    seeded with ``seed``::

        emb(t) = [sin(2 pi t W), cos(2 pi t W)]

    A larger ``scale`` makes the features vary faster in t (Song et al. use 16 for
    continuous-time score models). Two instances with the same ``(dim, scale, seed)`` are
    identical, whatever the global RNG state.

    Args:
        dim: output dimension (even).
        scale: standard deviation of the random frequencies.
        seed: seed of the ``torch.Generator`` that draws the frequencies.

    Shapes: t (B,) -> (B, dim), in the dtype of t.

    >>> FourierTimeEmbedding(8, seed=1)(torch.rand(3)).shape
    torch.Size([3, 8])
    """

    W: torch.Tensor

    def __init__(self, dim: int, scale: float = 16.0, seed: int = 0) -> None:
        super().__init__()
        self.dim = _check_even_dim(dim, "FourierTimeEmbedding")
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale!r}")
        self.scale = float(scale)
        generator = torch.Generator().manual_seed(int(seed))
        W = torch.randn(dim // 2, generator=generator, dtype=torch.float64) * self.scale  # (dim/2,)
        self.register_buffer("W", W.to(torch.get_default_dtype()))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """Embed times t (B,) as (B, dim)."""
        t = _check_times(t, "FourierTimeEmbedding")
        args = 2 * math.pi * t[:, None] * self.W.to(t)[None, :]  # (B, dim/2)
        return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)  # (B, dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, scale={self.scale:g}"


TIME_EMBEDDINGS: Mapping[str, type[nn.Module]] = {
    "sinusoidal": SinusoidalTimeEmbedding,
    "fourier": FourierTimeEmbedding,
}
"""Time embeddings by name; each is constructed as ``TIME_EMBEDDINGS[name](dim)``."""


class ClassEmbedding(nn.Module):
    """Learned class embedding with an extra "no label" (null) token.

    The table has ``num_classes + 1`` rows: rows 0..num_classes-1 are the classes and row
    ``num_classes`` is the null token. Labels follow one convention everywhere:

    - ``y=None``: every sample gets the null token (unconditional);
    - ``y`` of shape (B,), integer dtype, values in {-1, 0, ..., num_classes - 1}; the entries
      equal to -1 get the null token. Classifier-free guidance trains by replacing labels with
      -1 at random and samples by evaluating the network with y and with ``y=None``.

    Shapes: y (B,) long or None -> (B, dim).
    """

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        check_positive_int(num_classes, "num_classes")
        self.num_classes = num_classes
        self.null_index = num_classes  # the last row of the table is the "no label" token
        self.table = nn.Embedding(num_classes + 1, dim)

    def labels(self, y: torch.Tensor | None, batch_size: int) -> torch.Tensor:
        """Validate ``y`` and return table indices (B,) long, with -1 mapped to the null row."""
        device = self.table.weight.device
        if y is None:
            return torch.full((batch_size,), self.null_index, dtype=torch.long, device=device)
        check_tensor(y, "y")
        if y.dtype == torch.bool or y.is_floating_point() or y.is_complex():
            raise ValueError(f"y must hold integer class labels (torch.long); got dtype {y.dtype}")
        if y.shape != (batch_size,):
            raise ValueError(f"y must have shape (B,) = ({batch_size},); got {tuple(y.shape)}")
        if y.numel() and has_values(y) and (int(y.min()) < -1 or int(y.max()) >= self.num_classes):
            raise ValueError(
                f"class labels y must lie in [0, {self.num_classes - 1}] or be -1 for 'no label'; "
                f"got values in [{int(y.min())}, {int(y.max())}] "
                "(set num_classes to the number of classes in the data)"
            )
        y = y.to(device=device, dtype=torch.long)
        return torch.where(y < 0, torch.full_like(y, self.null_index), y)  # (B,)

    def forward(self, y: torch.Tensor | None, batch_size: int) -> torch.Tensor:
        """Embed labels y (B,) (or None) as (B, dim)."""
        return self.table(self.labels(y, batch_size))  # (B, dim)


def _class_conditioning(
    embedding: ClassEmbedding | None, y: torch.Tensor | None, batch_size: int, owner: str
) -> torch.Tensor | None:
    """Return the class embedding (B, dim), or None for an unconditional network.

    Raises a ValueError when labels are given to a network built without ``num_classes``.
    """
    if embedding is None:
        if y is not None:
            raise ValueError(
                f"{owner} was built without class conditioning (num_classes=None) but got labels "
                "y; pass y=None or build it with num_classes set"
            )
        return None
    return embedding(y, batch_size)  # (B, dim)
