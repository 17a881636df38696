"""Argument checks and float64 draws shared by every ``sample`` in ``genlab.data``."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch

from genlab._validate import check_positive


def _check_n(n: Any, name: str = "n") -> int:
    """Require a strictly positive Python/numpy integer (not a bool, not a float)."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or int(n) <= 0:
        raise ValueError(f"{name} must be a positive int, got {n!r}")
    return int(n)


def _check_generator(generator: Any, name: str = "generator") -> torch.Generator | None:
    """Require ``None`` or a ``torch.Generator``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(
            f"{name} must be a torch.Generator or None, got {type(generator).__name__}; "
            "create one with torch.Generator().manual_seed(seed)"
        )
    return generator


def _check_float_dtype(dtype: Any, name: str = "dtype") -> torch.dtype:
    """Require a floating-point ``torch.dtype``."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"{name} must be a floating torch.dtype such as torch.float32, got {dtype!r}")
    return dtype


def _device_of(generator: torch.Generator | None) -> torch.device:
    """Samples are drawn on the generator's device (CPU for the global generator)."""
    return generator.device if generator is not None else torch.device("cpu")


def _check_nonnegative(value: Any, name: str) -> float:
    """Require a finite number >= 0 (a noise level may be zero)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_count(value: Any, name: str, minimum: int = 1) -> int:
    """Require an int >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _positive(value: Any, name: str) -> float:
    """check_positive plus finiteness and no bools."""
    if isinstance(value, bool) or (isinstance(value, float) and math.isinf(value)):
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return check_positive(value, name)


def _rand(n: int, g: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """(n,) uniform on [0, 1), float64."""
    return torch.rand(n, generator=g, dtype=torch.float64, device=device)


def _randn(shape: Sequence[int], g: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Standard normal of the given shape, float64."""
    return torch.randn(*shape, generator=g, dtype=torch.float64, device=device)


def _randint(high: int, n: int, g: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """(n,) integers uniform on {0, ..., high - 1}, int64."""
    return torch.randint(0, high, (n,), generator=g, device=device)
