"""Image domains for unpaired translation (CycleGAN): a data set seen through a fixed map.

Domain B is an image data set (e.g. the 8x8 digits); domain A is the same data set under a
deterministic transform T, drawn *independently* of the training batch, so that the two
domains share no pairs:

    x_a = T(x'),   x' ~ p_data drawn with the loss's generator,
    x_b ~ p_data   the training batch (drawn by the data loader).

A translator G_ab: A -> B should learn T^{-1}, and G_ba: B -> A should learn T. The
transforms (images (B, C, H, W)):

- ``"inverted"``: T(x) = -x, a negative of images in [-1, 1]; an involution (T o T = id);
- ``"rotated"``: T(x) = rot90(x) over (H, W), a quarter turn counter-clockwise; order 4
  (T^4 = id, T^{-1} = T^3), square images only.

:class:`ImageTransform` wraps one transform and offers ``inputs(x, generator)`` so that a
sampling run can show held-out images as input T(x) | output G_ab(T(x)) | truth x
(the same contract as :meth:`genlab.paths.corruptions.DataCoupling.inputs`).
:class:`TransformedImages` is the source of domain A, with the
``sample(shape, generator, dtype, device)`` interface of :class:`genlab.paths.DataSource`.

>>> x = torch.arange(4.0).reshape(1, 1, 2, 2)
>>> ImageTransform("rotated")(x)[0, 0]
tensor([[1., 3.],
        [0., 2.]])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from genlab._validate import check_tensor, choose
from genlab.data._checks import _check_float_dtype, _check_generator

__all__ = ["DOMAIN_TRANSFORMS", "ImageTransform", "TransformedImages", "invert", "rotate90"]


def _check_images(x: Any, name: str = "x") -> torch.Tensor:
    check_tensor(x, name)
    if x.dim() != 4:
        raise ValueError(f"{name} must be images (B, C, H, W), got shape {tuple(x.shape)}")
    return x


def invert(x: torch.Tensor) -> torch.Tensor:
    """T(x) = -x (the negative of images in [-1, 1]). Shapes: (B, C, H, W) -> (B, C, H, W)."""
    return -_check_images(x)


def rotate90(x: torch.Tensor) -> torch.Tensor:
    """T(x) = a quarter turn counter-clockwise over (H, W): ``torch.rot90(x, 1, (-2, -1))``.

    Square images only, so that T maps the domain to itself. (B, C, H, H) -> (B, C, H, H).
    """
    x = _check_images(x)
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"the 'rotated' domain needs square images (H = W), got shape {tuple(x.shape)}")
    return torch.rot90(x, 1, dims=(-2, -1))


DOMAIN_TRANSFORMS: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "inverted": invert,
    "rotated": rotate90,
}
"""Deterministic image maps T defining a domain A = T(data), by name."""


class ImageTransform:
    """A named domain transform T (see :data:`DOMAIN_TRANSFORMS`).

    ``transform(x)`` and ``transform.inputs(x, generator)`` both return T(x) for images
    (B, C, H, W); ``inputs`` is what a translation run feeds its generator at sampling time
    (the generator is accepted for the coupling interface and unused: T is deterministic).
    """

    def __init__(self, name: str) -> None:
        self.fn = choose("domain transform", name, DOMAIN_TRANSFORMS)
        self.name = name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def inputs(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """T(x) for clean images x (B, C, H, W): the domain-A version of held-out images."""
        _check_generator(generator)
        return self.fn(x)

    def __repr__(self) -> str:
        return f"ImageTransform({self.name!r})"


def as_transform(transform: ImageTransform | str) -> ImageTransform:
    """An :class:`ImageTransform` from itself or from a name of :data:`DOMAIN_TRANSFORMS`."""
    if isinstance(transform, ImageTransform):
        return transform
    if isinstance(transform, str):
        return ImageTransform(transform)
    raise ValueError(
        f"transform must be an ImageTransform or one of {', '.join(sorted(DOMAIN_TRANSFORMS))}, "
        f"got {type(transform).__name__}"
    )


class TransformedImages:
    """Domain A = T(images): draws images of ``dataset`` uniformly with replacement and maps them.

    ``sample(shape, generator)`` takes all its randomness from ``generator`` (the indices),
    independently of however the training batch of domain B was drawn, so the two domains are
    unpaired. Interface of :class:`genlab.paths.DataSource` (``gaussian = False``).

    Args:
        dataset: an :class:`~genlab.data.ImageDataset` (anything with ``images`` (N, C, H, W)
            and ``sample(n, generator, dtype)``).
        transform: an :class:`ImageTransform` or its name (``"inverted"``, ``"rotated"``).
    """

    gaussian = False

    def __init__(self, dataset: Any, transform: ImageTransform | str) -> None:
        images = getattr(dataset, "images", None)
        if (
            not isinstance(images, torch.Tensor)
            or images.dim() != 4
            or not callable(getattr(dataset, "sample", None))
        ):
            raise ValueError(
                "TransformedImages needs an image data set with images (N, C, H, W) and "
                f"sample(n, generator), got {type(dataset).__name__}"
            )
        self.dataset = dataset
        self.transform = as_transform(transform)
        self.shape: tuple[int, ...] = tuple(int(s) for s in images.shape[1:])  # (C, H, W)
        self.name = f"{self.transform.name} {getattr(dataset, 'name', type(dataset).__name__)}"

    def sample(
        self,
        shape: Sequence[int] | int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """T(x') for ``shape[0]`` images x' drawn with ``generator``; ``shape[1:]`` must be (C, H, W).

        An int ``shape`` is the number of images. ``dtype=None`` keeps the data set's dtype.
        Returns (n, C, H, W).
        """
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        if len(shape) > 1 and tuple(shape[1:]) != self.shape:
            raise ValueError(
                f"source {self.name} gives images of shape {self.shape} but {tuple(shape[1:])} was "
                "asked for; source and data must live in the same space"
            )
        if dtype is not None:
            _check_float_dtype(dtype)
        x = self.dataset.sample(int(shape[0]), _check_generator(generator))  # (n, C, H, W)
        x = x.to(dtype=dtype if dtype is not None else x.dtype, device=device)
        return self.transform(x)

    def __repr__(self) -> str:
        return f"TransformedImages({getattr(self.dataset, 'name', '?')}, {self.transform.name})"
