"""Two-dimensional toy distributions, one ``sample`` interface, and the toy registry.

Every data set here has the same small interface (the :class:`Dataset` protocol)::

    ds.name                                      # registry name, e.g. "moons"
    ds.dim                                       # event dimension D (2 for the toys)
    ds.sample(n, generator=g, dtype=torch.float32)  # -> (n, D) tensor

Points are drawn in float64 on the generator's device with ``torch.rand`` / ``torch.randn`` /
``torch.randint`` and the given ``generator`` only, then cast to ``dtype``; the same seed
therefore gives bit-identical samples on CPU, and float32 / float64 samples of one seed are
the same points up to rounding. ``generator=None`` uses torch's global default generator
(seed it with ``torch.manual_seed``); pass a generator for reproducible code.

The default parameters put (almost) all points inside [-4, 4]^2 with coordinates of
standard deviation of order 1, so one network and one learning rate fit every toy.
:class:`~genlab.data.mixture.GaussianMixture` (registered as ``gmm``) additionally has the
exact density, score, mean and covariance.

>>> g = torch.Generator().manual_seed(0)
>>> make_toy("moons").sample(5, generator=g).shape
torch.Size([5, 2])
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch

from genlab._validate import choose
from genlab.data._checks import (
    _check_count,
    _check_float_dtype,
    _check_generator,
    _check_n,
    _check_nonnegative,
    _device_of,
    _positive,
    _rand,
    _randint,
    _randn,
)
from genlab.data.mixture import GaussianMixture

__all__ = [
    "Dataset",
    "EightGaussians",
    "Moons",
    "Circles",
    "SwissRoll",
    "Checkerboard",
    "TwoSpirals",
    "Pinwheel",
    "Rings",
    "TOY_DATASETS",
    "make_toy",
]

_LOG_2PI = math.log(2.0 * math.pi)


@runtime_checkable
class Dataset(Protocol):
    """Anything a trainer can draw batches from.

    ``name`` is a short label, ``dim`` the number of scalars in one sample (D for vectors,
    C * H * W for images), and ``sample(n, generator, dtype)`` returns a batch-first tensor
    (n, *event_shape): (n, D) for vector data, (n, C, H, W) for images.
    """

    @property
    def name(self) -> str:
        """Short name of the data set (used in logs and by the registry)."""
        ...

    @property
    def dim(self) -> int:
        """Number of scalars in one sample."""
        ...

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Draw ``n`` i.i.d. samples, batch first, with the given generator."""
        ...


# --------------------------------------------------------------------------------------
# the 2-D toys
# --------------------------------------------------------------------------------------


class _Toy2D(ABC):
    """Base of the 2-D toys: validates ``sample``'s arguments, subclasses draw the points."""

    name: ClassVar[str] = ""
    dim: ClassVar[int] = 2

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Draw ``n`` i.i.d. points; returns (n, 2) in ``dtype`` on the generator's device."""
        n = _check_n(n)
        generator = _check_generator(generator)
        dtype = _check_float_dtype(dtype)
        x = self._draw(n, generator, _device_of(generator))  # (n, 2) float64
        return x.to(dtype)

    @abstractmethod
    def _draw(self, n: int, g: torch.Generator | None, device: torch.device) -> torch.Tensor:
        """Return (n, 2) float64 points (arguments already validated)."""


