"""Couplings: how a source sample x_0 is paired with a data sample x_1 for training.

A coupling q(x_0, x_1) has the source and the data as marginals. Flow matching regresses on
the conditional velocity of pairs drawn from it; the independent coupling
q = p_0 x p_1 is the basic case, and later couplings (minibatch optimal transport, data
couplings such as inpainting) implement the same :class:`Coupling` interface.

The source need not be Gaussian: a :class:`DataSource` draws x_0 from another data set
(e.g. 8gaussians -> moons), on paths that interpolate between the two.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

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

    #: Gaussian sources have a density and fit every path; see :class:`DataSource`
    gaussian = True

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


class DataSource:
    """Samples of a data set as the source p_0 (flow matching between two distributions).

    ``dataset`` is anything with ``sample(n, generator) -> (n, *D)`` (the 2D toys, image and
    array data sets). A data source has no density and no noise interpretation: it needs a
    path that interpolates, x_t = alpha_t x_1 + sigma_t x_0 with alpha_0 = sigma_1 = 0 and
    alpha_1 = sigma_0 = 1 (linear, cosine, polynomial), and an ODE sampler.
    """

    gaussian = False

    def __init__(self, dataset: Any, name: str | None = None) -> None:
        if not callable(getattr(dataset, "sample", None)):
            raise ValueError(
                f"DataSource needs a data set with sample(n, generator), got {type(dataset).__name__}"
            )
        self.dataset, self.name = dataset, name or type(dataset).__name__

    def sample(
        self,
        shape: tuple[int, ...] | torch.Size,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Draw shape[0] samples; their sample shape must be shape[1:]."""
        x = self.dataset.sample(int(shape[0]), generator)
        if isinstance(x, (tuple, list)):
            x = x[0]
        if tuple(x.shape[1:]) != tuple(shape[1:]):
            raise ValueError(
                f"source {self.name} gives samples of shape {tuple(x.shape[1:])} but the data have "
                f"shape {tuple(shape[1:])}; source and data must live in the same space"
            )
        return x.to(dtype=dtype, device=device)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        raise ValueError(f"source {self.name} is a data set without a density; log p needs a Gaussian source")

    def __repr__(self) -> str:
        return f"DataSource({self.name})"


Source = GaussianSource | DataSource


class Coupling(ABC):
    """Pairs a data batch with source samples: ``coupling(x1, generator, y) -> CoupledBatch``."""

    def __init__(self, source: Source | None = None) -> None:
        self.source = source if source is not None else GaussianSource()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(source={self.source!r})"

    @property
    def gaussian_source(self) -> bool:
        """Whether x_0 is Gaussian noise (what VP / VE paths and score conversions assume)."""
        return bool(getattr(self.source, "gaussian", False))

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
