"""Image data sets: the shipped 8x8 digits, and MNIST / CIFAR-10 read from local files.

Every loader returns an :class:`ImageDataset` with images (N, C, H, W) scaled linearly from
the integer pixel range to [-1, 1] and int64 labels (N,). Nothing is ever downloaded:

- :func:`load_digits` reads scikit-learn's 8x8 digits shipped in ``genlab/data/assets``
  (1797 images, pixel values 0..16), with a fixed 80/20 train/test split;
- :func:`load_mnist` parses the IDX files of MNIST (or a drop-in such as Fashion-MNIST)
  from a directory the user points to, plain or ``.gz``;
- :func:`load_cifar10` reads the CIFAR-10 "python version" batches with a restricted
  unpickler that can only rebuild numpy arrays, so a malicious file cannot run code.

>>> ds = load_digits("test")
>>> ds.shape, len(ds), ds.num_classes
((1, 8, 8), 359, 10)
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import os
import pickle
import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlab._validate import check_tensor, choose
from genlab.data._checks import _check_float_dtype, _check_generator, _check_n, _device_of

__all__ = ["ImageDataset", "load_digits", "load_mnist", "load_cifar10"]

PathLike = str | os.PathLike[str]

_SPLITS = {"train": "train", "test": "test", "all": "all"}


def _to_unit_interval(pixels: np.ndarray, max_value: int, dtype: torch.dtype) -> torch.Tensor:
    """Integer pixels in [0, max_value] -> float tensor in [-1, 1]: x = 2 (p / max_value) - 1.

    Computed directly in ``dtype`` (no float64 copy of a large image set); dividing first
    keeps the end points exact, so the result never leaves [-1, 1] by rounding.
    """
    x = torch.from_numpy(np.array(pixels, order="C")).to(dtype)  # copy: input may be read-only
    return x.div_(max_value).mul_(2.0).sub_(1.0)


@dataclass(eq=False)
class ImageDataset:
    """Labelled images held in memory.

    Attributes:
        images: (N, C, H, W) floating tensor, values in [-1, 1] for the built-in loaders.
        labels: (N,) int64 class indices in [0, num_classes).
        num_classes: number of classes.
        name: short name ("digits", "mnist", "cifar10", ...).

    ``sample(n, generator)`` draws n rows uniformly *with replacement*, the same interface
    as the 2-D toys, so a trainer can consume either.
    """

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    name: str = "images"

    def __post_init__(self) -> None:
        check_tensor(self.images, "images")
        check_tensor(self.labels, "labels")
        if self.images.dim() != 4 or self.images.shape[0] < 1:
            raise ValueError(
                f"images must have shape (N, C, H, W) with N >= 1, got {tuple(self.images.shape)}"
            )
        if not self.images.is_floating_point():
            raise ValueError(f"images must be a floating-point tensor, got {self.images.dtype}")
        if self.labels.shape != (self.images.shape[0],) or self.labels.dtype != torch.int64:
            raise ValueError(
                f"labels must be an int64 tensor of shape (N,) = ({self.images.shape[0]},), "
                f"got {self.labels.dtype} {tuple(self.labels.shape)}"
            )
        if (
            isinstance(self.num_classes, bool)
            or not isinstance(self.num_classes, int)
            or (self.num_classes < 1)
        ):
            raise ValueError(f"num_classes must be a positive int, got {self.num_classes!r}")
        if int(self.labels.min()) < 0 or int(self.labels.max()) >= self.num_classes:
            raise ValueError(
                f"labels y must lie in [0, num_classes) = [0, {self.num_classes}), got values in "
                f"[{int(self.labels.min())}, {int(self.labels.max())}]"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    @property
    def dim(self) -> int:
        """C * H * W, the dimension of one flattened image."""
        c, h, w = self.shape
        return c * h * w

    def _indices(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        n = _check_n(n)
        generator = _check_generator(generator)
        idx = torch.randint(0, len(self), (n,), generator=generator, device=_device_of(generator))
        return idx.to(self.images.device)

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """Draw ``n`` images uniformly with replacement -> (n, C, H, W).

        ``dtype=None`` keeps the stored dtype (float32 unless loaded otherwise).
        """
        idx = self._indices(n, generator)
        x = self.images[idx]
        return x if dtype is None else x.to(_check_float_dtype(dtype))

    def sample_with_labels(
        self,
        n: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Like :meth:`sample` but also returns the labels: ((n, C, H, W), (n,) int64)."""
        idx = self._indices(n, generator)
        x = self.images[idx]
        return (x if dtype is None else x.to(_check_float_dtype(dtype))), self.labels[idx]


