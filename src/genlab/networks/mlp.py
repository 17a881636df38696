"""Time-conditioned MLP for low-dimensional data (2D toys, tabular, flattened vectors).

Architecture (``c`` is the conditioning vector, ``depth`` hidden layers of ``width`` units)::

    c   = time_embedding(t) [+ class_embedding(y)]          # (B, time_dim)
    h_1 = act(W_1 [x, c] + b_1)                             # (B, width)   concat at the input
    h_k = act(W_k h_{k-1} + b_k + P_k c),  k = 2..depth     # (B, width)   added per layer
    out = W_out h_depth + b_out                             # (B, out_dim)

With ``interval=True`` the network takes a second time s and ``c`` is the concatenation of
the features of t and of the gap s - t (``2 time_dim``): an average velocity u(x, t, s) over
[t, s] (MeanFlow, :mod:`genlab.models.meanflow`); s = t when it is not given.

The time features are concatenated to the input (the common flow-matching toy MLP, e.g.
Lipman et al., 2023; Tong et al., 2024) *and* added to every later hidden layer through a
learned projection ``P_k``, so the dependence on t does not have to survive ``depth``
nonlinearities. The output layer is not zero-initialised: at low dimension a random start
trains as well and keeps the gradient path to every layer open from the first step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genlab._validate import check_batch_time, check_positive_int, check_tensor, choose
from genlab.networks.embeddings import (
    TIME_EMBEDDINGS,
    ClassEmbedding,
    SinusoidalTimeEmbedding,
    _class_conditioning,
)

__all__ = ["ACTIVATIONS", "DEFAULT_TIME_SCALE", "MLPConfig", "TimeMLP"]

#: the MLP's sinusoidal time features are those of DEFAULT_TIME_SCALE * t (see MLPConfig)
DEFAULT_TIME_SCALE = 30.0

ACTIVATIONS: Mapping[str, type[nn.Module]] = {
    "silu": nn.SiLU,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "softplus": nn.Softplus,
}
"""Activation modules by name; each is constructed without arguments."""


@dataclass
class MLPConfig:
    """Configuration of :class:`TimeMLP`. Validated on construction."""

    dim: int  # data dimension D: x has shape (B, D)
    width: int = 256  # units per hidden layer
    depth: int = 4  # number of hidden layers (>= 1)
    activation: str = "silu"  # one of ACTIVATIONS: silu, relu, gelu, tanh, elu, softplus
    time_embedding: str = "sinusoidal"  # one of TIME_EMBEDDINGS: sinusoidal, fourier
    time_dim: int = 64  # size of the time (and class) embedding; even
    # sinusoidal: the features are those of time_scale * t. The transformer convention (1000,
    # integer positions) makes a 2D field oscillate in t: dopri5 then needs ~6x the steps for
    # the same W2 and NLL (benchmarks/ahead.py); 30 keeps t in a range the features resolve.
    time_scale: float = DEFAULT_TIME_SCALE
    out_dim: int | None = None  # output dimension; None means dim (a vector field on R^D)
    interval: bool = False  # a second time input s: f(x, t, y, s=s) (average velocities, MeanFlow)
    # None: unconditional. Otherwise labels y in {0..num_classes-1}; the embedding table has
    # one more row, index num_classes, the "no label" token used when y is None or y == -1.
    num_classes: int | None = None

    def __post_init__(self) -> None:
        check_positive_int(self.dim, "MLPConfig.dim")
        check_positive_int(self.width, "MLPConfig.width")
        check_positive_int(self.depth, "MLPConfig.depth")
        choose("activation", self.activation, ACTIVATIONS)
        choose("time embedding", self.time_embedding, TIME_EMBEDDINGS)
        check_positive_int(self.time_dim, "MLPConfig.time_dim")
        if self.time_dim % 2:
            raise ValueError(f"MLPConfig.time_dim must be even, got {self.time_dim}")
        if not (isinstance(self.time_scale, (int, float)) and 0 < self.time_scale < float("inf")):
            raise ValueError(f"MLPConfig.time_scale must be a positive number, got {self.time_scale!r}")
        if self.out_dim is not None:
            check_positive_int(self.out_dim, "MLPConfig.out_dim")
        if self.num_classes is not None:
            check_positive_int(self.num_classes, "MLPConfig.num_classes")

    @property
    def output_dim(self) -> int:
        """The resolved output dimension (``out_dim`` or ``dim``)."""
        return self.dim if self.out_dim is None else self.out_dim

    @property
    def cond_dim(self) -> int:
        """Size of the conditioning vector c: the time features, twice with ``interval``."""
        return self.time_dim * (2 if self.interval else 1)


class TimeMLP(nn.Module):
    """MLP ``f(x, t[, y])`` for vectors x of shape (B, dim); see the module docstring.

    Shapes: x (B, dim), t scalar or (B,) in [0, 1], y (B,) long or None -> (B, out_dim).

    >>> net = TimeMLP(MLPConfig(dim=2, width=16, depth=2))
    >>> net(torch.randn(5, 2), 0.5).shape
    torch.Size([5, 2])
    """

    def __init__(self, config: MLPConfig) -> None:
        super().__init__()
        if not isinstance(config, MLPConfig):
            raise ValueError(f"TimeMLP expects an MLPConfig, got {type(config).__name__}")
        self.config = config
        act = choose("activation", config.activation, ACTIVATIONS)
        embedding = choose("time embedding", config.time_embedding, TIME_EMBEDDINGS)
        if embedding is SinusoidalTimeEmbedding:
            self.time_embed: nn.Module = SinusoidalTimeEmbedding(
                config.time_dim, time_scale=config.time_scale
            )
        else:
            self.time_embed = embedding(config.time_dim)
        self.class_embed = (
            ClassEmbedding(config.num_classes, config.cond_dim) if config.num_classes is not None else None
        )
        self.input_layer = nn.Linear(config.dim + config.cond_dim, config.width)
        self.hidden_layers = nn.ModuleList(
            nn.Linear(config.width, config.width) for _ in range(config.depth - 1)
        )
        self.cond_projections = nn.ModuleList(
            nn.Linear(config.cond_dim, config.width) for _ in range(config.depth - 1)
        )
        self.act = act()
        self.output_layer = nn.Linear(config.width, config.output_dim)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor | float,
        y: torch.Tensor | None = None,
        s: torch.Tensor | float | None = None,
    ) -> torch.Tensor:
        """Evaluate the network.

        Args:
            x: points, shape (B, dim).
            t: times in [0, 1], a float, a 0-dim tensor or shape (B,).
            y: class labels (B,) long with -1 meaning "no label", or None (all "no label").
               Only for a network built with ``num_classes``.
            s: the second time of an ``interval`` network (same forms as t); None means s = t.

        Returns:
            Tensor of shape (B, out_dim).
        """
        check_tensor(x, "x")
        dim = self.config.dim
        if x.dim() != 2 or x.shape[1] != dim:
            raise ValueError(
                f"TimeMLP expects x of shape (B, dim) = (B, {dim}); got {tuple(x.shape)} "
                "(flatten images with x.flatten(1) and set MLPConfig(dim=...) to match)"
            )
        # check_batch_time accepts floats too; its annotation only says Tensor.
        t = check_batch_time(t, x)  # (B,)
        if s is not None and not self.config.interval:
            raise ValueError("this TimeMLP takes one time; build it with MLPConfig(interval=True) to pass s")
        gap = None  # s - t of an interval network, (B,)
        if self.config.interval:
            gap = torch.zeros_like(t) if s is None else check_batch_time(s, x, "s") - t
        one_time = t.stride(0) == 0 and (s is None or not isinstance(s, torch.Tensor) or s.dim() == 0)
        label = _class_conditioning(self.class_embed, y, x.shape[0], "TimeMLP")
        if label is None and x.shape[0] > 1 and one_time:
            # one time for the whole batch (every ODE solver step): the time features and their
            # projections are computed once and broadcast, a quarter of a 4 x 256 MLP's work
            c = self._conditioning(t[:1], None if gap is None else gap[:1])  # (1, cond_dim)
            w = self.input_layer.weight
            first = F.linear(x, w[:, :dim]) + F.linear(c, w[:, dim:], self.input_layer.bias)
            h = self.act(first)  # (B, width)
        else:
            c = self._conditioning(t, gap)  # (B, cond_dim)
            if label is not None:
                c = c + label.to(c)  # (B, cond_dim)
            h = self.act(self.input_layer(torch.cat([x, c], dim=-1)))  # (B, width)
        for layer, proj in zip(self.hidden_layers, self.cond_projections, strict=True):
            h = self.act(layer(h) + proj(c))  # (B, width); proj(c) broadcasts from (1, width)
        return self.output_layer(h)  # (B, out_dim)

    def forward_and_jvp(
        self, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor, dx: torch.Tensor, dt: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """f(x, t, s=s) and its derivative along (dx, dt) in (x, t) with s fixed, in one pass:
        the forward pass as usual (autograd records it) and, beside it, the tangent pushed
        through each layer without a graph (W dz for a linear layer, silu'(z) dz for the
        activation, the sines' derivative for the time features). None when the network is
        not an unconditional SiLU ``interval`` network with sinusoidal features (then use
        ``torch.func.jvp``). All of x, t, s, dx, dt are (B, ...) tensors."""
        emb = self.time_embed
        if not (
            self.config.interval
            and self.class_embed is None
            and isinstance(self.act, nn.SiLU)
            and isinstance(emb, SinusoidalTimeEmbedding)
        ):
            return None
        half = emb.dim // 2
        k = torch.arange(half, device=t.device, dtype=t.dtype)
        freqs = emb.time_scale * torch.exp(-math.log(emb.max_period) * k / half)  # (half,)

        def features(u: torch.Tensor, du: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            a, da = u[:, None] * freqs, du[:, None] * freqs  # (B, half)
            cos, sin = torch.cos(a), torch.sin(a)
            return torch.cat([cos, sin], -1), torch.cat([-sin * da, cos * da], -1)

        c_t, dc_t = features(t, dt)
        c_g, dc_g = features(s - t, -dt)
        c, dc = torch.cat([c_t, c_g], -1), torch.cat([dc_t, dc_g], -1).detach()  # (B, cond_dim)

        def silu(z: torch.Tensor, dz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            with torch.no_grad():
                sig = torch.sigmoid(z)
                dh = sig * (1 + z * (1 - sig)) * dz
            return F.silu(z), dh

        z = self.input_layer(torch.cat([x, c], dim=-1))
        with torch.no_grad():
            dz = F.linear(torch.cat([dx, dc], dim=-1), self.input_layer.weight)
        h, dh = silu(z, dz)
        for layer, proj in zip(self.hidden_layers, self.cond_projections, strict=True):
            assert isinstance(layer, nn.Linear) and isinstance(proj, nn.Linear)
            z = layer(h) + proj(c)
            with torch.no_grad():
                dz = F.linear(dh, layer.weight) + F.linear(dc, proj.weight)
            h, dh = silu(z, dz)
        with torch.no_grad():
            dout = F.linear(dh, self.output_layer.weight)
        return self.output_layer(h), dout

    def _conditioning(self, t: torch.Tensor, gap: torch.Tensor | None) -> torch.Tensor:
        """The time features of t, and of the gap s - t for an ``interval`` network."""
        c = self.time_embed(t)
        return c if gap is None else torch.cat([c, self.time_embed(gap)], dim=-1)
