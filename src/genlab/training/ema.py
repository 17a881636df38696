"""Exponential moving average of a model's weights.

theta_ema <- d_n * theta_ema + (1 - d_n) * theta after the n-th optimiser step, with the
warm-up d_n = min(decay, (1 + n) / (10 + n)) so that a short run's EMA is not dominated by
the random initialisation (with a fixed 0.999, 300 steps leave 74% of the init weights).
Buffers (normalisation statistics, fixed Fourier features) are copied. Sampling uses the
EMA weights by default because they average out the last steps' gradient noise.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

#: key of the update counter in an EMA state dict (not a model weight)
EMA_COUNTER_KEY = "__ema_num_updates__"


class EMA:
    """EMA shadow of ``model``'s parameters and buffers (same names as its state_dict)."""

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.model = model
        self.shadow: dict[str, torch.Tensor] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.num_updates = 0  # updates so far (drives the warm-up of the decay)

    def current_decay(self) -> float:
        """d_n = min(decay, (1 + n) / (10 + n)) for the next update."""
        n = self.num_updates + 1
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self) -> None:
        """Move the shadow towards the current weights (call after optimizer.step())."""
        decay = self.current_decay()
        targets, sources = [], []
        for name, value in self.model.state_dict().items():
            shadow = self.shadow[name]
            if value.is_floating_point():
                targets.append(shadow)
                sources.append(value.detach())
            else:
                shadow.copy_(value)
        if targets:  # one multi-tensor kernel instead of one lerp per tensor
            torch._foreach_lerp_(targets, sources, 1.0 - decay)
        self.num_updates += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The shadow weights plus the update counter under ``EMA_COUNTER_KEY``."""
        return {**self.shadow, EMA_COUNTER_KEY: torch.tensor(self.num_updates, dtype=torch.int64)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.shadow) - set(state)
        if missing:
            raise ValueError(f"EMA state lacks {len(missing)} tensor(s), e.g. {sorted(missing)[0]!r}")
        for k in self.shadow:
            self.shadow[k].copy_(state[k])
        self.num_updates = int(state[EMA_COUNTER_KEY]) if EMA_COUNTER_KEY in state else 0

    @staticmethod
    def weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A saved EMA state without the counter, ready for ``model.load_state_dict``."""
        return {k: v for k, v in state.items() if k != EMA_COUNTER_KEY}

    @contextmanager
    def swapped(self) -> Iterator[nn.Module]:
        """Temporarily load the EMA weights into the model (restored on exit)."""
        backup = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(self.shadow)
        try:
            yield self.model
        finally:
            self.model.load_state_dict(backup)
