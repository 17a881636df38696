"""Where tensors live and in which precision the losses run.

- :func:`resolve_device` turns ``auto | cpu | cuda | cuda:N | mps`` into a ``torch.device``
  (``auto``: CUDA if present, else MPS, else the CPU), refusing a device this machine lacks
  with one line that names it and the fix;
- :func:`make_generator` makes a seeded ``torch.Generator`` on a device that has one (CPU,
  CUDA, MPS), so noise is drawn where it is used; other devices (``meta``, used by the tests
  to catch tensors left on the CPU) get a CPU generator, which their factories accept;
- :func:`autocast` is the mixed-precision context of a training step (``fp32``: none;
  ``bf16`` / ``fp16``: ``torch.autocast`` on the device's type), :func:`needs_grad_scaler`
  says when a ``torch.amp.GradScaler`` must scale the loss (fp16), :func:`set_tf32` turns
  TF32 matmuls and cuDNN convolutions on or off for CUDA; :func:`to_device` moves a batch.

The same seed gives the same numbers on the CPU, bit for bit; a CUDA generator is a
different stream (Philox), so a seed gives other draws on a GPU than on the CPU.

Nothing here imports the rest of genlab: every layer may use it.
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager, nullcontext

import torch

__all__ = [
    "DEVICE_HELP",
    "PRECISIONS",
    "DeviceError",
    "autocast",
    "device_of",
    "generator_device",
    "make_generator",
    "needs_grad_scaler",
    "resolve_device",
    "set_tf32",
    "to_device",
]

#: what a device setting accepts
DEVICE_HELP = "auto, cpu, cuda, cuda:N or mps"
#: training precisions: fp32 everywhere, or bf16 / fp16 autocast around the losses
PRECISIONS = ("fp32", "bf16", "fp16")
_CUDA_RE = re.compile(r"^cuda(?::(\d+))?$")


class DeviceError(ValueError):
    """A device that this machine or this torch build does not have."""


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(spec: str | torch.device | None = "auto", key: str = "device") -> torch.device:
    """The device named by ``spec`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``, or a
    ``torch.device``, taken as it is). ``key`` names the setting in error messages.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if isinstance(spec, torch.device):  # taken as it is; "cuda" gets the current index
        if spec.type == "cuda" and spec.index is None:
            return torch.device("cuda", torch.cuda.current_device())
        return spec
    text = "auto" if spec is None else str(spec).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "mps":
        if not _mps_available():
            raise DeviceError(f"{key}=mps but this machine has no Apple GPU (MPS); use cpu or auto")
        return torch.device("mps")
    match = _CUDA_RE.match(text)
    if match is None:
        raise DeviceError(f"{key}={spec!r} is not a device; use {DEVICE_HELP}")
    if not torch.backends.cuda.is_built():
        raise DeviceError(f"{key}={spec} but this torch build has no CUDA; use cpu or auto")
    if not torch.cuda.is_available():
        raise DeviceError(f"{key}={spec} but no CUDA GPU is visible on this machine; use cpu or auto")
    index = int(match.group(1)) if match.group(1) is not None else torch.cuda.current_device()
    count = torch.cuda.device_count()
    if index >= count:
        raise DeviceError(
            f"{key}={spec} but only {count} CUDA device(s) are visible; use cuda:0 to cuda:{count - 1}"
        )
    return torch.device("cuda", index)


def device_of(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (the CPU for one with neither)."""
    for param in module.parameters():
        return param.device
    for buffer in module.buffers():
        return buffer.device
    return torch.device("cpu")


def generator_device(device: torch.device | str) -> torch.device:
    """Where a generator for ``device`` lives: the device itself for CPU, CUDA and MPS,
    the CPU for the others (``meta`` factories accept a CPU generator)."""
    device = torch.device(device)
    return device if device.type in ("cpu", "cuda", "mps") else torch.device("cpu")


def make_generator(device: torch.device | str, seed: int) -> torch.Generator:
    """A ``torch.Generator`` on ``generator_device(device)`` seeded with ``seed``.

    >>> make_generator("cpu", 0).initial_seed()
    0
    """
    return torch.Generator(device=generator_device(device)).manual_seed(int(seed))


def autocast(device: torch.device, precision: str) -> AbstractContextManager[object]:
    """The autocast context of ``precision`` on ``device``: none for fp32, bfloat16 or
    float16 autocast otherwise (the weights stay fp32; only the operations run in low
    precision)."""
    if precision == "fp32":
        return nullcontext()
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def needs_grad_scaler(precision: str) -> bool:
    """fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range."""
    return precision == "fp16"


def set_tf32(enabled: bool) -> None:
    """TF32 tensor cores for float32 matmuls and cuDNN convolutions on CUDA (Ampere and
    newer): about 10 mantissa bits instead of 23, several times the throughput. No effect
    on the CPU."""
    torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
    torch.backends.cudnn.allow_tf32 = bool(enabled)


def to_device(batch: object, device: torch.device, non_blocking: bool = False) -> object:
    """A batch (tensor, tuple / list or dict of tensors) moved to ``device``; other values
    (labels given as ints, None) pass through."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, dict):
        return {k: to_device(v, device, non_blocking) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(v, device, non_blocking) for v in batch)
    return batch
