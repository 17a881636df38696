"""The optimisers of the trainer and their learning-rate warm-up."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from genlab.training.config import TrainConfig

__all__ = ["make_optimizer", "set_lr", "warmup_lr"]


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
        return torch.optim.RMSprop(groups, lr=lr, weight_decay=cfg.weight_decay)
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[cfg.optimizer]
    return cls(groups, lr=lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)  # type: ignore[arg-type]


def warmup_lr(step: int, cfg: TrainConfig, lr: float | None = None) -> float:
    """Linear warm-up from lr / warmup_steps to lr (default ``cfg.lr``) over the first
    warmup_steps steps."""
    lr = cfg.lr if lr is None else lr
    if cfg.warmup_steps <= 0:
        return lr
    return lr * min(1.0, (step + 1) / cfg.warmup_steps)


def set_lr(optimizer: torch.optim.Optimizer, step: int, cfg: TrainConfig) -> float:
    """Warm-up learning rate of every group at ``step``; returns the unscaled value."""
    lr = cfg.lr
    for group in optimizer.param_groups:
        lr = warmup_lr(step, cfg, group.get("base_lr", cfg.lr))
        group["lr"] = lr * group.get("lr_scale", 1.0)
    return lr
