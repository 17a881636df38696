"""Models that sample in one pass by decoding latent noise: VAE, VQ-VAE and the GANs.

They share the sampling interface of the other families (``sample(n, solver, grid,
generator, y, return_trajectory, x0, sampler) -> solution with .x and .nfe``) so that the
CLI, the metrics and the comparisons treat every family alike. A subclass implements

    generate(n, generator, y=None, x0=None) -> (n, *data_shape)

(``y`` labels of a class-conditional generator, ``x0`` the inputs of a translation model);
``sample`` validates the request, switches to eval mode and wraps the result with NFE = 1
(one decoder / generator pass). Solver, grid and trajectory do not apply and are ignored.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from genlab._validate import check_class_labels
from genlab.solvers import ODESolution

#: name of the one-pass sampler (``sample.sampler``) of these families
DIRECT = "direct"


class LatentModel(nn.Module):
    """Base of the one-pass families; see the module docstring."""

    SAMPLERS: ClassVar[tuple[str, ...]] = (DIRECT,)
    #: number of classes of a class-conditional generator (None: unconditional)
    num_classes: int | None = None
    #: whether ``generate`` takes inputs ``x0`` (translation models: pix2pix, CycleGAN)
    takes_inputs: ClassVar[bool] = False
    #: whether sampling runs start from corrupted held-out data (``model.coupling.inputs``)
    starts_from_inputs: ClassVar[bool] = False

    def generate(
        self,
        n: int,
        generator: torch.Generator | None = None,
        y: torch.Tensor | None = None,
        x0: torch.Tensor | None = None,
    ) -> torch.Tensor:
        raise NotImplementedError

    def sample(
        self,
        n: int,
        solver: Any = None,
        grid: Any = None,
        generator: torch.Generator | None = None,
        y: torch.Tensor | None = None,
        return_trajectory: bool = False,
        x0: torch.Tensor | None = None,
        sampler: str = DIRECT,
        guidance: float | None = None,
        **options: Any,
    ) -> ODESolution:
        """n samples in one pass; returns ``.x`` (n, *data_shape) and ``.nfe`` = 1."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if isinstance(solver, torch.Generator) or isinstance(grid, torch.Generator):
            raise ValueError("pass the random generator by keyword: model.sample(n, generator=g)")
        if sampler != DIRECT:
            raise ValueError(
                f"sampler {sampler!r} is not available for {type(self).__name__}; it samples in one "
                f"pass (sampler {DIRECT!r})"
            )
        if guidance is not None:
            raise ValueError(
                "classifier-free guidance applies to flow matching and diffusion; "
                f"{type(self).__name__} samples G(z, y) directly (drop --guidance)"
            )
        options.pop("steps", None)  # one pass: a number of steps does not apply (as solver, grid)
        if options:
            raise ValueError(f"unexpected sampler option(s): {', '.join(sorted(options))}")
        if y is not None:
            y = self._check_labels(y, n)
        if x0 is not None and not self.takes_inputs:
            raise ValueError(
                f"{type(self).__name__} samples from noise; inputs x0 apply to translation models "
                "(pix2pix, CycleGAN)"
            )
        if x0 is not None and x0.shape[0] != n:
            raise ValueError(f"x0 must hold n = {n} inputs, got {x0.shape[0]}")
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                x = self.generate(n, generator, y, x0)
        finally:
            self.train(was_training)
        return ODESolution(x=x, times=torch.tensor([0.0, 1.0], dtype=x.dtype), trajectory=None, nfe=1)

    def _check_labels(self, y: torch.Tensor, n: int) -> torch.Tensor:
        k = self.num_classes
        if k is None:
            raise ValueError(
                "labels were given but the model is not class-conditional "
                "(build it with num_classes / model.net.class_conditional=true)"
            )
        return check_class_labels(y, k, n)
