"""From a validated :class:`~genlab.app.config.Config` to the model and its batch sampler (the
data sets come from :mod:`genlab.app.datasets`, re-exported here)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from genlab.app.config import Config, ConfigError
from genlab.app.datasets import FILE_SETS, IMAGE_SETS, build_dataset, data_names, data_shape
from genlab.data.images import ImageDataset
from genlab.models import DataInfo
from genlab.models.flow_matching import FlowMatchingConfig
from genlab.paths import ReflowPairs

__all__ = [
    "FILE_SETS",
    "IMAGE_SETS",
    "build_dataset",
    "build_model",
    "data_names",
    "data_shape",
    "training_sampler",
]


def build_model(cfg: Config, shape: tuple[int, ...], num_classes: int | None = None) -> nn.Module:
    """The configured model, initialised from ``cfg.train.seed`` (global RNG left untouched)."""
    data = DataInfo(tuple(shape), num_classes, lambda: build_dataset(cfg.data))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        try:
            return cfg.model.build(data)
        except ConfigError:
            raise
        except ValueError as err:
            raise ConfigError(f"model: {err}") from None


#: discrete levels of the image data sets (for dequantisation and bits per dimension)
IMAGE_LEVELS = {"digits": 17, "mnist": 256, "cifar10": 256}


def training_sampler(cfg: Config, dataset: Any) -> Callable[[int, torch.Generator], Any]:
    """The trainer's batch sampler; maximum-likelihood families get dequantised images
    (a density on a discrete grid is otherwise unbounded)."""
    if isinstance(cfg.model, FlowMatchingConfig) and cfg.model.reflow_pairs:
        return reflow_sampler(cfg.model.reflow_pairs, data_shape(dataset), cfg.model.class_conditional)
    sample = batch_sampler(dataset, cfg.model.class_conditional)
    if not cfg.model.dequantised() or not isinstance(dataset, ImageDataset):
        return sample
    from genlab.likelihood import dequantize

    levels = IMAGE_LEVELS.get(cfg.data.name, 256)

    def dequantized(n: int, gen: torch.Generator) -> Any:
        batch = sample(n, gen)
        if isinstance(batch, tuple):
            return dequantize(batch[0], levels, gen), batch[1]
        return dequantize(batch, levels, gen)

    return dequantized


def batch_sampler(dataset: Any, with_labels: bool) -> Callable[[int, torch.Generator], Any]:
    """A function (batch_size, generator) -> batch for the trainer."""
    if with_labels:

        def sample(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
            return dataset.sample_with_labels(n, gen)

        return sample

    def sample_x(n: int, gen: torch.Generator) -> torch.Tensor:
        return dataset.sample(n, gen)

    return sample_x


def reflow_sampler(
    path: str, shape: tuple[int, ...], with_labels: bool
) -> Callable[[int, torch.Generator], Any]:
    """Batches of the fixed (x_0, x_1) pairs in ``model.reflow_pairs`` (reflow training)."""
    try:
        pairs = ReflowPairs.load(path)
    except ValueError as err:
        raise ConfigError(f"model.reflow_pairs: {err}") from None
    if tuple(pairs.shape) != shape:
        raise ConfigError(
            f"model.reflow_pairs holds samples of shape {tuple(pairs.shape)}, the data have shape {shape}"
        )

    def sample(n: int, gen: torch.Generator) -> Any:
        batch = pairs.sample(n, gen)
        if not with_labels:
            batch.pop("y", None)
        return batch

    return sample
