"""From the ``data`` section of a config to the training set and the held-out set.

The held-out set, against which ``eval`` and ``compare`` score samples, is in order of
preference: ``data.test_path`` (a file in the training file's format); the official test
split of the format (digits' split, MNIST's ``t10k``, CIFAR-10's ``test_batch``); or a
fraction ``data.holdout`` of the rows of a file, chosen by ``data.holdout_seed`` and removed
from training. Toy distributions are sampled afresh. :func:`reference_kind` says which.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from genlab.app.config import ConfigError, DataConfig
from genlab.data import TOY_DATASETS, load_array, load_cifar10, load_digits, load_mnist, make_toy
from genlab.data.images import ImageDataset
from genlab.data.splits import holdout_rows, holdout_split
from genlab.data.tabular import ArrayDataset, Standardization
from genlab.data.user_images import IMAGE_FILE_SUFFIXES, image_array_ndim, load_image_file, load_image_folder

__all__ = [
    "FILE_SETS",
    "IMAGE_SETS",
    "STANDARDIZATION_FILE",
    "build_dataset",
    "data_names",
    "data_shape",
    "read_standardization",
    "reference_kind",
    "standardized",
]

#: the per-column means and standard deviations a run of a user table trained with
STANDARDIZATION_FILE = "standardization.json"

IMAGE_SETS = ("digits", "mnist", "cifar10")
FILE_SETS = ("array", "npy", "csv", "images")


def data_names() -> list[str]:
    """Every valid ``data.name``."""
    return sorted([*TOY_DATASETS, *IMAGE_SETS, *FILE_SETS])


def data_shape(dataset: Any) -> tuple[int, ...]:
    """Shape of one sample: (D,) for vectors, (C, H, W) for images."""
    if isinstance(dataset, ImageDataset):
        return tuple(dataset.shape)
    return (int(dataset.dim),)


def read_file(path: str, cfg: DataConfig) -> Any:
    """A user file or folder: images (a folder, an .npz / .pt, or an .npy of 3 or 4 dims) or
    a table (an .npy of 2 dims, a .csv)."""
    p = Path(path)
    try:
        if p.is_dir():
            return load_image_folder(p, cfg.value_range)
        if p.suffix in (".npz", ".pt") or (p.suffix == ".npy" and p.is_file() and image_array_ndim(p) >= 3):
            return load_image_file(p, cfg.value_range)
        if p.suffix not in (".npy", ".csv"):
            kinds = ", ".join([".npy", ".csv", *IMAGE_FILE_SUFFIXES[1:], "a folder of pictures"])
            raise ValueError(f"data.path={str(p)!r} must be one of: {kinds}")
        return load_array(p)
    except ValueError as err:
        raise ConfigError(f"data: {err}") from None


def _has_test_split(cfg: DataConfig) -> bool:
    if cfg.name not in ("mnist", "cifar10"):
        return cfg.name == "digits"
    try:
        _load_named(cfg, "test")
    except (ValueError, ConfigError):
        return False
    return True


def _load_named(cfg: DataConfig, split: str) -> Any:
    assert cfg.path is not None
    return load_mnist(cfg.path, split) if cfg.name == "mnist" else load_cifar10(cfg.path, split)


def _holds_out(cfg: DataConfig, full: Any) -> bool:
    """Whether a fraction of the training file is held out."""
    return (
        cfg.test_path is None
        and cfg.holdout > 0
        and holdout_rows(len(full), cfg.holdout) > 0
        and (cfg.name in FILE_SETS or not _has_test_split(cfg))
    )


def digits_classifier_applies(cfg: DataConfig) -> bool:
    """Whether the digits classifier (metrics fd, acc) can score this data: the 8x8 digits."""
    return cfg.name == "digits" and cfg.resize in (None, 8) and cfg.pad == 0


def reshaped(cfg: DataConfig, dataset: Any) -> Any:
    """Images resized to ``data.resize`` (bilinear, antialiased) and padded by ``data.pad``
    pixels of -1 on every side; other data sets as they are."""
    if not isinstance(dataset, ImageDataset) or (cfg.resize is None and cfg.pad == 0):
        return dataset
    x = dataset.images
    if cfg.resize is not None and tuple(x.shape[-2:]) != (cfg.resize, cfg.resize):
        x = F.interpolate(
            x, size=(cfg.resize, cfg.resize), mode="bilinear", antialias=True, align_corners=False
        )
        x = x.clamp(-1.0, 1.0)
    if cfg.pad:
        x = F.pad(x, (cfg.pad,) * 4, value=-1.0)
    return ImageDataset(x.contiguous(), dataset.labels, dataset.num_classes, dataset.name)


def build_dataset(cfg: DataConfig, split: str | None = None) -> Any:
    """The data set named by ``cfg``: ``split="train"`` the training set (less any held-out
    rows), ``"test"`` the held-out set (see the module docstring); images resized and padded
    as ``data.resize`` / ``data.pad`` say."""
    if cfg.name not in TOY_DATASETS and (cfg.resize is not None or cfg.pad):
        return reshaped(cfg, _build(cfg, split))
    return _build(cfg, split)


def _build(cfg: DataConfig, split: str | None = None) -> Any:
    name, split = cfg.name, split or cfg.split
    if name in TOY_DATASETS:
        return make_toy(name)
    if name == "digits":
        return load_digits(split)
    if name not in ("mnist", "cifar10", *FILE_SETS):
        raise ConfigError(f"data.name={name!r} is not valid; choose one of: {', '.join(data_names())}")
    if not cfg.path:
        what = "a file or a folder of pictures" if name in FILE_SETS else f"the {name} directory"
        raise ConfigError(f"data.name={name} needs data.path=... pointing to {what}")
    if split == "test" and cfg.test_path:
        return read_file(cfg.test_path, cfg)
    if name in FILE_SETS:
        full = read_file(cfg.path, cfg)
    elif split == "test" and _has_test_split(cfg):
        return _load_named(cfg, "test")
    else:
        try:
            full = _load_named(cfg, "train" if split == "test" else split)
        except ValueError as err:
            raise ConfigError(f"data: {err}") from None
    if split in ("train", "test") and _holds_out(cfg, full):
        train, test = holdout_split(full, cfg.holdout, cfg.holdout_seed)
        return test if split == "test" else train
    return full


def reference_kind(cfg: DataConfig) -> str:
    """What ``eval`` scores against, in words (recorded in eval.json)."""
    if cfg.name in TOY_DATASETS:
        return "fresh samples of the toy distribution"
    if cfg.test_path:
        return f"data.test_path ({cfg.test_path})"
    if cfg.name == "digits" or (cfg.name in ("mnist", "cifar10") and _has_test_split(cfg)):
        return f"the {cfg.name} test split"
    full = _build(DataConfig(**{**vars(cfg), "holdout": 0.0}), "train")
    if _holds_out(cfg, full):
        k = holdout_rows(len(full), cfg.holdout)
        return f"{k} rows held out of {len(full)} (data.holdout={cfg.holdout:g}, seed {cfg.holdout_seed})"
    return "the training data (nothing held out: set data.holdout or data.test_path)"


def standardized(cfg: DataConfig, dataset: Any) -> tuple[Any, Standardization | None]:
    """The training set a model of a user table sees: z-scores per column with
    ``data.standardize`` (the statistics of this training set), else the data as they are."""
    if not (cfg.standardize and cfg.name in FILE_SETS and isinstance(dataset, ArrayDataset)):
        return dataset, None
    scale = Standardization.fit(dataset.data)
    return ArrayDataset(scale.apply(dataset.data), dataset.name), scale


def read_standardization(run_dir: Path) -> Standardization | None:
    """The standardisation a run trained with (None for runs that trained on raw data)."""
    path = Path(run_dir) / STANDARDIZATION_FILE
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return Standardization(tuple(record["mean"]), tuple(record["std"]))


#: points drawn from a sampler-only data set (the 2D toys) to fit a prior to
PRIOR_FIT_POINTS = 8192


def prior_fit_data(dataset: Any, like: torch.Tensor) -> torch.Tensor:
    """The training data a prior is fitted to, on ``like``'s device and dtype: the images or
    rows of a finite data set, else PRIOR_FIT_POINTS seeded draws of a sampler."""
    for name in ("images", "data"):
        x = getattr(dataset, name, None)
        if isinstance(x, torch.Tensor):
            return x.to(like.device, like.dtype)
    return dataset.sample(PRIOR_FIT_POINTS, torch.Generator().manual_seed(0)).to(like.device, like.dtype)