# --------------------------------------------------------------------------------------
# 8x8 digits (shipped)
# --------------------------------------------------------------------------------------

#: Seed of the fixed digits split. The permutation is "sort the indices by
#: sha256(f'{seed}:{index}')", which depends on nothing but hashlib, so the split is the
#: same for every numpy / torch version.
DIGITS_SPLIT_SEED = 1797
DIGITS_TEST_FRACTION = 0.2


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(1797, 8, 8) uint8 pixels in 0..16 and (1797,) uint8 labels from the package asset."""
    ref = resources.files("genlab.data").joinpath("assets").joinpath("digits.npz")
    with resources.as_file(ref) as path, np.load(path, allow_pickle=False) as f:
        images, labels = f["images"], f["labels"]
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def _digits_split_indices(n: int) -> dict[str, np.ndarray]:
    """Fixed, sorted index sets {"train", "test", "all"} for the digits (80/20)."""
    order = sorted(range(n), key=lambda i: hashlib.sha256(f"{DIGITS_SPLIT_SEED}:{i}".encode()).digest())
    n_test = int(n * DIGITS_TEST_FRACTION)
    return {
        "test": np.sort(np.asarray(order[:n_test], dtype=np.int64)),
        "train": np.sort(np.asarray(order[n_test:], dtype=np.int64)),
        "all": np.arange(n, dtype=np.int64),
    }


def load_digits(split: str = "train", dtype: torch.dtype = torch.float32) -> ImageDataset:
    """scikit-learn's 8x8 handwritten digits, shipped with genlab (no scikit-learn needed).

    Pixels p in {0..16} are mapped to x = p / 8 - 1 in [-1, 1].

    Args:
        split: "train" (1438 images), "test" (359) or "all" (1797). The split is fixed
            (see ``DIGITS_SPLIT_SEED``) and identical on every machine.
        dtype: floating dtype of the images.

    Returns:
        ImageDataset with images (N, 1, 8, 8), labels (N,) int64 in 0..9, 10 classes.
    """
    split = choose("split", split, _SPLITS)
    dtype = _check_float_dtype(dtype)
    images, labels = _digits_arrays()
    idx = _digits_split_indices(len(labels))[split]
    x = _to_unit_interval(images[idx][:, None], 16, dtype)  # (N, 1, 8, 8)
    y = torch.from_numpy(labels[idx].astype(np.int64))  # (N,)
    return ImageDataset(x, y, num_classes=10, name="digits")


# --------------------------------------------------------------------------------------
# MNIST (IDX files)
# --------------------------------------------------------------------------------------

_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_UBYTE = 0x08  # the only IDX element type MNIST uses


def _find_file(root: Path, names: list[str], candidates: list[Path], what: str) -> list[Path]:
    """Locate every file in ``names`` (plain or ``.gz``) in the first matching directory."""
    for directory in candidates:
        found: list[Path] = []
        for name in names:
            for option in (directory / name, directory / (name + ".gz")):
                if option.is_file():
                    found.append(option)
                    break
        if len(found) == len(names):
            return found
    searched = ", ".join(str(c) for c in candidates)
    raise ValueError(
        f"{what}: could not find the files {names} (each may also end in .gz) in "
        f"root={str(root)!r}; searched: {searched}. genlab never downloads data: place the "
        "files there yourself."
    )


def _read_bytes(path: Path) -> bytes:
    """Whole file content, gunzipped if the name ends in .gz; errors name the file."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"cannot read {str(path)!r}: {err}") from err


