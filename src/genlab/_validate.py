"""Input checks shared by every public boundary.

Each check raises ``ValueError`` whose message names the offending argument and says what
would be accepted, so a typo in a config never surfaces as a stack trace from inside torch.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import torch

T = TypeVar("T")


def choose(kind: str, name: str, registry: Mapping[str, T]) -> T:
    """Return ``registry[name]`` or raise a ValueError listing the valid names.

    >>> choose("solver", "rk4", {"rk4": 4})
    4
    """
    if not isinstance(name, str) or name not in registry:
        valid = ", ".join(sorted(registry))
        raise ValueError(f"unknown {kind} {name!r}; valid {kind}s are: {valid}")
    return registry[name]


def check_tensor(x: Any, name: str) -> torch.Tensor:
    """Require a torch.Tensor."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def has_values(x: torch.Tensor) -> bool:
    """Whether the value checks below can read ``x``: not inside a graph that torch.compile
    traces (reading a value would break the graph and wait for the device; the eager
    call at the public boundary has checked it), not on the ``meta`` device (shapes only,
    as in the device tests)."""
    return x.device.type != "meta" and not torch.compiler.is_compiling()


def check_finite(x: torch.Tensor, name: str) -> torch.Tensor:
    """Require every entry of ``x`` to be finite (no NaN, no inf)."""
    check_tensor(x, name)
    if x.is_floating_point() and has_values(x) and not bool(torch.isfinite(x.detach()).all()):
        bad = int((~torch.isfinite(x.detach())).sum())
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf); clean the input")
    return x


def check_time(t: torch.Tensor, name: str = "t") -> torch.Tensor:
    """Require times in the closed interval [0, 1] (t = 0 noise, t = 1 data)."""
    check_tensor(t, name)
    if t.numel() and has_values(t):
        lo, hi = (float(v) for v in torch.aminmax(t.detach().reshape(-1)))  # one pass, one sync
        if not (lo >= 0.0 and hi <= 1.0):  # also false for NaN
            if lo != lo or hi != hi or abs(lo) == float("inf") or abs(hi) == float("inf"):
                check_finite(t, name)
            raise ValueError(
                f"{name} must lie in [0, 1] (t = 0 is noise, t = 1 is data); "
                f"got values in [{lo:.4g}, {hi:.4g}]"
            )
    return t


def check_same_shape(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    """Require two tensors of identical shape."""
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape; got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def check_batch_time(t: torch.Tensor | float, x: torch.Tensor, name: str = "t") -> torch.Tensor:
    """Return ``t`` as a (B,) tensor for a batch ``x`` of shape (B, *D).

    A Python float or a 0-dim tensor is broadcast to the batch; a (B,) tensor must match.
    """
    if not isinstance(t, torch.Tensor):
        if isinstance(t, (int, float)):
            t = torch.tensor(float(t))
        else:
            raise ValueError(f"{name} must be a float or a tensor, got {type(t).__name__}")
    if x.dim() < 1:
        raise ValueError(f"x must have a batch dimension, got shape {tuple(x.shape)}")
    t = t.to(dtype=x.dtype, device=x.device)
    if t.dim() == 0:
        t = t.expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(
            f"{name} must be a scalar or have shape (B,) = ({x.shape[0]},); got {tuple(t.shape)}"
        )
    return check_time(t, name)


def check_callable(f: Any, name: str) -> Callable[..., Any]:
    """Require a callable (a function or an nn.Module)."""
    if not callable(f):
        raise ValueError(f"{name} must be callable as {name}(t, x), got {type(f).__name__}")
    return f  # type: ignore[no-any-return]


def check_positive_int(value: Any, name: str) -> int:
    """Require a positive integer (Python or numpy; not a bool); returns it as an int.

    >>> check_positive_int(3, "steps")
    3
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def check_positive(value: float, name: str) -> float:
    """Require a finite, strictly positive number."""
    if not isinstance(value, (int, float)) or not value > 0 or value != value:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def check_class_labels(y: Any, num_classes: int, n: int, null_label: int | None = None) -> torch.Tensor:
    """Labels for n samples of a K-class model: an integer tensor of shape (n,) with values in
    [0, K - 1], or also ``null_label`` (the "no label" token of guidance) when given.
    Returns them as int64."""
    check_tensor(y, "y")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"labels y must be integers, got dtype {y.dtype}")
    if y.shape != (n,):
        raise ValueError(f"labels y must have shape ({n},) (one per sample), got {tuple(y.shape)}")
    low = 0 if null_label is None else min(0, null_label)
    if y.numel() and has_values(y) and (int(y.min()) < low or int(y.max()) >= num_classes):
        extra = f" (or {null_label} for no label)" if null_label is not None else " (no 'no label' token)"
        got = f"[{int(y.min())}, {int(y.max())}]"
        raise ValueError(f"labels y must lie in [0, {num_classes - 1}]{extra}; got values in {got}")
    return y.long()


class ConfigError(ValueError):
    """A configuration problem the user can fix (unknown key, wrong type, bad value); its
    message is one line that names the setting and what would be accepted."""


def check_choice(key: str, value: str, valid: Iterable[str]) -> None:
    """Require ``value`` to be one of ``valid`` (a ConfigError naming the setting otherwise).

    >>> check_choice("model.sde", "vp", ["ve", "vp"])
    """
    choices = sorted(valid)
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is not valid; choose one of: {', '.join(choices)}")


def check_min(key: str, value: float | None, low: float, strict: bool = False) -> None:
    """Require ``value >= low`` (``> low`` when ``strict``); None passes, NaN fails."""
    if value is None:
        return
    if value != value:  # NaN
        raise ConfigError(f"{key} must be a number, got {value}")
    if value < low or (strict and value == low):
        op = ">" if strict else ">="
        raise ConfigError(f"{key} must be {op} {low}, got {value}")