def _polar(r: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """(n,), (n,) -> (n, 2) points r (cos angle, sin angle)."""
    return torch.stack([r * torch.cos(angle), r * torch.sin(angle)], dim=-1)


@dataclass(frozen=True)
class EightGaussians(_Toy2D):
    """Eight isotropic Gaussians with equal weights on a circle.

    p(x) = (1/8) sum_{k=0}^{7} N(x; r (cos(2 pi k / 8), sin(2 pi k / 8)), std^2 I).

    The default radius r = 2 sqrt(2) ~ 2.83 is that of the FFJORD benchmark (centres at
    distance 4, divided by sqrt(2)); the default std = 0.2 is smaller than FFJORD's so that
    neighbouring modes (2 r sin(pi/8) ~ 2.16 apart) are separated by about 11 std. The exact
    density is available through :meth:`log_prob` / :meth:`as_mixture`.
    """

    radius: float = 2.0 * math.sqrt(2.0)  # distance of every mode from the origin
    std: float = 0.2  # per-coordinate standard deviation of each mode

    name: ClassVar[str] = "8gaussians"

    def __post_init__(self) -> None:
        _positive(self.radius, "radius")
        _positive(self.std, "std")

    def as_mixture(self) -> GaussianMixture:
        """The same distribution as a :class:`GaussianMixture` (exact log_prob, score, moments)."""
        angles = 2.0 * math.pi * torch.arange(8, dtype=torch.float64) / 8.0
        means = _polar(torch.full((8,), float(self.radius), dtype=torch.float64), angles)
        return GaussianMixture(means, torch.full((8,), float(self.std), dtype=torch.float64))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log-density, (B, 2) -> (B,)."""
        return self.as_mixture().log_prob(x)

    def _draw(self, n: int, g: torch.Generator | None, device: torch.device) -> torch.Tensor:
        k = _randint(8, n, g, device)  # (n,) mode index
        centres = _polar(
            torch.full((n,), float(self.radius), dtype=torch.float64, device=device),
            2.0 * math.pi * k.to(torch.float64) / 8.0,
        )  # (n, 2)
        return centres + self.std * _randn((n, 2), g, device)


@dataclass(frozen=True)
class Moons(_Toy2D):
    """Two interleaving half circles (the "two moons"), centred and scaled, plus noise.

    With theta ~ U[0, pi] and a fair coin b, the unit-scale curves are
    m_0(theta) = (cos theta, sin theta) and m_1(theta) = (1 - cos theta, 1/2 - sin theta);
    x = scale (m_b(theta) - (1/2, 1/4)) + noise eps, eps ~ N(0, I).
    The defaults give x in about [-3, 3] x [-1.5, 1.5].
    """

    noise: float = 0.1  # std of the Gaussian noise, in output units
    scale: float = 2.0  # factor applied to the centred unit-scale moons

    name: ClassVar[str] = "moons"

    def __post_init__(self) -> None:
        _check_nonnegative(self.noise, "noise")
        _positive(self.scale, "scale")

    def _draw(self, n: int, g: torch.Generator | None, device: torch.device) -> torch.Tensor:
        theta = math.pi * _rand(n, g, device)  # (n,)
        lower = _randint(2, n, g, device).to(torch.bool)  # (n,) which moon
        c, s = torch.cos(theta), torch.sin(theta)
        x = torch.where(lower, 1.0 - c, c) - 0.5
        y = torch.where(lower, 0.5 - s, s) - 0.25
        pts = self.scale * torch.stack([x, y], dim=-1)  # (n, 2)
        return pts + self.noise * _randn((n, 2), g, device)


@dataclass(frozen=True)
class Circles(_Toy2D):
    """Two concentric circles of radii ``radius`` and ``factor * radius``, equal weights.

    x = r_b (cos phi, sin phi) + noise eps, phi ~ U[0, 2 pi), b a fair coin,
    r_0 = radius, r_1 = factor * radius, eps ~ N(0, I).
    """

    radius: float = 3.0  # radius of the outer circle
    factor: float = 0.5  # inner radius / outer radius, in (0, 1)
    noise: float = 0.1  # std of the Gaussian noise

    name: ClassVar[str] = "circles"

    def __post_init__(self) -> None:
        _positive(self.radius, "radius")
        if not isinstance(self.factor, (int, float)) or not 0.0 < self.factor < 1.0:
            raise ValueError(f"factor must lie in (0, 1), got {self.factor!r}")
        _check_nonnegative(self.noise, "noise")

    def _draw(self, n: int, g: torch.Generator | None, device: torch.device) -> torch.Tensor:
        phi = 2.0 * math.pi * _rand(n, g, device)  # (n,)
        inner = _randint(2, n, g, device).to(torch.bool)  # (n,)
        r = self.radius * (1.0 - (1.0 - self.factor) * inner.to(torch.float64))  # (n,)
        return _polar(r, phi) + self.noise * _randn((n, 2), g, device)


@dataclass(frozen=True)
class SwissRoll(_Toy2D):
    """The 2-D Swiss roll (a spiral of increasing radius).

    t = (3 pi / 2)(1 + 2 u), u ~ U[0, 1];  x = scale (t cos t, t sin t) + noise eps.
    With scale = 1/5 the largest radius is 4.5 pi / 5 ~ 2.83 (as in FFJORD).
    """

    noise: float = 0.1  # std of the Gaussian noise, in output units
    scale: float = 0.2  # factor applied to (t cos t, t sin t)

    name: ClassVar[str] = "swissroll"

    def __post_init__(self) -> None:
        _check_nonnegative(self.noise, "noise")
        _positive(self.scale, "scale")

    def _draw(self, n: int, g: torch.Generator | None, device: torch.device) -> torch.Tensor:
        t = 1.5 * math.pi * (1.0 + 2.0 * _rand(n, g, device))  # (n,)
        return self.scale * _polar(t, t) + self.noise * _randn((n, 2), g, device)


@dataclass(frozen=True)
class Checkerboard(_Toy2D):
    """Uniform density on the "black" squares of a ``cells x cells`` checkerboard.

    The square [-half_width, half_width]^2 is cut into cells of side
    s = 2 half_width / cells; cell (i, j) is black when i + j is even. A black cell is
    chosen uniformly (i ~ U{0..cells-1}, j = 2 j' + (i mod 2), j' ~ U{0..cells/2-1}) and
    x = -half_width + s ((i, j) + u), u ~ U[0, 1)^2. ``cells`` must be even.
    """

    half_width: float = 3.0  # the board is [-half_width, half_width]^2
    cells: int = 4  # squares per side (even)

    name: ClassVar[str] = "checkerboard"

    def __post_init__(self) -> None:
        _positive(self.half_width, "half_width")
        _check_count(self.cells, "cells", minimum=2)
        if self.cells % 2:
            raise ValueError(f"cells must be even, got {self.cells!r}")

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log-density, (B, 2) -> (B,): -log(black area) on a black cell, -inf elsewhere.
        The black area is cells^2 / 2 squares of side 2 half_width / cells (18 by default)."""
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != 2:
            raise ValueError(f"x must have shape (B, 2), got {getattr(x, 'shape', type(x).__name__)}")
        side = 2.0 * self.half_width / self.cells
        area = self.cells**2 / 2 * side**2
        cell = torch.floor((x.to(torch.float64) + self.half_width) / side)  # (B, 2) column i, row j
        inside = ((cell >= 0) & (cell < self.cells)).all(-1)
        black = inside & (cell.sum(-1) % 2 == 0)
        out = torch.full(x.shape[:1], -math.inf, dtype=torch.float64, device=x.device)
        return out.masked_fill(black, -math.log(area)).to(x.dtype if x.is_floating_point() else torch.float64)

    def _draw(self, n: int, g: torch.Generator | None, device: torch.device) -> torch.Tensor:
        i = _randint(self.cells, n, g, device)  # (n,) column of the cell
        j = 2 * _randint(self.cells // 2, n, g, device) + i % 2  # (n,) row, i + j even
        u = _rand(2 * n, g, device).reshape(n, 2)  # (n, 2) position inside the cell
        side = 2.0 * self.half_width / self.cells
        ij = torch.stack([i, j], dim=-1).to(torch.float64)  # (n, 2)
        return -self.half_width + side * (ij + u)


@dataclass(frozen=True)
class TwoSpirals(_Toy2D):
    """Two interleaved Archimedean spirals, point-symmetric about the origin.

    phi = 2 pi turns sqrt(u), u ~ U[0, 1] (the sqrt makes the density along the arc
    roughly uniform); b a fair sign; x = b scale (-phi cos phi, phi sin phi) + noise eps.
    Defaults: 1.5 turns, scale 1/3, so the outer end is at radius pi ~ 3.14.
    """

    turns: float = 1.5  # number of revolutions of each arm
    scale: float = 1.0 / 3.0  # factor applied to the unit spiral
    noise: float = 0.1  # std of the Gaussian noise

    name: ClassVar[str] = "2spirals"

    def __post_init__(self) -> None:
        _positive(self.turns, "turns")
        _positive(self.scale, "scale")
        _check_nonnegative(self.noise, "noise")

    def _draw(self, n: int, g: torch.Generator | None, device: torch.device) -> torch.Tensor:
        phi = 2.0 * math.pi * self.turns * torch.sqrt(_rand(n, g, device))  # (n,)
        sign = 2.0 * _randint(2, n, g, device).to(torch.float64) - 1.0  # (n,) in {-1, +1}
        arm = torch.stack([-phi * torch.cos(phi), phi * torch.sin(phi)], dim=-1)  # (n, 2)
        return (sign * self.scale)[:, None] * arm + self.noise * _randn((n, 2), g, device)


@dataclass(frozen=True)
class Pinwheel(_Toy2D):
    """The pinwheel of Johnson et al. (2016, "Composing graphical models with neural networks").

    f = (1 + radial_std eps_1, tangential_std eps_2), arm k ~ U{0..arms-1},
    theta = 2 pi k / arms + rate exp(f_1), x = scale R(theta) f, R the rotation matrix.
    Each arm is a Gaussian blob bent by an angle that grows with the radius.
    """

    arms: int = 5  # number of blades
    radial_std: float = 0.3  # std along the blade, before bending
    tangential_std: float = 0.1  # std across the blade
    rate: float = 0.25  # how strongly the blades bend with radius
    scale: float = 1.75  # overall scale (keeps the outer tips inside about [-4, 4])

    name: ClassVar[str] = "pinwheel"

    def __post_init__(self) -> None:
        _check_count(self.arms, "arms")
        _positive(self.radial_std, "radial_std")
        _positive(self.tangential_std, "tangential_std")
        _check_nonnegative(self.rate, "rate")
        _positive(self.scale, "scale")

    def _draw(self, n: int, g: torch.Generator | None, device: torch.device) -> torch.Tensor:
        eps = _randn((n, 2), g, device)
        f1 = 1.0 + self.radial_std * eps[:, 0]  # (n,) radial coordinate
        f2 = self.tangential_std * eps[:, 1]  # (n,) tangential coordinate
        k = _randint(self.arms, n, g, device).to(torch.float64)  # (n,)
        theta = 2.0 * math.pi * k / self.arms + self.rate * torch.exp(f1)  # (n,)
        c, s = torch.cos(theta), torch.sin(theta)
        return self.scale * torch.stack([c * f1 - s * f2, s * f1 + c * f2], dim=-1)


@dataclass(frozen=True)
class Rings(_Toy2D):
    """Several concentric rings with equal weights.

    Radii r_j = max_radius (j + 1) / num_rings, j = 0..num_rings-1; j ~ U{0..num_rings-1},
    phi ~ U[0, 2 pi), x = r_j (cos phi, sin phi) + noise eps.
    """

    num_rings: int = 4  # number of rings
    max_radius: float = 3.0  # radius of the outermost ring
    noise: float = 0.08  # std of the Gaussian noise

    name: ClassVar[str] = "rings"

    def __post_init__(self) -> None:
        _check_count(self.num_rings, "num_rings")
        _positive(self.max_radius, "max_radius")
        _check_nonnegative(self.noise, "noise")

    def _draw(self, n: int, g: torch.Generator | None, device: torch.device) -> torch.Tensor:
        j = _randint(self.num_rings, n, g, device).to(torch.float64)  # (n,)
        r = self.max_radius * (j + 1.0) / self.num_rings  # (n,)
        phi = 2.0 * math.pi * _rand(n, g, device)  # (n,)
        return _polar(r, phi) + self.noise * _randn((n, 2), g, device)


# --------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------

TOY_DATASETS: dict[str, Callable[..., Dataset]] = {
    EightGaussians.name: EightGaussians,
    Moons.name: Moons,
    Circles.name: Circles,
    SwissRoll.name: SwissRoll,
    Checkerboard.name: Checkerboard,
    TwoSpirals.name: TwoSpirals,
    Pinwheel.name: Pinwheel,
    Rings.name: Rings,
    GaussianMixture.name: GaussianMixture,
}


def make_toy(name: str, **kwargs: Any) -> Dataset:
    """Build the toy data set registered as ``name`` with keyword arguments ``kwargs``.

    Unknown names raise a ValueError listing the registered ones; keyword arguments the
    constructor does not take raise a ValueError naming them (nothing is silently ignored).

    >>> make_toy("rings", num_rings=3).num_rings
    3
    """
    factory = choose("toy dataset", name, TOY_DATASETS)
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as err:
        raise ValueError(f"make_toy({name!r}): bad keyword arguments {sorted(kwargs)}: {err}") from err
    return factory(**kwargs)
