"""Generative models: each exposes loss(batch) -> dict and sample(n, ...)."""

from genlab.models.base import GaussianPathModel, split_batch
from genlab.models.diffusion import DDPM, Diffusion
from genlab.models.flow_matching import FlowMatching

#: model families by config name (``model.family``)
FAMILIES: dict[str, type[GaussianPathModel]] = {
    "flow_matching": FlowMatching,
    "diffusion": Diffusion,
    "ddpm": DDPM,
}

__all__ = ["DDPM", "FAMILIES", "Diffusion", "FlowMatching", "GaussianPathModel", "split_batch"]
