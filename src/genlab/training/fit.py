"""``fit(model, data)``: train a model from a notebook, on a tensor, without a config file.

>>> import torch, genlab
>>> x = torch.randn(512, 2) * 0.5 + 2.0  # your data, (N, D)
>>> model = genlab.FlowMatching(genlab.TimeMLP(genlab.MLPConfig(dim=2, width=32, depth=2)), (2,))
>>> model = genlab.fit(model, x, steps=20, batch_size=64, progress=False)
>>> model.sample(8, steps=10, generator=torch.Generator().manual_seed(0)).x.shape
torch.Size([8, 2])

It runs the same :class:`~genlab.training.trainer.Trainer` as ``genlab train`` (warm-up,
clipping, EMA, checkpoints, the device), with the settings of
:class:`~genlab.training.config.TrainConfig` as keywords, and gives the model back with its
EMA weights loaded (the ones to sample with; ``ema_decay=0`` keeps the raw weights). Without
``run_dir`` the checkpoints go to a temporary folder that is removed afterwards.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genlab.training.config import TrainConfig
from genlab.training.trainer import Trainer

__all__ = ["batches_from", "fit"]


def batches_from(data: Any) -> Callable[[int, torch.Generator], Any]:
    """A batch sampler ``(n, generator) -> batch`` for the trainer from

    - a tensor (N, *D): n rows drawn uniformly with replacement;
    - a pair of tensors (x (N, *D), y (N,)): rows of both, for class-conditional models;
    - an object with ``sample(n, generator)`` (genlab's data sets);
    - a function ``(n, generator) -> batch``, used as it is.
    """
    if isinstance(data, torch.Tensor):
        _check_rows(data, "data")
        return lambda n, gen: data[_rows(len(data), n, gen)]
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        x, y = data
        _check_rows(x, "data[0]")
        if y.shape[:1] != x.shape[:1]:
            raise ValueError(f"data = (x, y) needs one label per row: x has {len(x)} rows, y {len(y)}")
        return lambda n, gen: _pair(x, y, _rows(len(x), n, gen))
    sample = getattr(data, "sample", None)
    if callable(sample):
        return lambda n, gen: sample(n, gen)
    if callable(data):
        return data  # type: ignore[no-any-return]
    raise ValueError(
        f"data must be a tensor (N, *D), a pair (x, y), a data set with sample(n, generator) or a "
        f"function (n, generator) -> batch; got {type(data).__name__}"
    )


def _check_rows(x: torch.Tensor, name: str) -> None:
    if x.dim() < 2 or x.shape[0] < 1:
        raise ValueError(f"{name} must have shape (N, *D) with N >= 1 samples, got {tuple(x.shape)}")


def _rows(size: int, n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randint(0, size, (n,), generator=gen, device=gen.device)


def _pair(x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[idx.to(x.device)], y[idx.to(y.device)]


def fit(
    model: nn.Module,
    data: Any,
    run_dir: str | Path | None = None,
    progress: bool = True,
    resume: bool = False,
    **settings: Any,
) -> nn.Module:
    """Train ``model`` on ``data`` (see :func:`batches_from`) and return it with its EMA
    weights. ``settings`` are fields of :class:`~genlab.training.config.TrainConfig`
    (``steps``, ``batch_size``, ``lr``, ``device``, ``precision``, ``threads``, ...)."""
    valid = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(settings) - valid)
    if unknown:
        raise ValueError(f"fit() got an unknown setting {unknown[0]!r}; valid: {', '.join(sorted(valid))}")
    cfg = TrainConfig(**settings)
    sampler = batches_from(data)
    with tempfile.TemporaryDirectory() if run_dir is None else nullcontext(run_dir) as where:
        trainer = Trainer(model, sampler, cfg, where, {"train": dataclasses.asdict(cfg)}, progress)
        trainer.fit(resume=resume)
        if trainer.ema is not None:
            model.load_state_dict(trainer.ema.shadow)
    model.eval()
    return model
