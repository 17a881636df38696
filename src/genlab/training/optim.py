"""The optimisers of the trainer and their learning-rate schedule: a linear warm-up over
``warmup_steps``, then constant, or a cosine or linear decay to ``lr_min_factor * lr`` at
the last step. With W = warmup_steps, T = steps, m = lr_min_factor and
p = (s - W) / (T - 1 - W) (clamped to [0, 1]) the rate at step s = 0 .. T - 1 is

    lr(s) = lr * min(1, (s + 1) / W) * d(p),   d(p) = 1 (constant),
            m + (1 - m) (1 + cos(pi p)) / 2 (cosine),   m + (1 - m) (1 - p) (linear).

>>> from genlab.training.config import TrainConfig
>>> cfg = TrainConfig(lr=1.0, warmup_steps=0, steps=101, lr_schedule="cosine")
>>> [round(scheduled_lr(s, cfg), 3) for s in (0, 50, 100)]
[1.0, 0.5, 0.0]
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from genlab.training.config import TrainConfig

__all__ = ["LR_SCHEDULES", "make_optimizer", "scheduled_lr", "set_lr", "warmup_lr"]

#: what the learning rate does after the warm-up
LR_SCHEDULES = ("constant", "cosine", "linear")


def make_optimizer(params: Iterable[Any], cfg: TrainConfig, lr: float | None = None) -> torch.optim.Optimizer:
    """Adam, AdamW (with ``cfg.betas``) or RMSProp at learning rate ``lr`` (default
    ``cfg.lr``). ``params`` may be parameter groups with an ``lr_scale`` (e.g. a VQ-VAE's
    codebook learns 10x faster); the scale multiplies the group's learning rate."""
    lr = cfg.lr if lr is None else lr
    groups = list(params)
    if groups and not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    groups = [{**g, "lr_scale": float(g.get("lr_scale", 1.0)), "base_lr": lr} for g in groups]
    for g in groups:
        g["lr"] = lr * g["lr_scale"]
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, weight_decay=cfg.weight_decay, foreach=True)
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[cfg.optimizer]
    kernel = {"fused": True} if _fusable(groups) else {"foreach": True}
    return cls(groups, lr=lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, **kernel)  # type: ignore[arg-type]


def _fusable(groups: list[dict[str, Any]]) -> bool:
    """Whether torch's fused Adam kernel takes these parameters: floating tensors on the CPU
    or a CUDA device. It updates every tensor in one kernel instead of a handful of small
    ops per tensor, which is most of the optimiser's cost for small networks (11% of a 2D
    training step on the CPU); elsewhere (MPS) the multi-tensor ``foreach`` path is used."""
    params = [p for g in groups for p in g["params"]]
    return bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)


def warmup_lr(step: int, cfg: TrainConfig, lr: float | None = None) -> float:
    """Linear warm-up from lr / warmup_steps to lr (default ``cfg.lr``) over the first
    warmup_steps steps."""
    lr = cfg.lr if lr is None else lr
    if cfg.warmup_steps <= 0:
        return lr
    return lr * min(1.0, (step + 1) / cfg.warmup_steps)


def scheduled_lr(step: int, cfg: TrainConfig, lr: float | None = None) -> float:
    """The learning rate at ``step`` (0-based): warm-up, then the decay of ``cfg.lr_schedule``
    (see the module docstring)."""
    lr = warmup_lr(step, cfg, lr)
    if cfg.lr_schedule == "constant":
        return lr
    span = max(1, cfg.steps - 1 - cfg.warmup_steps)
    p = min(1.0, max(0.0, (step - cfg.warmup_steps) / span))
    m = cfg.lr_min_factor
    decay = 1.0 - p if cfg.lr_schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * p))
    return lr * (m + (1.0 - m) * decay)


def set_lr(optimizer: torch.optim.Optimizer, step: int, cfg: TrainConfig) -> float:
    """The scheduled learning rate of every group at ``step``; returns the unscaled value."""
    lr = cfg.lr
    for group in optimizer.param_groups:
        lr = scheduled_lr(step, cfg, group.get("base_lr", cfg.lr))
        group["lr"] = lr * group.get("lr_scale", 1.0)
    return lr
