"""Data-parallel training on ``torch.distributed``: DDP launched by ``torchrun``.

``torchrun --nproc-per-node N -m genlab train CONFIG`` starts N processes with the
environment variables RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT;
:func:`init_distributed` reads them and joins the process group: on CUDA rank r trains on
``cuda:LOCAL_RANK`` with NCCL, on the CPU with gloo. The trainer then

- draws the same global batch of ``train.batch_size`` on every rank from the shared data
  generator and keeps its own contiguous shard (rows ``[r B/N, (r + 1) B/N)``), so the data
  order is the single-process one whatever N is;
- draws the training noise (t, x_0, z, ...) of each example from the stream one process
  would have used for it: every rank holds the single-process noise generator (seed
  ``seed + NOISE_SEED_OFFSET``), and while the loss runs, :class:`SlicedNoise` turns each
  ``torch.rand`` / ``randn`` / ``randint`` draw from it that has an axis of the shard's batch
  size into the draw for the global batch, of which the rank keeps its own rows. So N
  processes take the same steps as one, up to the order of floating-point sums;
- averages the gradients across ranks (DDP's all-reduce; for the adversarial families an
  explicit all-reduce of each player's gradients, :func:`average_gradients`), so one step is
  the step of the mean of the per-shard losses; EMA, clipping and the optimiser then agree
  on every rank;
- writes checkpoints, metrics and TensorBoard from rank 0 only, with every rank's noise
  generator state (a run resumes bit for bit with the same number of processes), and
  evaluates and samples on rank 0 from the unwrapped model.

One process (no WORLD_SIZE, or WORLD_SIZE=1) is the plain single-process trainer.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.overrides import TorchFunctionMode


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the process group (a single process by default)."""

    rank: int = 0
    world_size: int = 1
    backend: str | None = None
    device: torch.device = torch.device("cpu")  # this rank's device (cuda:LOCAL_RANK on GPUs)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device | None = None) -> DistContext:
    """Join the process group described by torchrun's environment, or return the
    single-process context when there is none. ``device`` is the resolved training device:
    a CUDA one puts this rank on ``cuda:LOCAL_RANK`` with NCCL; any other, gloo."""
    device = torch.device("cpu") if device is None else device
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(device=device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), str(dist.get_backend()), device)


def shard(batch: Any, ctx: DistContext) -> Any:
    """This rank's contiguous slice of a global batch (tensor, tuple or dict of tensors)."""
    if not ctx.enabled:
        return batch

    def part(t: torch.Tensor) -> torch.Tensor:
        n = t.shape[0] // ctx.world_size
        return t[ctx.rank * n : (ctx.rank + 1) * n]

    if isinstance(batch, torch.Tensor):
        return part(batch)
    if isinstance(batch, dict):
        return {k: part(v) for k, v in batch.items()}
    return type(batch)(part(t) for t in batch)


class SlicedNoise(TorchFunctionMode):
    """While active on rank r of W, a draw from ``generator`` by ``torch.rand``, ``torch.randn``
    or ``torch.randint`` whose size has an axis of length ``n`` (the shard's batch size; the
    first such axis) is made for W n rows from the same generator, and rows [r n, (r + 1) n)
    of that axis are returned: every rank advances the stream exactly as one process drawing
    for the whole batch does, and gets the values one process would give its examples. Draws
    without such an axis (a scalar, a per-batch choice) are the same on every rank, as in one
    process. Other random functions and other generators pass through unchanged."""

    def __init__(self, generator: torch.Generator, ctx: DistContext, n: int):
        super().__init__()
        self.generator, self.ctx, self.n = generator, ctx, n

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = dict(kwargs or {})
        if kwargs.get("generator") is not self.generator or func not in _SIZED_DRAWS:
            return func(*args, **kwargs)
        size, rebuild = _size_argument(func, tuple(args), kwargs)
        axis = next((i for i, d in enumerate(size) if d == self.n), None)
        if axis is None:
            return func(*args, **kwargs)
        whole = list(size)
        whole[axis] = self.n * self.ctx.world_size
        new_args, new_kwargs = rebuild(tuple(whole))
        out = func(*new_args, **new_kwargs)
        return out.narrow(axis, self.ctx.rank * self.n, self.n).contiguous()