def _parse_idx(path: Path, ndim: int) -> np.ndarray:
    """Parse an IDX file of unsigned bytes with ``ndim`` dimensions.

    Layout: magic = 0x00 0x00 <type> <ndim>, then ndim big-endian uint32 sizes, then the
    data, row-major. Every field is checked; a mismatch raises a ValueError naming the file.
    """
    raw = _read_bytes(path)
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(f"corrupt IDX file {str(path)!r}: only {len(raw)} bytes, header incomplete")
    zero1, zero2, kind, dims = raw[0], raw[1], raw[2], raw[3]
    if zero1 != 0 or zero2 != 0 or kind != _IDX_UBYTE or dims != ndim:
        magic = struct.unpack(">I", raw[:4])[0]
        expected = (_IDX_UBYTE << 8) | ndim
        raise ValueError(
            f"corrupt IDX file {str(path)!r}: magic number {magic:#010x}, expected "
            f"{expected:#010x} (unsigned bytes, {ndim} dimension(s))"
        )
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    payload = memoryview(raw)[4 + 4 * ndim :]
    if shape[0] == 0 or int(np.prod(shape, dtype=np.int64)) != len(payload):
        raise ValueError(
            f"corrupt IDX file {str(path)!r}: header declares shape {shape} "
            f"({int(np.prod(shape, dtype=np.int64))} bytes) but the file holds {len(payload)} "
            "data bytes"
        )
    return np.frombuffer(payload, dtype=np.uint8).reshape(shape)


def _load_mnist_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    names = list(_MNIST_FILES[split])
    img_path, lbl_path = _find_file(root, names, [root, root / "MNIST" / "raw"], "load_mnist")
    images = _parse_idx(img_path, 3)  # (N, H, W)
    labels = _parse_idx(lbl_path, 1)  # (N,)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{str(img_path)!r} holds {images.shape[0]} images but {str(lbl_path)!r} holds "
            f"{labels.shape[0]} labels"
        )
    return images, labels


def load_mnist(root: PathLike, split: str = "train", dtype: torch.dtype = torch.float32) -> ImageDataset:
    """MNIST (or any IDX drop-in such as Fashion-MNIST) from local IDX files.

    Looks in ``root`` and ``root/MNIST/raw`` for ``train-images-idx3-ubyte``,
    ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``,
    each optionally gzipped (``.gz``). Pixels p in {0..255} map to x = 2 p / 255 - 1.

    Args:
        root: directory holding the files.
        split: "train", "test" or "all" (train followed by test).
        dtype: floating dtype of the images.

    Returns:
        ImageDataset with images (N, 1, H, W) (28 x 28 for MNIST) and labels (N,) int64;
        num_classes = max(10, largest label + 1).

    Raises:
        ValueError: missing files (the message lists the expected names and the directories
            searched) or a corrupt / inconsistent file (the message names it).
    """
    split = choose("split", split, _SPLITS)
    dtype = _check_float_dtype(dtype)
    root = Path(root)
    parts = ["train", "test"] if split == "all" else [split]
    loaded = [_load_mnist_split(root, s) for s in parts]
    if len({im.shape[1:] for im, _ in loaded}) != 1:
        raise ValueError(f"MNIST train and test images in {str(root)!r} differ in size")
    images = np.concatenate([im for im, _ in loaded])  # (N, H, W)
    labels = np.concatenate([lb for _, lb in loaded])  # (N,)
    x = _to_unit_interval(images[:, None], 255, dtype)  # (N, 1, H, W)
    y = torch.from_numpy(labels.astype(np.int64))
    return ImageDataset(x, y, num_classes=max(10, int(labels.max()) + 1), name="mnist")


# --------------------------------------------------------------------------------------
# CIFAR-10 (python pickles, restricted)
# --------------------------------------------------------------------------------------

_CIFAR_FILES = {
    "train": [f"data_batch_{i}" for i in range(1, 6)],
    "test": ["test_batch"],
}


def _numpy_attr(module: str, attr: str) -> Any:
    """Resolve numpy's pickling helper ``attr`` from numpy 2 (``numpy._core``) or 1.x."""
    for candidate in (module.replace("numpy.core", "numpy._core"), module):
        try:
            return getattr(importlib.import_module(candidate), attr)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"numpy helper {module}.{attr} is unavailable")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays, dicts, lists, strings and numbers only.

    ``find_class`` is the single place a pickle can reach Python callables; it is restricted
    to numpy's array / dtype / scalar reconstruction helpers. Anything else (``os.system``,
    ``builtins.eval``, ...) raises ``pickle.UnpicklingError`` before it can be called.
    """

    _ALLOWED = frozenset(
        {
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy.core.numeric", "_frombuffer"),
            ("numpy._core.numeric", "_frombuffer"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("_codecs", "encode"):  # how protocol 2 stores bytes from Python 3
            return _latin1_bytes
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: only numpy array reconstruction "
                "is allowed in a CIFAR-10 batch"
            )
        if module == "numpy":
            return getattr(np, name)
        return _numpy_attr(module, name)


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it (str -> bytes), and nothing else."""
    if not isinstance(text, str) or encoding.replace("-", "").lower() != "latin1":
        raise pickle.UnpicklingError("only latin-1 byte strings may be rebuilt from a CIFAR-10 batch")
    return text.encode("latin1")


