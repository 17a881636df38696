"""User-supplied vector data (N, D) from ``.npy`` or ``.csv`` files.

The result, an :class:`ArrayDataset`, has the same ``sample(n, generator)`` interface as the
2-D toys (rows drawn uniformly with replacement), so any model that trains on a toy trains
on a user's table unchanged.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlab._validate import check_tensor
from genlab.data._checks import _check_float_dtype, _check_generator, _check_n, _device_of

__all__ = ["ArrayDataset", "Standardization", "load_array"]

PathLike = str | os.PathLike[str]

_MAX_LISTED_ROWS = 10  # how many offending row indices an error message shows


def _describe_nonfinite(data: torch.Tensor | np.ndarray, what: str) -> str | None:
    """None if every entry is finite, else a message naming how many values / which rows."""
    finite = np.isfinite(data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else data)
    if finite.all():
        return None
    bad_rows = np.flatnonzero(~finite.all(axis=1))
    listed = ", ".join(str(int(r)) for r in bad_rows[:_MAX_LISTED_ROWS])
    more = " ..." if len(bad_rows) > _MAX_LISTED_ROWS else ""
    return (
        f"{what} contains {int((~finite).sum())} non-finite value(s) (NaN or inf) in "
        f"{len(bad_rows)} row(s); first rows (0-based data rows): {listed}{more}"
    )


class ArrayDataset:
    """An in-memory (N, D) table of real vectors.

    Attributes:
        data: (N, D) floating tensor, finite, N >= 2, D >= 1.
        dim: D.
        name: short name (the file stem for :func:`load_array`).
    """

    def __init__(self, data: torch.Tensor, name: str = "array") -> None:
        check_tensor(data, "data")
        if data.dim() != 2:
            raise ValueError(f"data must be 2-D (N, D), got {data.dim()}-D shape {tuple(data.shape)}")
        if data.shape[0] < 2 or data.shape[1] < 1:
            raise ValueError(f"data must have N >= 2 rows and D >= 1 columns, got {tuple(data.shape)}")
        if not data.is_floating_point():
            raise ValueError(f"data must be a floating-point tensor, got {data.dtype}")
        message = _describe_nonfinite(data, "data")
        if message:
            raise ValueError(message)
        self.data = data
        self.dim = int(data.shape[1])
        self.name = str(name)

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def __repr__(self) -> str:
        return f"ArrayDataset(name={self.name!r}, N={len(self)}, D={self.dim})"

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """Draw ``n`` rows uniformly with replacement -> (n, D).

        ``dtype=None`` keeps the stored dtype (float32 unless loaded otherwise).
        """
        n = _check_n(n)
        generator = _check_generator(generator)
        idx = torch.randint(0, len(self), (n,), generator=generator, device=_device_of(generator))
        x = self.data[idx.to(self.data.device)]
        return x if dtype is None else x.to(_check_float_dtype(dtype))


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _read_csv(path: Path) -> np.ndarray:
    """Comma-separated floats -> (N, D) float64; a first line of non-numeric names is skipped."""
    try:
        with path.open("r", encoding="utf-8") as f:
            first = ""
            header_lines = 0
            for line in f:
                header_lines += 1
                if line.strip():
                    first = line
                    break
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read CSV file {str(path)!r}: {err}") from err
    if not first:
        raise ValueError(f"CSV file {str(path)!r} is empty")
    fields = [x.strip() for x in first.split(",")]
    numeric = [_is_number(x) for x in fields]
    if all(numeric):
        skip = header_lines - 1  # the first non-blank line is data
    elif not any(numeric):
        skip = header_lines  # a header of column names
    else:
        raise ValueError(
            f"CSV file {str(path)!r}: line {header_lines} mixes numbers and text {fields}; a "
            "header must contain only names and data lines only numbers"
        )
    try:
        arr = np.loadtxt(
            path,
            delimiter=",",
            skiprows=skip,
            ndmin=2,
            dtype=np.float64,
            comments="#",
            encoding="utf-8",
        )
    except ValueError as err:
        raise ValueError(f"CSV file {str(path)!r} is not numeric comma-separated data: {err}") from err
    return np.asarray(arr)


def _read_npy(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"cannot read .npy file {str(path)!r} (object arrays are refused): {err}") from err
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"{str(path)!r} does not hold a single array")
    if arr.dtype.kind not in "iuf":
        raise ValueError(f".npy file {str(path)!r} must hold integers or floats, got dtype {arr.dtype}")
    return arr


_READERS: dict[str, Any] = {".csv": _read_csv, ".npy": _read_npy}


def load_array(path: PathLike, dtype: torch.dtype = torch.float32, name: str | None = None) -> ArrayDataset:
    """Load a user table of shape (N, D) from ``.npy`` or ``.csv``.

    CSV: one row per line, comma-separated numbers; blank lines and ``#`` comments are
    ignored; a first line made only of non-numeric names is treated as a header and skipped.

    Args:
        path: the file (suffix ``.npy`` or ``.csv``).
        dtype: floating dtype of the returned data.
        name: data set name; defaults to the file stem.

    Returns:
        ArrayDataset with data (N, D).

    Raises:
        ValueError: missing file, unknown suffix, unreadable or non-numeric content,
            not 2-D, fewer than 2 rows, or NaN / inf values (the message says how many and in
            which rows).
    """
    dtype = _check_float_dtype(dtype)
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    p = Path(path)
    reader = _READERS.get(p.suffix.lower())
    if reader is None:
        raise ValueError(f"path {str(p)!r} must end in one of {sorted(_READERS)}, got {p.suffix!r}")
    if not p.is_file():
        raise ValueError(f"path {str(p)!r} does not exist or is not a file")
    arr = reader(p)
    if arr.ndim != 2:
        raise ValueError(f"{str(p)!r} must hold a 2-D array (N, D), got {arr.ndim}-D shape {arr.shape}")
    if arr.shape[0] < 2 or arr.shape[1] < 1:
        raise ValueError(f"{str(p)!r} must hold N >= 2 rows and D >= 1 columns, got {arr.shape}")
    message = _describe_nonfinite(arr, repr(str(p)))
    if message:
        raise ValueError(message)
    data = torch.from_numpy(np.array(arr, dtype=np.float64)).to(dtype)
    return ArrayDataset(data, name=p.stem if name is None else name)


@dataclass(frozen=True)
class Standardization:
    """Per-column z = (x - mean) / std: models of user tables train on z, and their samples
    x = mean + std z come back in the data's units. A density changes by the Jacobian:
    log p_x(x) = log p_z(z) - sum_d log std_d (:attr:`log_det`).

    >>> s = Standardization.fit(torch.tensor([[0.0, 10.0], [2.0, 30.0]]))
    >>> s.apply(torch.tensor([[1.0, 20.0]])), s.undo(torch.zeros(1, 2))
    (tensor([[0., 0.]]), tensor([[ 1., 20.]]))
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, data: torch.Tensor) -> Standardization:
        """Column means and standard deviations of (N, D) data (a constant column keeps std 1)."""
        mean, std = data.double().mean(0), data.double().std(0, unbiased=False)
        std = torch.where(std > 1e-12, std, torch.ones_like(std))
        return cls(tuple(float(v) for v in mean), tuple(float(v) for v in std))

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            torch.tensor(self.mean, dtype=x.dtype, device=x.device),
            torch.tensor(self.std, dtype=x.dtype, device=x.device),
        )

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) data -> standardised z."""
        mean, std = self._stats(x)
        return (x - mean) / std

    def undo(self, z: torch.Tensor) -> torch.Tensor:
        """(..., D) standardised z -> data units."""
        mean, std = self._stats(z)
        return z * std + mean

    @property
    def log_det(self) -> float:
        """-sum_d log std_d: add it to log p_z(z) to get log p_x(x)."""
        return -sum(math.log(s) for s in self.std)
