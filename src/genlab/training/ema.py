"""Exponential moving average of a model's weights.

theta_ema <- decay * theta_ema + (1 - decay) * theta after every optimiser step; buffers
(e.g. normalisation statistics, fixed Fourier features) are copied. Sampling uses the EMA
weights by default because they average out the last steps' gradient noise.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class EMA:
    """EMA shadow of ``model``'s parameters and buffers (same names as its state_dict)."""

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.model = model
        self.shadow: dict[str, torch.Tensor] = {
            k: v.detach().clone() for k, v in model.state_dict().items()
        }

    @torch.no_grad()
    def update(self) -> None:
        """Move the shadow towards the current weights (call after optimizer.step())."""
        for name, value in self.model.state_dict().items():
            shadow = self.shadow[name]
            if value.is_floating_point():
                shadow.lerp_(value.detach(), 1.0 - self.decay)
            else:
                shadow.copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.shadow) - set(state)
        if missing:
            raise ValueError(
                f"EMA state lacks {len(missing)} tensor(s), e.g. {sorted(missing)[0]!r}"
            )
        for k in self.shadow:
            self.shadow[k].copy_(state[k])

    @contextmanager
    def swapped(self) -> Iterator[nn.Module]:
        """Temporarily load the EMA weights into the model (restored on exit)."""
        backup = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(self.shadow)
        try:
            yield self.model
        finally:
            self.model.load_state_dict(backup)
