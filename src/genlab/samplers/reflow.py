"""Reflow pairs (Liu et al. 2022): the deterministic coupling (x_0, ODE_1(x_0)) of a trained
flow, drawn by integrating the model's ODE from its source. The pairs become a data set in
:class:`genlab.paths.reflow.ReflowPairs`; the theory is in that module's docstring.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from genlab._validate import check_positive_int, check_tensor
from genlab.solvers import ODESolver

__all__ = ["generate_pairs"]


class FlowModel(Protocol):
    """What pair generation needs of a model (a :class:`~genlab.models.base.GaussianPathModel`)."""

    source: Any
    data_shape: tuple[int, ...]

    def parameters(self) -> Any: ...
    def sample(self, n: int, *args: Any, **kwargs: Any) -> Any: ...


def generate_pairs(
    model: FlowModel,
    n: int,
    steps: int = 100,
    solver: str | ODESolver = "rk4",
    generator: torch.Generator | None = None,
    batch_size: int = 4096,
    y: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw x_0 ~ p_0 and push it through the model's ODE: the reflow coupling (x_0, ODE_1(x_0)).

    The source samples are drawn at once, ``model.source.sample((n, *model.data_shape))``
    in the model's dtype and on its device, then integrated with ``model.sample(...,
    x0=chunk, sampler="ode")`` over ``steps`` uniform steps of ``solver`` (to
    ``model.t_end()``), ``batch_size`` samples at a time. The ODE is deterministic, so the
    chunking does not change the result (up to the network's own batch-size dependent
    rounding, if any). A tqdm progress bar is shown when n > batch_size (only on a
    terminal).

    Args:
        model: a trained :class:`~genlab.models.base.GaussianPathModel` (e.g. FlowMatching).
        n: number of pairs.
        steps: solver steps from t = 0 to t = 1.
        solver: ODE solver name or instance ("euler", "midpoint", "heun", "rk4", ...).
        generator: randomness of the source samples x_0.
        batch_size: samples integrated per call.
        y: (n,) labels for a class-conditional network; sample i is generated with y[i].

    Returns:
        (x0, x1), both (n, *model.data_shape), without autograd history.
    """
    for attr in ("sample", "source", "data_shape", "parameters"):
        if not hasattr(model, attr):
            raise ValueError(
                f"model must be a GaussianPathModel (e.g. FlowMatching); {type(model).__name__} "
                f"has no attribute {attr!r}"
            )
    n = check_positive_int(n, "n")
    steps = check_positive_int(steps, "steps")
    batch_size = check_positive_int(batch_size, "batch_size")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if y is not None:
        check_tensor(y, "y")
        if y.shape != (n,):
            raise ValueError(f"y must have shape (n,) = ({n},) (one label per pair), got {tuple(y.shape)}")
    if getattr(model, "starts_from_inputs", False):
        raise ValueError(
            "model maps corrupted inputs to data (a data coupling), not source samples to data; "
            "reflow pairs need a model whose sampling starts from model.source"
        )

    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    device = param.device if param is not None else None
    x0 = model.source.sample((n, *model.data_shape), generator, dtype, device)  # (n, *D)

    from tqdm.auto import tqdm  # a dependency; imported here to keep module import light

    chunks: list[torch.Tensor] = []
    # disable=None: tqdm shows the bar only on a terminal
    with tqdm(total=n, desc="reflow pairs", unit="sample", disable=True if n <= batch_size else None) as bar:
        for start in range(0, n, batch_size):
            x0_chunk = x0[start : start + batch_size]
            y_chunk = None if y is None else y[start : start + batch_size]
            sol = model.sample(
                x0_chunk.shape[0],
                solver=solver,
                grid=steps,
                generator=generator,
                y=y_chunk,
                x0=x0_chunk,
                sampler="ode",
            )
            chunks.append(sol.x.detach())
            bar.update(x0_chunk.shape[0])
    return x0.detach(), torch.cat(chunks, dim=0)
