"""Couplings: how a source sample x_0 is paired with a data sample x_1 for training.

A coupling q(x_0, x_1) has the source and the data as marginals. Flow matching regresses on
the conditional velocity of pairs drawn from it; the independent coupling
q = p_0 x p_1 is the basic case, and later couplings (minibatch optimal transport, data
couplings such as inpainting) implement the same :class:`Coupling` interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from genlab._validate import check_finite, check_positive, check_tensor


@dataclass(frozen=True)
class CoupledBatch:
    """A batch of pairs (x_0, x_1); ``y`` are labels that travel with x_1 (or None)."""

    x0: torch.Tensor  # (B, *D) source samples
    x1: torch.Tensor  # (B, *D) data samples
    y: torch.Tensor | None = None  # (B,) labels of x1, reordered with it if the coupling permutes


class GaussianSource:
    """The source N(0, std^2 I); ``std`` is 1 for flow matching, sigma_max for VE paths."""

    def __init__(self, std: float = 1.0) -> None:
        self.std = check_positive(std, "std")

    def sample(
        self,
        shape: tuple[int, ...] | torch.Size,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Draw a tensor of the given shape (B, *D)."""
        z = torch.randn(tuple(shape), generator=generator, dtype=dtype, device=device)
        return self.std * z if self.std != 1.0 else z

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log N(x; 0, std^2 I) summed over non-batch dimensions -> (B,)."""
        d = x[0].numel()
        var = self.std**2
        quad = (x**2).flatten(1).sum(1) / var
        return -0.5 * (quad + d * torch.log(torch.tensor(2 * torch.pi * var, dtype=x.dtype)))

    def __repr__(self) -> str:
        return f"GaussianSource(std={self.std})"


class Coupling(ABC):
    """Pairs a data batch with source samples: ``coupling(x1, generator, y) -> CoupledBatch``."""

    def __init__(self, source: GaussianSource | None = None) -> None:
        self.source = source if source is not None else GaussianSource()

    def __call__(
        self,
        x1: torch.Tensor,
        generator: torch.Generator | None = None,
        y: torch.Tensor | None = None,
    ) -> CoupledBatch:
        check_tensor(x1, "x1")
        check_finite(x1, "x1")
        if y is not None and (y.dim() != 1 or y.shape[0] != x1.shape[0]):
            raise ValueError(f"y must have shape ({x1.shape[0]},), got {tuple(y.shape)}")
        return self.pair(x1, generator, y)

    @abstractmethod
    def pair(
        self, x1: torch.Tensor, generator: torch.Generator | None, y: torch.Tensor | None
    ) -> CoupledBatch:
        """Return the coupled batch (inputs already validated)."""


class IndependentCoupling(Coupling):
    """q(x_0, x_1) = p_0(x_0) p_1(x_1): fresh source noise for each data point."""

    def pair(
        self, x1: torch.Tensor, generator: torch.Generator | None, y: torch.Tensor | None
    ) -> CoupledBatch:
        x0 = self.source.sample(x1.shape, generator, x1.dtype, x1.device)
        return CoupledBatch(x0=x0, x1=x1, y=y)


COUPLINGS: dict[str, type[Coupling]] = {"independent": IndependentCoupling}
