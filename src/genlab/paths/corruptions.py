r"""Data couplings for images: x_0 is a corrupted copy of the clean image x_1.

Instead of pairing a data sample with independent noise, a *data coupling* builds the
source from the data itself, p(x_0, x_1) = p(x_0 | x_1) p(x_1): draw a clean image x_1,
then

    x_0 = C(x_1) + noise_std * eps,        eps ~ N(0, I),

where C is a (possibly random) corruption. Flow matching on such pairs learns to transport
the corrupted images to the clean ones; at sampling time the ODE starts from the
corrupted version of a held-out image (:meth:`DataCoupling.inputs`). The extra
``noise_std`` term blurs the source distribution, so that p(x_1 | x_0) is not a point mass
and the velocity field stays well defined where C maps many images to the same x_0.

The corruptions (images are (B, C, H, W) floats, values in [-1, 1]):

- :class:`Inpaint` (``"inpaint"``): with a binary mask m in {0, 1}^(H x W) (1 = missing),
  C(x)_ij = (1 - m_ij) x_ij + m_ij z_ij with z ~ N(0, I): the missing region is replaced
  by fresh standard normal noise, the known pixels are copied exactly.
- :class:`SuperResolution` (``"superres"``): C = U D with D the average over each
  factor x factor block and U the nearest-neighbour upsampling back to (H, W). Since
  D U = I, C is a projection (C(C(x)) = C(x)) onto images constant on blocks: it keeps the
  block means and removes everything else (e.g. a checkerboard is mapped to 0).
- :class:`AdditiveNoise` (``"denoise"``): C(x) = x + std * z, z ~ N(0, I).

>>> corrupt = make_corruption("superres", factor=2)
>>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
>>> corrupt(x)[0, 0]
tensor([[ 2.5000,  2.5000,  4.5000,  4.5000],
        [ 2.5000,  2.5000,  4.5000,  4.5000],
        [10.5000, 10.5000, 12.5000, 12.5000],
        [10.5000, 10.5000, 12.5000, 12.5000]])
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from genlab._validate import check_finite, check_positive, check_tensor, choose
from genlab.paths.couplings import CoupledBatch, Coupling

__all__ = [
    "CORRUPTIONS",
    "AdditiveNoise",
    "Corruption",
    "DataCoupling",
    "Inpaint",
    "SuperResolution",
    "make_corruption",
]

MASKS = ("center", "random", "left")


def _check_generator(generator: Any) -> torch.Generator | None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(
            f"generator must be a torch.Generator or None, got {type(generator).__name__}; "
            "create one with torch.Generator().manual_seed(seed)"
        )
    return generator


def _noise_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise with the shape, dtype and device of ``x``."""
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