_SIZED_DRAWS = (torch.rand, torch.randn, torch.randint)


def _size_argument(func: Any, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple[int, ...], Any]:
    """The size of a ``rand`` / ``randn`` / ``randint`` call and a function that rebuilds its
    arguments with another size."""
    if "size" in kwargs:
        size = tuple(kwargs["size"])
        return size, lambda new: (args, {**kwargs, "size": new})
    if func is torch.randint:  # randint(high, size) or randint(low, high, size)
        size = tuple(args[-1])
        return size, lambda new: ((*args[:-1], new), kwargs)
    if len(args) == 1 and isinstance(args[0], (tuple, list, torch.Size)):  # rand((2, 3))
        return tuple(args[0]), lambda new: ((new,), kwargs)
    return tuple(args), lambda new: ((new,), kwargs)  # rand(2, 3)


def sliced_noise(generator: torch.Generator, ctx: DistContext, n: int) -> Any:
    """:class:`SlicedNoise` when distributed, else a context that does nothing."""
    return SlicedNoise(generator, ctx, n) if ctx.enabled else contextlib.nullcontext()


def all_true(flag: bool, ctx: DistContext) -> bool:
    """Whether ``flag`` holds on every rank (a collective: every rank must call it)."""
    if not ctx.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=ctx.device)  # NCCL reduces device tensors only
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item() > 0.5)


def any_true(flag: bool, ctx: DistContext) -> bool:
    """Whether ``flag`` holds on some rank (a collective)."""
    return not all_true(not flag, ctx)


def mean_over_ranks(values: dict[str, float], ctx: DistContext) -> dict[str, float]:
    """The per-key mean over ranks of a dict with the same keys on every rank (a collective)."""
    if not ctx.enabled or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return {k: float(v) / ctx.world_size for k, v in zip(keys, t.tolist(), strict=True)}


def gather_states(state: torch.Tensor, ctx: DistContext) -> list[torch.Tensor]:
    """Every rank's generator state (a collective; rank order)."""
    if not ctx.enabled:
        return [state]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, state)
    return [torch.as_tensor(s).cpu() for s in out]


def exit_process_group(code: int) -> int:
    """Leave the process group at the end of a torchrun process: destroy it, flush the
    output and end the process with ``code`` at once (``os._exit``), skipping C++ static
    destructors: at interpreter exit gloo's threads now and then abort the process
    ("terminate called without an active exception", SIGABRT) after the work succeeded.
    Returns ``code`` unchanged when no process group was initialised."""
    if not (dist.is_available() and dist.is_initialized()):
        return code
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def average_gradients(params: list[nn.Parameter], ctx: DistContext) -> None:
    """Replace every gradient by its mean over the ranks: one all-reduce of the gradients
    flattened into a single buffer (a collective; the same parameters have gradients on every
    rank, since every rank runs the same code). Used for the adversarial families instead of
    DDP's hooks: with two players in one module, DDP's unused-parameter search aborted
    intermittently (SIGABRT) on gloo."""
    if not ctx.enabled:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= ctx.world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_buffers(module: nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's buffers (e.g. BatchNorm running statistics) to every rank."""
    if ctx.enabled:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


class LossCaller(nn.Module):
    """Routes ``caller(method, batch, generator)`` to ``model.method(batch, generator)``, so
    that the losses run through DDP's forward (which prepares the gradient all-reduce)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, method: str, batch: Any, generator: torch.Generator) -> Any:
        return getattr(self.model, method)(batch, generator)


def wrap(model: nn.Module, ctx: DistContext) -> nn.Module | None:
    """``DDP(LossCaller(model))`` when distributed, else None (call the model directly)."""
    if not ctx.enabled:
        return None
    from torch.nn.parallel import DistributedDataParallel

    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(LossCaller(model), device_ids=ids)
