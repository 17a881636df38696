"""Data sets for genlab: 2-D toys, an exact Gaussian mixture, images and user tables.

Every data set exposes ``name`` and ``sample(n, generator) -> (n, *event_shape)``
(the :class:`Dataset` protocol), drawing with an explicit ``torch.Generator``.
Nothing here downloads anything: toys are generated, the 8x8 digits ship with the package,
MNIST / CIFAR-10 / tables are read from files the user points to.
"""

from genlab.data.images import ImageDataset, load_cifar10, load_digits, load_mnist
from genlab.data.mixture import GaussianMixture
from genlab.data.tabular import ArrayDataset, load_array
from genlab.data.toy2d import (
    TOY_DATASETS,
    Checkerboard,
    Circles,
    Dataset,
    EightGaussians,
    Moons,
    Pinwheel,
    Rings,
    SwissRoll,
    TwoSpirals,
    make_toy,
)

__all__ = [
    "Dataset",
    "TOY_DATASETS",
    "make_toy",
    "EightGaussians",
    "Moons",
    "Circles",
    "SwissRoll",
    "Checkerboard",
    "TwoSpirals",
    "Pinwheel",
    "Rings",
    "GaussianMixture",
    "ImageDataset",
    "load_digits",
    "load_mnist",
    "load_cifar10",
    "ArrayDataset",
    "load_array",
]
