"""Images in the formats users hold: arrays (``.npy``, ``.npz``, ``.pt``) and folders of PNG / JPEG.

Arrays may be (N, C, H, W), (N, H, W, C) (channels last, C in 1, 3, 4) or (N, H, W) (grey);
values in [0, 255] (integers, or floats above 1), [0, 1] or [-1, 1] are detected (or stated
with ``value_range``) and mapped linearly to [-1, 1], the range of every built-in image set.
An ``.npz`` or a ``.pt`` dict may hold labels next to the images (keys ``labels`` / ``y``); a
folder with one subfolder per class gives labels by subfolder name (sorted). Without labels
every image has class 0.

>>> import numpy as np, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
>>> np.save(path, np.zeros((4, 16, 16, 3), dtype=np.uint8))
>>> ds = load_image_file(path)
>>> ds.shape, float(ds.images.min())
((3, 16, 16), -1.0)
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlab.data.images import ImageDataset

__all__ = ["IMAGE_FILE_SUFFIXES", "VALUE_RANGES", "image_array_ndim", "load_image_file", "load_image_folder"]

PathLike = str | os.PathLike[str]

#: suffixes of the image array files
IMAGE_FILE_SUFFIXES = (".npy", ".npz", ".pt")
#: how pixel values are read: detected, or stated
VALUE_RANGES = ("auto", "0-255", "0-1", "-1-1")
#: suffixes of the picture files in a folder
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_IMAGE_KEYS = ("images", "x", "data", "arr_0")
_LABEL_KEYS = ("labels", "y", "targets")


def _pick(container: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        if key in container:
            return container[key]
    return None


def _read_arrays(p: Path) -> tuple[Any, Any]:
    """(images, labels or None) from an .npy / .npz / .pt file, as numpy arrays."""
    try:
        if p.suffix == ".npy":
            return np.load(p, allow_pickle=False), None
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                images = _pick(z, _IMAGE_KEYS)
                if images is None:
                    raise ValueError(
                        f"holds {list(z.files)}; name the images array one of {list(_IMAGE_KEYS)}"
                    )
                labels = _pick(z, _LABEL_KEYS)
                return np.asarray(images), None if labels is None else np.asarray(labels)
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except (OSError, EOFError, zipfile.BadZipFile, RuntimeError, ValueError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{str(p)!r} is not a readable {p.suffix} image array ({first})") from None
    if isinstance(obj, dict):
        images, labels = _pick(obj, _IMAGE_KEYS), _pick(obj, _LABEL_KEYS)
        if images is None:
            raise ValueError(f"{str(p)!r} holds keys {list(obj)}; name the images one of {list(_IMAGE_KEYS)}")
    else:
        images, labels = obj, None
    if not isinstance(images, torch.Tensor) or (labels is not None and not isinstance(labels, torch.Tensor)):
        raise ValueError(f"{str(p)!r} must hold a tensor of images (or a dict of tensors)")
    return images.numpy(), None if labels is None else labels.numpy()


def _to_nchw(arr: np.ndarray, where: str) -> np.ndarray:
    """(N, C, H, W) from (N, C, H, W), (N, H, W, C) or (N, H, W)."""
    if arr.ndim == 3:
        return arr[:, None]
    if arr.ndim == 4:
        if arr.shape[1] in (1, 3, 4):
            return arr
        if arr.shape[3] in (1, 3, 4):
            return arr.transpose(0, 3, 1, 2)
    raise ValueError(
        f"{where} has shape {arr.shape}; images must be (N, C, H, W), (N, H, W, C) with C in 1, 3, 4, "
        "or (N, H, W); flatten other arrays to (N, D) for vector data"
    )


def _scaled(arr: np.ndarray, value_range: str, where: str, dtype: torch.dtype) -> torch.Tensor:
    """Pixels mapped linearly to [-1, 1] from the stated or detected range."""
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{where} must hold numbers, got dtype {arr.dtype}")
    x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64))
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{where} contains {int((~torch.isfinite(x)).sum())} non-finite value(s)")
    lo, hi = float(x.min()), float(x.max())
    if value_range == "auto":
        value_range = "-1-1" if lo < 0 else ("0-255" if arr.dtype.kind in "iu" or hi > 1.0 else "0-1")
    low, high = {"0-255": (0.0, 255.0), "0-1": (0.0, 1.0), "-1-1": (-1.0, 1.0)}[value_range]
    if lo < low - 1e-6 or hi > high + 1e-6:
        raise ValueError(
            f"{where} has values in [{lo:.4g}, {hi:.4g}], outside data.value_range={value_range}; "
            f"choose one of {', '.join(VALUE_RANGES)}"
        )
    return ((x - low) / (high - low) * 2.0 - 1.0).to(dtype)


def _dataset(images: torch.Tensor, labels: Any, where: str, name: str) -> ImageDataset:
    n = images.shape[0]
    if n < 2:
        raise ValueError(f"{where} must hold at least 2 images, got {n}")
    if labels is None:
        return ImageDataset(images, torch.zeros(n, dtype=torch.int64), 1, name)
    y = np.asarray(labels).reshape(-1)
    if y.shape[0] != n or y.dtype.kind not in "iub" or (y.size and y.min() < 0):
        raise ValueError(
            f"{where}: labels must be {n} integers >= 0, got {y.dtype} of shape {np.shape(labels)}"
        )
    return ImageDataset(images, torch.from_numpy(y.astype(np.int64)), int(y.max()) + 1, name)


def image_array_ndim(path: PathLike) -> int:
    """The number of dimensions of the array in an .npy file (memory-mapped: no data read);
    0 when the file is no readable array (the loader then says why)."""
    try:
        return int(np.load(path, mmap_mode="r", allow_pickle=False).ndim)
    except (OSError, ValueError, EOFError):
        return 0


def load_image_file(
    path: PathLike, value_range: str = "auto", dtype: torch.dtype = torch.float32
) -> ImageDataset:
    """Images from an ``.npy``, ``.npz`` or ``.pt`` file (see the module docstring)."""
    p = Path(path)
    if p.suffix not in IMAGE_FILE_SUFFIXES:
        raise ValueError(f"image file {str(p)!r} must end in one of {', '.join(IMAGE_FILE_SUFFIXES)}")
    if not p.is_file():
        raise ValueError(f"image file {str(p)!r} does not exist or is not a file")
    if value_range not in VALUE_RANGES:
        raise ValueError(f"value_range must be one of {', '.join(VALUE_RANGES)}, got {value_range!r}")
    images, labels = _read_arrays(p)
    where = repr(str(p))
    x = _scaled(_to_nchw(np.asarray(images), where), value_range, where, dtype)
    return _dataset(x, labels, where, p.stem)


def load_image_folder(
    path: PathLike, value_range: str = "auto", dtype: torch.dtype = torch.float32
) -> ImageDataset:
    """Images from a folder of PNG / JPEG files, or of one subfolder of them per class."""
    from PIL import Image, UnidentifiedImageError

    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"image folder {str(root)!r} does not exist or is not a folder")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    groups = [(k, root / c) for k, c in enumerate(classes)] if classes else [(0, root)]
    files = [(k, f) for k, d in groups for f in sorted(d.iterdir()) if f.suffix.lower() in PICTURE_SUFFIXES]
    if len(files) < 2:
        raise ValueError(
            f"image folder {str(root)!r} holds {len(files)} pictures ({', '.join(PICTURE_SUFFIXES)}); "
            "put the images there, or one subfolder of them per class"
        )
    pictures = []
    for _, f in files:
        try:
            with Image.open(f) as im:
                pictures.append(im.convert("RGBA") if im.mode in ("RGBA", "LA", "P") else im.convert("RGB"))
        except (OSError, UnidentifiedImageError) as err:
            raise ValueError(f"cannot read the picture {str(f)!r} ({err})") from None
    size = pictures[0].size
    for (_, f), pic in zip(files, pictures, strict=True):
        if pic.size != size:
            raise ValueError(
                f"{str(f)!r} is {pic.size[0]}x{pic.size[1]} but {str(files[0][1])!r} is {size[0]}x{size[1]}; "
                "the pictures of a data set must share one size"
            )
    arrays = np.stack([np.asarray(p) for p in pictures])  # (N, H, W, 3 or 4) uint8
    if all(np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2]) for a in arrays):
        arrays = arrays[..., :1]  # grey pictures: one channel
    elif arrays.shape[-1] == 4 and bool((arrays[..., 3] == 255).all()):
        arrays = arrays[..., :3]  # an alpha channel that is all opaque
    where = repr(str(root))
    x = _scaled(_to_nchw(arrays, where), value_range, where, dtype)
    labels = np.array([k for k, _ in files]) if classes else None
    return _dataset(x, labels, where, root.name)
