"""From a validated :class:`~genlab.app.config.Config` to data sets, networks and models."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from genlab.app.config import Config, ConfigError, DataConfig
from genlab.data import TOY_DATASETS, load_array, load_cifar10, load_digits, load_mnist, make_toy
from genlab.data.images import ImageDataset
from genlab.models import DataInfo
from genlab.models.flow_matching import FlowMatchingConfig
from genlab.paths import ReflowPairs

IMAGE_SETS = ("digits", "mnist", "cifar10")
FILE_SETS = ("array", "npy", "csv")


def data_names() -> list[str]:
    """Every valid ``data.name``."""
    return sorted([*TOY_DATASETS, *IMAGE_SETS, *FILE_SETS])


def build_dataset(cfg: DataConfig, split: str | None = None) -> Any:
    """The data set named by ``cfg`` (toys are generated, digits ship, files are read)."""
    name, split = cfg.name, split or cfg.split
    if name in TOY_DATASETS:
        return make_toy(name)
    if name == "digits":
        return load_digits(split)
    path = cfg.path
    if name in ("mnist", "cifar10", *FILE_SETS) and not path:
        what = "a .npy or .csv file of shape (N, D)" if name in FILE_SETS else f"the {name} directory"
        raise ConfigError(f"data.name={name} needs data.path=... pointing to {what}")
    if path and name == "mnist":
        return load_mnist(path, split)
    if path and name == "cifar10":
        return load_cifar10(path, split)
    if path and name in FILE_SETS:
        return load_array(path)
    raise ConfigError(f"data.name={name!r} is not valid; choose one of: {', '.join(data_names())}")


def data_shape(dataset: Any) -> tuple[int, ...]:
    """Shape of one sample: (D,) for vectors, (C, H, W) for images."""
    if isinstance(dataset, ImageDataset):
        return tuple(dataset.shape)
    return (int(dataset.dim),)


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