class Corruption(ABC):
    """A map x_1 -> C(x_1) from clean images to corrupted ones, (B, C, H, W) -> (B, C, H, W).

    ``corruption(x1, generator)`` validates its input and calls :meth:`apply`; random
    corruptions draw all their randomness from ``generator``, so a seeded generator makes
    them reproducible.
    """

    name: ClassVar[str]

    def __call__(self, x1: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return C(x1), same shape and dtype as ``x1`` (B, C, H, W)."""
        self._check_images(x1)
        _check_generator(generator)
        return self.apply(x1, generator)

    @abstractmethod
    def apply(self, x1: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Corrupt a validated batch of images (B, C, H, W)."""

    def _check_images(self, x1: Any) -> torch.Tensor:
        check_tensor(x1, "x1")
        if x1.dim() != 4:
            raise ValueError(f"{self.name} needs images (B, C, H, W), got shape {tuple(x1.shape)}")
        if not x1.is_floating_point():
            raise ValueError(f"{self.name} needs a floating-point image tensor, got dtype {x1.dtype}")
        return check_finite(x1, "x1")


def _check_fraction(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be a number in (0, 1], got {value!r}")
    return float(value)


class Inpaint(Corruption):
    """Replace a region of each image by N(0, 1) noise; the other pixels are kept exactly.

    Args:
        mask: which region is missing. ``"center"``: a centred block of round(size * H) rows
            by round(size * W) columns (a square for square images); ``"random"``: a block
            of the same size at a uniformly random position, drawn per image from the
            generator; ``"left"``: the left round(size * W) columns. Every side is at least
            one pixel.
        size: the side of the missing region as a fraction of the image side, in (0, 1].
    """

    name = "inpaint"

    def __init__(self, mask: str = "center", size: float = 0.5) -> None:
        self.mask_type: str = choose("mask", mask, {m: m for m in MASKS})
        self.size = _check_fraction(size, "size")

    def _side(self, n: int) -> int:
        return min(n, max(1, round(self.size * n)))

    def mask(self, x1: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Bool tensor (B, 1, H, W), True where pixels of ``x1`` (B, C, H, W) are missing.

        The ``"random"`` mask draws its positions from ``generator`` (two integers per image).
        """
        self._check_images(x1)
        _check_generator(generator)
        return self._mask(x1, generator)

    def _mask(self, x1: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        b, _, h, w = x1.shape
        dev = x1.device
        rows, cols = torch.arange(h, device=dev), torch.arange(w, device=dev)
        if self.mask_type == "left":
            sw = self._side(w)
            row_in = torch.ones(b, h, dtype=torch.bool, device=dev)
            col_in = (cols < sw).expand(b, w)
        else:
            sh, sw = self._side(h), self._side(w)
            if self.mask_type == "center":
                top = torch.full((b,), (h - sh) // 2, device=dev)
                left = torch.full((b,), (w - sw) // 2, device=dev)
            else:
                top = torch.randint(0, h - sh + 1, (b,), generator=generator, device=dev)
                left = torch.randint(0, w - sw + 1, (b,), generator=generator, device=dev)
            row_in = (rows >= top[:, None]) & (rows < top[:, None] + sh)  # (B, H)
            col_in = (cols >= left[:, None]) & (cols < left[:, None] + sw)  # (B, W)
        return (row_in[:, :, None] & col_in[:, None, :])[:, None]  # (B, 1, H, W)

    def apply(self, x1: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """x1 with the masked pixels (all channels) replaced by fresh N(0, 1) noise.

        The mask is drawn first, then the noise, both from ``generator``.
        """
        missing = self._mask(x1, generator)
        return torch.where(missing, _noise_like(x1, generator), x1)

    def __repr__(self) -> str:
        return f"Inpaint(mask={self.mask_type!r}, size={self.size})"


class SuperResolution(Corruption):
    """Low-resolution version at full size: average over factor x factor blocks, then repeat.

    C(x) = U(D(x)) with D = ``avg_pool2d(x, factor)`` (B, C, H/f, W/f) and U the
    nearest-neighbour upsampling back to (B, C, H, W). H and W must be divisible by
    ``factor``.

    Args:
        factor: the downsampling factor, an int >= 2.
    """

    name = "superres"

    def __init__(self, factor: int = 2) -> None:
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 2:
            raise ValueError(f"factor must be an int >= 2, got {factor!r}")
        self.factor = factor

    def apply(self, x1: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Block means of ``x1`` repeated over each block; deterministic (generator unused)."""
        f = self.factor
        h, w = x1.shape[-2:]
        if h % f or w % f:
            g = math.gcd(h, w)
            divisors = [d for d in range(2, g + 1) if g % d == 0]
            valid = ", ".join(map(str, divisors)) if divisors else "none (no factor >= 2 divides both)"
            raise ValueError(
                f"superres factor {f} must divide the image height and width (H, W) = ({h}, {w}); "
                f"factors that divide both: {valid}"
            )
        low = F.avg_pool2d(x1, kernel_size=f)  # (B, C, H/f, W/f)
        return low.repeat_interleave(f, dim=2).repeat_interleave(f, dim=3)

    def __repr__(self) -> str:
        return f"SuperResolution(factor={self.factor})"


class AdditiveNoise(Corruption):
    """C(x) = x + std * z with z ~ N(0, I) drawn from the generator.

    Args:
        std: the noise standard deviation, > 0.
    """

    name = "denoise"

    def __init__(self, std: float = 0.5) -> None:
        self.std = check_positive(std, "std")

    def apply(self, x1: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return x1 + self.std * _noise_like(x1, generator)

    def __repr__(self) -> str:
        return f"AdditiveNoise(std={self.std})"


class DataCoupling(Coupling):
    """p(x_0, x_1) = p(x_0 | x_1) p(x_1): x_0 = C(x_1) + noise_std * eps, eps ~ N(0, I).

    ``coupling(x1, generator, y)`` returns ``CoupledBatch(x0, x1, y)`` with x1 (B, C, H, W)
    and y passed through unchanged and x0 of the same shape. The randomness (the
    corruption's, then eps) is drawn from ``generator``; eps is only drawn when
    ``noise_std > 0``.

    The source is *not* a Gaussian: the ``source`` attribute that :class:`Coupling` creates
    is kept for interface compatibility but ignored here, and ``gaussian_source`` is False, so
    flow matching asks for a path that interpolates and samplers start from :meth:`inputs` of
    held-out images instead.

    Args:
        corruption: the corruption C, e.g. ``Inpaint("center")`` or ``make_corruption(...)``.
        noise_std: standard deviation of the extra Gaussian noise on x_0, >= 0.

    >>> coupling = DataCoupling(Inpaint(mask="center", size=0.5))
    >>> x1 = torch.zeros(2, 1, 8, 8)
    >>> batch = coupling(x1, torch.Generator().manual_seed(0))
    >>> batch.x0.shape
    torch.Size([2, 1, 8, 8])
    >>> bool((batch.x0[:, :, :2] == 0).all())  # the rows above the hole are copied
    True
    >>> int(coupling.corruption.mask(x1).sum())  # 2 images x (4 x 4) missing pixels
    32
    """

    def __init__(self, corruption: Corruption, noise_std: float = 0.0) -> None:
        super().__init__()  # creates an unused GaussianSource; see the class docstring
        if not isinstance(corruption, Corruption):
            raise ValueError(
                f"corruption must be a Corruption (e.g. make_corruption('inpaint')), "
                f"got {type(corruption).__name__}"
            )
        if (
            isinstance(noise_std, bool)
            or not isinstance(noise_std, (int, float))
            or not (0.0 <= noise_std < math.inf)
        ):
            raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std!r}")
        self.corruption = corruption
        self.noise_std = float(noise_std)

    @property
    def gaussian_source(self) -> bool:
        """False: x_0 is a corrupted image, not Gaussian noise (the base ``source`` is unused)."""
        return False

    def inputs(self, x1: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The source x_0 = C(x1) + noise_std * eps for clean images x1 (B, C, H, W).

        What sampling starts from; with the same generator state it is identical to the x0
        of ``coupling(x1, generator)``.
        """
        x0 = self.corruption(x1, generator)
        if self.noise_std > 0.0:
            x0 = x0 + self.noise_std * _noise_like(x0, generator)
        return x0

    def pair(
        self, x1: torch.Tensor, generator: torch.Generator | None, y: torch.Tensor | None
    ) -> CoupledBatch:
        return CoupledBatch(x0=self.inputs(x1, generator), x1=x1, y=y)

    def __repr__(self) -> str:
        return f"DataCoupling({self.corruption!r}, noise_std={self.noise_std})"


CORRUPTIONS: dict[str, type[Corruption]] = {
    "inpaint": Inpaint,
    "superres": SuperResolution,
    "denoise": AdditiveNoise,
}


def make_corruption(name: str, shape: Sequence[int] | None = None, **kwargs: Any) -> Corruption:
    """Build a corruption by name (``"inpaint"``, ``"superres"``, ``"denoise"``). With a
    ``shape`` (C, H, W), one blank image is corrupted so that settings that do not fit the
    image size (a super-resolution factor that does not divide it) fail here.

    >>> make_corruption("inpaint", mask="left", size=0.25)
    Inpaint(mask='left', size=0.25)
    """
    cls = choose("corruption", name, CORRUPTIONS)
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ValueError(
            f"unknown keyword argument(s) {', '.join(map(repr, unknown))} for corruption {name!r}; "
            f"valid keyword arguments are: {', '.join(params)}"
        )
    corruption = cls(**kwargs)
    if shape is not None:
        corruption(torch.zeros(1, *shape), torch.Generator().manual_seed(0))
    return corruption