def _load_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 batch -> (N, 3072) uint8 data and (N,) int64 labels."""
    try:
        with path.open("rb") as f:
            obj = _NumpyOnlyUnpickler(f, encoding="bytes").load()
    except (
        pickle.PickleError,
        EOFError,
        OSError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        OverflowError,
        MemoryError,
        struct.error,
    ) as err:
        raise ValueError(f"cannot unpickle CIFAR-10 batch {str(path)!r}: {err}") from err
    if not isinstance(obj, dict):
        raise ValueError(f"CIFAR-10 batch {str(path)!r} is not a dict but {type(obj).__name__}")
    data = obj.get(b"data", obj.get("data"))
    labels = obj.get(b"labels", obj.get("labels"))
    if data is None or labels is None:
        raise ValueError(f"CIFAR-10 batch {str(path)!r} lacks the keys b'data' and b'labels'")
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or (data.shape[1] != 3 * 32 * 32)
    ):
        raise ValueError(
            f"CIFAR-10 batch {str(path)!r}: data must be a uint8 array of shape (N, 3072), got "
            f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}"
        )
    try:
        y = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise ValueError(f"CIFAR-10 batch {str(path)!r}: labels are not integers: {err}") from err
    if y.shape[0] != data.shape[0] or (y.size and (y.min() < 0 or y.max() > 9)):
        raise ValueError(
            f"CIFAR-10 batch {str(path)!r}: need {data.shape[0]} labels in 0..9, got {y.shape[0]}"
            f" in [{y.min() if y.size else '-'}, {y.max() if y.size else '-'}]"
        )
    return data, y


def load_cifar10(root: PathLike, split: str = "train", dtype: torch.dtype = torch.float32) -> ImageDataset:
    """CIFAR-10 from the "python version" batches, read with a restricted unpickler.

    Looks in ``root`` and ``root/cifar-10-batches-py`` for ``data_batch_1`` .. ``data_batch_5``
    (train: those present, at least one) and ``test_batch`` (test). Each is a pickled dict
    with b"data" (N, 3072) uint8, rows laid out as 1024 red, 1024 green, 1024 blue values,
    and b"labels" (N,). Only numpy array reconstruction is allowed while unpickling (and, for
    batches pickled with protocol 2, the latin-1 ``_codecs.encode`` that rebuilds bytes), so
    loading never executes other code.
    Pixels p in {0..255} map to x = 2 p / 255 - 1.

    Args:
        root: directory holding the batches (or their parent).
        split: "train" (50000 images), "test" (10000) or "all".
        dtype: floating dtype of the images.

    Returns:
        ImageDataset with images (N, 3, 32, 32) and labels (N,) int64 in 0..9.
    """
    split = choose("split", split, _SPLITS)
    dtype = _check_float_dtype(dtype)
    root = Path(root)
    wanted = _CIFAR_FILES["train"] + _CIFAR_FILES["test"] if split == "all" else _CIFAR_FILES[split]
    candidates = [root, root / "cifar-10-batches-py"]
    for directory in candidates:
        names = [n for n in wanted if (directory / n).is_file()]
        train_ok = split == "test" or any(n.startswith("data_batch") for n in names)
        test_ok = split == "train" or "test_batch" in names
        if names and train_ok and test_ok:
            break
    else:
        searched = ", ".join(str(c) for c in candidates)
        raise ValueError(
            f"load_cifar10: could not find the files {wanted} (for train: any of the data_batch_k) in "
            f"root={str(root)!r}; searched: {searched}. genlab never downloads data: extract "
            "cifar-10-python.tar.gz there."
        )
    batches = [_load_cifar_batch(directory / n) for n in names]
    data = np.concatenate([d for d, _ in batches])  # (N, 3072)
    labels = np.concatenate([y for _, y in batches])  # (N,)
    x = _to_unit_interval(data.reshape(-1, 3, 32, 32), 255, dtype)  # (N, 3, 32, 32)
    return ImageDataset(x, torch.from_numpy(labels), num_classes=10, name="cifar10")
