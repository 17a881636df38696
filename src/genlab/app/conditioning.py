"""What a trained run's sampler is conditioned on: class labels, a guidance scale, or the
corrupted inputs of a data coupling. Used by ``genlab sample`` / ``eval`` and the figures.

- class-conditional runs sample every class in turn (``label=None``), one class
  (``label=k``) or none (``label=-1``, the null token); ``guidance=w`` follows
  (1 - w) v(x) + w v(x | y) and needs a run trained with label dropout;
- data-coupling runs (inpainting, super-resolution, denoising) start from corrupted
  held-out images; ``truth`` keeps the clean images for the figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from genlab.app.builders import build_dataset
from genlab.app.config import ConfigError
from genlab.data.images import ImageDataset
from genlab.samplers.guidance import NULL_LABEL, num_classes


@dataclass
class Conditioning:
    """Inputs of one sampling call besides the source noise."""

    y: torch.Tensor | None = None  # (n,) labels, -1 = no label
    guidance: float | None = None  # classifier-free guidance scale w
    x0: torch.Tensor | None = None  # (n, *D) corrupted inputs (data couplings)
    truth: torch.Tensor | None = None  # (n, *D) the clean images behind x0


def model_classes(model: Any) -> int | None:
    """The number of classes of a class-conditional model (its network's, or its own
    ``num_classes`` for the one-pass families), else None."""
    k = getattr(model, "num_classes", None)
    return int(k) if isinstance(k, int) else num_classes(getattr(model, "net", None))


def held_out_images(run: Any, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n clean images the model did not train on and their labels: the test split in order
    (cycled when n is larger), or draws from the training set for a run trained on its test
    split."""
    data = run.dataset if run.cfg.data.split == "test" else build_dataset(run.cfg.data, split="test")
    if data is run.dataset:
        return data.sample_with_labels(n, gen)
    reps = -(-n // data.images.shape[0])
    images = data.images.repeat(reps, *([1] * (data.images.dim() - 1)))[:n]
    return images, data.labels.repeat(reps)[:n]


def run_conditioning(
    run: Any,
    n: int,
    label: int | None = None,
    guidance: float | None = None,
    gen: torch.Generator | None = None,
) -> Conditioning:
    """Labels, guidance and inputs for n samples of ``run`` (defaults: its sample config)."""
    cfg, model = run.cfg, run.model
    label = cfg.sample.label if label is None else label
    guidance = cfg.sample.guidance if guidance is None else guidance
    k = model_classes(model)
    cond = Conditioning()
    if k is None:
        if label is not None or guidance is not None:
            raise ConfigError(
                "--label / --guidance need a class-conditional run (model.net.class_conditional=true)"
            )
    else:
        if label is None:
            cond.y = torch.arange(n) % k  # every class in turn
        elif label == NULL_LABEL or 0 <= label < k:
            cond.y = torch.full((n,), label, dtype=torch.long)
        else:
            raise ConfigError(f"--label must be a class in [0, {k - 1}] (or -1 for none), got {label}")
        if guidance is not None:
            if guidance < 0:
                raise ConfigError(f"--guidance must be >= 0, got {guidance}")
            if getattr(cfg.model, "label_dropout", None) == 0:  # the GAN refuses guidance itself
                raise ConfigError(
                    "--guidance needs the unconditional field, but this run trained with "
                    "model.label_dropout=0 (never saw the null label); retrain with model.label_dropout=0.1"
                )
            if label == NULL_LABEL:
                raise ConfigError("--guidance steers towards a class; give --label k >= 0 (or none for all)")
            cond.guidance = float(guidance)
    if getattr(model, "starts_from_inputs", False):
        if not isinstance(run.dataset, ImageDataset):
            raise ConfigError("a data-coupling run needs image data")
        gen = gen if gen is not None else torch.Generator().manual_seed(cfg.sample.seed + 1)
        cond.truth, truth_labels = held_out_images(run, n, gen)
        cond.x0 = model.coupling.inputs(cond.truth, gen)
        if k is not None and label is None:
            cond.y = truth_labels  # complete each image under its own class
    return cond
