"""A held-out part of a finite data set: a fixed fraction of its rows, chosen by a seed.

>>> import torch
>>> from genlab.data.tabular import ArrayDataset
>>> train, test = holdout_split(ArrayDataset(torch.arange(20.0).reshape(10, 2)), 0.2, seed=0)
>>> len(train), len(test)
(8, 2)
"""

from __future__ import annotations

from typing import Any

import torch

from genlab.data.images import ImageDataset
from genlab.data.tabular import ArrayDataset

__all__ = ["holdout_rows", "holdout_split"]


def holdout_rows(n: int, fraction: float) -> int:
    """How many of n rows a fraction holds out: floor(fraction n), or 0 when that would leave
    fewer than 2 rows on either side."""
    k = int(fraction * n)
    return k if k >= 2 and n - k >= 2 else 0


def holdout_split(dataset: Any, fraction: float, seed: int = 0) -> tuple[Any, Any]:
    """(training rows, held-out rows) of an :class:`ArrayDataset` or :class:`ImageDataset`:
    a random permutation drawn from ``seed`` puts its first ``holdout_rows(n, fraction)``
    rows aside. Raises ValueError when the data set is too small to hold any out."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the held-out fraction must lie in (0, 1), got {fraction!r}")
    n = len(dataset)
    k = holdout_rows(n, fraction)
    if k == 0:
        raise ValueError(f"{n} rows are too few to hold out {fraction:g} of them (2 or more on each side)")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)), device="cpu")
    test_idx, train_idx = perm[:k].sort().values, perm[k:].sort().values
    if isinstance(dataset, ImageDataset):
        return tuple(  # type: ignore[return-value]
            ImageDataset(dataset.images[i], dataset.labels[i], dataset.num_classes, dataset.name)
            for i in (train_idx, test_idx)
        )
    if isinstance(dataset, ArrayDataset):
        train, test = (ArrayDataset(dataset.data[i], dataset.name) for i in (train_idx, test_idx))
        return train, test
    raise ValueError(f"cannot hold out rows of a {type(dataset).__name__}; give a finite data set")
